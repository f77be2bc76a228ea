"""The first read of every step a worker runs, in plain SQL: a phase entry with its card, the card's pipe,
organization and phase, the entry's phase, the pipe's design stamp, whether the entry has runs and (on
PostgreSQL) an id reserved for a run, so that a run created and finished in one transaction is inserted
finished, by the statement that finishes it (loop._run_at_once), instead of inserted, then updated.

One statement either way; through the ORM (select_related over five tables, two subqueries) its
compiling cost more CPU than the rest of the step's reads together, so on PostgreSQL it is written
once here and the instances are built as the ORM builds them (`Model.from_db`, each column through
the converters the ORM applies). Other databases take the ORM's query.
"""

from __future__ import annotations

from functools import cache

from django.db import connection
from django.db.models import Exists, Model, OuterRef

from pipes import designcache
from pipes.models import Card, DesignStamp, Organization, Phase, PhaseEntry, Pipe

from ..models import StepRun


class _Table:
    """One model's columns in the statement: their SQL, and how a row's values become an instance."""

    def __init__(self, model: type[Model], alias: str):
        self.model = model
        self.fields = list(model._meta.concrete_fields)
        self.attnames = [f.attname for f in self.fields]
        self.sql = ", ".join(f'{alias}."{f.column}"' for f in self.fields)

    @property
    def width(self) -> int:
        return len(self.fields)

    def converters(self) -> list[tuple[int, list, object]]:
        """(column index, converters, expression) of each column the ORM converts (JSON, for one)."""
        out = []
        for i, f in enumerate(self.fields):
            col = f.get_col(self.model._meta.db_table)
            convs = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            if convs:
                out.append((i, convs, col))
        return out


@cache
def _run_id_sequence() -> str:
    """The sequence StepRun's ids are taken from (read once per process)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_serial_sequence(%s, %s)", [StepRun._meta.db_table, StepRun._meta.pk.column]
        )
        return cursor.fetchone()[0]


@cache
def _statement() -> tuple[str, list[_Table], list[list[tuple[int, list, object]]]]:
    tables = [
        _Table(PhaseEntry, "e"),
        _Table(Card, "c"),
        _Table(Pipe, "p"),
        _Table(Organization, "o"),
        _Table(Phase, "cp"),
        _Table(Phase, "ep"),
    ]
    entry, card, pipe, org, phase = (m._meta.db_table for m in (PhaseEntry, Card, Pipe, Organization, Phase))
    sql = (
        f"SELECT {', '.join(t.sql for t in tables)}, "
        f"(SELECT s.version FROM {DesignStamp._meta.db_table} s WHERE s.pipe_id = c.pipe_id), "
        f"EXISTS (SELECT 1 FROM {StepRun._meta.db_table} r WHERE r.entry_id = e.id), "
        f"nextval('{_run_id_sequence()}'::regclass) "
        f"FROM {entry} e "
        f"JOIN {card} c ON c.id = e.card_id "
        f"JOIN {pipe} p ON p.id = c.pipe_id "
        f"JOIN {org} o ON o.id = p.organization_id "
        f"JOIN {phase} cp ON cp.id = c.phase_id "
        f"JOIN {phase} ep ON ep.id = e.phase_id "
        "WHERE e.id = %s"
    )
    return sql, tables, [t.converters() for t in tables]


def _build(table: _Table, converters: list[tuple[int, list, object]], values: list) -> Model:
    for i, convs, expression in converters:
        for conv in convs:
            values[i] = conv(values[i], expression, connection)
    return table.model.from_db(connection.alias, table.attnames, values)


def entry_load(entry_id: int) -> PhaseEntry | None:
    """The entry with `card` (its `pipe` with `organization`, its `phase`), `phase`, `design_stamp`
    (the pipe's design stamp, for pipes.designcache), `has_runs` (a run of it exists) and `reserved_run_id`
    (an id reserved for one new run, None on other databases than PostgreSQL: an id not used leaves a
    gap in the ids, nothing else)."""
    if connection.vendor != "postgresql":
        entry = (
            PhaseEntry.objects.select_related("card__pipe__organization", "card__phase", "phase")
            .annotate(
                design_stamp=designcache.stamp_subquery("card__pipe_id"),
                has_runs=Exists(StepRun.objects.filter(entry_id=OuterRef("pk"))),
            )
            .filter(pk=entry_id)
            .first()
        )
        if entry is not None:
            entry.reserved_run_id = None
        return entry
    sql, tables, converters = _statement()
    with connection.cursor() as cursor:
        cursor.execute(sql, [entry_id])
        row = cursor.fetchone()
    if row is None:
        return None
    built, start = [], 0
    for table, convs in zip(tables, converters, strict=True):
        built.append(_build(table, convs, list(row[start : start + table.width])))
        start += table.width
    entry, card, pipe, organization, card_phase, entry_phase = built
    pipe.organization = organization
    card.pipe, card.phase = pipe, card_phase
    entry.card, entry.phase = card, entry_phase
    entry.design_stamp, entry.has_runs, entry.reserved_run_id = (
        row[start],
        bool(row[start + 1]),
        row[start + 2],
    )
    return entry
