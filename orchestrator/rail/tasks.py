"""Celery tasks of the rail. Thin: take an id, call the rail, retry when it asks to.

Each keeps the name it was registered under when this module was orchestrator/tasks.py: queued messages
and the beat schedule (settings.CELERY_BEAT_SCHEDULE) carry those names, and dispatch sends by them.
"""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_process_shutdown, worker_shutdown
from django.conf import settings
from django.utils import timezone

from agents.documents import document_extract, document_text_stored
from pipes.models import CardFile, PhaseEntry

from .dispatch import (
    EXTRACT_DOCUMENT,
    RUN_PHASE_ENTRY,
    SEND_MAIL,
    dispatch_entry,
    entries_sweep,
    stale_leases_sweep,
)
from .leases import INFRASTRUCTURE_ERRORS, connection_reset, leases_release
from .loop import entry_run

# How long a task waits before it tries again after the database or the broker failed it: doubling
# from half a second, at most 30 s (a restarting PostgreSQL is back in seconds).
INFRASTRUCTURE_RETRY_MAX_SECONDS = 30.0


@shared_task(
    bind=True,
    name=RUN_PHASE_ENTRY,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
    ignore_result=True,
)
def run_phase_entry(self, entry_id: int) -> None:
    """Run the steps of the phase a card entered. A transient failure comes back with a backoff.

    A lost database connection or broker is retried with the connection reset, whatever the step was
    doing; the run it held was given back uncounted (leases.lease_held)."""
    try:
        outcome = entry_run(entry_id=entry_id, quick_only=_by_fast_lane(self.request))
    except INFRASTRUCTURE_ERRORS as exc:
        connection_reset()
        countdown = min(0.5 * 2**self.request.retries, INFRASTRUCTURE_RETRY_MAX_SECONDS)
        raise self.retry(countdown=countdown, exc=exc) from exc
    if outcome.not_quick:
        # Its phase gained a slower step since it was sent: to the default queue's workers. With the
        # broker down, the entry (unprocessed) is the sweep's, which sends to the default queue too.
        dispatch_entry(entry_id)
        return
    if outcome.retry_in is not None:
        PhaseEntry.objects.filter(pk=entry_id).update(dispatched_at=timezone.now())
        raise self.retry(countdown=max(outcome.retry_in, 0.05))


def _by_fast_lane(request) -> bool:
    """Whether the message came by the fast lane (its queue's name is the routing key it was sent with)."""
    lane = settings.TRILHO_FAST_QUEUE
    return bool(lane) and (request.delivery_info or {}).get("routing_key") == lane


# Not acks_late: a file that kills its worker must not come back to kill the next one. A lost
# request is sent again by the next preview of the file, once it is stale.
@shared_task(name=EXTRACT_DOCUMENT, acks_late=False, ignore_result=True)
def extract_document(card_file_id: int) -> None:
    """Extract and store the text of one attachment, within the document limits (agents.documents)."""
    card_file = CardFile.objects.filter(pk=card_file_id).first()
    if card_file is not None and document_text_stored(card_file) is None:
        document_extract(card_file)


# Not acks_late: the message's row says whether it was sent (pipes.mailbox); one whose task was lost
# with its worker is still pending, and the sweep sends it.
@shared_task(name=SEND_MAIL, acks_late=False, ignore_result=True)
def send_mail(mail_id: int) -> None:
    """Send one email of the outbox, at most once (pipes.mailbox.mail_send)."""
    from pipes.mailbox import mail_send

    mail_send(mail_id=mail_id)


@shared_task(name="orchestrator.tasks.sweep_phase_entries", ignore_result=True)
def sweep_phase_entries(older_than_seconds: int = 30) -> int:
    """Re-dispatch entries nobody finished (dispatch.entries_sweep). Returns how many were sent."""
    return entries_sweep(older_than_seconds=older_than_seconds)


@shared_task(name="orchestrator.tasks.sweep_stale_leases", ignore_result=True, expires=10)
def sweep_stale_leases() -> int:
    """Send again, at once, the entries whose running step lost its worker (dispatch.stale_leases_sweep)."""
    return stale_leases_sweep()


@shared_task(name="orchestrator.tasks.seal_timeline", ignore_result=True, expires=3000)
def seal_timeline() -> str:
    """Seal every card's timeline head to a file the database cannot rewrite (pipes.timeline), hourly."""
    from pipes.timeline import timeline_seal_write

    seal = timeline_seal_write()
    return f"{len(seal.cards)} card timelines sealed in {seal.path}"


@worker_shutdown.connect
@worker_process_shutdown.connect
def release_leases(**kwargs) -> None:
    """A worker stopping lets go of the runs it holds, so another worker takes them over at once."""
    leases_release()  # an unreachable database is logged and skipped: the leases then run out by themselves


@shared_task(name="orchestrator.tasks.mark_late_cards", expires=55)
def mark_late_cards() -> str:
    """Mark cards over their phase SLA or pipe deadline (governance), every minute."""
    from pipes.governance import sla_mark_late

    return str(sla_mark_late())


@shared_task(name="orchestrator.tasks.apply_retention")
def apply_retention() -> str:
    """Anonymise finished cards and prune step traces past their pipe's retention periods, nightly."""
    from pipes.governance import retention_apply, trace_retention_apply

    cards = retention_apply().total
    runs = sum(p.runs for p in trace_retention_apply().values())
    return f"{cards} cards anonymised, {runs} step traces pruned"


@shared_task(name="orchestrator.tasks.sweep_email_outbox", ignore_result=True, expires=25)
def sweep_email_outbox() -> str:
    """Send emails whose worker died before sending them; mark those it died while sending "unknown"
    (never sent again: at most once). Steps' emails (rail/outbox.py) and every other (pipes.mailbox)."""
    from pipes.mailbox import mail_sweep

    from .outbox import outbox_sweep

    counts, mails = outbox_sweep(), mail_sweep()
    return (
        f"steps' emails: {counts['sent']} sent, {counts['unknown']} unknown;"
        f" other emails: {mails['sent']} sent, {mails['unknown']} unknown, {mails['purged']} deleted"
    )


@shared_task(name="orchestrator.tasks.beat_heartbeat", ignore_result=True, expires=25)
def beat_heartbeat() -> None:
    """Beat's tick, stored: the health page and bin/healthcheck say when it is late (rail/health.py)."""
    from .health import beat_tick_record

    beat_tick_record()
