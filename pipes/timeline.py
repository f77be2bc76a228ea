"""The card timeline's hash chain: append events and verify them.

Each event's payload is reduced to a digest, HMAC(event salt, canonical JSON); the event hash
chains the previous hash, the event's metadata and that digest under a server key
(settings.TRILHO_TIMELINE_KEY, default SECRET_KEY), so someone with database access alone
cannot rewrite a row and recompute the chain. Erasing personal data deletes a payload and
its salt but keeps the digest: the chain still verifies and nobody can test a guess.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from .models import Card, CardEvent


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _chain_key() -> bytes:
    return (getattr(settings, "TRILHO_TIMELINE_KEY", "") or settings.SECRET_KEY).encode()


def payload_digest(salt: str, payload: Any) -> str:
    return hmac.new(salt.encode(), canonical(payload), hashlib.sha256).hexdigest()


def event_metadata(event: CardEvent) -> dict[str, Any]:
    return {
        "card": event.card_id,
        "seq": event.seq,
        "kind": event.kind,
        "actor_kind": event.actor_kind,
        "actor_user": event.actor_user_id,
        "actor_label": event.actor_label,
        "reason": event.reason,
        "field_keys": event.field_keys,
        "time": event.created_at.astimezone(dt.UTC).isoformat(),  # the same text whatever zone it was read in
    }


def event_hash(event: CardEvent) -> str:
    message = (
        event.prev_hash.encode()
        + b"|"
        + canonical(event_metadata(event))
        + b"|"
        + event.payload_digest.encode()
    )
    return hmac.new(_chain_key(), message, hashlib.sha256).hexdigest()


def event_build(
    *,
    card: Card,
    kind: str,
    actor_kind: str,
    actor_user_id: int | None,
    actor_label: str,
    reason: str = "",
    payload: Any = None,
    field_keys: Iterable[str] = (),
) -> CardEvent:
    """The next event of `card`, chained and saved. Call while holding the card's row lock;
    the caller saves the card (its event_count and last_event_hash change here)."""
    salt = secrets.token_hex(16)
    event = CardEvent(
        card=card,
        seq=card.event_count + 1,
        kind=kind,
        actor_kind=actor_kind,
        actor_user_id=actor_user_id,
        actor_label=actor_label[:150],
        reason=reason[:500],
        field_keys=sorted(field_keys),
        payload=payload,
        payload_salt=salt,
        payload_digest=payload_digest(salt, payload),
        prev_hash=card.last_event_hash,
        created_at=timezone.now(),
    )
    event.hash = event_hash(event)
    event.save()
    card.event_count = event.seq
    card.last_event_hash = event.hash
    return event


@dataclass(frozen=True)
class TimelineBreak:
    """A place where a card's timeline does not verify."""

    card_id: int
    seq: int | None
    problem: str

    def __str__(self) -> str:
        where = f"event #{self.seq}" if self.seq is not None else "timeline"
        return f"card {self.card_id}, {where}: {self.problem}"


def verify_card(card: Card, events: Iterable[CardEvent]) -> Iterator[TimelineBreak]:
    prev_hash, expected_seq = "", 1
    for event in events:
        if event.seq != expected_seq:
            yield TimelineBreak(
                card.pk, event.seq, f"expected event #{expected_seq} here (a row was deleted?)"
            )
        if event.prev_hash != prev_hash:
            yield TimelineBreak(
                card.pk, event.seq, "does not follow the previous event (reordered or altered)"
            )
        if event.payload_salt:
            if payload_digest(event.payload_salt, event.payload) != event.payload_digest:
                yield TimelineBreak(card.pk, event.seq, "content was changed after it was written")
        elif event.payload is not None:
            yield TimelineBreak(card.pk, event.seq, "content present without its salt (altered)")
        if event_hash(event) != event.hash:
            yield TimelineBreak(card.pk, event.seq, "metadata or hash was changed after it was written")
        prev_hash, expected_seq = event.hash, event.seq + 1
    if expected_seq - 1 != card.event_count or prev_hash != card.last_event_hash:
        yield TimelineBreak(card.pk, None, "the last events are missing or the card's head hash was altered")


def verify_timelines(cards: Iterable[Card], batch_size: int = 500) -> Iterator[TimelineBreak]:
    """Every break in the timelines of `cards`."""
    batch: list[Card] = []
    for card in cards:
        batch.append(card)
        if len(batch) >= batch_size:
            yield from _verify_batch(batch)
            batch = []
    if batch:
        yield from _verify_batch(batch)


def _verify_batch(cards: list[Card]) -> Iterator[TimelineBreak]:
    by_card: dict[int, list[CardEvent]] = {card.pk: [] for card in cards}
    for event in CardEvent.objects.filter(card_id__in=by_card).order_by("card_id", "seq"):
        by_card[event.card_id].append(event)
    for card in cards:
        yield from verify_card(card, by_card[card.pk])


def event_payload_erase(event: CardEvent) -> bool:
    """Delete the payload and salt of `event`, keeping its digest and hash (personal data erasure).

    The chain still verifies, the digest proves a payload existed, and without the salt nobody can
    test a guessed value against it. Call while holding the card's row lock. Returns False when the
    payload was already erased."""
    if event.payload is None and not event.payload_salt:
        return False
    CardEvent.objects.filter(pk=event.pk).update(payload=None, payload_salt="")
    event.payload, event.payload_salt = None, ""
    return True
