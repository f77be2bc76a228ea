"""The rail's part of privacy: trace retention, and erasure of a person from traces and reviews.

Trace retention: the prompts, raw model outputs and call records of old step runs are deleted.

A pipe's policy (pipes.governance, "prune step traces after N days") decides when; this module
decides what. The run row stays with its cost, tokens, mechanism, decision and routing reason,
and so do the trace events that record decisions (routing, review, retry, error), emptied of
their data. The run is stamped `trace_pruned_at`, and its page says so.

Erasure: when pipes.governance erases a person from cards (a data-subject request or retention),
the same values are scrubbed from those cards' traces, step-run errors and reviews, inside the
erasure's transaction (a dry run rolls it back with the rest).

Export: when pipes.governance exports a person, the rail adds to each of their cards what it keeps
of it: the step runs with their whole trace (inputs, prompts, raw outputs, calls, changes) and the
review tasks, with what other apps keep of each review (the inbox: its sign-offs and delegations).

The rail never imports the inbox: the inbox subscribes to person_erasing for its own rows, and adds its
parts of a review's export through `register_review_export` (orchestrator.inbox.receivers).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Prefetch
from django.dispatch import receiver
from django.utils import timezone

from pipes.governance import (
    TracePruning,
    erasure_patterns,
    person_erasing,
    person_exporting,
    register_trace_pruner,
)
from pipes.services import scrub_personal_data

from ..models import ReviewTask, StepRun, TraceEvent, TraceKind

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

# {review task id: {key: JSON-ready data}} for the given review task ids: another app's parts of each
# review, added to the review in a person's export after the rail's own keys.
ReviewExport = Callable[[list[int]], dict[int, dict[str, Any]]]
_review_exports: list[ReviewExport] = []


def register_review_export(export: ReviewExport) -> None:
    """Add `export`'s parts to every review of a person's export (the inbox registers its sign-offs)."""
    if export not in _review_exports:
        _review_exports.append(export)


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


def scrub_rows(queryset, names: tuple[str, ...], patterns) -> int:
    """Scrub `patterns` out of the fields `names` of every row of `queryset`; returns how many rows changed."""
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
    """Scrub the erased values from the rail's copies of them: traces, run errors and reviews (the inbox
    scrubs its sign-offs and delegation notes, orchestrator.inbox.receivers)."""
    patterns = erasure_patterns(identifiers)
    if not patterns or not card_ids:
        return
    scrub_rows(TraceEvent.objects.filter(run__card_id__in=card_ids), ("summary", "data"), patterns)
    scrub_rows(StepRun.objects.filter(card_id__in=card_ids), ("routing_reason", "error"), patterns)
    scrub_rows(
        ReviewTask.objects.filter(card_id__in=card_ids),
        ("question", "proposal", "reasoning", "reason", "comment", "values"),
        patterns,
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _run_export(run: StepRun) -> dict[str, Any]:
    return {
        "step": run.step_name,
        "mechanism": run.mechanism or run.requested_mechanism,
        "status": run.status,
        "decision": run.decision,
        "reason": run.routing_reason,
        "error": run.error,
        "model": run.model,
        "created_at": _iso(run.created_at),
        "finished_at": _iso(run.finished_at),
        "trace_pruned_at": _iso(run.trace_pruned_at),
        "trace": [
            {"seq": e.seq, "kind": e.kind, "at": _iso(e.created_at), "summary": e.summary, "data": e.data}
            for e in run.events.all()
        ],
    }


def _review_export(task: ReviewTask) -> dict[str, Any]:
    return {
        "step": task.run.step_name,
        "question": task.question,
        "proposal": task.proposal,
        "reasoning": task.reasoning,
        "reason": task.reason,
        "status": task.status,
        "decision": task.decision,
        "comment": task.comment,
        "values": task.values,
        "created_at": _iso(task.created_at),
        "decided_at": _iso(task.decided_at),
    }


@receiver(person_exporting)
def on_person_exporting(sender, card_ids: list[int], **kwargs) -> dict[int, dict[str, Any]]:
    """The rail's records of the person's cards, for their export: step runs with traces, and reviews."""
    sections: dict[int, dict[str, Any]] = {pk: {"step_runs": [], "reviews": []} for pk in card_ids}
    runs = StepRun.objects.filter(card_id__in=card_ids).prefetch_related(
        Prefetch("events", TraceEvent.objects.order_by("seq"))
    )
    for run in runs.order_by("created_at", "pk"):
        sections[run.card_id]["step_runs"].append(_run_export(run))
    tasks = list(
        ReviewTask.objects.filter(card_id__in=card_ids).select_related("run").order_by("created_at", "pk")
    )
    reviews = {task.pk: _review_export(task) for task in tasks}
    for export in _review_exports:
        for task_id, parts in export(list(reviews)).items():
            if task_id in reviews:
                reviews[task_id].update(parts)
    for task in tasks:
        sections[task.card_id]["reviews"].append(reviews[task.pk])
    return sections
