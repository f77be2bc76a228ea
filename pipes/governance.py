"""Governance services: SLA marks, data-subject export and erasure, and retention anonymisation.

- `sla_mark_late` marks cards over their phase's SLA ("late") or their pipe's deadline ("expired"),
  records it on each card's timeline, notifies assignees and pipe admins, and announces it
  (hooks.card_changed kind "late"/"expired") so the rail can run steps. The rail's beat runs it
  every minute; `sla_preview` tells what a run would do without doing it.
- `subject_export` / `subject_erase` answer a data-subject request (LGPD/GDPR) for one person,
  found by email or another identifying field in the pipes the admin administers; `subject_erase`
  with dry_run=True rehearses the erasure in a rolled-back transaction, so the preview is exactly
  what the erasure would do.
- `retention_due` / `retention_apply` anonymise finished cards older than a pipe's retention;
  `trace_retention_apply` prunes step traces past theirs through the pruner the rail registers.

Card writes go through pipes.services; this module adds what is not a card: the audit-log
redaction, the privacy-request record and the notifications. The rail extends erasure through
the `person_erasing` signal (redact step traces), the `person_exporting` signal (add its records of
the person's cards to their export) and `register_trace_pruner` (trace retention).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.core.mail import send_mass_mail
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.dispatch import Signal
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from . import services
from .choices import FieldType, OrgRole
from .masking import title_shown
from .models import (
    Card,
    CardErasure,
    CardEvent,
    Field,
    Membership,
    Notification,
    Organization,
    Phase,
    Pipe,
    PipePolicy,
    PrivacyRequest,
)
from .roles import pipe_access, pipe_users_with, pipes_for_user
from .timeline import verify_timelines

log = logging.getLogger(__name__)

ERASED = services.ERASED
SLA_ACTOR_NAME = "SLA monitor"
RETENTION_ACTOR_NAME = "Retention policy"

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

# ---------------------------------------------------------------- SLA marks


@dataclass
class SlaPlan:
    """What an SLA run would do: (card id, since, phase id) to mark, card ids to clear."""

    late: list[tuple[int, datetime, int]] = field(default_factory=list)
    expired: list[tuple[int, datetime]] = field(default_factory=list)
    clear_late: list[int] = field(default_factory=list)
    clear_expired: list[int] = field(default_factory=list)


@dataclass
class SlaResult:
    """What an SLA run did (ids of cards)."""

    late: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    cleared_late: list[int] = field(default_factory=list)
    cleared_expired: list[int] = field(default_factory=list)
    notifications: int = 0

    def __str__(self) -> str:
        return (
            f"{len(self.late)} late, {len(self.expired)} expired, "
            f"{len(self.cleared_late) + len(self.cleared_expired)} cleared, {self.notifications} notified"
        )


def sla_preview(*, now: datetime | None = None, pipe: Pipe | None = None, limit: int = 1000) -> SlaPlan:
    """The cards a run at `now` would mark late or expired, or clear (dry run: changes nothing).

    Late: unfinished cards whose time in their phase passed the phase's SLA and that carry no mark
    set in that phase (a card marked in an earlier phase is recomputed). Expired: unfinished cards
    older than their pipe's deadline. Marks that no longer hold (the card moved on or finished, the
    SLA or deadline was lengthened or removed) are cleared."""
    now = now or timezone.now()
    plan = SlaPlan()
    phases = Phase.objects.filter(sla_hours__isnull=False, is_final=False)
    pipes = Pipe.objects.filter(expiration_days__isnull=False)
    if pipe is not None:
        phases, pipes = phases.filter(pipe=pipe), pipes.filter(pk=pipe.pk)
    unfinished = Card.objects.filter(finished_at__isnull=True)
    not_marked_here = Q(late_at__isnull=True) | Q(late_at__lt=F("phase_entered_at"))
    late_ids: set[int] = set()
    for phase in phases:
        cutoff = now - timedelta(hours=phase.sla_hours)
        over = unfinished.filter(phase=phase, phase_entered_at__lt=cutoff)
        for pk, entered in over.filter(not_marked_here).values_list("pk", "phase_entered_at")[: limit + 1]:
            plan.late.append((pk, entered + timedelta(hours=phase.sla_hours), phase.pk))
        late_ids.update(over.values_list("pk", flat=True)[: limit * 10])
        plan.clear_late += list(
            Card.objects.filter(
                phase=phase,
                late_at__isnull=False,
                late_at__gte=F("phase_entered_at"),
                phase_entered_at__gte=cutoff,
            ).values_list("pk", flat=True)[:limit]
        )
    stale = Card.objects.filter(late_at__isnull=False).filter(
        Q(late_at__lt=F("phase_entered_at")) | Q(phase__sla_hours__isnull=True) | Q(phase__is_final=True)
    )
    if pipe is not None:
        stale = stale.filter(pipe=pipe)
    plan.clear_late += [pk for pk in stale.values_list("pk", flat=True)[:limit] if pk not in late_ids]

    for p in pipes:
        cutoff = now - timedelta(days=p.expiration_days)
        cards = unfinished.filter(pipe=p, expired_at__isnull=True, created_at__lt=cutoff)
        plan.expired += [
            (pk, created + timedelta(days=p.expiration_days))
            for pk, created in cards.values_list("pk", "created_at")[: limit + 1]
        ]
        plan.clear_expired += list(
            unfinished.filter(pipe=p, expired_at__isnull=False, created_at__gte=cutoff).values_list(
                "pk", flat=True
            )[:limit]
        )
    no_deadline = unfinished.filter(expired_at__isnull=False, pipe__expiration_days__isnull=True)
    if pipe is not None:
        no_deadline = no_deadline.filter(pipe=pipe)
    plan.clear_expired += list(no_deadline.values_list("pk", flat=True)[:limit])
    plan.late, plan.expired = plan.late[:limit], plan.expired[:limit]
    return plan


def sla_mark_late(*, now: datetime | None = None, pipe: Pipe | None = None, limit: int = 1000) -> SlaResult:
    """Mark cards late or expired (and clear marks that no longer hold); idempotent, safe to overlap.

    Each mark goes through services.card_mark_overdue (timeline event, announcement), then the
    card's assignees and the pipe's admins are told in the app and by email. `limit` bounds the
    work of one run; the next run picks up the rest."""
    now = now or timezone.now()
    plan = sla_preview(now=now, pipe=pipe, limit=limit)
    result = SlaResult()
    actor = services.Actor.system(SLA_ACTOR_NAME)
    phases = {p.pk: p for p in Phase.objects.filter(pk__in={ph for _c, _s, ph in plan.late})}
    for card_id, since, phase_id in plan.late:
        phase = phases[phase_id]
        payload = {"phase": phase.key, "sla_hours": phase.sla_hours, "due": since.isoformat()}
        if services.card_mark_overdue(
            card_id=card_id, kind="late", since=since, phase_id=phase_id, payload=payload, actor=actor
        ):
            result.late.append(card_id)
    for card_id, since in plan.expired:
        card = Card.objects.select_related("pipe").only("pipe__expiration_days").get(pk=card_id)
        payload = {"expiration_days": card.pipe.expiration_days, "due": since.isoformat()}
        if services.card_mark_overdue(
            card_id=card_id, kind="expired", since=since, payload=payload, actor=actor
        ):
            result.expired.append(card_id)
    result.cleared_late = plan.clear_late
    result.cleared_expired = plan.clear_expired
    services.cards_clear_overdue(card_ids=plan.clear_late, kind="late")
    services.cards_clear_overdue(card_ids=plan.clear_expired, kind="expired")
    result.notifications = _notify_overdue(late=result.late, expired=result.expired)
    return result


def _card_path(card: Card) -> str:
    return reverse("card_detail", args=[card.pipe_id, card.pk])


def _notify_overdue(*, late: list[int], expired: list[int]) -> int:
    """Tell each card's assignees and its pipe's admins, in the app and by email (after commit)."""
    marks = [(pk, "late") for pk in late] + [(pk, "expired") for pk in expired]
    if not marks:
        return 0
    cards = {
        c.pk: c
        for c in Card.objects.filter(pk__in={pk for pk, _k in marks})
        .select_related("pipe", "phase")
        .prefetch_related("assignees")
    }
    admins: dict[int, list] = {}
    pii_readers: dict[int, set[int]] = {}
    pipe_fields: dict[int, list[Field]] = {}
    notes, mails = [], []
    for card_id, kind in marks:
        card = cards[card_id]
        pipe = card.pipe
        if pipe.pk not in admins:
            admins[pipe.pk] = list(pipe_users_with(pipe, "administer_pipe"))
            pii_readers[pipe.pk] = set(pipe_users_with(pipe, "view_pii").values_list("pk", flat=True))
            pipe_fields[pipe.pk] = list(pipe.fields.all())
        people = {u.pk: u for u in [*card.assignees.all(), *admins[pipe.pk]] if u.is_active}
        for user in people.values():
            title = title_shown(
                pipe=pipe, can_view_pii=user.pk in pii_readers[pipe.pk], fields=pipe_fields[pipe.pk]
            )(card.title)
            if kind == "late":
                message = _("%(ref)s %(title)s is late: it passed the %(hours)s h SLA of %(phase)s.") % {
                    "ref": card.reference,
                    "title": title,
                    "hours": card.phase.sla_hours,
                    "phase": card.phase.name,
                }
            else:
                message = _(
                    "%(ref)s %(title)s expired: it is open past the %(days)s-day deadline of %(pipe)s."
                ) % {
                    "ref": card.reference,
                    "title": title,
                    "days": pipe.expiration_days,
                    "pipe": pipe.name,
                }
            path = _card_path(card)
            notes.append(Notification(user=user, card=card, message=message[:500], url=path))
            if user.email:
                body = _("%(message)s\n\nOpen the card: %(link)s\n") % {
                    "message": message,
                    "link": settings.SITE_URL.rstrip("/") + path,
                }
                mails.append((message[:200], body, None, [user.email]))
    Notification.objects.bulk_create(notes)
    if mails:
        transaction.on_commit(lambda: _send(mails))
    return len(notes)


def _send(mails: list[tuple]) -> None:
    try:
        send_mass_mail(mails, fail_silently=False)
    except Exception:  # noqa: BLE001 - a mail outage must not undo the marks; the in-app notes stand
        log.warning("could not send %d SLA emails", len(mails), exc_info=True)


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


# ---------------------------------------------------------------- retention


def pipe_policy(*, pipe: Pipe) -> PipePolicy:
    """The pipe's governance policy (an empty one when none was saved)."""
    try:
        return pipe.policy
    except PipePolicy.DoesNotExist:
        return PipePolicy(pipe=pipe)


def pipe_policy_update(
    *, user: AbstractBaseUser, pipe: Pipe, retention_days: int | None, trace_retention_days: int | None
) -> PipePolicy:
    """Set how long finished cards and step traces of `pipe` are kept (pipe admins only)."""
    if not pipe_access(user=user, pipe=pipe).can_administer:
        raise services.CardPermissionError(
            _("Only admins of %(pipe)s may change its retention.") % {"pipe": pipe.name}
        )
    errors = {}
    for key, value in (("retention_days", retention_days), ("trace_retention_days", trace_retention_days)):
        if value is not None and not 1 <= value <= 36500:
            errors[key] = [_("Enter a number of days from 1 to 36500, or leave it empty.")]
    if errors:
        raise services.CardError(errors)
    policy, _created = PipePolicy.objects.update_or_create(
        pipe=pipe,
        defaults={
            "retention_days": retention_days,
            "trace_retention_days": trace_retention_days,
            "updated_at": timezone.now(),
            "updated_by": user,
        },
    )
    return policy


def retention_due(*, pipe: Pipe, now: datetime | None = None) -> QuerySet[Card]:
    """Finished cards of `pipe` older than its retention period and not anonymised yet (dry-run preview)."""
    policy = pipe_policy(pipe=pipe)
    if not policy.retention_days:
        return Card.objects.none()
    cutoff = (now or timezone.now()) - timedelta(days=policy.retention_days)
    anonymised = CardErasure.objects.filter(request__kind=PrivacyRequest.Kind.RETENTION).values("card_id")
    return (
        Card.objects.filter(pipe=pipe, finished_at__isnull=False, finished_at__lt=cutoff)
        .exclude(pk__in=anonymised)
        .select_related("pipe", "phase")
        .order_by("finished_at", "pk")
    )


@dataclass
class RetentionRun:
    """Cards a retention run anonymised (or would, when dry_run), per pipe."""

    dry_run: bool
    by_pipe: dict[int, list[int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(len(ids) for ids in self.by_pipe.values())


def retention_apply(
    *, now: datetime | None = None, pipe: Pipe | None = None, dry_run: bool = False, limit: int = 500
) -> RetentionRun:
    """Anonymise finished cards past their pipe's retention (each pipe's PII fields, files and the
    timeline payloads that held them are erased, as for a data subject). `limit` cards per pipe and run."""
    now = now or timezone.now()
    run = RetentionRun(dry_run=dry_run)
    policies = PipePolicy.objects.filter(retention_days__isnull=False).select_related("pipe__organization")
    if pipe is not None:
        policies = policies.filter(pipe=pipe)
    actor = services.Actor.system(RETENTION_ACTOR_NAME)
    for policy in policies:
        cards = list(retention_due(pipe=policy.pipe, now=now)[:limit])
        run.by_pipe[policy.pipe_id] = [c.pk for c in cards]
        if dry_run or not cards:
            continue
        with transaction.atomic():
            request = PrivacyRequest.objects.create(
                organization=policy.pipe.organization,
                kind=PrivacyRequest.Kind.RETENTION,
                pipe_ids=[policy.pipe_id],
                card_ids=[c.pk for c in cards],
                note=_("Finished more than %(days)d days ago") % {"days": policy.retention_days},
            )
            reason = _("Retention: finished more than %(days)d days ago") % {"days": policy.retention_days}
            erased = _erase_cards(actor=actor, cards=cards, identifiers=[], request=request, reason=reason)
            request.counts = ErasureReport(dry_run=False, cards=erased).totals
            request.save(update_fields=["counts"])
    return run


def retention_runs(*, pipe: Pipe, limit: int = 10) -> list[PrivacyRequest]:
    """The latest retention runs that anonymised cards of `pipe` (newest first)."""
    runs = PrivacyRequest.objects.filter(
        kind=PrivacyRequest.Kind.RETENTION, organization_id=pipe.organization_id
    )
    return [r for r in runs[: limit * 10] if pipe.pk in (r.pipe_ids or [])][:limit]


def trace_retention_cutoffs(*, now: datetime | None = None) -> dict[int, datetime]:
    """For the rail's trace pruning: pipe id → prune traces of step runs older than this moment."""
    now = now or timezone.now()
    return {
        pipe_id: now - timedelta(days=days)
        for pipe_id, days in PipePolicy.objects.filter(trace_retention_days__isnull=False).values_list(
            "pipe_id", "trace_retention_days"
        )
    }


@dataclass
class TracePruning:
    """Step runs whose traces (prompts, raw outputs, calls) a pruning deleted, or would (dry run)."""

    runs: int = 0
    events: int = 0

    def __add__(self, other: TracePruning) -> TracePruning:
        return TracePruning(runs=self.runs + other.runs, events=self.events + other.events)


_trace_pruners: list[Callable[..., TracePruning]] = []


def register_trace_pruner(prune: Callable[..., TracePruning]) -> None:
    """The rail registers how it prunes traces: prune(pipe_id=, before=, dry_run=) -> TracePruning.

    pipes owns the policy (how many days, per pipe) and knows nothing of the traces themselves."""
    if prune not in _trace_pruners:
        _trace_pruners.append(prune)


def trace_retention_apply(
    *, now: datetime | None = None, pipe: Pipe | None = None, dry_run: bool = False
) -> dict[int, TracePruning]:
    """Prune the step traces older than each pipe's trace retention; pipe id → what was (or would be) pruned."""
    cutoffs = trace_retention_cutoffs(now=now)
    if pipe is not None:
        cutoffs = {pipe.pk: cutoffs[pipe.pk]} if pipe.pk in cutoffs else {}
    result = {}
    for pipe_id, before in cutoffs.items():
        pruned = TracePruning()
        for prune in _trace_pruners:
            pruned = pruned + prune(pipe_id=pipe_id, before=before, dry_run=dry_run)
        result[pipe_id] = pruned
    return result


# ---------------------------------------------------------------- who may govern


def governed_pipes(*, user: AbstractBaseUser) -> QuerySet[Pipe]:
    """Pipes whose governance pages `user` may open: those they administer (owners: all of their orgs)."""
    return (
        pipes_for_user(user, ("administer_pipe",))
        .select_related("organization")
        .prefetch_related("phases")
        .order_by("organization__name", "name")
    )


def owned_organizations(*, user: AbstractBaseUser) -> QuerySet[Organization]:
    if user.is_superuser:
        return Organization.objects.all()
    return Organization.objects.filter(memberships__user=user, memberships__role=OrgRole.OWNER).distinct()
