"""The mail outbox: every email to a person (a requester's receipt and status, a mention, an SLA alert,
a review to decide, an invitation) is written as a Mail row in the transaction of the change it tells
of, and sent once that commits -- never by the request that made the change, so a slow or hung mail
server never holds a person's click (settings.EMAIL_TIMEOUT is 30 s).

After commit the row is announced (hooks.mail_queued); the rail hands it to a worker (orchestrator.rail
.dispatch). With no receiver that takes it (pipes alone, or no broker worth the name: the tests'
in-memory one), it is sent in the process that wrote it, after the commit.

A row is sent at most once: it is taken (pending → sending, committed) before the mail server is
called and marked sent after. A worker that dies in between leaves it "sending": the sweep
(`mail_sweep`, every 30 s with the rail's email outbox) marks it "unknown" once stale, never sends it
again. A row still pending a while after its commit (the worker or the broker was down) is sent by
the sweep, for at most TRILHO_MAIL_SWEEP_SECONDS (10) per sweep, so a hung mail server never holds
the sweep queue's worker for long. A message the server refused is "failed", with the server's
answer, and not retried.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone

from . import hooks
from .choices import MailStatus
from .models import Mail

log = logging.getLogger(__name__)

PENDING_AFTER_SECONDS = 30  # a row still pending this long after its commit was not handed on: the sweep's


def mail_queue(*, organization_id: int, to: Iterable[str], subject: str, body: str) -> Mail | None:
    """Write one message of the organization to `to` (the addresses, each once, empty ones dropped) to the
    outbox; it is sent after the caller's transaction commits, if it does. None when there is nobody to
    write to."""
    addresses = sorted({a.strip() for a in to if a and a.strip()})
    if not addresses:
        return None
    mail = Mail.objects.create(
        organization_id=organization_id, to=addresses, subject=subject[:200], body=body
    )
    transaction.on_commit(lambda: _hand_on(mail.pk))
    return mail


def _hand_on(mail_id: int) -> None:
    answers = hooks.mail_queued.send(sender=Mail, mail_id=mail_id)
    if not any(taken for _receiver, taken in answers):
        mail_send(mail_id=mail_id)


def _stale_seconds() -> float:
    """After how long a row left "sending" is taken as abandoned: well past the SMTP timeout."""
    return float(getattr(settings, "TRILHO_EMAIL_SENDING_STALE_SECONDS", 120))


def mail_send(*, mail_id: int) -> bool:
    """Send the message if nobody has started sending it; True when it went out."""
    taken = Mail.objects.filter(pk=mail_id, status=MailStatus.PENDING).update(
        status=MailStatus.SENDING, sending_at=timezone.now()
    )
    if not taken:
        return False  # sent, being sent, or settled otherwise
    mail = Mail.objects.get(pk=mail_id)
    try:
        EmailMessage(subject=mail.subject, body=mail.body, to=list(mail.to)).send(fail_silently=False)
    except Exception as exc:  # noqa: BLE001 - the server refused it or could not be reached: recorded
        error = f"{exc.__class__.__name__}: {exc}"[:500]
        log.warning("email %s (%r) was not sent: %s", mail.pk, mail.subject, error)
        Mail.objects.filter(pk=mail_id).update(status=MailStatus.FAILED, error=error)
        return False
    Mail.objects.filter(pk=mail_id).update(status=MailStatus.SENT, sent_at=timezone.now())
    return True


def _keep_days() -> int:
    return int(getattr(settings, "TRILHO_MAIL_KEEP_DAYS", 30))


def mail_sweep(*, pending_after_seconds: float = PENDING_AFTER_SECONDS) -> dict[str, int]:
    """Settle what was left behind: rows "sending" past the stale limit become "unknown" (never sent
    again); rows still "pending" a while after they were written are sent now. Rows settled longer ago
    than settings.TRILHO_MAIL_KEEP_DAYS are deleted: a message holds personal data (names, addresses,
    tracking links) and is kept only as long as it helps to tell what went out. Returns the counts."""
    now = timezone.now()
    purged, _by_model = (
        Mail.objects.exclude(status__in=(MailStatus.PENDING, MailStatus.SENDING))
        .filter(created_at__lt=now - timedelta(days=_keep_days()))
        .delete()
    )
    unknown = Mail.objects.filter(
        status=MailStatus.SENDING, sending_at__lt=now - timedelta(seconds=_stale_seconds())
    ).update(status=MailStatus.UNKNOWN)
    if unknown:
        log.warning("%d email(s) were left being sent by a stopped worker: not sent again", unknown)
    waiting = Mail.objects.filter(
        status=MailStatus.PENDING, created_at__lt=now - timedelta(seconds=pending_after_seconds)
    )
    # The sweep runs beside the rail's own sweeps (the sweep queue): a slow or hung mail server may hold
    # it for its budget and one send's timeout, never for every message waiting. The rest wait for the
    # next sweep.
    sent, deadline = 0, time.monotonic() + _sweep_budget_seconds()
    for pk in waiting.order_by("pk").values_list("pk", flat=True)[:500]:
        if time.monotonic() >= deadline:
            break
        sent += mail_send(mail_id=pk)
    return {"sent": sent, "unknown": unknown, "purged": purged}


def _sweep_budget_seconds() -> float:
    """How long one sweep goes on sending waiting messages (it starts no send after that)."""
    return float(getattr(settings, "TRILHO_MAIL_SWEEP_SECONDS", 10))


def mail_erase(*, organization_id: int, patterns: Iterable[re.Pattern]) -> int:
    """Delete the organization's messages that name a person being erased (their address, or a value in
    the subject or body), sent or not: an erasure wins over a message still waiting. Returns how many."""
    patterns = list(patterns)
    if not patterns:
        return 0
    doomed = [
        mail.pk
        for mail in Mail.objects.filter(organization_id=organization_id).only("pk", "to", "subject", "body")
        if any(p.search(text) for p in patterns for text in (" ".join(mail.to), mail.subject, mail.body))
    ]
    Mail.objects.filter(pk__in=doomed).delete()
    return len(doomed)
