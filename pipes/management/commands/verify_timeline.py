"""manage.py verify_timeline [--pipe ID] [--card ID]: check the hash chains of card timelines."""

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from pipes.models import Card, CardEvent, Pipe
from pipes.timeline import verify_timelines


class Command(BaseCommand):
    help = "Verify that no card timeline was altered: every event chains to the previous one and matches its digest."

    def add_arguments(self, parser):
        parser.add_argument("--pipe", type=int, help="only the cards of this pipe (id)")
        parser.add_argument("--card", type=int, help="only this card (id)")

    def handle(self, *args, pipe: int | None = None, card: int | None = None, **options):
        cards = Card.objects.order_by("pk")
        if pipe is not None:
            cards = cards.filter(pipe_id=pipe)
        if card is not None:
            cards = cards.filter(pk=card)
        if pipe is not None and not Pipe.objects.filter(pk=pipe).exists():
            raise CommandError(_("There is no pipe %(id)d.") % {"id": pipe})
        if card is not None and not cards.exists():
            raise CommandError(_("There is no card %(id)d.") % {"id": card})
        breaks = 0
        for problem in verify_timelines(cards.iterator(chunk_size=500)):
            breaks += 1
            self.stdout.write(str(problem))
        card_count = cards.count()
        event_count = CardEvent.objects.filter(card__in=cards).count()
        if breaks:
            raise CommandError(
                _("%(breaks)d break(s) in %(cards)d cards, %(events)d events.")
                % {"breaks": breaks, "cards": card_count, "events": event_count}
            )
        self.stdout.write(
            _("%(cards)d cards, %(events)d events verified, no breaks")
            % {"cards": card_count, "events": event_count}
        )
