"""Celery tasks of the rail. Thin: take an id, load, call a service."""

from datetime import timedelta

from celery import shared_task
from django.db.models import F
from django.utils import timezone

from pipes.models import PhaseEntry


@shared_task(acks_late=True)
def run_phase_entry(entry_id: int) -> None:
    """Run the steps of the phase a card entered (the rail fills this in; for now it records pickup)."""
    PhaseEntry.objects.filter(pk=entry_id, processed_at__isnull=True).update(
        processed_at=timezone.now(), dispatch_count=F("dispatch_count") + 1
    )


@shared_task
def sweep_phase_entries(older_than_seconds: int = 30) -> int:
    """Re-dispatch entries nobody picked up (the broker was down when they were recorded)."""
    from .dispatch import dispatch_entry

    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    pending = PhaseEntry.objects.filter(processed_at__isnull=True, entered_at__lt=cutoff).filter(
        dispatched_at__isnull=True
    ) | PhaseEntry.objects.filter(processed_at__isnull=True, dispatched_at__lt=cutoff)
    sent = 0
    for entry_id in pending.values_list("pk", flat=True)[:500]:
        sent += dispatch_entry(entry_id)
    return sent
