"""The rail's email outbox: a step's emails go out at most once per run, attempt and action.

An automation's send_email action is not sent while the step runs: the rail writes one EmailOutbox
row per message in the transaction that applies the step's result (`emails_write`, keyed by
run-<run>-a<attempt>-<action index>, so the same apply cannot write it twice), and sends the rows
after that transaction commits (`emails_send`). Each row is marked "sending" (committed) before the
email backend is called and "sent" after it, so a worker that dies in between leaves a row that says
so. Such a row is never sent again automatically: the sweep marks it "unknown" and the run's trace
says the message may or may not have gone out. A row still "pending" whose worker died before it
started sending is sent by the sweep (`outbox_sweep`). An email is therefore at most once, never
twice; the price is that a crash in the middle of a send may lose one, and the trace names it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from agents.actions import Effect, email_send

from ..models import EmailOutbox, OutboxStatus, StepRun, TraceKind
from .trace import Tracer

log = logging.getLogger(__name__)


def sending_stale_seconds() -> float:
    """After how long a row left "sending" is taken as abandoned by its worker: well past the SMTP
    timeout (settings.EMAIL_TIMEOUT), so a live worker finishing a slow send is never doubted."""
    return float(getattr(settings, "TRILHO_EMAIL_SENDING_STALE_SECONDS", 120))


def outbox_key(*, run_id: int, attempt: int, index: int) -> str:
    return f"run-{run_id}-a{attempt}-{index}"


def emails_write(*, run: StepRun, emails: Sequence[Effect]) -> int:
    """Write the step's messages to the outbox. Call inside the transaction that applies the step's
    result: they exist exactly when the result does. A message already written under its key (the same
    apply run again) is left as it is. Returns how many messages the step has."""
    rows = [
        EmailOutbox(
            key=outbox_key(run_id=run.pk, attempt=run.attempts, index=int(email.data["index"])),
            run=run,
            attempt=run.attempts,
            action_index=int(email.data["index"]),
            to=list(email.data["to"]),
            subject=str(email.data["subject"])[:200],
            body=str(email.data["body"]),
        )
        for email in emails
    ]
    EmailOutbox.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def emails_send(*, run_id: int, worker: str = "") -> int:
    """Send the run's messages that nobody has started sending; returns how many went out.

    A row already sent is skipped; a row another worker left "sending" is not touched here (the
    sweep decides, once it is stale, that it is unknown)."""
    sent = 0
    for row in EmailOutbox.objects.filter(run_id=run_id, status=OutboxStatus.PENDING).order_by(
        "action_index"
    ):
        sent += _send_one(row, worker=worker)
    return sent


def _send_one(row: EmailOutbox, *, worker: str) -> int:
    now = timezone.now()
    # Take the row: only one worker moves it from pending to sending, and that is committed before the
    # backend is called, so a crash after the send can never let it be sent again.
    taken = EmailOutbox.objects.filter(pk=row.pk, status=OutboxStatus.PENDING).update(
        status=OutboxStatus.SENDING, sending_at=now, sending_by=worker[:200]
    )
    if not taken:
        return 0
    call = {"type": "send_email", "index": row.action_index, "key": row.key, "to": row.to}
    call["subject"] = row.subject
    try:
        email_send(to=row.to, subject=row.subject, body=row.body)
    except Exception as exc:  # noqa: BLE001 - the backend refused it: recorded as not sent, never retried
        log.warning("email %s was not sent: %s", row.key, exc)
        error = f"{exc.__class__.__name__}: {exc}"[:500]
        EmailOutbox.objects.filter(pk=row.pk).update(status=OutboxStatus.FAILED, error=error)
        _trace(
            row, TraceKind.ERROR, f"email to {', '.join(row.to)} not sent: {error}", {**call, "error": error}
        )
        return 0
    EmailOutbox.objects.filter(pk=row.pk).update(status=OutboxStatus.SENT, sent_at=timezone.now())
    _trace(row, TraceKind.TOOL_CALL, f"email sent to {len(row.to)} recipient(s)", {**call, "status": "sent"})
    return 1


def _trace(row: EmailOutbox, kind: str, summary: str, data: dict) -> None:
    run = StepRun.objects.get(pk=row.run_id)
    Tracer(run).record(kind, summary, data)


def outbox_sweep(*, pending_after_seconds: float = 30) -> dict[str, int]:
    """Settle what workers left behind: rows still "pending" well after their step committed (the worker
    died before sending) are sent now; rows left "sending" past the stale limit are marked "unknown",
    never sent again, and their run's trace says so. Returns the counts."""
    now = timezone.now()
    stale = EmailOutbox.objects.filter(
        status=OutboxStatus.SENDING, sending_at__lt=now - timedelta(seconds=sending_stale_seconds())
    )
    unknown = 0
    for row in stale.order_by("pk")[:500]:
        if EmailOutbox.objects.filter(pk=row.pk, status=OutboxStatus.SENDING).update(
            status=OutboxStatus.UNKNOWN
        ):
            unknown += 1
            _trace(
                row,
                TraceKind.ERROR,
                f"email to {', '.join(row.to)}: the worker stopped while sending it, so it may or may not"
                " have been sent; it is not sent again (at most once)",
                {"type": "send_email", "index": row.action_index, "key": row.key, "status": "unknown"},
            )
    waiting = EmailOutbox.objects.filter(
        Q(status=OutboxStatus.PENDING), created_at__lt=now - timedelta(seconds=pending_after_seconds)
    )
    sent = 0
    for run_id in waiting.order_by("run_id").values_list("run_id", flat=True).distinct()[:500]:
        sent += emails_send(run_id=run_id, worker="sweep")
    return {"sent": sent, "unknown": unknown}
