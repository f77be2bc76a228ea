"""Celery tasks of the rail. Thin: take an id, call the rail, retry when it asks to."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

from pipes.models import PhaseEntry


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None, ignore_result=True)
def run_phase_entry(self, entry_id: int) -> None:
    """Run the steps of the phase a card entered. A transient failure comes back with a backoff."""
    from .rail import entry_run

    outcome = entry_run(entry_id=entry_id)
    if outcome.retry_in is not None:
        PhaseEntry.objects.filter(pk=entry_id).update(dispatched_at=timezone.now())
        raise self.retry(countdown=max(outcome.retry_in, 0.05))


@shared_task(ignore_result=True)
def sweep_phase_entries(older_than_seconds: int = 30) -> int:
    """Re-dispatch entries nobody finished: never sent (the broker was down), or sent long ago and
    still unprocessed (a worker died holding them). Returns how many were sent."""
    from .dispatch import dispatch_entry

    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    pending = PhaseEntry.objects.filter(processed_at__isnull=True).filter(
        Q(dispatched_at__isnull=True, entered_at__lte=cutoff) | Q(dispatched_at__lte=cutoff)
    )
    sent = 0
    for entry_id in pending.order_by("entered_at").values_list("pk", flat=True)[:500]:
        sent += dispatch_entry(entry_id)
    return sent


@shared_task(expires=55)
def mark_late_cards() -> str:
    """Mark cards over their phase SLA or pipe deadline (governance), every minute."""
    from pipes.governance import sla_mark_late

    return str(sla_mark_late())


@shared_task
def apply_retention() -> str:
    """Anonymise finished cards and prune step traces past their pipe's retention periods, nightly."""
    from pipes.governance import retention_apply, trace_retention_apply

    cards = retention_apply().total
    runs = sum(p.runs for p in trace_retention_apply().values())
    return f"{cards} cards anonymised, {runs} step traces pruned"
