"""Celery tasks of the rail. Thin: take an id, call the rail, retry when it asks to."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.db.models import Exists, F, OuterRef, Q
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


# Not acks_late: a file that kills its worker must not come back to kill the next one. A lost
# request is sent again by the next preview of the file, once it is stale.
@shared_task(acks_late=False, ignore_result=True)
def extract_document(card_file_id: int) -> None:
    """Extract and store the text of one attachment, within the document limits (agents.documents)."""
    from agents.documents import document_extract, document_text_stored
    from pipes.models import CardFile

    card_file = CardFile.objects.filter(pk=card_file_id).first()
    if card_file is not None and document_text_stored(card_file) is None:
        document_extract(card_file)


@shared_task(ignore_result=True)
def sweep_phase_entries(older_than_seconds: int = 30) -> int:
    """Re-dispatch entries nobody finished: never sent (the broker was down), or sent long ago and
    still unprocessed (a worker died holding them). Returns how many were sent."""
    from .dispatch import dispatch_entry

    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    _reopen_overdue(cutoff)
    pending = PhaseEntry.objects.filter(processed_at__isnull=True).filter(
        Q(dispatched_at__isnull=True, entered_at__lte=cutoff) | Q(dispatched_at__lte=cutoff)
    )
    sent = 0
    for entry_id in pending.order_by("entered_at").values_list("pk", flat=True)[:500]:
        sent += dispatch_entry(entry_id)
    return sent


def _reopen_overdue(cutoff) -> int:
    """Re-open stays whose card became late or expired but whose steps for that never started.

    The SLA mark re-opens the stay after its commit (dispatch.on_card_changed); if that process died
    in between, the sweep finds the stay here. Cheap when no phase has such steps."""
    from .models import Step, StepRun, Trigger

    reopened = 0
    for trigger, mark in ((Trigger.LATE, "late_at"), (Trigger.EXPIRED, "expired_at")):
        not_started = Step.objects.filter(trigger=trigger, phase_id=OuterRef("phase_id")).exclude(
            Exists(StepRun.objects.filter(entry_id=OuterRef(OuterRef("pk")), step_id=OuterRef("pk")))
        )
        stays = PhaseEntry.objects.filter(
            phase_id__in=Step.objects.filter(trigger=trigger).values("phase_id"),
            left_at__isnull=True,
            processed_at__isnull=False,
            card__updated_at__lte=cutoff,
            **{f"card__{mark}__isnull": False},
        )
        if trigger == Trigger.LATE:
            stays = stays.filter(card__late_at__gte=F("entered_at"))  # late in this stay, not an earlier one
        ids = list(stays.filter(Exists(not_started)).values_list("pk", flat=True)[:500])
        reopened += PhaseEntry.objects.filter(pk__in=ids).update(processed_at=None, dispatched_at=None)
    return reopened


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
