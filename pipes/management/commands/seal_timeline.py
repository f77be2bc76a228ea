"""manage.py seal_timeline: write a seal of every card's timeline head (pipes.timeline.timeline_seal_write)."""

from django.core.management.base import BaseCommand
from django.utils.translation import gettext as _

from pipes.timeline import timeline_seal_write


class Command(BaseCommand):
    help = (
        "Seal the card timelines: write every card's event count and head hash, with a keyed digest, to a file "
        "under TRILHO_TIMELINE_SEAL_DIR, so verify_timeline can tell when events were dropped since."
    )

    def handle(self, *args, **options):
        seal = timeline_seal_write()
        self.stdout.write(
            _("Sealed %(cards)d card timelines in %(path)s") % {"cards": len(seal.cards), "path": seal.path}
        )
