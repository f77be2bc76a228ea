"""manage.py retention [--dry-run] [--pipe ID]: anonymise finished cards and prune step traces past their
pipe's retention periods."""

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from pipes.governance import retention_apply, trace_retention_apply
from pipes.models import Pipe


class Command(BaseCommand):
    help = (
        "Anonymise finished cards older than their pipe's retention period (PII fields, their files and "
        "the timeline content that held them), and prune step traces older than the pipe's trace retention "
        "(prompts and raw outputs; cost and decision records stay). The rail's beat runs the same nightly."
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
        traces = trace_retention_apply(pipe=target, dry_run=dry_run)
        names.update(Pipe.objects.filter(pk__in=traces).values_list("pk", "name"))
        for pipe_id, pruned in traces.items():
            verb = _("would prune") if dry_run else _("pruned")
            self.stdout.write(
                _("%(pipe)s: %(verb)s the traces of %(runs)d step run(s) (%(events)d trace events)")
                % {
                    "pipe": names.get(pipe_id, pipe_id),
                    "verb": verb,
                    "runs": pruned.runs,
                    "events": pruned.events,
                }
            )
        runs = sum(p.runs for p in traces.values())
        if dry_run:
            self.stdout.write(
                _("dry run: %(n)d card(s), %(runs)d step trace(s); nothing changed")
                % {"n": run.total, "runs": runs}
            )
        else:
            self.stdout.write(
                _("%(n)d card(s) anonymised, %(runs)d step trace(s) pruned") % {"n": run.total, "runs": runs}
            )
