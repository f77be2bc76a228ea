"""manage.py retention [--dry-run] [--pipe ID]: anonymise finished cards past their pipe's retention period."""

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from pipes.governance import retention_apply
from pipes.models import Pipe


class Command(BaseCommand):
    help = (
        "Anonymise finished cards older than their pipe's retention period (PII fields, their files and "
        "the timeline content that held them). The rail's beat runs the same nightly."
    )

    def add_arguments(self, parser):
        parser.add_argument("--pipe", type=int, help="only this pipe (id)")
        parser.add_argument(
            "--dry-run", action="store_true", help="list what would be anonymised; change nothing"
        )
        parser.add_argument("--limit", type=int, default=500, help="at most this many cards per pipe")

    def handle(self, *args, pipe=None, dry_run=False, limit=500, **options):
        target = None
        if pipe is not None:
            target = Pipe.objects.filter(pk=pipe).first()
            if target is None:
                raise CommandError(_("There is no pipe %(id)d.") % {"id": pipe})
        run = retention_apply(pipe=target, dry_run=dry_run, limit=limit)
        names = dict(Pipe.objects.filter(pk__in=run.by_pipe).values_list("pk", "name"))
        for pipe_id, card_ids in run.by_pipe.items():
            verb = _("would anonymise") if dry_run else _("anonymised")
            self.stdout.write(f"{names.get(pipe_id, pipe_id)}: {verb} {len(card_ids)}")
        if dry_run:
            self.stdout.write(_("dry run: %(n)d card(s); nothing changed") % {"n": run.total})
        else:
            self.stdout.write(_("%(n)d card(s) anonymised") % {"n": run.total})
