"""manage.py mark_late [--dry-run] [--pipe ID]: mark cards over their SLA late, or over their deadline expired."""

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from pipes.governance import sla_mark_late, sla_preview
from pipes.models import Pipe


class Command(BaseCommand):
    help = (
        "Mark unfinished cards over their phase's SLA late and over their pipe's deadline expired, "
        "notify their assignees and the pipe's admins, and clear marks that no longer hold. "
        "The rail's beat runs the same every minute."
    )

    def add_arguments(self, parser):
        parser.add_argument("--pipe", type=int, help="only this pipe (id)")
        parser.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
        parser.add_argument("--limit", type=int, default=1000, help="at most this many marks of each kind")

    def handle(self, *args, pipe=None, dry_run=False, limit=1000, **options):
        target = None
        if pipe is not None:
            target = Pipe.objects.filter(pk=pipe).first()
            if target is None:
                raise CommandError(_("There is no pipe %(id)d.") % {"id": pipe})
        if dry_run:
            plan = sla_preview(pipe=target, limit=limit)
            for card_id, since, _phase in plan.late:
                self.stdout.write(
                    _("would mark card %(id)d late since %(since)s") % {"id": card_id, "since": since}
                )
            for card_id, since in plan.expired:
                self.stdout.write(
                    _("would mark card %(id)d expired since %(since)s") % {"id": card_id, "since": since}
                )
            self.stdout.write(
                _("dry run: %(late)d late, %(expired)d expired, %(cleared)d to clear; nothing changed")
                % {
                    "late": len(plan.late),
                    "expired": len(plan.expired),
                    "cleared": len(plan.clear_late) + len(plan.clear_expired),
                }
            )
            return
        result = sla_mark_late(pipe=target, limit=limit)
        self.stdout.write(str(result))
