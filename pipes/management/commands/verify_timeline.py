"""manage.py verify_timeline [--pipe ID] [--card ID]: check the hash chains of card timelines,
against the latest seal (manage.py seal_timeline) when there is one."""

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from pipes.models import Card, CardEvent, Pipe
from pipes.timeline import SealError, seal_missing_cards, timeline_seal_latest, verify_timelines


class Command(BaseCommand):
    help = (
        "Verify that no card timeline was altered: every event chains to the previous one and matches its "
        "digest, nothing was dropped since the latest seal, every erased payload has its erasure event, and "
        "every card's values are what its timeline replays to."
    )

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
        try:
            seal = timeline_seal_latest()
        except SealError as exc:
            seal = None
            breaks += 1
            self.stdout.write(str(exc))
        if seal is None:
            self.stderr.write(_("No seal to check against: run manage.py seal_timeline."))
        else:
            self.stderr.write(_("Checked against the seal of %(when)s.") % {"when": seal.sealed_at})
        for problem in verify_timelines(cards.iterator(chunk_size=500), seal=seal):
            breaks += 1
            self.stdout.write(str(problem))
        if seal is not None and pipe is None and card is None:
            for problem in seal_missing_cards(seal):
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
