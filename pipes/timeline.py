"""The card timeline's hash chain: append events and verify them.

Each event's payload is reduced to a digest, HMAC(event salt, canonical JSON); the event hash
chains the previous hash, the event's metadata and that digest under a server key
(settings.TRILHO_TIMELINE_KEY, default SECRET_KEY), so someone with database access alone
cannot rewrite a row and recompute the chain. Erasing personal data deletes a payload and
its salt but keeps the digest: the chain still verifies and nobody can test a guess.

A chain proves what is in it, not that nothing was cut from its end. A seal (`timeline_seal_write`,
manage.py seal_timeline and a periodic job) records every card's event count and head hash with a
keyed digest, in a file the database cannot rewrite; `verify_timelines` then names a card whose
events were dropped since (its count or head went back), an erased payload that no erasure event of
its chain accounts for, and a card whose current values are not what its timeline replays to.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.utils import timezone

from .choices import EventKind
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


@cache
def _insert_sql() -> tuple[str, list[tuple[str, Any]]]:
    fields = [f for f in CardEvent._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(f'"{f.column}"' for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    # (attname, the field when its values need preparing)
    prepared = [(f.attname, f if f.get_internal_type() in _PREPARED_TYPES else None) for f in fields]
    return (
        f"INSERT INTO {CardEvent._meta.db_table} ({columns}) VALUES ({placeholders}) RETURNING id",
        prepared,
    )


def event_insert_statement(event: CardEvent) -> tuple[str, list]:
    """The plain INSERT (RETURNING id) that saves a new event, and its parameters: every write appends
    one, and the ORM's compiling of the statement cost more than the database spends on it (no signal
    listens to events). Only JSON values need preparing; the driver sends the others as they are."""
    sql, prepared = _insert_sql()
    db = connections[DEFAULT_DB_ALIAS]  # the connection itself, not the proxy that looks it up each time
    values = event.__dict__
    return sql, [
        values[name] if field is None else field.get_db_prep_save(values[name], db)
        for name, field in prepared
    ]


# Values of these field types are adapted for the database (JSON, and datetimes on SQLite).
_PREPARED_TYPES = frozenset({"JSONField", "DateTimeField"})


def mark_saved(instance, pk: int) -> None:
    """Mark `instance` saved as `pk` (what Model.save does after its INSERT), for rows inserted in
    plain SQL (an event here, a phase entry in the write path)."""
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = connection.alias


def _insert(event: CardEvent) -> None:
    if not connection.features.can_return_columns_from_insert:
        event.save()
        return
    sql, values = event_insert_statement(event)
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        mark_saved(event, cursor.fetchone()[0])


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
    save: bool = True,
) -> CardEvent:
    """The next event of `card`, chained and saved (with `save=False`, chained only: the caller saves
    it, see event_insert_statement). Call while holding the card's row lock; the caller saves the card
    (its event_count and last_event_hash change here)."""
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
    if save:
        _insert(event)
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


def verify_card(
    card: Card, events: Iterable[CardEvent], sealed: tuple[int, str] | None = None
) -> Iterator[TimelineBreak]:
    """Every break in one card's timeline: the chain, its head, the sealed head (`sealed`: the event
    count and head hash the latest seal recorded for the card), erased payloads and the replay."""
    events = list(events)
    chain = list(_verify_chain(card, events))
    yield from chain
    if sealed is not None:
        yield from _verify_sealed(card, events, sealed)
    yield from _verify_erasures(card, events)
    if not chain:  # a broken chain is named already; replaying altered events would only echo it
        yield from _verify_replay(card, events)


def _verify_chain(card: Card, events: list[CardEvent]) -> Iterator[TimelineBreak]:
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


def _verify_sealed(card: Card, events: list[CardEvent], sealed: tuple[int, str]) -> Iterator[TimelineBreak]:
    count, head = sealed
    if count == 0:
        return
    now = max((e.seq for e in events), default=0)
    if now < count or card.event_count < count:
        yield TimelineBreak(
            card.pk,
            None,
            f"the seal recorded {count} events, now {min(now, card.event_count)}: events were dropped since",
        )
        return
    at_seal = next((e for e in events if e.seq == count), None)
    if at_seal is None or at_seal.hash != head:
        yield TimelineBreak(
            card.pk, count, "differs from the head the seal recorded: the timeline was rewritten"
        )


def _is_blanked(event: CardEvent) -> bool:
    return not event.payload_salt and event.payload is None


def _verify_erasures(card: Card, events: list[CardEvent]) -> Iterator[TimelineBreak]:
    """An erased payload is valid only where a later erasure event of the same chain lists it."""
    accounted: set[int] = set()
    erased_before = 0  # an erasure event that was itself erased later: what it listed is unknown
    for event in events:
        if event.kind != EventKind.ERASED:
            continue
        if isinstance(event.payload, dict):
            accounted.update(
                s for s in event.payload.get("events") or [] if isinstance(s, int) and s < event.seq
            )
        elif _is_blanked(event):
            erased_before = max(erased_before, event.seq)
    for event in events:
        if event.kind == EventKind.ERASED and _is_blanked(event):
            if event.seq not in accounted:
                yield TimelineBreak(card.pk, event.seq, "erased, and no erasure event accounts for it")
            continue
        if _is_blanked(event) and event.seq not in accounted and event.seq >= erased_before:
            yield TimelineBreak(card.pk, event.seq, "content erased, and no erasure event accounts for it")


def _verify_replay(card: Card, events: list[CardEvent]) -> Iterator[TimelineBreak]:
    """The card's values are what its events replay to. A field whose last change was erased, or that
    an erasure event names, cannot be replayed: it is left out until a later event sets it again."""
    values: dict[str, Any] = {}
    unknown: set[str] = set()
    for event in events:
        payload = event.payload if isinstance(event.payload, dict) else None
        if payload is None:
            if _is_blanked(event) or event.kind == EventKind.ERASED:
                unknown.update(event.field_keys or [])
            continue
        if event.kind == EventKind.CREATED:
            values = dict(payload.get("values") or {})
            unknown -= set(values)
        elif event.kind == EventKind.ERASED:
            unknown.update(payload.get("fields") or [])
        for key, change in (payload.get("changes") or {}).items():
            if not isinstance(change, dict):
                continue
            if change.get("after") is None:
                values.pop(key, None)
            else:
                values[key] = change["after"]
            unknown.discard(key)
    current = card.values or {}
    differ = sorted(
        key
        for key in set(values) | set(current)
        if key not in unknown and values.get(key) != current.get(key)
    )
    if differ:
        yield TimelineBreak(
            card.pk,
            None,
            f"current values of {', '.join(differ)} are not what the timeline replays to (changed without an event)",
        )


def verify_timelines(
    cards: Iterable[Card], batch_size: int = 500, seal: TimelineSeal | None = None
) -> Iterator[TimelineBreak]:
    """Every break in the timelines of `cards`, checked against `seal` when one is given."""
    batch: list[Card] = []
    for card in cards:
        batch.append(card)
        if len(batch) >= batch_size:
            yield from _verify_batch(batch, seal)
            batch = []
    if batch:
        yield from _verify_batch(batch, seal)


def _verify_batch(cards: list[Card], seal: TimelineSeal | None = None) -> Iterator[TimelineBreak]:
    by_card: dict[int, list[CardEvent]] = {card.pk: [] for card in cards}
    for event in CardEvent.objects.filter(card_id__in=by_card).order_by("card_id", "seq"):
        by_card[event.card_id].append(event)
    for card in cards:
        sealed = seal.cards.get(card.pk) if seal is not None else None
        yield from verify_card(card, by_card[card.pk], sealed)


# ---------------------------------------------------------------- seals


class SealError(Exception):
    """A seal file that cannot be read or whose digest does not verify."""


@dataclass(frozen=True)
class TimelineSeal:
    """Every card's event count and head hash at one moment, as written to a seal file."""

    sealed_at: str
    cards: dict[int, tuple[int, str]] = field(default_factory=dict)
    path: Path | None = None


def seal_dir() -> Path:
    """Where seals are written: TRILHO_TIMELINE_SEAL_DIR, by default `seals` under TRILHO_DATA_DIR."""
    configured = getattr(settings, "TRILHO_TIMELINE_SEAL_DIR", "")
    if configured:
        return Path(configured)
    return Path(getattr(settings, "DATA_DIR", ".")) / "seals"


def _seal_key() -> bytes:
    """TRILHO_SEAL_KEY, or a key derived from SECRET_KEY (not the chain's key: a leak of one is not both)."""
    configured = getattr(settings, "TRILHO_SEAL_KEY", "")
    if configured:
        return configured.encode()
    return hmac.new(settings.SECRET_KEY.encode(), b"trilho-timeline-seal", hashlib.sha256).digest()


def _seal_digest(body: dict[str, Any]) -> str:
    return hmac.new(_seal_key(), canonical(body), hashlib.sha256).hexdigest()


def timeline_seal_write(*, directory: Path | None = None, keep: int | None = None) -> TimelineSeal:
    """Write a seal of every card's timeline head to a new file; older seals beyond `keep`
    (TRILHO_TIMELINE_SEALS_KEPT, 48 by default) are removed."""
    directory = directory or seal_dir()
    directory.mkdir(parents=True, exist_ok=True)
    now = timezone.now().astimezone(dt.UTC)
    cards = {
        pk: (count, head)
        for pk, count, head in Card.objects.order_by("pk").values_list("pk", "event_count", "last_event_hash")
    }
    body = {
        "version": 1,
        "sealed_at": now.isoformat(),
        "cards": {str(pk): [count, head] for pk, (count, head) in cards.items()},
    }
    path = directory / f"timeline-seal-{now:%Y%m%dT%H%M%S%fZ}.json"
    partial = path.with_suffix(".partial")
    partial.write_bytes(canonical({**body, "digest": _seal_digest(body)}))
    os.replace(partial, path)  # a reader never sees half a seal
    keep = keep if keep is not None else int(getattr(settings, "TRILHO_TIMELINE_SEALS_KEPT", 48))
    for old in sorted(directory.glob("timeline-seal-*.json"))[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return TimelineSeal(sealed_at=body["sealed_at"], cards=cards, path=path)


def timeline_seal_latest(*, directory: Path | None = None) -> TimelineSeal | None:
    """The latest seal, its digest verified; None when none was written. SealError when it was altered."""
    files = sorted((directory or seal_dir()).glob("timeline-seal-*.json"))
    if not files:
        return None
    path = files[-1]
    try:
        data = json.loads(path.read_bytes())
        digest = data.pop("digest")
        if not hmac.compare_digest(str(digest), _seal_digest(data)):
            raise SealError(f"the seal {path} was altered: its digest does not verify")
        cards = {int(pk): (int(count), str(head)) for pk, (count, head) in data["cards"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SealError(f"the seal {path} cannot be read: {exc}") from exc
    return TimelineSeal(sealed_at=str(data.get("sealed_at", "")), cards=cards, path=path)


def seal_missing_cards(seal: TimelineSeal) -> Iterator[TimelineBreak]:
    """Cards the seal recorded that are gone: their whole timeline was dropped since."""
    sealed = set(seal.cards)
    present = set(Card.objects.filter(pk__in=sealed).values_list("pk", flat=True))
    for pk in sorted(sealed - present):
        yield TimelineBreak(pk, None, f"the seal recorded {seal.cards[pk][0]} events, and the card is gone")


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
