"""Erasing personal data from a card (LGPD/GDPR erasure or retention anonymisation), keeping the timeline's
chain verifiable."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from ..choices import ActorKind, EventKind, FieldType
from ..models import Card, CardEvent
from .actors import Actor, _access, _deny
from .common import _announce_change, _event, _lock, _PipeSchema, _touch

ERASED = "[erased]"  # what an erased value reads as
_ERASED_AS_TEXT = {FieldType.SHORT_TEXT, FieldType.LONG_TEXT, FieldType.EMAIL, FieldType.PHONE}


@dataclass
class CardErasureResult:
    """What card_erase_personal_data removed from one card."""

    card: Card
    field_keys: list[str]
    file_names: list[str]
    event_seqs: list[int]
    event: CardEvent
    identifiers: list[str]  # the values scrubbed, for redacting copies elsewhere (audit log, traces)


def scrub_personal_data(value: Any, patterns: list) -> Any:
    """`value` with every occurrence of the patterns in its strings replaced by the erasure marker."""
    if isinstance(value, str):
        for pattern in patterns:
            value = pattern.sub(ERASED, value)
        return value
    if isinstance(value, list):
        return [scrub_personal_data(v, patterns) for v in value]
    if isinstance(value, dict):
        return {k: scrub_personal_data(v, patterns) for k, v in value.items()}
    return value


def card_erase_personal_data(
    *,
    actor: Actor,
    card: Card,
    identifiers: Iterable[str] = (),
    field_keys: Iterable[str] = (),
    reason: str = "",
) -> CardErasureResult:
    """Erase personal data from `card`, in one transaction (LGPD/GDPR erasure or retention anonymisation).

    - the values of its PII fields and of `field_keys` become "[erased]" (text fields) or are removed
      (typed fields), and their files are deleted from storage after commit;
    - every occurrence of those values and of `identifiers` in other values, the title, the requester
      email and the card's notifications is replaced by the marker;
    - the payloads of timeline events that held any of it are erased (digests stay, so the chain
      verifies), and an "erased" event lists what was removed — never the values themselves.
    Only pipe admins (and organization owners) or the system may do this."""
    import re

    from django.core.files.storage import default_storage

    from ..models import Notification
    from ..timeline import canonical, event_payload_erase

    if actor.kind == ActorKind.AGENT:
        raise _deny(_("Agents may not erase personal data."))
    with transaction.atomic():
        card = _lock(card, None)
        if actor.kind == ActorKind.USER and not _access(actor, card.pipe).can_administer:
            raise _deny(_("Only admins of %(pipe)s may erase personal data.") % {"pipe": card.pipe.name})
        schema = _PipeSchema(card.pipe, card.design_stamp)
        # A card's PII fields describe its subject: erasing only the field that matched would leave
        # their phone, address or documents behind.
        erase_keys = {k for k, f in schema.fields.items() if f.pii} | set(field_keys)
        events = list(card.events.order_by("seq"))
        # The values to scrub everywhere: the identifiers given, and every value the erased fields hold
        # or held (earlier values live on in the timeline and the audit log).
        held: list[Any] = []
        for key in erase_keys:
            f = schema.fields.get(key)
            if f is not None and f.type == FieldType.ATTACHMENT:
                continue  # file ids, not personal data; the files themselves go below
            held.append(card.values.get(key))
            for event in events:
                payload = event.payload if isinstance(event.payload, dict) else {}
                held.append((payload.get("values") or {}).get(key))
                change = (payload.get("changes") or {}).get(key)
                if isinstance(change, dict):
                    held += [change.get("before"), change.get("after")]
        wanted = {str(i).strip() for i in identifiers if i is not None and str(i).strip()}
        for value in held:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str | int) and not isinstance(item, bool) and str(item).strip() != ERASED:
                    wanted.add(str(item).strip())
        wanted = {w for w in wanted if len(w) >= 3}  # shorter strings would scrub unrelated text
        patterns = [re.compile(re.escape(w), re.IGNORECASE) for w in sorted(wanted, key=len, reverse=True)]

        files = [
            cf
            for cf in card.files.all()
            if cf.field_key in erase_keys or any(p.search(cf.name) for p in patterns)
        ]
        file_ids = {cf.pk for cf in files}
        values: dict[str, Any] = {}
        erased_keys: list[str] = []
        for key, value in card.values.items():
            f = schema.fields.get(key)
            if key in erase_keys:
                if f is not None and f.type == FieldType.ATTACHMENT:
                    kept = [i for i in (value or []) if i not in file_ids]
                    if kept:
                        values[key] = kept
                elif f is None or f.type in _ERASED_AS_TEXT:
                    values[key] = ERASED
                erased_keys.append(key)
                continue
            if f is not None and f.type == FieldType.ATTACHMENT and isinstance(value, list):
                value = [i for i in value if i not in file_ids] or None
                if value is None:
                    erased_keys.append(key)
                    continue
            scrubbed = scrub_personal_data(value, patterns)
            if scrubbed != value:
                erased_keys.append(key)
            values[key] = scrubbed
        card.values = values
        card.title = scrub_personal_data(card.title, patterns)[:255]
        if card.pipe.title_field in erase_keys:
            card.title = ERASED
        if card.requester_email and (
            card.requester_email.strip().lower() in {w.lower() for w in wanted}
            or any(p.search(card.requester_email) for p in patterns)
        ):
            card.requester_email = ""

        erased_seqs: list[int] = []
        for event in events:
            if event.payload is None:
                continue
            touches = bool(set(event.field_keys or []) & erase_keys) or any(
                p.search(canonical(event.payload).decode()) for p in patterns
            )
            if event.kind == EventKind.FILE_ADDED and any(
                item.get("id") in file_ids for item in (event.payload or {}).get("files", [])
            ):
                touches = True
            if touches and event_payload_erase(event):
                erased_seqs.append(event.seq)

        file_names = [cf.file.name for cf in files]
        for cf in files:
            cf.delete()
        transaction.on_commit(lambda: [default_storage.delete(name) for name in file_names])
        for note in Notification.objects.filter(card=card):
            message = scrub_personal_data(note.message, patterns)
            if message != note.message:
                Notification.objects.filter(pk=note.pk).update(message=message)

        event = _event(
            card,
            actor,
            EventKind.ERASED,
            {"fields": sorted(set(erased_keys)), "files": len(files), "events": erased_seqs},
            reason=reason,
            field_keys=sorted(set(erased_keys)),
        )
        _touch(card, "values", "title", "requester_email")
        _announce_change(card, EventKind.ERASED, erased_keys)
    return CardErasureResult(
        card=card,
        field_keys=sorted(set(erased_keys)),
        file_names=file_names,
        event_seqs=erased_seqs,
        event=event,
        identifiers=sorted(wanted),
    )
