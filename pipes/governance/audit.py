"""The audit trail as one stream: who changed what and when, for a card, a pipe or an organization.

Sources, each yielding entries newest first, merged lazily (a page reads only what it shows; a
CSV export streams everything):

- "timeline": the cards' hash-chained events (every change made through pipes.services);
- "design": django-auditlog's records of the process design (organization, pipe, phases,
  fields, labels), deleted objects included;
- "rows": django-auditlog's records of card rows (a write that bypassed pipes.services would
  show here and not on the timeline);
- more through `register_audit_source` — the rail registers its step runs ("steps") there.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db.models import CharField, Q
from django.db.models.functions import Cast
from django.db.models.signals import post_delete, post_save
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..choices import ActorKind, EventKind
from ..masking import field_text, mask_text
from ..models import Card, CardEvent, Field, Label, Organization, Phase, Pipe

CHUNK = 500


@dataclass(frozen=True)
class AuditScope:
    """Whose trail: one card, one pipe, or every pipe of an organization."""

    level: str  # "card" | "pipe" | "organization"
    organization: Organization
    pipes: tuple[Pipe, ...]
    card: Card | None = None
    can_view_pii: bool = True


@dataclass(frozen=True)
class AuditFilters:
    """Which entries: by actor kind, source and time (aware datetimes, half-open)."""

    actor_kind: str = ""
    sources: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None


@dataclass
class AuditEntry:
    """One thing that happened, in the words the viewer shows."""

    at: datetime
    source: str
    actor_kind: str
    actor: str
    action: str
    subject: str
    subject_url: str = ""
    details: list[str] = field(default_factory=list)
    sort_id: int = 0  # breaks ties between entries of one source at the same instant

    @property
    def actor_kind_label(self) -> str:
        return (
            str(ActorKind(self.actor_kind).label) if self.actor_kind in ActorKind.values else self.actor_kind
        )


AuditFetch = Callable[[AuditScope, AuditFilters], Iterable[AuditEntry]]


@dataclass(frozen=True)
class AuditSource:
    key: str
    label: Any
    fetch: AuditFetch
    levels: tuple[str, ...] = ("card", "pipe", "organization")
    default: bool = True


SOURCES: dict[str, AuditSource] = {}


def register_audit_source(
    key: str,
    label: Any,
    fetch: AuditFetch,
    *,
    levels: tuple[str, ...] = ("card", "pipe", "organization"),
    default: bool = True,
) -> None:
    """Add a source of audit entries (the rail's step runs: key "steps").

    `fetch(scope, filters)` yields AuditEntry newest first, honouring filters.actor_kind, since
    and until; it must only yield entries of `scope` (its card, or the cards of its pipes)."""
    SOURCES[key] = AuditSource(key=key, label=label, fetch=fetch, levels=levels, default=default)


def sources_for(scope: AuditScope) -> list[AuditSource]:
    return [s for s in SOURCES.values() if scope.level in s.levels]


def audit_entries(*, scope: AuditScope, filters: AuditFilters) -> Iterator[AuditEntry]:
    """Every entry of the scope matching the filters, newest first (lazy)."""
    wanted = [s for s in sources_for(scope) if (s.key in filters.sources if filters.sources else s.default)]
    streams = [iter(s.fetch(scope, filters)) for s in wanted]
    return heapq.merge(*streams, key=lambda e: (e.at, e.sort_id), reverse=True)


def audit_page(*, scope: AuditScope, filters: AuditFilters, page: int, size: int = 50) -> tuple[list, bool]:
    """Entries of page `page` (from 1) and whether another page follows."""
    start = (page - 1) * size
    rows = list(itertools.islice(audit_entries(scope=scope, filters=filters), start, start + size + 1))
    return rows[:size], len(rows) > size


def _window(qs, filters: AuditFilters, time_field: str):
    if filters.since is not None:
        qs = qs.filter(**{f"{time_field}__gte": filters.since})
    if filters.until is not None:
        qs = qs.filter(**{f"{time_field}__lt": filters.until})
    return qs


# ---------------------------------------------------------------- the card timeline


class _Names:
    """Display names of phases, people and labels referenced by event payloads, loaded once."""

    def __init__(self, pipes: Iterable[Pipe]):
        pipes = list(pipes)
        self.phases = {(p.pipe_id, p.key): p.name for p in Phase.objects.filter(pipe__in=pipes)}
        self.fields = {(f.pipe_id, f.key): f for f in Field.objects.filter(pipe__in=pipes)}
        self._people: dict[int, str] = {}

    def people(self, ids: Iterable[int]) -> str:
        ids = [i for i in ids if isinstance(i, int)]
        missing = [i for i in ids if i not in self._people]
        if missing:
            for user in get_user_model().objects.filter(pk__in=missing):
                self._people[user.pk] = user.get_full_name() or user.get_username()
        return ", ".join(self._people.get(i, f"#{i}") for i in ids) or "—"


def _value_text(names: _Names, pipe_id: int, key: str, value: Any, can_view_pii: bool) -> str:
    f = names.fields.get((pipe_id, key))
    if value is None or value == "" or value == []:
        return "—"
    if f is None:
        text = str(value)
        return text if can_view_pii else mask_text(text)
    try:
        text = field_text(f, value, can_view_pii=can_view_pii)
    except (TypeError, ValueError, KeyError, ArithmeticError):
        text = str(value) if (can_view_pii or not f.pii) else mask_text(str(value))
    return text or "—"


def _moment(value: str | None) -> str:
    """An ISO datetime of a payload in the active (organization's) time zone."""
    moment = parse_datetime(value) if isinstance(value, str) else None
    if moment is None:
        return value or "—"
    return formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def event_details(event: CardEvent, names: _Names, *, can_view_pii: bool) -> list[str]:
    """Plain lines describing what an event changed."""
    payload = event.payload
    pipe_id = event.card.pipe_id
    if payload is None and not event.payload_salt:
        return [_("Content erased (personal data); the record of the change remains.")]
    if not isinstance(payload, dict):
        return []
    label = lambda key: names.fields[(pipe_id, key)].label if (pipe_id, key) in names.fields else key  # noqa: E731
    kind = event.kind
    if kind == EventKind.CREATED:
        values = payload.get("values") or {}
        return [
            f"{label(k)}: {_value_text(names, pipe_id, k, v, can_view_pii)}"
            for k, v in sorted(values.items())
        ][:12]
    if kind in (EventKind.FIELDS_CHANGED, EventKind.FILE_ADDED):
        lines = [
            f"{label(k)}: {_value_text(names, pipe_id, k, c.get('before'), can_view_pii)} → "
            f"{_value_text(names, pipe_id, k, c.get('after'), can_view_pii)}"
            for k, c in sorted((payload.get("changes") or {}).items())
            if isinstance(c, dict)
        ]
        for item in payload.get("files") or []:
            lines.append(
                _("File %(name)s (%(size)s bytes)") % {"name": item.get("name"), "size": item.get("size")}
            )
        return lines
    if kind == EventKind.MOVED:
        source = names.phases.get((pipe_id, payload.get("from")), payload.get("from"))
        target = names.phases.get((pipe_id, payload.get("to")), payload.get("to"))
        return [f"{source} → {target}"]
    if kind == EventKind.ASSIGNED:
        return [f"{names.people(payload.get('before') or [])} → {names.people(payload.get('after') or [])}"]
    if kind == EventKind.LABELED:
        before = ", ".join(payload.get("before") or []) or "—"
        after = ", ".join(payload.get("after") or []) or "—"
        return [f"{before} → {after}"]
    if kind == EventKind.DUE_CHANGED:
        return [f"{_moment(payload.get('before'))} → {_moment(payload.get('after'))}"]
    if kind == EventKind.COMMENTED:
        text = payload.get("text") or ""
        return [_short(text if can_view_pii else mask_text(text))]
    if kind == EventKind.ERASED:
        return [
            _("Erased %(fields)d field(s), %(files)d file(s) and the content of %(events)d earlier event(s).")
            % {
                "fields": len(payload.get("fields") or []),
                "files": payload.get("files") or 0,
                "events": len(payload.get("events") or []),
            }
        ]
    if kind == "late":
        phase = names.phases.get((pipe_id, payload.get("phase")), payload.get("phase"))
        return [_("Passed the %(h)s h SLA of %(phase)s.") % {"h": payload.get("sla_hours"), "phase": phase}]
    if kind == "expired":
        return [_("Open past the pipe's %(d)s-day deadline.") % {"d": payload.get("expiration_days")}]
    return [_short(f"{k}: {v}") for k, v in list(payload.items())[:6]]


EVENT_ACTIONS = {
    **dict(EventKind.choices),
    "late": gettext_lazy("Marked late"),
    "expired": gettext_lazy("Marked expired"),
}


def _card_url(pipe_id: int, card_id: int) -> str:
    return reverse("governance:card_audit", args=[card_id])


def _timeline(scope: AuditScope, filters: AuditFilters) -> Iterator[AuditEntry]:
    events = CardEvent.objects.select_related("card__pipe")
    if scope.card is not None:
        events = events.filter(card=scope.card)
    else:
        events = events.filter(card__pipe__in=scope.pipes)
    if filters.actor_kind:
        events = events.filter(actor_kind=filters.actor_kind)
    events = _window(events, filters, "created_at").order_by("-created_at", "-id")
    names = _Names(scope.pipes)
    for event in events.iterator(chunk_size=CHUNK):
        card = event.card
        yield AuditEntry(
            at=event.created_at,
            source="timeline",
            actor_kind=event.actor_kind,
            actor=event.actor_label,
            action=str(EVENT_ACTIONS.get(event.kind, event.kind)),
            subject=card.reference,
            subject_url=_card_url(card.pipe_id, card.pk),
            details=event_details(event, names, can_view_pii=scope.can_view_pii)
            + ([_("Reason: %(r)s") % {"r": event.reason}] if event.reason else []),
            sort_id=event.pk,
        )


# ---------------------------------------------------------------- django-auditlog


_ACTIONS = {
    LogEntry.Action.CREATE: gettext_lazy("Created"),
    LogEntry.Action.UPDATE: gettext_lazy("Changed"),
    LogEntry.Action.DELETE: gettext_lazy("Deleted"),
}
_SKIP_KEYS = {"id"}
_PARENT_KEYS = {"pipe", "organization"}
_EMPTY_TEXT = {"—", "null", "{}", "[]", "False", "0"}


def _log_details(entry: LogEntry, *, can_view_pii: bool, hide: Iterable[str] = ()) -> list[str]:
    changes = entry.changes if isinstance(entry.changes, dict) else {}
    hide = set(hide)
    lines = []
    for key, pair in sorted(changes.items()):
        if key in _SKIP_KEYS or not isinstance(pair, list | tuple) or len(pair) != 2:
            continue
        before, after = ("—" if v in (None, "None", "") else str(v) for v in pair)
        if ".None" in before + after:  # reverse relations auditlog lists on create/delete
            continue
        if key in hide and not can_view_pii:
            before, after = mask_text(before), mask_text(after)
        if entry.action in (LogEntry.Action.CREATE, LogEntry.Action.DELETE):
            value = after if entry.action == LogEntry.Action.CREATE else before
            if key in _PARENT_KEYS or value in _EMPTY_TEXT:
                continue  # a new or deleted object: only what it said, not its empty settings
            lines.append(f"{key}: {_short(value, 120)}")
        else:
            lines.append(f"{key}: {_short(before, 80)} → {_short(after, 80)}")
    return lines[:12]


def _log_entry(entry: LogEntry, source: str, subject: str, url: str = "", **kw) -> AuditEntry:
    actor = entry.actor
    return AuditEntry(
        at=entry.timestamp,
        source=source,
        actor_kind=ActorKind.USER if entry.actor_id else ActorKind.SYSTEM,
        actor=(actor.get_full_name() or actor.get_username()) if actor else _("System"),
        action=str(_ACTIONS.get(entry.action, entry.get_action_display())),
        subject=subject,
        subject_url=url,
        details=_log_details(entry, **kw),
        sort_id=entry.pk,
    )


def _actor_filter(qs, filters: AuditFilters):
    if filters.actor_kind == ActorKind.USER:
        return qs.filter(actor__isnull=False)
    if filters.actor_kind == ActorKind.SYSTEM:
        return qs.filter(actor__isnull=True)
    if filters.actor_kind == ActorKind.AGENT:
        return qs.none()  # agents never change the design
    return qs


def _design(scope: AuditScope, filters: AuditFilters) -> Iterator[AuditEntry]:
    ct = ContentType.objects.get_for_models(Organization, Pipe, Phase, Field, Label)
    pipe_ids = [p.pk for p in scope.pipes]
    as_text = lambda ids: [str(i) for i in ids]  # noqa: E731 - auditlog keeps object ids as text
    query = Q(content_type=ct[Pipe], object_pk__in=as_text(pipe_ids))
    for model in (Phase, Field, Label):
        current = model.objects.filter(pipe__in=pipe_ids).values_list("pk", flat=True)
        query |= Q(content_type=ct[model], object_pk__in=as_text(current))
        for pipe_id in pipe_ids:  # deleted ones: their last record names the pipe
            query |= Q(content_type=ct[model], action=LogEntry.Action.DELETE, changes__pipe__0=str(pipe_id))
    if scope.level == "organization":
        org = scope.organization
        query |= Q(content_type=ct[Organization], object_pk=str(org.pk))
        query |= Q(content_type=ct[Pipe], action=LogEntry.Action.DELETE, changes__organization__0=str(org.pk))
    entries = _actor_filter(LogEntry.objects.filter(query), filters)
    entries = _window(entries, filters, "timestamp").select_related("actor", "content_type")
    kinds = {ct[m].pk: m._meta.verbose_name for m in (Organization, Pipe, Phase, Field, Label)}
    for entry in entries.order_by("-timestamp", "-pk").iterator(chunk_size=CHUNK):
        subject = f"{str(kinds.get(entry.content_type_id, '')).capitalize()} “{entry.object_repr}”"
        yield _log_entry(entry, "design", subject, can_view_pii=True)


def _rows(scope: AuditScope, filters: AuditFilters) -> Iterator[AuditEntry]:
    card_ct = ContentType.objects.get_for_model(Card)
    entries = LogEntry.objects.filter(content_type=card_ct)
    if scope.card is not None:
        entries = entries.filter(object_pk=str(scope.card.pk))
    else:
        ids = Card.objects.filter(pipe__in=scope.pipes).values_list("pk", flat=True)
        entries = entries.filter(object_pk__in=_text_ids(ids))
    entries = _window(_actor_filter(entries, filters), filters, "timestamp").select_related("actor")
    pii_keys = {"values", "title", "requester_email"}
    for entry in entries.order_by("-timestamp", "-pk").iterator(chunk_size=CHUNK):
        yield _log_entry(
            entry,
            "rows",
            entry.object_repr.split(" ", 1)[0] if not scope.can_view_pii else entry.object_repr,
            reverse("governance:card_audit", args=[int(entry.object_pk)]),
            can_view_pii=scope.can_view_pii,
            hide=pii_keys,
        )


def _text_ids(ids):
    """A subquery of ids as text: auditlog keeps object ids in a text column."""
    return ids.annotate(pk_text=Cast("pk", CharField())).values("pk_text")


register_audit_source("timeline", gettext_lazy("Card timeline"), _timeline)
register_audit_source("design", gettext_lazy("Process design"), _design, levels=("pipe", "organization"))
register_audit_source("rows", gettext_lazy("Card records (audit log)"), _rows, default=False)


# ---------------------------------------------------------------- who may do what (recorded as design)


def _person(user) -> str:
    return user.get_full_name() or user.get_username()


def log_pipe_permission(sender, instance, created: bool = False, **kwargs) -> None:
    """A pipe permission granted or taken away (guardian's rows), recorded on the pipe's design trail.

    Connected to post_save/post_delete of guardian's User/GroupObjectPermission: the pipe's audit
    trail then says who gave whom which access, whatever granted it (roles, the admin's object
    permission pages, a script)."""
    if (
        kwargs.get("raw")
        or ContentType.objects.get_for_id(instance.content_type_id).model_class() is not Pipe
    ):
        return
    pipe = Pipe.objects.filter(pk=instance.object_pk).first()
    if pipe is None:
        return  # the pipe itself is being deleted: its deletion is the record
    holder = _person(instance.user) if hasattr(instance, "user") else f"group {instance.group}"
    grant = f"{holder}: {instance.permission.codename}"
    granted = kwargs.get("signal") is post_save
    if granted and not created:
        return
    LogEntry.objects.log_create(
        pipe,
        force_log=True,
        action=LogEntry.Action.UPDATE,
        changes={"access": [None, grant] if granted else [grant, None]},
    )


def remember_membership_role(sender, instance, **kwargs) -> None:
    if instance.pk and not kwargs.get("raw"):
        instance._role_before = (
            type(instance).objects.filter(pk=instance.pk).values_list("role", flat=True).first()
        )


def log_membership(sender, instance, created: bool = False, **kwargs) -> None:
    """Someone joined or left an organization, or their role in it changed, on the organization's trail."""
    if kwargs.get("raw"):
        return
    org = Organization.objects.filter(pk=instance.organization_id).first()
    if org is None:
        return
    who = _person(instance.user)
    if kwargs.get("signal") is post_delete:
        pair = [f"{who} ({instance.role})", None]
    elif created:
        pair = [None, f"{who} ({instance.role})"]
    else:
        before = getattr(instance, "_role_before", None)
        if before == instance.role:
            return
        pair = [f"{who} ({before})", f"{who} ({instance.role})"]
    LogEntry.objects.log_create(org, force_log=True, action=LogEntry.Action.UPDATE, changes={"members": pair})
