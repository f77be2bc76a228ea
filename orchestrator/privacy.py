"""The rail's part of privacy: trace retention, and erasure of a person from traces and reviews.

Trace retention: the prompts, raw model outputs and call records of old step runs are deleted.

A pipe's policy (pipes.governance, "prune step traces after N days") decides when; this module
decides what. The run row stays with its cost, tokens, mechanism, decision and routing reason,
and so do the trace events that record decisions (routing, review, retry, error), emptied of
their data. The run is stamped `trace_pruned_at`, and its page says so.

Erasure: when pipes.governance erases a person from cards (a data-subject request or retention),
the same values are scrubbed from those cards' traces, step-run errors and reviews, inside the
erasure's transaction (a dry run rolls it back with the rest).
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from pipes.governance import TracePruning, erasure_patterns, person_erasing, register_trace_pruner
from pipes.services import scrub_personal_data

from .models import ReviewTask, StepRun, TraceEvent, TraceKind

CONTENT_KINDS = (
    TraceKind.INPUTS,
    TraceKind.FILES,
    TraceKind.PROMPT,
    TraceKind.RAW_OUTPUT,
    TraceKind.VALIDATION,
    TraceKind.MODEL_ERROR,
    TraceKind.HTTP_CALL,
    TraceKind.TOOL_CALL,
    TraceKind.CHANGES,
)
BATCH = 2000


def traces_prune(*, pipe_id: int, before: datetime, dry_run: bool = False) -> TracePruning:
    """Prune the traces of `pipe_id`'s step runs that finished before `before` (not already pruned)."""
    due = StepRun.objects.filter(pipe_id=pipe_id, finished_at__lt=before, trace_pruned_at__isnull=True)
    if dry_run:
        return TracePruning(
            runs=due.count(),
            events=TraceEvent.objects.filter(run__in=due, kind__in=CONTENT_KINDS).count(),
        )
    pruned = TracePruning()
    while run_ids := list(due.order_by("pk").values_list("pk", flat=True)[:BATCH]):
        with transaction.atomic():
            deleted, _by_model = TraceEvent.objects.filter(
                run_id__in=run_ids, kind__in=CONTENT_KINDS
            ).delete()
            TraceEvent.objects.filter(run_id__in=run_ids, data__isnull=False).update(data=None)
            StepRun.objects.filter(pk__in=run_ids).update(trace_pruned_at=timezone.now())
        pruned = pruned + TracePruning(runs=len(run_ids), events=deleted)
    return pruned


register_trace_pruner(traces_prune)


def _scrub_rows(queryset, names: tuple[str, ...], patterns) -> int:
    changed = 0
    for row in queryset.only("pk", *names):
        update = {}
        for name in names:
            value = getattr(row, name)
            scrubbed = scrub_personal_data(value, patterns)
            if scrubbed != value:
                update[name] = scrubbed
        if update:
            type(row).objects.filter(pk=row.pk).update(**update)
            changed += 1
    return changed


@receiver(person_erasing)
def on_person_erasing(sender, card_ids: list[int], identifiers: list[str], **kwargs) -> None:
    """Scrub the erased values from the rail's copies of them: traces, run errors, reviews and sign-offs."""
    from .inbox.models import ReviewSignoff

    patterns = erasure_patterns(identifiers)
    if not patterns or not card_ids:
        return
    _scrub_rows(TraceEvent.objects.filter(run__card_id__in=card_ids), ("summary", "data"), patterns)
    _scrub_rows(StepRun.objects.filter(card_id__in=card_ids), ("routing_reason", "error"), patterns)
    _scrub_rows(
        ReviewTask.objects.filter(card_id__in=card_ids),
        ("question", "proposal", "reasoning", "reason", "comment", "values"),
        patterns,
    )
    _scrub_rows(ReviewSignoff.objects.filter(task__card_id__in=card_ids), ("comment", "values"), patterns)
