"""Data-subject requests (LGPD/GDPR): `subject_export` / `subject_erase` answer one for one person, found by
email or another identifying field in the pipes the admin administers; `subject_erase` with dry_run=True
rehearses the erasure in a rolled-back transaction, so the preview is exactly what the erasure would do.

Card writes go through pipes.services; this module adds what is not a card: the audit-log redaction and
the privacy-request record. The rail extends erasure through the `person_erasing` signal (redact step
traces) and export through the `person_exporting` signal (add its records of the person's cards).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Q, QuerySet
from django.dispatch import Signal
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import services
from ..choices import FieldType
from ..mailbox import mail_erase
from ..models import (
    Card,
    CardErasure,
    CardEvent,
    Field,
    Membership,
    Notification,
    Organization,
    Pipe,
    PrivacyRequest,
)
from ..roles import pipes_for_user
from ..timeline import verify_timelines

ERASED = services.ERASED

# Sent inside the erasure's transaction with card_ids (list[int]) and identifiers (list[str], the values
# scrubbed). The rail connects to it to redact its step traces of those cards. A dry run sends it too
# and then rolls everything back: receivers write only to the database, and defer anything else
# (deleting files, calling out) with transaction.on_commit.
person_erasing = Signal()

# Sent while exporting a person, with card_ids (list[int], the cards about them). Each receiver returns
# {card id: {section name: JSON-ready data}}: what it keeps of those cards, added to each card of the
# export. The rail connects to it with its step runs (traces included) and review tasks, so the
# export holds every place the person's data is kept though pipes knows nothing of the rail.
person_exporting = Signal()

# ---------------------------------------------------------------- data subjects: finding a person

_SEARCHABLE = {FieldType.EMAIL, FieldType.SHORT_TEXT, FieldType.PHONE, FieldType.LONG_TEXT}


def subject_digest(identifier: str) -> str:
    """A keyed digest of a person's identifier: proves who a request was about without keeping it."""
    key = (getattr(settings, "TRILHO_TIMELINE_KEY", "") or settings.SECRET_KEY).encode()
    return hmac.new(key, b"privacy|" + identifier.strip().lower().encode(), hashlib.sha256).hexdigest()


def _normalised(f: Field | None, identifier: str) -> str:
    text = identifier.strip()
    if f is not None and f.type == FieldType.PHONE:
        return ("+" if text.startswith("+") else "") + re.sub(r"\D", "", text)
    if f is not None and f.type == FieldType.EMAIL and "@" in text:
        local, _sep, domain = text.rpartition("@")
        return f"{local}@{domain.lower()}"
    return text


def subject_fields(*, pipes: Iterable[Pipe]) -> list[Field]:
    """Fields a person can be looked up by: PII fields and email fields holding text."""
    return list(
        Field.objects.filter(pipe__in=list(pipes), type__in=_SEARCHABLE)
        .filter(Q(pii=True) | Q(type=FieldType.EMAIL))
        .select_related("pipe")
        .order_by("pipe__name", "label")
    )


def subject_pipes(*, user: AbstractBaseUser, organization: Organization) -> QuerySet[Pipe]:
    """Pipes of `organization` whose data `user` may export and erase (those they administer)."""
    return pipes_for_user(user, ("administer_pipe",)).filter(organization=organization).order_by("name")


def subject_cards(*, pipes: Iterable[Pipe], identifier: str, field_key: str = "") -> QuerySet[Card]:
    """Cards of `pipes` about the person: a PII or email field, the requester email or the creator's email
    equal to `identifier` (case-insensitive). With `field_key`, only that field is searched."""
    identifier = (identifier or "").strip()
    pipes = list(pipes)
    if not identifier or not pipes:
        return Card.objects.none()
    by_pipe: dict[int, list[Field]] = {}
    for f in subject_fields(pipes=pipes):
        if not field_key or f.key == field_key:
            by_pipe.setdefault(f.pipe_id, []).append(f)
    query = Q()
    for pipe in pipes:
        here = Q()
        for f in by_pipe.get(pipe.pk, []):
            wanted = _normalised(f, identifier)
            if len(wanted) >= 3:  # an email has no phone number in it, and so on
                here |= Q(**{f"values__{f.key}__iexact": wanted})
        if not field_key or field_key == "requester_email":
            here |= Q(requester_email__iexact=identifier) | Q(created_by__email__iexact=identifier)
        if here:
            query |= Q(pipe=pipe) & here
    if not query:
        return Card.objects.none()
    return Card.objects.filter(query).select_related("pipe", "phase").order_by("pipe__name", "pk")


# ---------------------------------------------------------------- data subjects: export


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _card_log_entries(card_ids: Iterable[int]):
    from auditlog.models import LogEntry

    return LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Card), object_pk__in=[str(pk) for pk in card_ids]
    ).order_by("timestamp", "pk")


def subject_export_data(
    *, cards: Iterable[Card], identifier: str, organization: Organization
) -> dict[str, Any]:
    """Everything Trilho holds about the person on `cards`, as JSON-ready data."""
    cards = list(cards)
    fields = {(f.pipe_id, f.key): f for f in Field.objects.filter(pipe__in={c.pipe_id for c in cards})}
    events: dict[int, list[CardEvent]] = {}
    for event in CardEvent.objects.filter(card__in=cards).order_by("card_id", "seq"):
        events.setdefault(event.card_id, []).append(event)
    logs: dict[int, list] = {}
    for entry in _card_log_entries(c.pk for c in cards).select_related("actor"):
        logs.setdefault(int(entry.object_pk), []).append(entry)
    notes: dict[int, list[Notification]] = {}
    for note in Notification.objects.filter(card__in=cards).order_by("created_at", "pk"):
        notes.setdefault(note.card_id, []).append(note)
    data: dict[str, Any] = {
        "format": "trilho.subject-export/1",
        "generated_at": timezone.now().isoformat(),
        "organization": {"name": organization.name, "slug": organization.slug},
        "subject": {"identifier": identifier},
        "account": _account(identifier, organization),
        "cards": [],
    }
    for card in cards:
        files = [
            {
                "id": cf.pk,
                "field": cf.field_key,
                "name": cf.name,
                "size": cf.size,
                "content_type": cf.content_type,
                "sha256": cf.sha256,
                "uploaded_at": _iso(cf.uploaded_at),
            }
            for cf in card.files.all()
        ]
        data["cards"].append(
            {
                "reference": card.reference,
                "pipe": card.pipe.name,
                "phase": card.phase.name,
                "title": card.title,
                "requester_email": card.requester_email,
                "created_at": _iso(card.created_at),
                "finished_at": _iso(card.finished_at),
                "values": {
                    key: {
                        "label": fields[(card.pipe_id, key)].label if (card.pipe_id, key) in fields else key,
                        "pii": bool(fields.get((card.pipe_id, key)) and fields[(card.pipe_id, key)].pii),
                        "value": value,
                    }
                    for key, value in card.values.items()
                },
                "files": files,
                "timeline": [
                    {
                        "seq": e.seq,
                        "kind": e.kind,
                        "actor_kind": e.actor_kind,
                        "actor": e.actor_label,
                        "at": _iso(e.created_at),
                        "reason": e.reason,
                        "payload": e.payload,
                        "erased": e.payload is None and not e.payload_salt,
                    }
                    for e in events.get(card.pk, [])
                ],
                "audit_log": [
                    {
                        "at": _iso(entry.timestamp),
                        "action": entry.get_action_display(),
                        "actor": str(entry.actor) if entry.actor else None,
                        "changes": entry.changes,
                    }
                    for entry in logs.get(card.pk, [])
                ],
                # What people were told about the card: the messages repeat its title and values.
                "notifications": [
                    {"at": _iso(n.created_at), "message": n.message} for n in notes.get(card.pk, [])
                ],
            }
        )
    exported = {card.pk: part for card, part in zip(cards, data["cards"], strict=True)}
    for _receiver, sections in person_exporting.send(sender=PrivacyRequest, card_ids=list(exported)):
        for card_id, parts in (sections or {}).items():
            if card_id in exported:
                exported[card_id].update(parts)
    return data


def _account(identifier: str, organization: Organization) -> dict[str, Any] | None:
    """The person's account in the organization, when they have one with that email."""
    user = (
        get_user_model()
        .objects.filter(email__iexact=identifier.strip(), memberships__organization=organization)
        .first()
    )
    if user is None:
        return None
    return {
        "username": user.get_username(),
        "name": user.get_full_name(),
        "email": user.email,
        "date_joined": _iso(user.date_joined),
        "last_login": _iso(user.last_login),
        "role": Membership.objects.filter(user=user, organization=organization)
        .values_list("role", flat=True)
        .first(),
        "notifications": [
            {"at": _iso(n.created_at), "message": n.message, "read_at": _iso(n.read_at)}
            for n in Notification.objects.filter(user=user, card__pipe__organization=organization)
        ],
    }


def subject_export(
    *, user: AbstractBaseUser, organization: Organization, identifier: str, field_key: str = ""
) -> tuple[dict[str, Any], PrivacyRequest]:
    """Export the person (as subject_export_data) and record that the export happened."""
    pipes = list(subject_pipes(user=user, organization=organization))
    cards = list(subject_cards(pipes=pipes, identifier=identifier, field_key=field_key))
    data = subject_export_data(cards=cards, identifier=identifier.strip(), organization=organization)
    request = PrivacyRequest.objects.create(
        organization=organization,
        kind=PrivacyRequest.Kind.EXPORT,
        subject_digest=subject_digest(identifier),
        field_key=field_key,
        pipe_ids=[p.pk for p in pipes],
        card_ids=[c.pk for c in cards],
        counts={"cards": len(cards)},
        requested_by=user,
    )
    return data, request


# ---------------------------------------------------------------- data subjects: erasure


@dataclass
class ErasedCard:
    """One card of an erasure (or its rehearsal)."""

    card_id: int
    reference: str
    pipe: str
    title_before: str
    fields: list[str]
    files: list[str]
    events: int
    log_entries: int
    field_labels: list[str] = field(default_factory=list)


@dataclass
class ErasureReport:
    """What an erasure did, or would do when `dry_run`."""

    dry_run: bool
    cards: list[ErasedCard]
    request: PrivacyRequest | None = None
    timeline_breaks: list[str] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, int]:
        return {
            "cards": len(self.cards),
            "fields": sum(len(c.fields) for c in self.cards),
            "files": sum(len(c.files) for c in self.cards),
            "events": sum(c.events for c in self.cards),
            "log_entries": sum(c.log_entries for c in self.cards),
        }


def erasure_patterns(identifiers: Iterable[str]) -> list[re.Pattern]:
    """Patterns finding a person's values in stored text, also where JSON escaped them ("Jos\\u00e9").

    For services.scrub_personal_data; longest first, so a value containing another goes whole."""
    identifiers = {w for w in identifiers if w}
    forms = identifiers | {json.dumps(w)[1:-1] for w in identifiers}
    return [re.compile(re.escape(w), re.IGNORECASE) for w in sorted(forms, key=len, reverse=True)]


def _redact_log_entries(*, card_id: int, identifiers: Iterable[str]) -> int:
    """Scrub the person's values from django-auditlog's records of the card row; returns rows changed.

    auditlog stores each Card save's diff, so the values live there too."""
    patterns = erasure_patterns(identifiers)
    changed = 0
    for entry in _card_log_entries([card_id]):
        update: dict[str, Any] = {}
        for name in ("changes", "serialized_data", "additional_data"):
            value = getattr(entry, name)
            scrubbed = services.scrub_personal_data(value, patterns)
            if scrubbed != value:
                update[name] = scrubbed
        for name in ("changes_text", "object_repr"):
            value = getattr(entry, name) or ""
            scrubbed = services.scrub_personal_data(value, patterns)
            if scrubbed != value:
                update[name] = scrubbed
        if entry.actor_email and any(p.fullmatch(entry.actor_email) for p in patterns):
            update["actor_email"] = ""
        if update:
            type(entry).objects.filter(pk=entry.pk).update(**update)
            changed += 1
    return changed


def _erase_cards(
    *,
    actor: services.Actor,
    cards: list[Card],
    identifiers: Iterable[str],
    request: PrivacyRequest,
    reason: str,
) -> list[ErasedCard]:
    identifiers = list(identifiers)
    done: list[ErasedCard] = []
    all_identifiers: set[str] = set()
    labels = {(f.pipe_id, f.key): f.label for f in Field.objects.filter(pipe__in={c.pipe_id for c in cards})}
    for card in cards:
        title_before = card.title
        result = services.card_erase_personal_data(
            actor=actor, card=card, identifiers=identifiers, reason=reason
        )
        logs = _redact_log_entries(card_id=card.pk, identifiers=result.identifiers)
        CardErasure.objects.get_or_create(card=card, request=request)
        all_identifiers.update(result.identifiers)
        done.append(
            ErasedCard(
                card_id=card.pk,
                reference=card.reference,
                pipe=card.pipe.name,
                title_before=title_before,
                fields=result.field_keys,
                files=[name.rsplit("/", 1)[-1] for name in result.file_names],
                events=len(result.event_seqs),
                log_entries=logs,
                field_labels=[labels.get((card.pipe_id, key), key) for key in result.field_keys],
            )
        )
    if done:
        person_erasing.send(
            sender=PrivacyRequest, card_ids=[c.card_id for c in done], identifiers=sorted(all_identifiers)
        )
    # The outbox's copies: the messages that name the person (their address, or a value of theirs).
    patterns = erasure_patterns({*identifiers, *all_identifiers})
    for organization_id in {card.pipe.organization_id for card in cards}:
        mail_erase(organization_id=organization_id, patterns=patterns)
    return done


class _Rehearsal(Exception):
    def __init__(self, result):
        self.result = result


def _rehearse(work):
    """Run `work` in a transaction that is always rolled back (files, hooks and emails never leave)."""
    try:
        with transaction.atomic():
            raise _Rehearsal(work())
    except _Rehearsal as rehearsal:
        return rehearsal.result


def subject_erase(
    *,
    user: AbstractBaseUser,
    organization: Organization,
    identifier: str,
    field_key: str = "",
    dry_run: bool = False,
) -> ErasureReport:
    """Erase the person from every card of the pipes `user` administers in `organization`.

    With dry_run the erasure is rehearsed and rolled back: the report is exactly what it would do.
    Afterwards the affected timelines are verified (an erasure keeps every chain intact)."""
    identifier = (identifier or "").strip()
    if not identifier:
        raise services.CardError({"identifier": [_("Enter the email or other identifier of the person.")]})
    pipes = list(subject_pipes(user=user, organization=organization))
    if not pipes:
        raise services.CardPermissionError(
            _("You administer no pipe in %(org)s.") % {"org": organization.name}
        )
    actor = services.Actor.for_user(user)

    def work() -> ErasureReport:
        cards = list(subject_cards(pipes=pipes, identifier=identifier, field_key=field_key))
        request = PrivacyRequest.objects.create(
            organization=organization,
            kind=PrivacyRequest.Kind.ERASURE,
            subject_digest=subject_digest(identifier),
            field_key=field_key,
            pipe_ids=[p.pk for p in pipes],
            card_ids=[c.pk for c in cards],
            requested_by=user,
        )
        reason = _("Data subject erasure request #%(id)s") % {"id": request.pk}
        erased = _erase_cards(
            actor=actor, cards=cards, identifiers=[identifier], request=request, reason=reason
        )
        report = ErasureReport(dry_run=dry_run, cards=erased, request=request)
        request.counts = report.totals
        request.save(update_fields=["counts"])
        return report

    if dry_run:
        report = _rehearse(work)
        report.request = None
        return report
    with transaction.atomic():
        report = work()
    affected = Card.objects.filter(pk__in=[c.card_id for c in report.cards])
    report.timeline_breaks = [str(b) for b in verify_timelines(affected)]
    return report


def privacy_requests(
    *, organization: Organization, pipes: Iterable[Pipe], limit: int = 20
) -> list[PrivacyRequest]:
    """Recent privacy requests that touched any of `pipes` (newest first)."""
    pipe_ids = {p.pk for p in pipes}
    recent = PrivacyRequest.objects.filter(organization=organization).select_related("requested_by")[
        : limit * 5
    ]
    return [r for r in recent if not r.pipe_ids or pipe_ids & set(r.pipe_ids)][:limit]
