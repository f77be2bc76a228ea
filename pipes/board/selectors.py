"""Reads of the board: filters, columns, card tiles and counts, the changes feed and the home page's pipes.

The board renders in a constant number of queries whatever the number of cards or phases:
one aggregate for every column's counts, one windowed query (ROW_NUMBER over the phase)
for the first cards of every column, and one prefetch each for assignees and labels.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Count, F, Q, QuerySet, TextField, Window
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, RowNumber, Upper
from django.db.models.lookups import Contains, IContains
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone

from ..choices import FieldType
from ..masking import field_text, title_masked
from ..models import Card, Field, Label, Phase, PhaseTally, Pipe, card_reference
from ..parsing import parse_day, parse_id
from ..roles import STAFF_PERMS, pipes_for_user
from ..selectors import BoardSchema, _is_late, rail_badges

PAGE_SIZE = 25
TEXT_SEARCH_TYPES = {
    FieldType.SHORT_TEXT,
    FieldType.LONG_TEXT,
    FieldType.EMAIL,
    FieldType.PHONE,
    FieldType.SELECT,
    FieldType.MULTI_SELECT,
    FieldType.NUMBER,
    FieldType.CURRENCY,
}


# ---------------------------------------------------------------- filters


@dataclass(frozen=True)
class BoardFilters:
    """The board's filters, as they live in the URL."""

    q: str = ""
    assignee: str = ""  # a user id or "me"
    label: str = ""
    late: bool = False
    overdue: bool = False
    created_from: dt.date | None = None
    created_to: dt.date | None = None
    user_id: int | None = None  # whom "me" means

    NAMES = ("q", "assignee", "label", "late", "overdue", "created_from", "created_to")

    @classmethod
    def from_query(cls, params: QueryDict | Mapping[str, str], *, user: AbstractBaseUser) -> BoardFilters:
        def flag(name: str) -> bool:
            return str(params.get(name, "")).lower() in ("1", "true", "on", "yes")

        def day(name: str) -> dt.date | None:
            return parse_day(params.get(name, ""))

        def some_id(name: str) -> str:
            number = parse_id(params.get(name, ""))
            return str(number) if number else ""

        assignee = "me" if str(params.get("assignee", "")).strip() == "me" else some_id("assignee")
        return cls(
            q=str(params.get("q", "")).strip()[:100],
            assignee=assignee,
            label=some_id("label"),
            late=flag("late"),
            overdue=flag("overdue"),
            created_from=day("created_from"),
            created_to=day("created_to"),
            user_id=user.pk,
        )

    @property
    def active(self) -> bool:
        return bool(self.as_params())

    @property
    def assignee_id(self) -> int | None:
        if self.assignee == "me":
            return self.user_id
        return int(self.assignee) if self.assignee else None

    def as_params(self) -> dict[str, str]:
        params = {
            "q": self.q,
            "assignee": self.assignee,
            "label": self.label,
            "late": "1" if self.late else "",
            "overdue": "1" if self.overdue else "",
            "created_from": self.created_from.isoformat() if self.created_from else "",
            "created_to": self.created_to.isoformat() if self.created_to else "",
        }
        return {k: v for k, v in params.items() if v}

    def querystring(self) -> str:
        query = QueryDict(mutable=True)
        query.update(self.as_params())
        return query.urlencode()

    @cached_property
    def qs(self) -> str:
        """The query string to append to board URLs: "?q=..." or ""."""
        encoded = self.querystring()
        return f"?{encoded}" if encoded else ""


def late_q(phases: Iterable[Phase], now: dt.datetime) -> Q | None:
    """Cards past their phase's SLA and not finished; None when no phase has an SLA."""
    parts = [
        Q(phase_id=p.pk, phase_entered_at__lt=now - dt.timedelta(hours=p.sla_hours))
        for p in phases
        if p.sla_hours
    ]
    if not parts:
        return None
    q = parts[0]
    for part in parts[1:]:
        q |= part
    return q & Q(finished_at__isnull=True)


def _start_of_day(day: dt.date, tz: dt.tzinfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=tz)


def _search_prefilter(q: str) -> Q | None:
    """On PostgreSQL, a looser condition the trigram indexes answer (migration 0011): the term in the
    card's title or anywhere in its values as text. ANDed with the exact search, it changes no answer
    (every exact match passes it) but spares a scan of every card of a large pipe. Trigrams need three
    characters; JSON's escaping would hide a quote or a backslash from it."""
    if connection.vendor != "postgresql" or len(q) < 3 or '"' in q or "\\" in q:
        return None
    return Q(title__icontains=q) | Q(Contains(Upper(Cast("values", TextField())), q.upper()))


def _filters_q(
    *,
    pipe: Pipe,
    filters: BoardFilters,
    fields: Sequence[Field],
    phases: Sequence[Phase],
    can_view_pii: bool,
    now: dt.datetime,
    prefilter: bool = True,
) -> Q | None:
    """The filters as one Q (None when there are none). Never matches on PII the user may not see,
    nor on titles masked for them (a title is a copy of its title field). Without `prefilter`, a
    search leaves out its trigram condition (the same matches)."""
    parts: list[Q] = []
    if filters.q:
        if title_masked(pipe=pipe, can_view_pii=can_view_pii, fields=fields):
            search = Q(pk__in=[])
        else:
            search = Q(title__icontains=filters.q)
        for f in fields:
            if f.type in TEXT_SEARCH_TYPES and (can_view_pii or not f.pii):
                search |= Q(IContains(KeyTextTransform(f.key, "values"), filters.q))
        parts.append(search)
        loose = _search_prefilter(filters.q) if prefilter else None
        if loose is not None:
            parts.append(loose)
    if filters.assignee_id:
        through = Card.assignees.through
        parts.append(Q(pk__in=through.objects.filter(user_id=filters.assignee_id).values("card_id")))
    if filters.label:
        through = Card.labels.through
        parts.append(Q(pk__in=through.objects.filter(label_id=int(filters.label)).values("card_id")))
    if filters.late:
        late = late_q(phases, now)
        parts.append(late if late is not None else Q(pk__in=[]))
    if filters.overdue:
        parts.append(Q(due_at__lt=now, finished_at__isnull=True))
    tz = zoneinfo.ZoneInfo(pipe.organization.time_zone)
    if filters.created_from:
        parts.append(Q(created_at__gte=_start_of_day(filters.created_from, tz)))
    if filters.created_to:
        parts.append(Q(created_at__lt=_start_of_day(filters.created_to + dt.timedelta(days=1), tz)))
    if not parts:
        return None
    q = parts[0]
    for part in parts[1:]:
        q &= part
    return q


def board_filter_q(schema: BoardSchema, filters: BoardFilters, *, prefilter: bool = True) -> Q | None:
    """The filter of `filters` on the cards of `schema`'s pipe, as this viewer sees them (`prefilter`:
    see _filters_q)."""
    return _filters_q(
        pipe=schema.pipe,
        filters=filters,
        fields=schema.fields,
        phases=schema.phases,
        can_view_pii=schema.can_view_pii,
        now=schema.now,
        prefilter=prefilter,
    )


@dataclass
class ColumnCounts:
    total: int = 0
    shown: int = 0
    late: int = 0


@dataclass
class Column:
    """One phase of the board as rendered: its counts and first cards."""

    phase: Phase
    counts: ColumnCounts
    cards: list[Tile]
    next_offset: int | None = None  # where "load more" continues; None when all cards are shown

    @property
    def wip_reached(self) -> bool:
        return bool(self.phase.wip_limit) and self.counts.total >= self.phase.wip_limit

    @property
    def wip_over(self) -> bool:
        return bool(self.phase.wip_limit) and self.counts.total > self.phase.wip_limit


TALLY_PENDING = "pipes_phasetally_pending"  # migration pipes 0014


def _totals_sql(pipe_id: int, phases: Sequence[Phase], now: dt.datetime, with_late: bool):
    """The totals' statement (and its parameters) in plain SQL: the hottest read after a move, and the
    ORM's building of its late condition cost several times what the database spends answering it.

    One row per phase. On PostgreSQL the total is the phase's tally (pipes.models.PhaseTally, kept by
    triggers; counted should its row be missing); elsewhere a count of its entries in card_count_idx
    (pipe, phase, phase_entered_at, finished_at). The late count is a range of that index (entered
    before the SLA's cutoff, not finished), in a scalar subquery of its own."""
    table = Card._meta.db_table
    in_phase = f"SELECT COUNT(*) FROM {table} WHERE pipe_id = %s AND phase_id = %s"
    tallied = connection.vendor == "postgresql"
    rows: list[str] = []
    params: list[Any] = []
    for phase in phases:
        if tallied:
            # The tally, and what this transaction changed of it since its first change (folded at commit).
            row = (
                f"SELECT %s, COALESCE((SELECT cards FROM {PhaseTally._meta.db_table} WHERE phase_id = %s), "
                f"({in_phase})) + COALESCE((SELECT SUM(n) FROM {TALLY_PENDING} WHERE phase_id = %s), 0), "
            )
            params += [phase.pk, phase.pk, pipe_id, phase.pk, phase.pk]
        else:
            row = f"SELECT %s, ({in_phase}), "
            params += [phase.pk, pipe_id, phase.pk]
        if with_late and phase.sla_hours:
            row += f"({in_phase} AND phase_entered_at < %s AND finished_at IS NULL)"
            params += [pipe_id, phase.pk, now - dt.timedelta(hours=phase.sla_hours)]
        else:
            row += "0"
        rows.append(row)
    return " UNION ALL ".join(rows), params


def board_counts(
    *, schema: BoardSchema, filters: BoardFilters, phase_ids: Iterable[int] | None = None
) -> dict[int, ColumnCounts]:
    """Cards per phase (all, matching the filters, late among those): one aggregate query, and a
    second for the cards that match when there are filters."""
    fq = board_filter_q(schema, filters)
    phase_ids = set(phase_ids) if phase_ids is not None else None
    # Late only by the SLAs of the phases counted: a smaller condition to build and to run.
    counted = schema.phases if phase_ids is None else [p for p in schema.phases if p.pk in phase_ids]
    counts: dict[int, ColumnCounts] = defaultdict(ColumnCounts)
    if counted:
        sql, params = _totals_sql(schema.pipe.pk, counted, schema.now, with_late=fq is None)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            for phase_id, total, late in cursor.fetchall():
                counts[phase_id] = ColumnCounts(total=total, shown=total, late=late)
    if fq is not None:
        # The matching cards in a query of their own: its WHERE can use the search's and the filters'
        # indexes, where a FILTER over the totals' scan would test every card of the pipe.
        for counts_row in counts.values():
            counts_row.shown = 0
        lq = late_q(counted, schema.now)
        matching: dict[str, Any] = {"shown": Count("phase")}
        if lq is not None:
            matching["late"] = Count("phase", filter=lq)
        rows = Card.objects.filter(pipe=schema.pipe)
        if phase_ids is not None:
            rows = rows.filter(phase_id__in=list(phase_ids))
        for row in rows.filter(fq).values("phase_id").annotate(**matching).order_by():
            counts[row["phase_id"]].shown = row["shown"]
            counts[row["phase_id"]].late = row.get("late", 0)
    return counts


@dataclass(slots=True)
class Person:
    """Just enough of a user to show them on a tile."""

    pk: int
    username: str
    first_name: str
    last_name: str

    def get_full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def get_username(self) -> str:
        return self.username


@dataclass(slots=True)
class TileLabel:
    name: str
    color: str


class TileBatch:
    """What the tiles of one render share: the key fields, the viewer's PII right, and their people and
    labels, fetched for the whole batch on first use. A tile whose HTML comes from the fragment cache
    never asks, so a board whose tiles are all cached runs neither query."""

    def __init__(self, ids: Sequence[int], *, key_fields: Sequence[Field], can_view_pii: bool):
        self.ids = list(ids)
        self.key_fields = list(key_fields)
        self.can_view_pii = can_view_pii
        self._people: dict[int, list[Person]] | None = None
        self._labels: dict[int, list[TileLabel]] | None = None
        self._values: dict[int, dict] | None = None

    def values(self, pk: int) -> dict:
        if self._values is None:
            self._values = dict(Card.objects.filter(pk__in=self.ids).values_list("pk", "values"))
        return self._values.get(pk) or {}

    def people(self, pk: int) -> list[Person]:
        if self._people is None:
            self._fetch_people_and_labels()
        return self._people.get(pk, [])

    def labels(self, pk: int) -> list[TileLabel]:
        if self._labels is None:
            self._fetch_people_and_labels()
        return self._labels.get(pk, [])

    def _fetch_people_and_labels(self) -> None:
        """The batch's assignees and labels in one statement (a UNION ALL of both link tables)."""
        self._people, self._labels = defaultdict(list), defaultdict(list)
        if not self.ids:
            return
        User = get_user_model()
        assignees, labels = Card.assignees.through._meta.db_table, Card.labels.through._meta.db_table
        users, label_table = User._meta.db_table, Label._meta.db_table
        marks = ", ".join(["%s"] * len(self.ids))
        sql = (
            f"SELECT a.card_id, 1, u.id, u.username, u.first_name, u.last_name FROM {assignees} a "
            f"JOIN {users} u ON u.id = a.user_id WHERE a.card_id IN ({marks}) "
            f"UNION ALL SELECT cl.card_id, 2, l.id, l.name, l.color, '' FROM {labels} cl "
            f"JOIN {label_table} l ON l.id = cl.label_id WHERE cl.card_id IN ({marks})"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [*self.ids, *self.ids])
            rows = cursor.fetchall()
        for card_id, kind, pk, a, b, c in sorted(rows, key=lambda r: (r[1], r[3])):
            if kind == 1:
                self._people[card_id].append(Person(pk, a, b, c))
            else:
                self._labels[card_id].append(TileLabel(a, b))


@dataclass(slots=True)
class Tile:
    """A card as its board tile shows it, built from a plain row. What only the tile's HTML needs
    (key field values, people, labels) is worked out on first use, i.e. only when not cached."""

    pk: int
    pipe_id: int
    phase_id: int
    title: str
    version: int
    due_at: dt.datetime | None
    created_at: dt.datetime
    finished_at: dt.datetime | None
    rail_status: str
    rail_note: str
    reference: str
    is_late: bool
    is_overdue: bool
    stamp: str
    order_key: str
    rail_badge: tuple[str, str] | None
    detail_url: str
    move_url: str
    batch: TileBatch

    @property
    def cache_key(self) -> str:
        """What the tile's HTML depends on from the card (its stamp moves with every change)."""
        return f"{self.pk}:{self.stamp}:{self.is_late:d}:{self.is_overdue:d}"

    @property
    def key_values(self) -> list[tuple[str, str]]:
        values = self.batch.values(self.pk) if self.batch.key_fields else {}
        return [
            (f.label, text)
            for f in self.batch.key_fields
            if (text := field_text(f, values.get(f.key), can_view_pii=self.batch.can_view_pii))
        ]

    @property
    def label_list(self) -> list[TileLabel]:
        return self.batch.labels(self.pk)

    @property
    def assignee_list(self) -> list[Person]:
        return self.batch.people(self.pk)


TILE_COLUMNS = (
    "id",
    "phase_id",
    "title",
    "due_at",
    "created_at",
    "updated_at",
    "phase_entered_at",
    "finished_at",
    "version",
    "rail_status",
    "rail_note",
    "number",
)


def _url_maker(name: str, pipe_id: int):
    """A fast maker of `name` URLs for many cards: reverse once, then put each card's id in."""
    marker = 987654321
    template = reverse(name, args=[pipe_id, marker])
    head, _sep, tail = template.partition(str(marker))
    return lambda pk: f"{head}{pk}{tail}"


def tiles_from_rows(rows: Sequence[tuple], *, schema: BoardSchema) -> list[Tile]:
    """Tiles for rows of TILE_COLUMNS (their people and labels are fetched when first shown)."""
    if not rows:
        return []
    batch = TileBatch(
        [row[0] for row in rows], key_fields=schema.key_fields(), can_view_pii=schema.can_view_pii
    )
    phases = schema.phases_by_id
    now, code, pipe_id = schema.now, schema.pipe.code, schema.pipe.pk
    detail_url = _url_maker("card_detail", pipe_id)
    move_url = _url_maker("card_move", pipe_id)
    badges = rail_badges()
    title_of = schema.title_of
    return [
        Tile(
            pk=pk,
            pipe_id=pipe_id,
            phase_id=phase_id,
            title=title_of(title),
            version=version,
            due_at=due_at,
            created_at=created,
            finished_at=finished,
            rail_status=rail,
            rail_note=note,
            reference=card_reference(code, number, pk),
            is_late=_is_late(phases.get(phase_id), entered, finished, now),
            is_overdue=bool(due_at and finished is None and due_at < now),
            stamp=f"{updated.timestamp():.6f}",
            order_key=f"{created.timestamp():017.6f}{pk:012d}",
            rail_badge=badges.get(rail),
            detail_url=detail_url(pk),
            move_url=move_url(pk),
            batch=batch,
        )
        for pk, phase_id, title, due_at, created, updated, entered, finished, version, rail, note, number in rows
    ]


def tile_from_card(card: Card, *, schema: BoardSchema) -> Tile:
    """The tile of a card already loaded (e.g. returned by a service)."""
    row = tuple(getattr(card, "pk" if name == "id" else name) for name in TILE_COLUMNS)
    tile = tiles_from_rows([row], schema=schema)[0]
    tile.batch._values = {card.pk: card.values}
    return tile


def _cards(schema: BoardSchema, fq: Q | None) -> QuerySet[Card]:
    cards = Card.objects.filter(pipe=schema.pipe)
    return cards.filter(fq) if fq is not None else cards


# Under filters that match at most this many cards, the first cards of every column come from one pass
# over the matches (found once, by the filters' indexes) rather than one index scan per column.
FEW_MATCHES = 10_000


def _first_cards(*, schema: BoardSchema, fq: Q | None, limit: int, matches: int | None = None) -> list[Tile]:
    """The first `limit` cards (newest first) of every phase, in one query (plus assignees and labels).

    On PostgreSQL: a UNION ALL of one index scan per phase (card_board_idx), so its cost follows
    the cards shown, not the cards stored; but when filters match few cards (`matches`, counted by
    board_counts), each of those scans would look for them all over again (a search's trigram
    lookups once per column), so the matches are found once and ranked within their phase
    (ROW_NUMBER), as everywhere else."""
    if not schema.phases:
        return []
    base = _cards(schema, fq)
    few = fq is not None and matches is not None and matches <= FEW_MATCHES
    if connection.features.supports_slicing_ordering_in_compound and not few:
        parts = [
            base.filter(phase_id=p.pk).order_by("-created_at", "-id").values_list(*TILE_COLUMNS)[:limit]
            for p in schema.phases
        ]
        rows = list(parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0])
    else:
        rank = Window(
            RowNumber(), partition_by=[F("phase_id")], order_by=[F("created_at").desc(), F("id").desc()]
        )
        rows = list(base.annotate(rank=rank).filter(rank__lte=limit).values_list(*TILE_COLUMNS))
    rows.sort(key=lambda r: (r[1], -r[4].timestamp(), -r[0]))
    return tiles_from_rows(rows, schema=schema)


def board_columns(*, schema: BoardSchema, filters: BoardFilters, limit: int = PAGE_SIZE) -> list[Column]:
    """Every phase with its counts and first `limit` cards (newest first), in constant queries."""
    counts = board_counts(schema=schema, filters=filters)
    matches = sum(c.shown for c in counts.values())
    # Many matches: each column's scan in its newest-first index soon finds its first cards, unless
    # the planner is offered a search's trigram condition, which it takes for selective (it cannot
    # know the term is in most cards) and then reads every match of every column.
    fq = board_filter_q(schema, filters, prefilter=matches <= FEW_MATCHES)
    ranked = _first_cards(schema=schema, fq=fq, limit=limit, matches=matches)
    by_phase: dict[int, list[Card]] = defaultdict(list)
    for tile in ranked:
        by_phase[tile.phase_id].append(tile)
    columns = []
    for phase in schema.phases:
        column_counts = counts.get(phase.pk, ColumnCounts())
        shown = by_phase.get(phase.pk, [])
        more = column_counts.shown > len(shown)
        columns.append(
            Column(phase=phase, counts=column_counts, cards=shown, next_offset=len(shown) if more else None)
        )
    return columns


def card_list_for_board(
    *, schema: BoardSchema, phase: Phase, filters: BoardFilters, offset: int = 0, limit: int = PAGE_SIZE
) -> tuple[list[Tile], int | None]:
    """A page of a column's tiles (for "load more") and the offset of the next page, if any."""
    cards = _cards(schema, board_filter_q(schema, filters)).filter(phase=phase).order_by("-created_at", "-id")
    rows = list(cards.values_list(*TILE_COLUMNS)[offset : offset + limit + 1])
    next_offset = offset + limit if len(rows) > limit else None
    return tiles_from_rows(rows[:limit], schema=schema), next_offset


def card_tiles(*, schema: BoardSchema, ids: Iterable[int], filters: BoardFilters | None = None) -> list[Tile]:
    """The board tiles of the given cards (only those matching `filters`, when given)."""
    fq = board_filter_q(schema, filters) if filters is not None else None
    cards = _cards(schema, fq).filter(pk__in=list(ids)).order_by("-created_at", "-id")
    return tiles_from_rows(list(cards.values_list(*TILE_COLUMNS)), schema=schema)


@dataclass
class BoardChanges:
    """What changed on a board since a moment: tiles to show again, and ids to take off."""

    tiles: list[Tile]
    removed: list[int]
    counts: dict[int, ColumnCounts]
    until: dt.datetime


def card_ids_changed_since(*, pipe: Pipe, since: dt.datetime, limit: int = 100) -> list[int]:
    """Ids of the pipe's cards changed after `since`, latest first (one query on card_changed_idx)."""
    return list(
        Card.objects.filter(pipe=pipe, updated_at__gt=since)
        .order_by("-updated_at")
        .values_list("pk", flat=True)[:limit]
    )


def cards_changed_since(
    *,
    schema: BoardSchema,
    filters: BoardFilters,
    since: dt.datetime,
    changed: Sequence[int] | None = None,
    limit: int = 100,
) -> BoardChanges:
    """Cards of the pipe changed after `since` (or the given `changed` ids), their tiles when they
    match the filters, the ids to take off the board otherwise, and fresh counts."""
    until = timezone.now()
    if changed is None:
        changed = card_ids_changed_since(pipe=schema.pipe, since=since, limit=limit)
    tiles = card_tiles(schema=schema, ids=changed, filters=filters) if changed else []
    shown = {c.pk for c in tiles}
    counts = board_counts(schema=schema, filters=filters) if changed else {}
    return BoardChanges(
        tiles=tiles, removed=[pk for pk in changed if pk not in shown], counts=counts, until=until
    )


# ---------------------------------------------------------------- home


@dataclass
class PipeSummary:
    pipe: Pipe
    open_count: int = 0
    late_count: int = 0
    phase_count: int = 0
    # open (not final) phases with their open cards and share of them, for the tile's bar
    phases: list[tuple[Phase, int, int]] = field(default_factory=list)


@dataclass
class OrganizationPipes:
    organization: Any
    pipes: list[PipeSummary]


def home_pipes(*, user: AbstractBaseUser) -> list[OrganizationPipes]:
    """The pipes whose board `user` sees, grouped by organization, with open and late cards: 3 queries."""
    pipes = list(
        pipes_for_user(user, STAFF_PERMS)
        .filter(archived_at__isnull=True)
        .select_related("organization")
        .order_by("organization__name", "name")
    )
    if not pipes:
        return []
    phases = list(
        Phase.objects.filter(pipe__in=pipes)
        .only("id", "pipe_id", "name", "sla_hours", "is_final", "position")
        .order_by("position", "id")
    )
    aggregates: dict[str, Any] = {"open": Count("id")}
    lq = late_q(phases, timezone.now())
    if lq is not None:
        aggregates["late"] = Count("id", filter=lq)
    per_phase = {
        row["phase_id"]: row
        for row in Card.objects.filter(pipe__in=pipes, finished_at__isnull=True)
        .values("phase_id")
        .annotate(**aggregates)
        .order_by()
    }
    summaries = {pipe.pk: PipeSummary(pipe=pipe) for pipe in pipes}
    for phase in phases:
        summary = summaries[phase.pipe_id]
        row = per_phase.get(phase.pk, {})
        summary.phase_count += 1
        summary.open_count += row.get("open", 0)
        summary.late_count += row.get("late", 0)
        if not phase.is_final:
            summary.phases.append((phase, row.get("open", 0), 0))
    groups: dict[int, OrganizationPipes] = {}
    for pipe in pipes:
        summary = summaries[pipe.pk]
        total = summary.open_count or 1
        summary.phases = [(p, n, round(100 * n / total)) for p, n, _share in summary.phases]
        groups.setdefault(pipe.organization_id, OrganizationPipes(pipe.organization, [])).pipes.append(
            summary
        )
    return list(groups.values())
