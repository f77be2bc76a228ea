"""Outbound webhooks: a pipe's events, recorded in an outbox and sent to the URLs its admins named.

`events_record` writes one WebhookDelivery per subscribed webhook inside the transaction of the fact
(a move that rolls back sends nothing) and hands each to a worker after commit. `delivery_attempt`
makes one attempt: it claims the row for a lease, signs the exact body it sends, and sends it through
the agents' SSRF-guarded client to a host the organization allowed. A failed attempt is tried again
with exponential backoff (TRILHO_WEBHOOK_RETRY_BASE_SECONDS × 2^n, at most TRILHO_WEBHOOK_MAX_ATTEMPTS
attempts); TRILHO_WEBHOOK_DISABLE_AFTER failed attempts in a row disable the webhook and tell the
pipe's admins. If the broker is down, `deliveries_sweep` (beat, every 30 s) sends what is due.

Delivery is at least once: a receiver de-duplicates by the event id (Trilho-Webhook-Id).
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from agents.http import HttpFailed, HttpRefused, http_send
from pipes.design import SYSTEM, design_save
from pipes.governance import erasure_patterns
from pipes.mailbox import mail_queue
from pipes.models import Card, Field, Notification, Pipe
from pipes.roles import pipe_users_with
from pipes.services import ERASED, scrub_personal_data

from ..models import DeliveryStatus, OutboundWebhook, WebhookDelivery
from .signing import EVENT_HEADER, EVENT_ID_HEADER, signed_headers

log = logging.getLogger(__name__)

DELIVER = "orchestrator.webhooks.deliver"
PAYLOAD_VERSION = 1
LEASE_SECONDS = 60
LOG_KEEP = 20  # attempts kept in a delivery's log
# Whether a pipe has active outbound webhooks, remembered so that a card write on a pipe without
# any (most of them) costs no query. Forgotten when a webhook of the pipe is saved or deleted; with
# a per-process cache (the embedded mode) another process sees a new webhook within this time.
ACTIVE_HOOKS_SECONDS = 30


def max_attempts() -> int:
    return max(1, int(getattr(settings, "TRILHO_WEBHOOK_MAX_ATTEMPTS", 8)))


def retry_delay(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: base × 2^(attempts-1), at most 6 h."""
    base = float(getattr(settings, "TRILHO_WEBHOOK_RETRY_BASE_SECONDS", 30))
    return min(base * (2 ** max(attempts - 1, 0)), 6 * 3600.0)


def disable_after() -> int:
    return max(1, int(getattr(settings, "TRILHO_WEBHOOK_DISABLE_AFTER", 20)))


# ---------------------------------------------------------------- recording events (the outbox)


def card_summary(card: Card) -> dict[str, Any]:
    phase = card.phase
    return {
        "id": card.pk,
        "reference": card.reference,
        "title": card.title,
        "phase": {"key": phase.key, "name": phase.name},
        "version": card.version,
    }


def _active_hooks_key(pipe_id: int) -> str:
    return f"webhooks:active:{pipe_id}"


def pipe_has_active_hooks(pipe_id: int) -> bool:
    """Whether the pipe has an active outbound webhook (remembered for ACTIVE_HOOKS_SECONDS)."""
    key = _active_hooks_key(pipe_id)
    active = cache.get(key)
    if active is None:
        active = OutboundWebhook.objects.filter(pipe_id=pipe_id, is_active=True).exists()
        cache.set(key, active, ACTIVE_HOOKS_SECONDS)
    return active


def forget_active_hooks(sender, instance: OutboundWebhook, **kwargs) -> None:
    """A webhook of the pipe was saved or deleted: ask the database again on the next write."""
    cache.delete(_active_hooks_key(instance.pipe_id))


def events_record(
    *, pipe: Pipe, event: str, card: Card | None, data: dict[str, Any], occurred_at=None
) -> list[WebhookDelivery]:
    """Write the outbox rows of one event for the pipe's active webhooks that want it, in the caller's
    transaction; each is handed to a worker once that transaction commits."""
    if not pipe_has_active_hooks(pipe.pk):
        return []
    hooks = [h for h in OutboundWebhook.objects.filter(pipe_id=pipe.pk, is_active=True) if h.wants(event)]
    if not hooks:
        return []
    event_id = uuid.uuid4()
    moment = occurred_at or timezone.now()
    payload = {
        "version": PAYLOAD_VERSION,
        "id": str(event_id),
        "type": event,
        "occurred_at": moment.isoformat().replace("+00:00", "Z"),
        "pipe": {"id": pipe.pk, "slug": pipe.slug, "name": pipe.name},
        "card": card_summary(card) if card is not None else None,
        "data": data,
    }
    payload = json.loads(json.dumps(payload, default=str))  # what JSON can carry, as the receiver reads it
    rows = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                webhook=h, card=card, event_id=event_id, event=event, payload=payload, next_attempt_at=moment
            )
            for h in hooks
        ]
    )
    ids = [row.pk for row in rows]
    transaction.on_commit(lambda: [delivery_dispatch(pk) for pk in ids])
    return rows


def delivery_dispatch(delivery_id: int, *, countdown: float = 0) -> bool:
    """Hand a delivery to a worker; False (the sweep sends it later) when the broker is down."""
    try:
        current_app.send_task(DELIVER, args=[delivery_id], countdown=countdown or None, retry=False)
    except Exception:  # noqa: BLE001 - any broker failure leaves the delivery to the sweep
        log.warning("broker unavailable; webhook delivery %s left for the sweep", delivery_id, exc_info=True)
        return False
    return True


# A countdown message waits, unacknowledged, on the worker that received it until it is due: RabbitMQ
# closes a consumer that holds one past its consumer_timeout (30 min by default) and Redis hands it out
# again after its visibility timeout (1 h). A longer wait is left to the sweep, which sends a delivery
# once it is due (next_attempt_at, within a minute).
LONGEST_COUNTDOWN_SECONDS = 600


def deliver_later(delivery_id: int, delay: float) -> bool:
    """Hand a failed delivery back to the broker for its next attempt, after `delay` seconds (beyond
    LONGEST_COUNTDOWN_SECONDS the sweep sends it when it is due)."""
    if delay > LONGEST_COUNTDOWN_SECONDS:
        return True
    return delivery_dispatch(delivery_id, countdown=max(delay, 0.05))


# ---------------------------------------------------------------- one attempt


def _claim(delivery_id: int) -> WebhookDelivery | None:
    """The delivery, leased to this attempt; None when it is not due, delivered, or leased elsewhere."""
    now = timezone.now()
    claimed = (
        WebhookDelivery.objects.filter(
            pk=delivery_id,
            status=DeliveryStatus.PENDING,
            next_attempt_at__lte=now,
            webhook__is_active=True,
        )
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + timedelta(seconds=LEASE_SECONDS), attempts=F("attempts") + 1)
    )
    if not claimed:
        return None
    return WebhookDelivery.objects.select_related("webhook__pipe").get(pk=delivery_id)


def _log_entry(*, status: int | None, error: str, ms: int | None, note: str = "") -> dict[str, Any]:
    entry = {"at": timezone.now().isoformat(), "status": status, "error": error[:300], "ms": ms}
    if note:
        entry["note"] = note
    return entry


def delivery_attempt(*, delivery_id: int) -> float | None:
    """Make one attempt at a delivery. Returns the seconds until the next attempt, or None when none is due
    (delivered, given up, not this worker's, or the webhook is off)."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return None
    hook = delivery.webhook
    body = json.dumps(delivery.payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Trilho-Webhooks/1",
        EVENT_ID_HEADER: str(delivery.event_id),
        EVENT_HEADER: delivery.event,
        **signed_headers(secret=hook.secret, body=body),
    }
    status: int | None = None
    error = ""
    ms: int | None = None
    final = False
    try:
        response = http_send(
            organization_id=hook.pipe.organization_id,
            method="POST",
            url=hook.url,
            headers=headers,
            content=body,
            timeout=float(getattr(settings, "TRILHO_WEBHOOK_TIMEOUT_SECONDS", 10)),
        )
        status, ms = response.status, response.elapsed_ms
    except HttpRefused as exc:
        error, final = f"refused: {exc}", True  # the URL or host is not allowed: no retry helps
    except HttpFailed as exc:
        status, error = exc.status, str(exc)
    return _record_attempt(delivery, status=status, error=error, ms=ms, final=final)


def _record_attempt(
    delivery: WebhookDelivery, *, status: int | None, error: str, ms: int | None, final: bool
) -> float | None:
    now = timezone.now()
    hook = delivery.webhook
    entry = _log_entry(status=status, error=error, ms=ms)
    fields: dict[str, Any] = {
        "lease_until": None,
        "response_status": status,
        "error": error[:500],
        "log": (delivery.log + [entry])[-LOG_KEEP:],
    }
    delay = None
    if not error:
        fields |= {"status": DeliveryStatus.DELIVERED, "delivered_at": now}
    elif final or delivery.attempts >= max_attempts():
        fields["status"] = DeliveryStatus.FAILED
    else:
        delay = retry_delay(delivery.attempts)
        fields["next_attempt_at"] = now + timedelta(seconds=delay)
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)
        if not error:
            OutboundWebhook.objects.filter(pk=hook.pk, failure_count__gt=0).update(failure_count=0)
        else:
            _count_failure(hook, error)
    return delay


def _count_failure(hook: OutboundWebhook, error: str) -> None:
    """One more failed attempt in a row; at the limit the webhook is disabled and its pipe's admins told."""
    locked = OutboundWebhook.objects.select_for_update().select_related("pipe").get(pk=hook.pk)
    locked.failure_count += 1
    fields = ["failure_count"]
    if locked.is_active and locked.failure_count >= disable_after():
        locked.is_active = False
        locked.disabled_at = timezone.now()
        locked.disabled_reason = (f"{locked.failure_count} failed attempts in a row; the last: {error}")[:300]
        # Turning it off is a design change (audited), made by the system.
        design_save(actor=SYSTEM, obj=locked, validate=False)
        _notify_disabled(locked)
        return
    locked.save(update_fields=fields)


def _notify_disabled(hook: OutboundWebhook) -> None:
    """An in-app notice, and an email after commit, to the pipe's admins and organization owners."""
    pipe = hook.pipe
    people = list(pipe_users_with(pipe, "administer_pipe"))
    url = reverse("webhooks:deliveries", kwargs={"pipe_id": pipe.pk})
    message = _("Webhook “%(name)s” of %(pipe)s was turned off after %(n)d failed deliveries in a row.") % {
        "name": hook.name,
        "pipe": pipe.name,
        "n": hook.failure_count,
    }
    Notification.objects.bulk_create([Notification(user=u, message=message[:500], url=url) for u in people])
    base = getattr(settings, "TRILHO_BASE_URL", "").rstrip("/")
    subject = _("Webhook turned off: %(name)s") % {"name": hook.name}
    body = message + "\n\n" + _("See its deliveries and turn it on again: %(url)s") % {"url": base + url}
    for u in people:
        if u.email:
            mail_queue(
                organization_id=pipe.organization_id, to=[u.email], subject=subject, body=body
            )  # sent by a worker after commit


# ---------------------------------------------------------------- the sweep, "send again", turning on


def deliveries_sweep(*, older_than_seconds: int = 30, limit: int = 500) -> int:
    """Send deliveries that are due and were not attempted: the broker was down when they were written,
    or their retry was lost with a worker. Returns how many were handed to the broker."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    due = (
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=cutoff, webhook__is_active=True
        )
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=timezone.now()))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    sent = 0
    for pk in list(due):
        if not delivery_dispatch(pk):
            break  # the broker is still down: the next sweep tries again
        sent += 1
    return sent


def delivery_resend(*, delivery: WebhookDelivery, user: AbstractBaseUser) -> WebhookDelivery:
    """Send a delivery again, with the same event id (a receiver that has it already ignores it).

    The caller has checked that `user` administers the delivery's pipe."""
    label = user.get_full_name() or user.get_username()
    with transaction.atomic():
        locked = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        locked.status = DeliveryStatus.PENDING
        locked.attempts = 0
        locked.next_attempt_at = timezone.now()
        locked.lease_until = None
        locked.log = (
            locked.log + [_log_entry(status=None, error="", ms=None, note=f"sent again by {label}")]
        )[-LOG_KEEP:]
        locked.save(update_fields=["status", "attempts", "next_attempt_at", "lease_until", "log"])
        pk = locked.pk
        transaction.on_commit(lambda: delivery_dispatch(pk))
    return locked


def webhook_enable(*, webhook: OutboundWebhook, user: AbstractBaseUser) -> OutboundWebhook:
    """Turn a disabled webhook on again, through the design service; what waited meanwhile is sent."""
    with transaction.atomic():
        locked = OutboundWebhook.objects.select_for_update().get(pk=webhook.pk)
        locked.is_active = True
        locked.failure_count = 0
        locked.disabled_at = None
        locked.disabled_reason = ""
        design_save(actor=user, obj=locked, validate=False)  # refuses anyone who does not design the pipe
        ids = list(
            WebhookDelivery.objects.filter(webhook=locked, status=DeliveryStatus.PENDING).values_list(
                "pk", flat=True
            )[:500]
        )
        WebhookDelivery.objects.filter(pk__in=ids).update(next_attempt_at=timezone.now(), lease_until=None)
        transaction.on_commit(lambda: [delivery_dispatch(pk) for pk in ids])
    return locked


# ---------------------------------------------------------------- a person's erasure


def _blank_fields(data: Any, keys: set[str]) -> Any:
    """`data` of an event with the values of `keys` erased: in data.values (card.created) and in
    data.changes (card.fields_updated, before and after)."""
    if not isinstance(data, dict) or not keys:
        return data
    data = dict(data)
    values = data.get("values")
    if isinstance(values, dict):
        data["values"] = {k: (ERASED if k in keys and v is not None else v) for k, v in values.items()}
    changes = data.get("changes")
    if isinstance(changes, dict):
        blanked = {}
        for key, change in changes.items():
            if key in keys and isinstance(change, dict):
                change = {k: (ERASED if v is not None else v) for k, v in change.items()}
            elif key in keys and change is not None:
                change = ERASED
            blanked[key] = change
        data["changes"] = blanked
    return data


def deliveries_erase(*, card_ids: list[int], identifiers: list[str]) -> int:
    """Erase a person from the outbox and the delivery log of the cards their erasure touched: in every
    delivery of those cards, sent or not, the values of the pipe's personal-data fields become
    "[erased]", the title too when the title field is one, and every occurrence of the erased values
    (`identifiers`) in the payload, the last error and the attempts' log is replaced by the marker.

    A delivery still waiting is sent later with what is left. Runs inside the erasure's transaction
    (pipes.governance.person_erasing), so a rehearsed erasure changes nothing. Returns rows changed."""
    if not card_ids:
        return 0
    patterns = erasure_patterns(identifiers)
    deliveries = list(
        WebhookDelivery.objects.filter(card_id__in=card_ids)
        .select_related("webhook")
        .only("pk", "payload", "error", "log", "webhook__pipe_id")
    )
    if not deliveries:
        return 0
    pipe_ids = {d.webhook.pipe_id for d in deliveries}
    pii: dict[int, set[str]] = {pk: set() for pk in pipe_ids}
    for pipe_id, key in Field.objects.filter(pipe_id__in=pipe_ids, pii=True).values_list("pipe_id", "key"):
        pii[pipe_id].add(key)
    titles = dict(Pipe.objects.filter(pk__in=pipe_ids).values_list("pk", "title_field"))
    changed = 0
    for delivery in deliveries:
        pipe_id = delivery.webhook.pipe_id
        payload = delivery.payload
        if isinstance(payload, dict):
            payload = dict(payload, data=_blank_fields(payload.get("data"), pii[pipe_id]))
            card = payload.get("card")
            if isinstance(card, dict) and titles.get(pipe_id) in pii[pipe_id] and card.get("title"):
                payload["card"] = dict(card, title=ERASED)
        update = {
            "payload": scrub_personal_data(payload, patterns),
            "error": scrub_personal_data(delivery.error, patterns),
            "log": scrub_personal_data(delivery.log, patterns),
        }
        update = {name: value for name, value in update.items() if value != getattr(delivery, name)}
        if update:
            WebhookDelivery.objects.filter(pk=delivery.pk).update(**update)
            changed += 1
    return changed
