"""The reads every area shares: permission-checking getters, a pipe's board schema, a card's details
(the side panel the board and the reviewer's inbox both show) and the rail's badges.

The board's own reads (filters, columns, tiles, counts, the changes feed, the home page) are in
pipes.board.selectors.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import CharField, Value
from django.http import Http404
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from guardian.models import UserObjectPermission

from .choices import EventKind, FieldType, OrgRole, RailStatus
from .conditions import evaluate
from .designcache import design_of, remember_stamp, stamp_subquery
from .fieldtypes import is_filled
from .masking import field_text, mask_text, title_shown
from .models import (
    Card,
    CardEvent,
    CardFile,
    DesignStamp,
    Field,
    Label,
    Membership,
    Organization,
    Phase,
    Pipe,
)
from .roles import STAFF_PERMS, PipeAccess, granted_asked, granted_select, pipe_access, pipe_users_with

# ---------------------------------------------------------------- getters


def _check_access(
    *, user: AbstractBaseUser, pipe: Pipe, write: bool, granted: frozenset[str] | None = None
) -> PipeAccess:
    access = pipe_access(user=user, pipe=pipe, granted=granted)
    if not access.perms:
        raise Http404
    if not access.can_view_board or (write and not access.can_work):
        raise PermissionDenied
    return access


def pipe_get_for_user(*, user: AbstractBaseUser, pk: int, write: bool = False) -> tuple[Pipe, PipeAccess]:
    """The pipe and the user's access to it.

    Http404 when the user takes no part in the pipe (its existence is private);
    PermissionDenied when they may not see the board (requesters) or, with `write`, may not work it."""
    pipe = (
        Pipe.objects.select_related("organization")
        .annotate(design_stamp=stamp_subquery("pk"))
        .filter(pk=pk)
        .first()
    )
    if pipe is None:
        raise Http404
    remember_stamp(pipe, pipe.design_stamp)  # board_schema then loads no phases or fields
    return pipe, _check_access(user=user, pipe=pipe, write=write)


def card_get_for_user(
    *, user: AbstractBaseUser, pk: int, pipe_id: int, write: bool = False, for_update: bool = False
) -> tuple[Card, PipeAccess]:
    """The card of pipe `pipe_id` (with its pipe and phase) and the user's access, by the rules of
    pipe_get_for_user; a card that does not exist there is a 404 for everyone.

    With `for_update` (inside the transaction of a write that follows), PostgreSQL reads the card and
    locks its row in the same statement, and the write path is told so (services.card_lock_held): a
    move then reads the card once. The access check follows the read as always; a refusal rolls the
    caller's transaction back, lock and all."""
    granted = None
    if connection.vendor == "postgresql":
        card = _card_with_pipe(pk=pk, pipe_id=pipe_id, for_update=for_update, user=user)
        if card is not None and for_update:
            from .services import card_lock_held

            card_lock_held(card)
        granted = getattr(card, "granted", None)
    else:
        card = (
            Card.objects.select_related("pipe__organization", "phase")
            .annotate(design_stamp=stamp_subquery())
            .filter(pk=pk, pipe_id=pipe_id)
            .first()
        )
        if card is not None:
            card.phase.pipe = card.pipe  # as the plain statement's card has it: no query for it later
    if card is None:
        raise Http404
    remember_stamp(card.pipe, card.design_stamp)  # board_schema then loads no phases or fields
    return card, _check_access(user=user, pipe=card.pipe, write=write, granted=granted)


def read_for_write():
    """The transaction of a read that a write follows (card_get_for_user's `for_update`, then a write
    path function): on PostgreSQL the read locks the card's row; elsewhere (SQLite) a read cannot lock
    a row, so nothing is opened and the write path locks and re-reads the card in its own."""
    return transaction.atomic() if connection.vendor == "postgresql" else nullcontext()


def _model_columns(model) -> tuple[list, str]:
    fields = list(model._meta.concrete_fields)
    return fields, ", ".join(f'{{alias}}."{f.column}"' for f in fields)


def _from_row(model, fields: list, values: Sequence[Any]):
    """A model instance from its columns' values, converted as the ORM converts them (JSON fields)."""
    converted = [
        f.from_db_value(v, None, connection) if hasattr(f, "from_db_value") else v
        for f, v in zip(fields, values, strict=True)
    ]
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


@cache
def _card_sql() -> tuple[str, list, list, list]:
    card_fields, card_cols = _model_columns(Card)
    pipe_fields, pipe_cols = _model_columns(Pipe)
    org_fields, org_cols = _model_columns(Organization)
    sql = (
        f"SELECT {card_cols.format(alias='c')}, {pipe_cols.format(alias='p')}, {org_cols.format(alias='o')}, "
        f"s.version FROM {Card._meta.db_table} c JOIN {Pipe._meta.db_table} p ON p.id = c.pipe_id "
        f"JOIN {Organization._meta.db_table} o ON o.id = p.organization_id "
        f"LEFT JOIN {DesignStamp._meta.db_table} s ON s.pipe_id = c.pipe_id WHERE c.id = %s AND c.pipe_id = %s"
    )
    return sql, card_fields, pipe_fields, org_fields


def _card_with_pipe(
    *, pk: int, pipe_id: int, for_update: bool = False, user: AbstractBaseUser | None = None
) -> Card | None:
    """The card with its pipe, organization and design stamp in one plain statement (the ORM's
    compiling of the same join cost more than the rest of the read), its phase from the design cache.
    With `for_update`, the card's row (only: not its pipe's or organization's) is locked. With `user`,
    what they hold on the pipe comes along too (`card.granted`: roles.granted_select), so checking
    their access costs no query of its own."""
    sql, card_fields, pipe_fields, org_fields = _card_sql()
    params: list[Any] = [pk, pipe_id]
    asked = user is not None and granted_asked(user)
    if asked:
        granted_sql, granted_params = granted_select(user, pipe_id, "p.organization_id")
        head, _sep, tail = sql.partition(" FROM ")
        sql = f"{head}, {granted_sql} FROM {tail}"
        params = [*granted_params, *params]
    if for_update:
        sql += " FOR UPDATE OF c"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    if asked:
        granted, row = frozenset(row[-1]), row[:-1]
    n, m = len(card_fields), len(card_fields) + len(pipe_fields)
    card = _from_row(Card, card_fields, row[:n])
    pipe = _from_row(Pipe, pipe_fields, row[n:m])
    pipe.organization = _from_row(Organization, org_fields, row[m:-1])
    card.design_stamp = row[-1]
    card.pipe = pipe
    phase = design_of(pipe, card.design_stamp).phases_by_id.get(card.phase_id)
    if phase is None:  # a phase of another pipe: only a corrupted row could say so
        return None
    card.phase = phase
    if asked:
        card.granted = granted
    return card


@dataclass(frozen=True)
class UserAreas:
    """Which parts of Trilho a person has a use for: boards (they see or run a pipe's work), the
    reviewer's inbox and the designer (`designs`: they administer a pipe or own an organization;
    `owns`: they own one, so they may create pipes). Someone who only files requests has none of
    them: the portal is their home."""

    boards: bool
    reviews: bool
    designs: bool = False
    owns: bool = False


def user_areas(*, user: AbstractBaseUser) -> UserAreas:
    if not user.is_authenticated:
        return UserAreas(boards=False, reviews=False)
    if user.is_superuser:
        return UserAreas(boards=True, reviews=True, designs=True, owns=True)
    # One query on every page: the board permissions the person holds on any pipe, and whether
    # they own an organization (owners hold every permission on its pipes).
    owner = "__org_owner__"
    granted = (
        UserObjectPermission.objects.filter(
            user=user,
            permission__codename__in=STAFF_PERMS,
            content_type__app_label="pipes",
            content_type__model="pipe",
        )
        .values_list("permission__codename", flat=True)
        .union(
            Membership.objects.filter(user=user, role=OrgRole.OWNER)
            .annotate(codename=Value(owner, output_field=CharField()))
            .values_list("codename", flat=True)
        )
    )
    held = set(granted)
    return UserAreas(
        boards=bool(held) or user.is_staff,
        reviews=bool(held & {owner, "administer_pipe", "review_pipe"}),
        designs=bool(held & {owner, "administer_pipe"}),
        owns=owner in held,
    )


# ---------------------------------------------------------------- board


@dataclass
class BoardSchema:
    """What rendering cards of one pipe needs, loaded once: phases, fields and the viewer's rights."""

    pipe: Pipe
    phases: list[Phase]
    fields: list[Field]
    access: PipeAccess
    design_stamp: int = 0  # the design stamp phases and fields were read at (pipes.designcache)
    # Looked up at each call (not bound at import), so a test clock that patches timezone.now applies.
    now: dt.datetime = field(default_factory=lambda: timezone.now())

    @property
    def can_view_pii(self) -> bool:
        return self.access.can_view_pii

    @property
    def fields_by_key(self) -> dict[str, Field]:
        return {f.key: f for f in self.fields}

    @cached_property
    def title_of(self) -> Callable[[str], str]:
        """How the viewer sees a card title of the pipe: masked wherever its title field is."""
        return title_shown(pipe=self.pipe, can_view_pii=self.can_view_pii, fields=self.fields)

    @property
    def phases_by_id(self) -> dict[int, Phase]:
        return {p.pk: p for p in self.phases}

    def key_fields(self) -> list[Field]:
        by_key = self.fields_by_key
        return [by_key[k] for k in (self.pipe.key_fields or [])[:3] if k in by_key]


def board_schema(*, pipe: Pipe, access: PipeAccess, transitions: bool = True) -> BoardSchema:
    """Phases (with their allowed next phases, unless `transitions` is False) and fields of the pipe.

    The fields stay prefetched on `pipe`, so a write path given the same pipe reads them again free."""
    # From the process-wide design cache, at the stamp the pipe's getter read (pipes.designcache):
    # no query when the design has not changed since this process last loaded it.
    design = design_of(pipe, prefetch=True)
    return BoardSchema(
        pipe=pipe, phases=design.phases, fields=design.fields, access=access, design_stamp=design.stamp
    )


def _is_late(
    phase: Phase | None, entered: dt.datetime, finished: dt.datetime | None, now: dt.datetime
) -> bool:
    return bool(
        phase and phase.sla_hours and finished is None and entered + dt.timedelta(hours=phase.sla_hours) < now
    )


def decorate_card(card: Card, *, schema: BoardSchema) -> Card:
    """Set the badges and the title (masked for this viewer where need be) the side panel shows on a full card."""
    card.pipe = schema.pipe
    card.is_late = _is_late(
        schema.phases_by_id.get(card.phase_id), card.phase_entered_at, card.finished_at, schema.now
    )
    card.is_overdue = bool(card.due_at and card.finished_at is None and card.due_at < schema.now)
    card.stamp = f"{card.updated_at.timestamp():.6f}"
    card.rail_badge = rail_badge(card)
    card.shown_title = schema.title_of(card.title)
    return card


def board_people(*, pipe: Pipe) -> list[AbstractBaseUser]:
    """People who take part in the pipe's work (assignable, mentionable)."""
    return list(pipe_users_with(pipe, STAFF_PERMS).only("id", "username", "first_name", "last_name", "email"))


# ---------------------------------------------------------------- card detail


@dataclass
class FieldView:
    """One field of a card as the panel shows it."""

    field: Field
    value: Any
    text: str
    masked: bool
    editable: bool
    missing: bool  # required here and empty
    files: list[CardFile] = field(default_factory=list)
    erased: bool = False  # empty because personal data was erased (a data-subject request, retention)


@dataclass
class FieldGroup:
    title: str
    phase: Phase | None
    current: bool
    fields: list[FieldView]


@dataclass
class TimelineEntry:
    event: CardEvent
    text: str
    comment: str = ""
    actor: str = ""  # who acted, as the reader should see it; the stored label when empty

    run_url: str = ""  # a step event's run and trace, for those who may open it

    @property
    def actor_label(self) -> str:
        return self.actor or self.event.actor_label


@dataclass(frozen=True)
class StepDisplay:
    """How a step event of the rail reads (orchestrator.rail.timeline says it; pipes knows nothing of it)."""

    text: str
    actor: str = ""
    comment: str = ""


def _user_names(ids: Iterable[int]) -> dict[int, str]:
    ids = {i for i in ids if isinstance(i, int)}
    if not ids:
        return {}
    User = get_user_model()
    return {u.pk: (u.get_full_name() or u.get_username()) for u in User.objects.filter(pk__in=ids)}


def field_view(
    *,
    f: Field,
    card: Card,
    access: PipeAccess,
    files_by_id: Mapping[int, CardFile],
    names: Mapping[int, str],
    labels: Mapping[int, str],
) -> FieldView:
    value = card.values.get(f.key)
    masked = f.pii and not access.can_view_pii
    files: list[CardFile] = []
    if f.type == FieldType.ATTACHMENT:
        files = [files_by_id[i] for i in value or [] if i in files_by_id] if not masked else []
        text = ", ".join(cf.name for cf in files) if files else ("" if not value else mask_text("file"))
    elif f.type == FieldType.ASSIGNEE and value:
        text = ", ".join(names.get(i, f"#{i}") for i in value)
        text = mask_text(text) if masked else text
    elif f.type == FieldType.LABEL and value:
        text = ", ".join(labels.get(i, f"#{i}") for i in value)
    else:
        text = field_text(f, value, can_view_pii=access.can_view_pii)
    return FieldView(
        field=f,
        value=value,
        text=text,
        masked=masked,
        editable=access.can_work and not masked,
        missing=f.required and not is_filled(f, value),
        files=files,
    )


@dataclass
class CardDetail:
    """Everything the side panel shows of a card."""

    card: Card
    groups: list[FieldGroup]
    files: list[CardFile]
    timeline: list[TimelineEntry]
    people: list[AbstractBaseUser]
    labels: list[Label]
    assignee_ids: set[int]
    label_ids: set[int]
    next_phases: list[Phase]
    failed_run_url: str = ""  # the failed step's run and trace (beside the "Step failed" badge)
    can_retry: bool = False  # the viewer may run the failed step again from the panel


def card_detail(*, card: Card, schema: BoardSchema) -> CardDetail:
    """The card's fields grouped by start form and phase (up to its current phase), files, people and timeline."""
    access = schema.access
    fields = schema.fields
    card.assignees_list = list(card.assignees.all())
    card.labels_list = list(card.labels.all())
    decorate_card(card, schema=schema)
    pii_keys = {f.key for f in fields if f.pii}
    all_files = list(card.files.select_related("uploaded_by"))
    if not access.can_view_pii:
        all_files = [cf for cf in all_files if cf.field_key not in pii_keys]
    files_by_id = {cf.pk: cf for cf in all_files}
    labels = list(schema.pipe.labels.all())
    label_names = {label.pk: label.name for label in labels}
    events = list(card.events.order_by("-seq")[:200])
    ref_ids: set[int] = set()
    for f in fields:
        if f.type == FieldType.ASSIGNEE:
            ref_ids.update(card.values.get(f.key) or [])
    assignee_keys = {f.key for f in fields if f.type == FieldType.ASSIGNEE}
    for event in events:
        if event.kind == EventKind.ASSIGNED and isinstance(event.payload, dict):
            ref_ids.update(event.payload.get("after") or [])
        elif event.kind == EventKind.FIELDS_CHANGED and isinstance(event.payload, dict):
            for key, change in (event.payload.get("changes") or {}).items():
                if (
                    key in assignee_keys
                    and isinstance(change, dict)
                    and isinstance(change.get("after"), list)
                ):
                    ref_ids.update(change["after"])
    names = _user_names(ref_ids)
    views = {
        f.key: field_view(
            f=f, card=card, access=access, files_by_id=files_by_id, names=names, labels=label_names
        )
        for f in fields
        if evaluate(f.condition, card.values)
    }
    erased_keys = {
        key
        for e in events
        if e.kind == EventKind.ERASED and isinstance(e.payload, dict)
        for key in e.payload.get("fields") or []
    }
    for key in erased_keys & views.keys():
        if not views[key].text and not views[key].files:  # typed values are removed, not replaced
            views[key].erased, views[key].missing = True, False
    groups = [
        FieldGroup(
            title=_("Start form"),
            phase=None,
            current=False,
            fields=[views[f.key] for f in fields if f.phase_id is None and f.key in views],
        )
    ]
    for phase in schema.phases:
        if phase.position > card.phase.position and phase.pk != card.phase_id:
            continue
        group_fields = [views[f.key] for f in fields if f.phase_id == phase.pk and f.key in views]
        if group_fields:
            groups.append(
                FieldGroup(
                    title=phase.name, phase=phase, current=phase.pk == card.phase_id, fields=group_fields
                )
            )
    phases_by_key = {p.key: p for p in schema.phases}
    timeline = [_timeline_entry(e, schema=schema, phases_by_key=phases_by_key, names=names) for e in events]
    runs = _step_runs
    failed_run = runs.failed_run(card) if card.rail_status == RailStatus.FAILED else None
    if runs.may_open(access):
        for entry in timeline:
            run_id = entry.event.payload.get("run_id") if isinstance(entry.event.payload, dict) else None
            if entry.event.kind == EventKind.STEP and isinstance(run_id, int):
                entry.run_url = runs.run_url(run_id)
    current = schema.phases_by_id[card.phase_id]
    allowed = list(current.allowed_next.all())
    next_phases = [p for p in schema.phases if p.pk != current.pk and (not allowed or p in allowed)]
    return CardDetail(
        card=card,
        groups=groups,
        files=all_files,
        timeline=timeline,
        people=board_people(pipe=schema.pipe),
        labels=labels,
        assignee_ids={u.pk for u in card.assignees_list},
        label_ids={label.pk for label in card.labels_list},
        next_phases=next_phases,
        failed_run_url=runs.run_url(failed_run) if failed_run and runs.may_open(access) else "",
        can_retry=bool(failed_run and access.can_work and runs.retry is not None),
    )


@dataclass(frozen=True)
class StepRuns:
    """What the rail offers the card panel about a card's step runs (pipes knows nothing of them):
    the address of a run's page, who may open it, the failed run a card waits on, and a retry."""

    run_url: Callable[[int], str] = lambda run_id: ""
    may_open: Callable[[PipeAccess], bool] = lambda access: False
    failed_run: Callable[[Card], int | None] = lambda card: None
    # retry(card=..., user=...) runs the card's failed step again; raises CardError when it can't
    retry: Callable[..., None] | None = None


_step_runs = StepRuns()


def register_step_runs(runs: StepRuns) -> None:
    """The rail says how the card panel links to its runs and retries a failed step."""
    global _step_runs
    _step_runs = runs


def step_run_retry_for_card(*, card: Card, user: AbstractBaseUser) -> None:
    """Run the card's failed step again through the rail's retry (CardError when there is none)."""
    from .services import CardError

    if _step_runs.retry is None:
        raise CardError(_("No step of this card is waiting to be retried."))
    _step_runs.retry(card=card, user=user)


def _step_display(event: CardEvent) -> StepDisplay:
    return StepDisplay(text=event.reason)


def register_step_reason_display(display: Callable[[CardEvent], StepDisplay]) -> None:
    """The rail says how its step events read in the active language: who acted, what happened and
    why (pipes knows nothing of them)."""
    global _step_display
    _step_display = display


def _timeline_entry(
    event: CardEvent, *, schema: BoardSchema, phases_by_key: Mapping[str, Phase], names: Mapping[int, str]
) -> TimelineEntry:
    payload = event.payload if isinstance(event.payload, dict) else {}
    fields = schema.fields_by_key

    def phase_name(key: str | None) -> str:
        phase = phases_by_key.get(key or "")
        return phase.name if phase else (key or "?")

    def change_text(key: str, change: Mapping[str, Any]) -> str:
        f = fields.get(key)
        if f is None:
            return key
        after = change.get("after")
        if f.type == FieldType.ASSIGNEE and isinstance(after, list) and after:
            people = ", ".join(names.get(i, f"#{i}") for i in after)
            return f"{f.label}: {mask_text(people) if f.pii and not schema.can_view_pii else people}"
        if f.type in (FieldType.ATTACHMENT, FieldType.ASSIGNEE, FieldType.LABEL, FieldType.CONNECTION):
            return f.label
        text = field_text(f, after, can_view_pii=schema.can_view_pii) if after not in (None, "") else ""
        return f"{f.label}: {text}" if text else _("%(field)s cleared") % {"field": f.label}

    kind = event.kind
    if kind == EventKind.CREATED:
        text = _("created the card in %(phase)s") % {"phase": phase_name(payload.get("phase"))}
    elif kind == EventKind.MOVED:
        text = _("moved it from %(from)s to %(to)s") % {
            "from": phase_name(payload.get("from")),
            "to": phase_name(payload.get("to")),
        }
    elif kind == EventKind.FIELDS_CHANGED:
        changes = payload.get("changes") or {}
        text = _("changed %(changes)s") % {
            "changes": "; ".join(change_text(k, v) for k, v in changes.items())
        }
    elif kind == EventKind.ASSIGNED:
        people = [names.get(i, f"#{i}") for i in payload.get("after") or []]
        text = (
            _("assigned %(people)s") % {"people": ", ".join(people)} if people else _("removed all assignees")
        )
    elif kind == EventKind.LABELED:
        after = payload.get("after") or []
        text = (
            _("set labels: %(labels)s") % {"labels": ", ".join(after)} if after else _("removed all labels")
        )
    elif kind == EventKind.DUE_CHANGED:
        after = payload.get("after")
        if after:
            moment = timezone.localtime(dt.datetime.fromisoformat(after))
            text = _("set the due date to %(due)s") % {
                "due": formats.date_format(moment, "SHORT_DATETIME_FORMAT")
            }
        else:
            text = _("cleared the due date")
    elif kind == EventKind.COMMENTED:
        return TimelineEntry(event=event, text=_("commented"), comment=str(payload.get("text", "")))
    elif kind == EventKind.FILE_ADDED:
        names_list = [str(f.get("name", "")) for f in payload.get("files") or []]
        hidden = [fields[k] for k in event.field_keys or [] if k in fields and fields[k].pii]
        if hidden and not schema.can_view_pii:  # a file name can be personal data too
            text = _("attached files to %(field)s") % {"field": hidden[0].label}
        else:
            text = _("attached %(files)s") % {"files": ", ".join(names_list)}
    elif kind == EventKind.STEP:
        shown = _step_display(event)
        text = shown.text or str(payload.get("summary") or payload.get("step") or _("ran a step"))
        return TimelineEntry(event=event, text=text, comment=shown.comment, actor=shown.actor)
    elif kind == EventKind.ERASED:
        text = _("erased personal data")
    else:
        text = event.get_kind_display()
    if event.payload is None and kind not in (EventKind.ERASED, EventKind.STEP):
        text = event.get_kind_display()  # payload erased: say only what happened
    return TimelineEntry(event=event, text=text)


def rail_badges() -> dict[str, tuple[str, str]]:
    """Badge class and text per rail status that shows one (translated once per call)."""
    return {
        RailStatus.RUNNING: ("info", _("Agent running")),
        RailStatus.WAITING_REVIEW: ("warning", _("Waiting for review")),
        RailStatus.FAILED: ("danger", _("Step failed")),
    }


def rail_badge(card: Any) -> tuple[str, str] | None:
    """The badge class and text of what the rail is doing with `card` (a Card or a board tile), if anything."""
    return rail_badges().get(card.rail_status)
