"""What every write shares: the pipe's fields loaded once, the row lock and version check, the timeline event,
the phase entry, value parsing and validation, and stored uploads."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

from auditlog.cid import get_cid
from auditlog.context import auditlog_disabled
from auditlog.diff import model_instance_diff
from auditlog.models import LogEntry
from auditlog.registry import auditlog
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.files.uploadedfile import UploadedFile
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import signals
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.encoding import smart_str
from django.utils.translation import gettext as _

from .. import hooks
from ..choices import ActorKind, FieldType
from ..conditions import evaluate
from ..designcache import design_of, stamp_of, stamp_subquery
from ..fieldtypes import FieldValueError, ParseContext, display_value, is_filled, parse_value
from ..files import inspect_upload
from ..models import Card, CardEvent, CardFile, DesignStamp, Field, Label, Phase, PhaseEntry, Pipe
from ..roles import STAFF_PERMS, pipe_users_with
from ..timeline import event_build, event_insert_statement, mark_saved
from .actors import Actor, _access, _check_agent_pipe, _deny, _is_own_request, _refuse_public
from .errors import CardConflictError, CardPermissionError, CardTransitionError

# ---------------------------------------------------------------- helpers


class _PipeSchema:
    """The fields of a pipe, from the design cache at `stamp` (the one the card's lock read: see _lock),
    or at the stamp read now when none is given."""

    def __init__(self, pipe: Pipe, stamp: int | None = None):
        self.pipe = pipe
        self.stamp = stamp_of(pipe, stamp)
        self.design = design_of(pipe, self.stamp)
        self.fields: dict[str, Field] = {f.key: f for f in self.design.fields}
        self.ctx = ParseContext(pipe=pipe)

    def labels(self, keys: Iterable[str]) -> dict[str, str]:
        return {k: self.fields[k].label for k in keys if k in self.fields}

    def visible(self, f: Field, values: Mapping[str, Any]) -> bool:
        return evaluate(f.condition, values)

    def start_fields(self) -> list[Field]:
        return [f for f in self.fields.values() if f.phase_id is None]

    def phase_fields(self, phase: Phase) -> list[Field]:
        return [f for f in self.fields.values() if f.phase_id == phase.pk]


@cache
def _lock_statement() -> tuple[str, list[str], list[tuple[int, list, Any]]]:
    """The card's lock on PostgreSQL: its columns and the pipe's design stamp, the column names, and the
    converters the ORM applies to each column it converts (JSON), so the row becomes an instance as the
    ORM builds it (Model.from_db) without a queryset's per-query set-up."""
    fields = Card._meta.concrete_fields
    columns = ", ".join(f'c."{f.column}"' for f in fields)
    sql = (
        f"SELECT {columns}, (SELECT s.version FROM {DesignStamp._meta.db_table} s WHERE s.pipe_id = c.pipe_id) "
        f"FROM {Card._meta.db_table} c WHERE c.id = %s FOR UPDATE OF c"
    )
    converters = []
    for i, f in enumerate(fields):
        col = f.get_col(Card._meta.db_table)
        convs = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        if convs:
            converters.append((i, convs, col))
    return sql, [f.attname for f in fields], converters


class _CardLock:
    """A no-op on-commit callback that says an instance holds its card's row lock (see _held). Django
    drops it with the transaction, and with the savepoint it was registered in if that rolls back."""

    __slots__ = ("card_id",)

    def __init__(self, card_id: int):
        self.card_id = card_id

    def __call__(self) -> None:
        pass


def _held(card: Card) -> bool:
    """Whether `card` is the instance a lock of its row returned in this transaction, as it was stored
    since: _lock marked it, no savepoint that marking was in rolled back, and no other instance of the
    card was locked after it. The write path then neither reads nor locks the row again."""
    marker = card.__dict__.get("_write_lock")
    if marker is None:
        return False
    db = connections[DEFAULT_DB_ALIAS]  # the connection itself: the proxy looks it up on each read
    if not db.in_atomic_block:
        return False
    for _sids, func, _robust in reversed(db.run_on_commit):
        if isinstance(func, _CardLock) and func.card_id == card.pk:
            return func is marker
    return False


def _mark_held(card: Card) -> None:
    # Marked anew by every write: one rolled back to its savepoint drops its marker with the
    # change it made to the instance, so the next write reads the row again.
    marker = _CardLock(card.pk)
    transaction.on_commit(marker)
    card.__dict__["_write_lock"] = marker


def _lock(card: Card, expected_version: int | None, *, batching: bool = False) -> Card:
    """The card re-read under a row lock; raises CardConflictError when its version moved on.

    Writes of the card gathered by card_writes_together are sent first, unless the caller adds its
    own to them (`batching`): a write that does not know of them reads and writes after them.

    The pipe and phase come along: from `card` when it holds them already (the same rows: a card
    never changes pipe, and its phase is reused only while the locked row still names it), else
    from the database. A card this transaction locked already (`_held`: the instance a lock
    returned, written only through the write path since) is used as it is, without a statement.
    Call inside a transaction."""
    if not batching:
        _flush_batch(card)
    locked = card if _held(card) else _lock_read(card)
    if expected_version is not None and locked.version != expected_version:
        raise CardConflictError(
            _("Someone else changed this card a moment ago. Reload it to see their change, then try again.")
        )
    _mark_held(locked)
    return locked


def card_lock(*, card: Card, expected_version: int | None = None) -> Card:
    """`card` locked for the rest of the caller's transaction, with its pipe, phase and design stamp
    (CardConflictError when `expected_version` is given and its version moved on). The write path's
    functions given the instance it returns read and lock nothing again; a caller that reads the card
    under the lock before writing (the rail: did the card leave the phase?) pays one lock, not one
    per write. Call inside a transaction."""
    return _lock(card, expected_version)


def card_lock_held(card: Card) -> Card:
    """Note that the caller's transaction locked `card`'s row itself: it read the row FOR UPDATE in this
    transaction, every column, with the card's pipe (and organization), phase and design stamp, as
    `card_lock` does (pipes.selectors.card_get_for_user with `for_update`, which reads the card and locks
    it in one statement). The write path's functions given it then read and lock nothing again; every
    check they make (access, version, process) still runs."""
    if not connection.in_atomic_block:
        raise RuntimeError("card_lock_held needs the transaction that locked the card")
    _mark_held(card)
    return card


@contextmanager
def card_writes_together(card: Card):
    """Inside the block, the writes of `card` (a card this transaction locked: card_lock) by
    card_update_fields and card_record_step are gathered and sent as one statement when the block ends
    (PostgreSQL): their events, the card's row (one UPDATE with every column they set) and the audit
    entry, where each call would send its own. Their hooks (card_event_recorded, the audit entry's
    post_save) are sent once they are written. Any other write of the card in the block sends what was
    gathered first. Elsewhere (SQLite, a card not locked here) the block changes nothing."""
    if connection.vendor != "postgresql" or not _held(card) or "_batch" in card.__dict__:
        yield
        return
    card.__dict__["_batch"] = _Writes()
    try:
        yield
        _flush_batch(card)
    finally:
        card.__dict__.pop("_batch", None)


def card_writes_join(card: Card, statements: Sequence[tuple[str, list]]) -> bool:
    """Join plain data-modifying statements of the caller's (an INSERT, UPDATE or DELETE each, with its
    values) to the writes card_writes_together gathers for `card`, sent with them as one statement.
    Each must touch rows none of the gathered writes touch, and read nothing they write (they run as
    CTEs, against one snapshot). False, and nothing joined, when nothing is being gathered for `card`:
    the caller sends them itself. The rail finishes a step's run this way (orchestrator.rail.apply)."""
    batch = _batch_of(card)
    if batch is None or not _held(card):
        return False
    for sql, params in statements:
        batch.add(sql, list(params))
    return True


def _batch_of(card: Card) -> _Writes | None:
    """The writes card_writes_together gathers for `card`, if it is gathering them."""
    return card.__dict__.get("_batch")


def _flush_batch(card: Card) -> None:
    batch = _batch_of(card)
    if batch is None or batch.empty():
        return
    if not _held(card):
        # A savepoint rolled back inside the block took some of what was gathered back with it, and
        # what is left may not stand alone: refuse rather than write it.
        raise RuntimeError("card writes were gathered across a savepoint that rolled back since")
    batch.run()


def _lock_read(card: Card) -> Card:
    # Lock and read the card row alone, in one query: a join would lock the pipe and phase rows too
    # and serialise every move into a phase. Under READ COMMITTED, FOR UPDATE returns the row as the
    # previous lock holder committed it.
    # The design stamp comes along (a subquery, not a join: nothing else is locked), so the write
    # reads the pipe's phases and fields from the design cache as they are now (pipes.designcache).
    if connection.vendor == "postgresql":  # the hottest statement of every write, spared the ORM's compiling
        sql, attnames, converters = _lock_statement()
        db = connections[DEFAULT_DB_ALIAS]  # the connection itself, not the proxy that looks it up each time
        with db.cursor() as cursor:
            cursor.execute(sql, [card.pk])
            row = cursor.fetchone()
        if row is None:
            raise Card.DoesNotExist
        values = list(row[:-1])
        for i, convs, col in converters:
            for conv in convs:
                values[i] = conv(values[i], col, db)
        locked = Card.from_db(db.alias, attnames, values)
        locked.design_stamp = row[-1]
    else:  # SQLite locks the whole database for the transaction's writes; no FOR UPDATE there
        locked = Card.objects.select_for_update().annotate(design_stamp=stamp_subquery()).get(pk=card.pk)
    pipe = card.pipe if _holds(card, "pipe") and _holds(card.pipe, "organization") else None
    phase = card.phase if _holds(card, "phase") and card.phase_id == locked.phase_id else None
    if phase is None:  # one query for what is missing
        phase = Phase.objects.select_related("pipe__organization").get(pk=locked.phase_id)
        pipe = pipe or phase.pipe
    elif pipe is None:
        pipe = Pipe.objects.select_related("organization").get(pk=locked.pipe_id)
    locked.pipe, locked.phase = pipe, phase
    return locked


def _holds(instance, relation: str) -> bool:
    """Whether `instance` has its `relation` loaded already (reading it then costs no query)."""
    return type(instance)._meta.get_field(relation).is_cached(instance)


def _touch(card: Card, *extra: str) -> None:
    card.version += 1
    card.updated_at = timezone.now()
    card.save(update_fields=["version", "updated_at", "event_count", "last_event_hash", *extra])


def _touch_unaudited(card: Card, *extra: str, writes: _Writes | None = None) -> None:
    """_touch for a write that is all on the card's timeline: one plain UPDATE, with no django-auditlog
    row (no read of the old row, no insert) and no model signals (none but auditlog's listen to cards)."""
    card.version += 1
    card.updated_at = timezone.now()
    _write_columns(card, ["version", "updated_at", "event_count", "last_event_hash", *extra], writes=writes)


def _touch_audited(card: Card, old: Card, *extra: str, writes: _Writes | None = None) -> None:
    """_touch with the django-auditlog entry written from `old`, the card as stored before this write
    (the instance the lock returned, copied before the change), instead of the audit log reading the
    old row again: one plain UPDATE and the audit entry the audit log's own receiver would write (with
    `writes`, both join them)."""
    card.version += 1
    card.updated_at = timezone.now()
    names = ["version", "updated_at", "event_count", "last_event_hash", *extra]
    _write_columns(card, names, writes=writes)
    _audit_update(old, card, names, writes=writes)


def _audit_update(old: Card, card: Card, names: Sequence[str], *, writes: _Writes | None = None) -> None:
    """The django-auditlog entry of `card`'s change from `old` (the card as stored before) in `names`,
    as the audit log's own receiver would write it on a save, without reading the old row again (with
    `writes`, PostgreSQL: inserted when they run, and its post_save sent then)."""
    try:
        disabled = auditlog_disabled.get()
    except LookupError:
        disabled = False
    if disabled or not auditlog.contains(Card):
        return
    changes = model_instance_diff(
        old, card, fields_to_check=names, use_json_for_changes=settings.AUDITLOG_STORE_JSON_CHANGES
    )
    if not changes:
        return
    if connection.vendor != "postgresql":
        LogEntry.objects.log_create(card, action=LogEntry.Action.UPDATE, changes=changes)
        return
    # The entry log_create would create, inserted in plain SQL: its ORM save (compiling the INSERT)
    # cost more than the rest of the entry. The model signals of a save are sent as the save sends them
    # (the audit log's context sets the entry's actor in pre_save).
    entry = LogEntry(
        content_type=ContentType.objects.get_for_model(card),
        object_pk=str(card.pk),
        object_id=card.pk,
        object_repr=smart_str(card),
        serialized_data=LogEntry.objects._get_serialized_data_or_none(card),
        cid=get_cid(),
        action=LogEntry.Action.UPDATE,
        changes=changes,
    )
    if callable(get_additional_data := getattr(card, "get_additional_data", None)):
        entry.additional_data = get_additional_data()
    db = connections[DEFAULT_DB_ALIAS]
    signals.pre_save.send(sender=LogEntry, instance=entry, raw=False, using=db.alias, update_fields=None)
    sql, fields = _log_entry_sql()
    values = [f.get_db_prep_save(f.pre_save(entry, True), db) for f in fields]

    def saved(pk: int) -> None:
        mark_saved(entry, pk)
        signals.post_save.send(
            sender=LogEntry, instance=entry, created=True, update_fields=None, raw=False, using=db.alias
        )

    if writes is not None:
        writes.add(sql, values, saved)
        return
    with db.cursor() as cursor:
        cursor.execute(sql, values)
        pk = cursor.fetchone()[0]
    saved(pk)


@cache
def _log_entry_sql() -> tuple[str, list]:
    fields = [f for f in LogEntry._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(LogEntry._meta.db_table)
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))}) RETURNING id", fields


def _write_columns(card: Card, names: Sequence[str], *, writes: _Writes | None = None) -> None:
    """Store these columns of `card` in one plain UPDATE: no model signals (none but django-auditlog's
    listen to cards; see _touch_audited), none of the ORM's compiling."""
    db = connections[DEFAULT_DB_ALIAS]  # the connection itself: preparing values reads it often
    fields = [Card._meta.get_field(name) for name in names]
    assignments = ", ".join(f'"{f.column}" = %s' for f in fields)
    values = [f.get_db_prep_save(getattr(card, f.attname), db) for f in fields]
    if writes is not None:
        writes.set_columns(
            Card._meta.db_table, card.pk, {f.column: v for f, v in zip(fields, values, strict=True)}
        )
        return
    sql = f"UPDATE {Card._meta.db_table} SET {assignments} WHERE id = %s"
    with db.cursor() as cursor:
        cursor.execute(sql, [*values, card.pk])


class _Writes:
    """Plain data-modifying statements of one write, sent to PostgreSQL as one statement (each a CTE
    of it): a move's event, card update and phase entries cost one round trip instead of three. They
    touch different rows and none reads what another writes, which is what CTEs allow (they all run,
    against the same snapshot). PostgreSQL only; `run` before anything reads what they write."""

    def __init__(self) -> None:
        self._parts: list[tuple[str, list, Callable[[int], None] | None]] = []
        self._rows: dict[tuple[str, int], dict[str, Any]] = {}  # (table, id) -> column -> value
        self._after: list[Callable[[], None]] = []

    def add(self, sql: str, params: list, returned: Callable[[int], None] | None = None) -> None:
        """`sql` (one INSERT, UPDATE or DELETE; with `returned`, ending in RETURNING id: `returned` is
        then given the id)."""
        self._parts.append((sql, params, returned))

    def set_columns(self, table: str, pk: int, values: Mapping[str, Any]) -> None:
        """Set these columns of one row: every call for the same row makes one UPDATE (a statement
        may not update a row twice), the later value of a column winning."""
        self._rows.setdefault((table, pk), {}).update(values)

    def empty(self) -> bool:
        return not (self._parts or self._rows or self._after)

    def after(self, call: Callable[[], None]) -> None:
        """Call `call` once the writes ran (a hook that announces what they wrote)."""
        self._after.append(call)

    def run(self) -> None:
        parts = list(self._parts)
        for (table, pk), columns in self._rows.items():
            assignments = ", ".join(f'"{column}" = %s' for column in columns)
            parts.append((f"UPDATE {table} SET {assignments} WHERE id = %s", [*columns.values(), pk], None))
        after, self._parts, self._rows, self._after = self._after, [], {}, []
        if parts:
            ctes = ", ".join(f"w{i} AS ({sql})" for i, (sql, _params, _returned) in enumerate(parts))
            wanted = [(i, returned) for i, (_sql, _params, returned) in enumerate(parts) if returned]
            select = ", ".join(f"(SELECT id FROM w{i})" for i, _returned in wanted) or "1"
            params = [p for _sql, part_params, _returned in parts for p in part_params]
            with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
                cursor.execute(f"WITH {ctes} SELECT {select}", params)
                row = cursor.fetchone()
            for (_i, returned), value in zip(wanted, row, strict=False):
                returned(value)
        for call in after:
            call()


def _event(
    card: Card,
    actor: Actor,
    kind: str,
    payload: Any,
    *,
    reason: str = "",
    field_keys=(),
    writes: _Writes | None = None,
) -> CardEvent:
    """The card's next event, saved (with `writes`, saved when they run: the caller then announces it
    with _event_recorded after running them)."""
    event = event_build(
        card=card,
        kind=kind,
        actor_kind=actor.kind,
        actor_user_id=actor.user_id,
        actor_label=actor.label,
        reason=reason,
        payload=payload,
        field_keys=field_keys,
        save=writes is None,
    )
    if writes is not None:
        sql, params = event_insert_statement(event)
        writes.add(sql, params, lambda pk: mark_saved(event, pk))
        return event
    _event_recorded(event, card)
    return event


def _event_recorded(event: CardEvent, card: Card) -> None:
    hooks.card_event_recorded.send(sender=CardEvent, event=event, card=card)


def _announce_change(
    card: Card, kind: str, field_keys: Iterable[str] = (), *, files: bool | None = None
) -> None:
    """card_changed after commit; `files` says whether the change brought files (None: not known)."""
    card_id, keys, requester_email = card.pk, list(field_keys), card.requester_email
    transaction.on_commit(
        lambda: hooks.card_changed.send(
            sender=Card,
            card_id=card_id,
            kind=kind,
            field_keys=keys,
            requester_email=requester_email,
            files=files,
        )
    )


def _enter_phase(card: Card, phase: Phase, *, writes: _Writes | None = None) -> PhaseEntry:
    """Close the card's stay in its old phase and record the new one. An entry nothing needs (a phase
    without steps: hooks.entry_needed) is recorded processed, so it costs no message and no sweep.
    With `writes` (PostgreSQL: every caller passes them there), both statements join them; the entry
    has its id once they ran."""
    now = timezone.now()
    stamp = getattr(card, "design_stamp", None)
    needed = hooks.entry_needed(card, phase, stamp)
    done = None if needed else now
    # An entry announced after commit is recorded handed on from its insert (dispatched_at, one send):
    # phase_entered's subscriber sends it then, and clears the mark should the broker refuse it (the
    # sweep then sends it later). A stamp after the send would cost an UPDATE and a commit per entry.
    sends = 1 if needed else 0
    if writes is not None:
        table = PhaseEntry._meta.db_table
        entry = PhaseEntry(
            card=card, phase=phase, entered_at=now, dispatched_at=now, dispatch_count=sends, processed_at=done
        )
        writes.add(f"UPDATE {table} SET left_at = %s WHERE card_id = %s AND left_at IS NULL", [now, card.pk])
        writes.add(
            f"INSERT INTO {table} (card_id, phase_id, entered_at, left_at, dispatched_at, dispatch_count, "
            "processed_at) VALUES (%s, %s, %s, NULL, %s, %s, %s) RETURNING id",
            [card.pk, phase.pk, now, now, sends, done],
            lambda pk: mark_saved(entry, pk),
        )
    else:
        PhaseEntry.objects.filter(card=card, left_at__isnull=True).update(left_at=now)
        entry = PhaseEntry.objects.create(
            card=card, phase=phase, entered_at=now, processed_at=done, dispatched_at=now, dispatch_count=sends
        )
    if needed:
        pipe_id, phase_id = phase.pipe_id, phase.pk
        transaction.on_commit(
            lambda: hooks.phase_entered.send(
                sender=PhaseEntry,
                entry_id=entry.pk,
                pipe_id=pipe_id,
                phase_id=phase_id,
                stamp=stamp,
                sent=True,
            )
        )
    return entry


def _check_room(phase: Phase) -> None:
    """Refuse a card entering `phase` when its blocking WIP limit is reached.

    Locks the phase row before counting, so two cards entering at once cannot both count the same
    cards and both pass: the second waits for the first to commit and then counts it. Only phases with
    a blocking limit are locked (entries into others never wait on each other). Call it inside the
    transaction that moves or creates the card."""
    if not (phase.wip_limit and phase.wip_blocks):
        return
    locked = Phase.objects.select_for_update().only("wip_limit", "wip_blocks").get(pk=phase.pk)
    if not (locked.wip_limit and locked.wip_blocks):
        return
    if Card.objects.filter(phase_id=phase.pk).count() >= locked.wip_limit:
        raise CardTransitionError(
            _("%(phase)s is at its limit of %(n)d cards. Finish one there first.")
            % {"phase": phase.name, "n": locked.wip_limit}
        )


def _check_references(schema: _PipeSchema, f: Field, value: list[int], card: Card | None) -> None:
    """Referenced users, labels, cards and files must exist where the field says."""
    if f.type == FieldType.ASSIGNEE:
        users = set(
            pipe_users_with(schema.pipe, STAFF_PERMS).filter(pk__in=value).values_list("pk", flat=True)
        )
        if set(value) - users:
            raise FieldValueError(_("Choose people who take part in this pipe."))
    elif f.type == FieldType.LABEL:
        if Label.objects.filter(pipe=schema.pipe, pk__in=value).count() != len(value):
            raise FieldValueError(_("Choose labels of this pipe."))
    elif f.type == FieldType.CONNECTION:
        slug = (f.config or {}).get("pipe")
        cards = Card.objects.filter(pk__in=value, pipe__organization_id=schema.pipe.organization_id)
        if slug:
            cards = cards.filter(pipe__slug=slug)
        if cards.count() != len(value):
            raise FieldValueError(_("Choose cards of the connected pipe."))
    elif f.type == FieldType.ATTACHMENT:
        files = (
            CardFile.objects.filter(pk__in=value, card=card, field_key=f.key)
            if card
            else CardFile.objects.none()
        )
        if files.count() != len(value):
            raise FieldValueError(_("Attach files to this card through the upload."))


def _parse_values(
    schema: _PipeSchema, raw: Mapping[str, Any], card: Card | None, errors: dict[str, list[str]]
) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for key, raw_value in raw.items():
        f = schema.fields.get(key)
        if f is None:
            errors[key] = [_("There is no field “%(key)s” in this pipe.") % {"key": key}]
            continue
        try:
            value = parse_value(f, raw_value, schema.ctx)
            if value is not None and f.type in (
                FieldType.ASSIGNEE,
                FieldType.LABEL,
                FieldType.CONNECTION,
                FieldType.ATTACHMENT,
            ):
                _check_references(schema, f, value, card)
        except FieldValueError as exc:
            errors[key] = [str(exc)]
            continue
        parsed[key] = value
    return parsed


def _required_missing(fields: Iterable[Field], values: Mapping[str, Any]) -> dict[str, list[str]]:
    """Required fields among `fields` that their conditions show and `values` leaves empty."""
    return {
        f.key: [_("This field is required.")]
        for f in fields
        if f.required and evaluate(f.condition, values) and not is_filled(f, values.get(f.key))
    }


def _hidden_now(schema: _PipeSchema, values: Mapping[str, Any]) -> list[str]:
    """Keys of fields holding a value although their condition now hides them."""
    return [
        k for k, f in schema.fields.items() if k in values and f.condition and not schema.visible(f, values)
    ]


def _title_for(schema: _PipeSchema, values: Mapping[str, Any], fallback: str) -> str:
    key = schema.pipe.title_field
    if key and key in schema.fields and values.get(key) not in (None, ""):
        return display_value(schema.fields[key], values[key])[:255]
    return fallback[:255]


def _sync_due(schema: _PipeSchema, card: Card) -> None:
    for f in schema.fields.values():
        if f.type == FieldType.DUE_DATE:
            value = card.values.get(f.key)
            card.due_at = parse_datetime(value) if value else None
            return


def _store_files(
    *,
    card: Card,
    schema: _PipeSchema,
    actor: Actor,
    uploads: Mapping[str, Sequence[UploadedFile]],
    errors: dict[str, list[str]],
) -> dict[str, list[CardFile]]:
    """Check every upload first; save them only when all pass."""
    checked = []
    for key, files in uploads.items():
        f = schema.fields.get(key)
        if f is None or f.type != FieldType.ATTACHMENT:
            errors[key] = [_("There is no attachment field “%(key)s” in this pipe.") % {"key": key}]
            continue
        if len(files) > 1 and not (f.config or {}).get("multiple"):
            errors[key] = [_("Attach only one file here.")]
            continue
        max_files = int((f.config or {}).get("max_files", 10))
        if len(files) > max_files:
            errors[key] = [_("Attach at most %(n)d files here.") % {"n": max_files}]
            continue
        for upload in files:
            try:
                checked.append((key, upload, inspect_upload(upload, config=f.config)))
            except FieldValueError as exc:
                errors.setdefault(key, []).append(str(exc))
    if errors:
        return {}
    stored: dict[str, list[CardFile]] = {}
    for key, upload, info in checked:
        card_file = CardFile(
            card=card,
            field_key=key,
            name=info.name,
            size=info.size,
            content_type=info.content_type,
            sha256=info.sha256,
            uploaded_by=actor.user,
        )
        card_file.file.save(info.name, upload, save=False)
        card_file.save()
        stored.setdefault(key, []).append(card_file)
    return stored


def _check_update(actor: Actor, card: Card, schema: _PipeSchema, keys: Iterable[str]) -> None:
    keys = list(keys)
    _refuse_public(actor)
    if actor.kind == ActorKind.USER:
        access = _access(actor, card.pipe)
        editable: set[str] = set()  # what a requester may fill on their own card (their data: PII too)
        if _is_own_request(actor, card) and access.can_request:
            editable = {f.key for f in schema.phase_fields(card.phase) if f.requester_editable}
            editable |= set(card.requested_fields or [])
        if access.can_work:
            # A value one may not see is not one's to overwrite (its masked form is all one was shown).
            hidden = [
                k
                for k in keys
                if k in schema.fields
                and schema.fields[k].pii
                and not access.can_view_pii
                and k not in editable
            ]
            if hidden:
                raise CardPermissionError(
                    {k: [_("You may not see this personal data, so you may not change it.")] for k in hidden},
                    fields=schema.labels(hidden),
                )
            return
        if _is_own_request(actor, card) and access.can_request:
            refused = [k for k in keys if k not in editable]
            if not refused:
                return
            raise CardPermissionError(
                {k: [_("You may not change this field now.")] for k in refused}, fields=schema.labels(refused)
            )
        raise _deny(_("You may not change cards of %(pipe)s.") % {"pipe": card.pipe.name})
    if actor.kind == ActorKind.AGENT:
        _check_agent_pipe(actor, card.pipe)
        refused = [k for k in keys if k not in actor.writable_fields]
        if refused:
            raise CardPermissionError(
                {k: [_("Agent %(name)s may not write this field.") % {"name": actor.name}] for k in refused},
                fields=schema.labels(refused),
            )
        # As for people: personal data the agent is shown masked is not its to overwrite (a document
        # fed to it could ask for exactly that), whatever fields its design lets it write.
        hidden = [k for k in keys if k in schema.fields and schema.fields[k].pii and not actor.may_see_pii]
        if hidden:
            raise CardPermissionError(
                {
                    k: [
                        _("Agent %(name)s may not see this personal data, so it may not change it.")
                        % {"name": actor.name}
                    ]
                    for k in hidden
                },
                fields=schema.labels(hidden),
            )


def _check_work(actor: Actor, card: Card, what: str) -> None:
    _refuse_public(actor)
    if actor.kind == ActorKind.USER and not _access(actor, card.pipe).can_work:
        raise _deny(_("You may not %(what)s on cards of %(pipe)s.") % {"what": what, "pipe": card.pipe.name})
    if actor.kind == ActorKind.AGENT:
        _check_agent_pipe(actor, card.pipe)
