"""The plain SQL of a step's hot path on PostgreSQL: a row read under its lock, a run created already
claimed, and a finished run (its columns, its trace and its entry's processed mark) in one statement.

Every step runs these; through the ORM their compiling cost more CPU than the statements themselves
(issue 17). Values pass through each field's own `get_db_prep_save` and rows come back through the
ORM's converters (`Model.from_db`), so what is stored and read is what the ORM would store and read.
Other databases (SQLite, the embedded default) take the ORM's path: the callers check `fast()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache

from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.models import Model

from pipes.models import Card, PhaseEntry
from pipes.services import card_writes_join

from ..models import StepRun, TraceEvent
from .entryload import _Table


def fast() -> bool:
    """Whether the plain statements of this module apply (PostgreSQL)."""
    return connection.vendor == "postgresql"


@cache
def _table(model: type[Model]) -> tuple[_Table, list]:
    table = _Table(model, "t")
    return table, table.converters()


def row_locked(model: type[Model], pk: int) -> Model:
    """Row `pk` of `model` read under a row lock, alone (nothing joined is locked). PostgreSQL only."""
    table, converters = _table(model)
    db = _db()
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT {table.sql} FROM {db.ops.quote_name(model._meta.db_table)} t WHERE t.id = %s FOR UPDATE",
            [pk],
        )
        row = cursor.fetchone()
    if row is None:
        raise model.DoesNotExist
    values = list(row)
    for i, convs, expression in converters:
        for conv in convs:
            values[i] = conv(values[i], expression, db)
    return model.from_db(db.alias, table.attnames, values)


def _db():
    # The connection itself: `django.db.connection` is a proxy that looks the thread's connection up on
    # every attribute read, and preparing a row's values reads it dozens of times.
    return connections[DEFAULT_DB_ALIAS]


# Fields whose value, when it already is a str, an int, a bool or None, is sent as it is by the ORM
# (their get_db_prep_save returns it unchanged): preparing it costs more than the statement's sending.
_PLAIN_FIELDS = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.BooleanField,
    models.ForeignKey,
)
_PLAIN_VALUES = (str, int, bool, type(None))


@cache
def _fields(model: type[Model], names: tuple[str, ...]) -> tuple[list, list[str], list[bool]]:
    fields = [model._meta.get_field(name) for name in names]
    plain = [isinstance(f, _PLAIN_FIELDS) for f in fields]
    return fields, [connection.ops.quote_name(f.column) for f in fields], plain


def _prepared(instance: Model, names: Sequence[str], *, add: bool) -> tuple[list[str], list]:
    """The columns of fields `names` and their values as the ORM's save would send them."""
    db = _db()
    fields, columns, plain = _fields(type(instance), tuple(names))
    values = []
    for f, is_plain in zip(fields, plain, strict=True):
        value = f.pre_save(instance, add)
        values.append(value if is_plain and type(value) in _PLAIN_VALUES else f.get_db_prep_save(value, db))
    return columns, values


def run_insert(run: StepRun) -> None:
    """INSERT `run` (a new instance, every column set) and give it its id: one statement, as
    `StepRun.objects.create` writes it, without its compiling. Raises IntegrityError as it would."""
    names = [f.name for f in StepRun._meta.concrete_fields if not f.primary_key]
    columns, values = _prepared(run, names, add=True)
    with _db().cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {StepRun._meta.db_table} ({', '.join(columns)}) "
            f"VALUES ({', '.join(['%s'] * len(values))}) RETURNING id",
            values,
        )
        run.pk = cursor.fetchone()[0]
    run._state.adding = False


_TRACE_NAMES = ("run", "seq", "attempt", "kind", "summary", "data", "created_at")


def run_finished(
    *,
    run: StepRun,
    fields: Sequence[str],
    events: Sequence[TraceEvent],
    entry_id: int | None = None,
    processed_at: datetime | None = None,
    card: Card | None = None,
) -> None:
    """In one statement: `fields` of `run` stored, its trace `events` (numbered) inserted and, with
    `entry_id`, the entry marked processed at `processed_at`. Call holding the run's row lock, checked
    against the claim, in the transaction that applies its result. No model signals are sent: the
    only receiver of a saved run (webhooks' step failed) ignores a run that did not fail.

    With `card` whose writes the caller gathers (pipes.services.card_writes_together), the statements
    join them instead: the step's whole result is then one statement. None of them touches a row of
    the card's writes: the entry's `left_at` is set by a move, which is never gathered.

    A run not yet written (`run._state.adding`, its id reserved: loop._run_at_once) is inserted whole,
    finished, instead: its trace and whatever else the transaction wrote that refers to it (the
    outbox's emails) are checked against it at commit (PostgreSQL's foreign keys, as Django creates
    them, are deferred)."""
    if run._state.adding:
        names = [f.name for f in StepRun._meta.concrete_fields]
        columns, values = _prepared(run, names, add=True)
        first = (
            f"INSERT INTO {StepRun._meta.db_table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(values))})",
            values,
        )
        run._state.adding = False
    else:
        columns, values = _prepared(run, fields, add=False)
        first = (
            f"UPDATE {StepRun._meta.db_table} SET {', '.join(f'{c} = %s' for c in columns)} WHERE id = %s",
            [*values, run.pk],
        )
    statements = [first]
    if events:
        rows, params = [], []
        for event in events:
            trace_columns, row = _prepared(event, _TRACE_NAMES, add=True)
            rows.append(f"({', '.join(['%s'] * len(row))})")
            params += row
        statements.append(
            (
                f"INSERT INTO {TraceEvent._meta.db_table} ({', '.join(trace_columns)}) VALUES {', '.join(rows)}",
                params,
            )
        )
    if entry_id is not None:
        statements.append(
            (
                f"UPDATE {PhaseEntry._meta.db_table} SET processed_at = %s WHERE id = %s",
                [processed_at, entry_id],
            )
        )
    if card is not None and card_writes_join(card, statements):
        return fields
    *first, (last_sql, last_params) = statements
    sql = (
        "WITH " + ", ".join(f"s{i} AS ({s})" for i, (s, _p) in enumerate(first)) + " " + last_sql
        if first
        else last_sql
    )
    with _db().cursor() as cursor:
        cursor.execute(sql, [p for _s, params in first for p in params] + last_params)
