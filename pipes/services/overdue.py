"""SLA marks on cards: late (over a phase's SLA) and expired (over the pipe's deadline), and clearing them
(pipes.governance decides which cards)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..choices import EventKind
from ..models import Card
from .actors import Actor
from .common import _announce_change, _event, _lock

OVERDUE_KINDS = (
    EventKind.LATE.value,
    EventKind.EXPIRED.value,
)  # timeline event kinds of SLA marks (see pipes.governance)


def card_mark_overdue(
    *,
    card_id: int,
    kind: str,
    since,
    phase_id: int | None = None,
    payload: Mapping[str, Any] | None = None,
    actor: Actor | None = None,
    reason: str = "",
) -> Card | None:
    """Mark a card late (over its phase's SLA, `phase_id`) or expired (over its pipe's deadline) since `since`.

    Records the mark on the timeline and announces it (hooks.card_changed with kind "late"/"expired").
    Returns None and changes nothing when the card is finished, has left `phase_id`, or already carries
    the mark (for "late": a mark set in its current phase). Not a field change: the version stays, so a
    person editing the card meanwhile is not refused."""
    if kind not in OVERDUE_KINDS:
        raise ValueError(f"unknown overdue kind {kind!r}")
    if timezone.is_naive(since):
        raise ValueError("since must be an aware datetime")
    actor = actor or Actor.system()
    with transaction.atomic():
        try:
            card = _lock(Card(pk=card_id), None)
        except Card.DoesNotExist:
            return None
        if card.finished_at is not None:
            return None
        if kind == "late":
            if phase_id is not None and card.phase_id != phase_id:
                return None
            if card.late_at is not None and card.late_at >= card.phase_entered_at:
                return None
            card.late_at = since
        else:
            if card.expired_at is not None:
                return None
            card.expired_at = since
        _event(card, actor, kind, dict(payload or {}), reason=reason)
        card.updated_at = timezone.now()
        card.save(update_fields=[f"{kind}_at", "updated_at", "event_count", "last_event_hash"])
        _announce_change(card, kind)
    return card


def cards_clear_overdue(*, card_ids: Iterable[int], kind: str) -> int:
    """Clear the late or expired mark of cards that are no longer overdue (moved on, finished, SLA changed).

    A derived badge, not a fact: no timeline event (the move or the design change is the fact)."""
    if kind not in OVERDUE_KINDS:
        raise ValueError(f"unknown overdue kind {kind!r}")
    ids = list(card_ids)
    if not ids:
        return 0
    return Card.objects.filter(pk__in=ids).update(**{f"{kind}_at": None}, updated_at=timezone.now())
