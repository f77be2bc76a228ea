"""The SLA report of a pipe for one month, computed in the database.

A month is a calendar month in the organization's time zone. For each phase it counts the phase
stays (PhaseEntry rows) that *ended* in the month: how many met the phase's SLA, and the median
and 90th percentile time spent (linear interpolation, as PostgreSQL's percentile_cont). Stays
still open at the end of the month (or now, for the current month) and already past their SLA
are counted apart and listed with the late stays. End to end, it takes the cards that finished in
the month: how many finished within the pipe's deadline, how many met every phase SLA on the
way, and the median and 90th percentile time from creation to finish.

On PostgreSQL the figures are SQL aggregates over index ranges (a million-card pipe answers in
about 0.25 s for its busiest month and about 2 s for a month in which 900,000 of its cards
finish; see bench/sla_report.py); elsewhere (SQLite) the same figures are computed in Python.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ..csvsafe import csv_safe_writer
from ..models import Card, Phase, PhaseEntry, Pipe, card_reference
from ..parsing import FIRST_DAY, LAST_DAY, day_in_range, parse_int

LATE_LIST_LIMIT = 200


class MonthError(ValueError):
    """A month that is not YYYY-MM."""


@dataclass
class PhaseFigures:
    """One phase's figures for the month (times in seconds)."""

    phase: Phase
    stays: int = 0
    met: int | None = None  # None when the phase has no SLA
    median: float | None = None
    p90: float | None = None
    open_over: int = 0

    @property
    def sla_hours(self) -> int | None:
        return self.phase.sla_hours

    @property
    def share(self) -> float | None:
        """Share (0..1) of the month's stays that met the SLA."""
        if self.met is None or not self.stays:
            return None
        return self.met / self.stays


@dataclass
class EndToEnd:
    """Cards that finished in the month, from creation to finish (times in seconds)."""

    finished: int = 0
    within_deadline: int | None = None  # None when the pipe has no deadline
    every_phase_met: int = 0
    median: float | None = None
    p90: float | None = None
    deadline_days: int | None = None

    @property
    def deadline_share(self) -> float | None:
        if self.within_deadline is None or not self.finished:
            return None
        return self.within_deadline / self.finished

    @property
    def phases_share(self) -> float | None:
        return self.every_phase_met / self.finished if self.finished else None


@dataclass
class LateStay:
    """A phase stay that passed its SLA: closed in the month, or still open at its end."""

    card_id: int
    reference: str
    title: str
    phase: Phase
    entered_at: dt.datetime
    left_at: dt.datetime | None
    spent: float  # seconds in the phase (until the end of the month when still open)
    over: float  # seconds past the SLA

    @property
    def is_open(self) -> bool:
        return self.left_at is None


@dataclass
class SlaReport:
    """The SLA report of `pipe` for the month starting at `start` (local midnight, stored UTC)."""

    pipe: Pipe
    month: dt.date
    start: dt.datetime
    end: dt.datetime
    as_of: dt.datetime
    phases: list[PhaseFigures]
    end_to_end: EndToEnd
    late: list[LateStay] = field(default_factory=list)
    late_total: int = 0
    engine: str = ""

    @property
    def month_label(self) -> str:
        return self.month.strftime("%Y-%m")

    @property
    def stays(self) -> int:
        return sum(p.stays for p in self.phases)

    @property
    def previous_month(self) -> str:
        return (self.month - dt.timedelta(days=1)).strftime("%Y-%m")

    @property
    def next_month(self) -> str:
        return (self.month + dt.timedelta(days=32)).replace(day=1).strftime("%Y-%m")


def month_bounds(month: str | dt.date, tz: dt.tzinfo) -> tuple[dt.date, dt.datetime, dt.datetime]:
    """The first day of `month` ("YYYY-MM") and its start and end as aware datetimes in `tz`."""
    if isinstance(month, str):
        year, _dash, number = month.strip().partition("-")
        try:
            first = dt.date(parse_int(year) or 0, parse_int(number) or 0, 1)
        except (ValueError, OverflowError):  # no such month, or a year past C's integers
            raise MonthError(_("Choose a month as YYYY-MM, like 2026-03.")) from None
    else:
        first = month.replace(day=1)
    if not day_in_range(first):  # its neighbours and its end in UTC must be days too
        raise MonthError(
            _("Choose a month from %(first)s to %(last)s.")
            % {
                "first": f"{FIRST_DAY.year:04d}-{FIRST_DAY.month:02d}",
                "last": f"{LAST_DAY.year:04d}-{LAST_DAY.month:02d}",
            }
        )
    following = (first + dt.timedelta(days=32)).replace(day=1)
    start = dt.datetime.combine(first, dt.time(), tzinfo=tz)
    end = dt.datetime.combine(following, dt.time(), tzinfo=tz)
    return first, start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """The `fraction` percentile of `sorted_values` with linear interpolation (PostgreSQL percentile_cont)."""
    if not sorted_values:
        return None
    position = fraction * (len(sorted_values) - 1)
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def sla_report(
    *, pipe: Pipe, month: str | dt.date, now: dt.datetime | None = None, late_limit: int = LATE_LIST_LIMIT
) -> SlaReport:
    """The SLA report of `pipe` for `month` (YYYY-MM in the organization's time zone)."""
    tz = zoneinfo.ZoneInfo(pipe.organization.time_zone)
    first, start, end = month_bounds(month, tz)
    as_of = min(end, now or timezone.now())
    phases = list(pipe.phases.order_by("position", "id"))
    report = SlaReport(
        pipe=pipe,
        month=first,
        start=start,
        end=end,
        as_of=as_of,
        phases=[
            PhaseFigures(phase=p, met=None if p.sla_hours is None else 0) for p in phases if not p.is_final
        ],
        end_to_end=EndToEnd(deadline_days=pipe.expiration_days),
        engine=connection.vendor,
    )
    if as_of <= start:
        return report  # a month that has not begun
    compute = _compute_sql if connection.vendor == "postgresql" else _compute_python
    compute(report, late_limit)
    report.late.sort(key=lambda s: s.over, reverse=True)
    return report


# ---------------------------------------------------------------- PostgreSQL: aggregates in SQL
#
# Three statements: the earliest creation among the month's finished cards, every figure, the
# late list. The figures are one UNION ALL of independent aggregates (one per phase for the
# month's closed stays, the open stays past SLA, the finished cards, the finished cards that
# missed an SLA), each row tagged by kind, so PostgreSQL can run them side by side in a Parallel
# Append when it has the workers (a month of ~900k finished cards: ~3.0 s one after the other,
# ~1.8 s side by side on 2 cores). Every branch reads index ranges only: entry_phase_left_idx
# (stays by phase and end) and card_finished_idx (cards by pipe and finish).
# Seconds are float8, as round(date_part('epoch', interval) * 1e6) / 1e6: date_part alone is 1 ulp
# off for some intervals of a day or more (it adds the days' seconds to the rounded rest), which
# moves a percentile's last digits; rounded to whole microseconds it equals Python's
# total_seconds() and the exact EXTRACT(EPOCH ...)::float8, without EXTRACT's numeric arithmetic
# (~0.1 s more per million stays).

_T = {
    "entry": PhaseEntry._meta.db_table,
    "card": Card._meta.db_table,
}

# The SLA phases travel as two arrays (phase ids, hours), so a query filters on a stay's own SLA
# without joining the phase table row by row.
_SLA = "unnest(%(sla_phases)s::bigint[], %(sla_hours)s::int[]) AS sla(phase_id, hours)"

# One phase's stays closed in the month: count, within SLA, past it, median and p90 (one sort).
# `{n}` numbers the phase's own parameters; a phase without SLA has NULL hours (no met, no late).
_CLOSED_BRANCH = """
SELECT 'closed', %(phase_{n})s::bigint, count(*),
       count(*) FILTER (WHERE pe.left_at - pe.entered_at <= make_interval(hours => %(hours_{n})s::int)),
       count(*) FILTER (WHERE pe.left_at - pe.entered_at > make_interval(hours => %(hours_{n})s::int)),
       percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY round(date_part('epoch', pe.left_at - pe.entered_at) * 1000000) / 1000000)
  FROM {entry} pe
 WHERE pe.phase_id = %(phase_{n})s AND pe.left_at >= %(start)s AND pe.left_at < %(end)s
"""


# The stays open at as_of (the end of the month, or now) and already past their SLA, among those
# whose end matches `ended` (still open: left_at IS NULL; or left after as_of): each branch is one
# index range, which an OR of the two would not be.
def _open_over(ended: str) -> str:
    return (
        """
SELECT pe.card_id, pe.phase_id, pe.entered_at, pe.left_at, sla.hours
  FROM """
        + _SLA
        + """ JOIN {entry} pe ON pe.phase_id = sla.phase_id
 WHERE """
        + ended
        + """ AND pe.entered_at < %(as_of)s - make_interval(hours => sla.hours)
"""
    )


# Per phase, the open stays past SLA, and how many of them also closed in the month (only when
# as_of is before a stay's recorded end, i.e. data newer than `now`): those are counted late once.
_OPEN_BRANCH = (
    """
SELECT 'open', o.phase_id, count(*), count(*) FILTER (WHERE o.left_at >= %(start)s AND o.left_at < %(end)s),
       NULL::bigint, NULL::float8[]
  FROM ("""
    + _open_over("pe.left_at IS NULL")
    + " UNION ALL "
    + _open_over("pe.left_at >= %(as_of)s")
    + """) o
 GROUP BY o.phase_id
"""
)

# Cards finished in the month: count, within the pipe's deadline, median and p90 from creation
# to finish.
_FINISHED_BRANCH = """
SELECT 'finished', NULL::bigint, count(*),
       count(*) FILTER (WHERE c.finished_at - c.created_at <= make_interval(days => %(days)s)),
       NULL::bigint,
       percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY round(date_part('epoch', c.finished_at - c.created_at) * 1000000) / 1000000)
  FROM {card} c
 WHERE c.pipe_id = %(pipe)s AND c.finished_at >= %(start)s AND c.finished_at < %(end)s
"""

# The earliest creation among the month's finished cards, which bounds the stays that can be theirs.
# (count(*) beside min() keeps the planner from walking the created_at index for the minimum.)
_FIRST_CREATED_SQL = """
SELECT min(c.created_at), count(*)
  FROM {card} c
 WHERE c.pipe_id = %(pipe)s AND c.finished_at >= %(start)s AND c.finished_at < %(end)s
"""

# Of those, the ones with a stay past its phase's SLA (a stay still open counts until the finish).
# Through the one write path a card's stays begin at or after its creation and, once it is
# finished, have all ended by its finish: so the closed stays that matter ended within
# [first_created, end), an index range (small for a usual month, the whole pipe for a month that
# holds all of it), and the open ones are the left_at IS NULL range. Only late stays meet the
# month's finished cards.
_MISSED_BRANCH = (
    """
SELECT 'missed', NULL::bigint, count(DISTINCT c.id), NULL::bigint, NULL::bigint, NULL::float8[]
  FROM {card} c JOIN (
       SELECT pe.card_id, pe.entered_at, pe.left_at, sla.hours
         FROM """
    + _SLA
    + """ JOIN {entry} pe ON pe.phase_id = sla.phase_id
        WHERE pe.left_at >= %(first_created)s AND pe.left_at < %(end)s
          AND pe.left_at - pe.entered_at > make_interval(hours => sla.hours)
        UNION ALL
       SELECT pe.card_id, pe.entered_at, pe.left_at, sla.hours
         FROM """
    + _SLA
    + """ JOIN {entry} pe ON pe.phase_id = sla.phase_id
        WHERE pe.left_at IS NULL) pe ON pe.card_id = c.id
 WHERE c.pipe_id = %(pipe)s AND c.finished_at >= %(start)s AND c.finished_at < %(end)s
   AND COALESCE(pe.left_at, c.finished_at) - pe.entered_at > make_interval(hours => pe.hours)
"""
)


def _figures_sql(phase_count: int, *, with_sla: bool, finished: bool) -> str:
    branches = [_CLOSED_BRANCH.replace("{n}", str(n)) for n in range(phase_count)]
    branches.append(_FINISHED_BRANCH)
    if with_sla:
        branches.append(_OPEN_BRANCH)
    if with_sla and finished:
        branches.append(_MISSED_BRANCH)
    return " UNION ALL ".join(branches).format(**_T)


# The late stays most over their SLA: closed late in the month (a branch per phase, so that a
# Parallel Append can share them out), or open past it at as_of and not closed in the month (else
# it is listed once, as closed). Ties go by card and entry time; every column comes from
# entry_phase_left_idx, and titles are read for the listed rows only.
_LATE_CLOSED_BRANCH = """
SELECT pe.card_id, pe.phase_id, pe.entered_at, CASE WHEN pe.left_at < %(as_of)s THEN pe.left_at END,
       round(date_part('epoch', pe.left_at - pe.entered_at) * 1000000) / 1000000 AS spent,
       round(date_part('epoch', pe.left_at - pe.entered_at) * 1000000) / 1000000 - %(hours_{n})s * 3600 AS over
  FROM {entry} pe
 WHERE pe.phase_id = %(phase_{n})s AND pe.left_at >= %(start)s AND pe.left_at < %(end)s
   AND pe.left_at - pe.entered_at > make_interval(hours => %(hours_{n})s::int)
"""

_LATE_OPEN_BRANCH = (
    """
SELECT o.card_id, o.phase_id, o.entered_at, NULL, round(date_part('epoch', %(as_of)s - o.entered_at) * 1000000) / 1000000,
       round(date_part('epoch', %(as_of)s - o.entered_at) * 1000000) / 1000000 - o.hours * 3600
  FROM ("""
    + _open_over("pe.left_at IS NULL")
    + " UNION ALL "
    + _open_over("pe.left_at >= %(end)s")
    + """) o
"""
)


def _late_sql(sla_numbers: list[int]) -> str:
    branches = [_LATE_CLOSED_BRANCH.replace("{n}", str(n)) for n in sla_numbers] + [_LATE_OPEN_BRANCH]
    return (
        """
SELECT l.card_id, l.phase_id, l.entered_at, l.left_at, l.spent, c.title, c.number
  FROM ("""
        + " UNION ALL ".join(branches)
        + """
         ORDER BY over DESC, card_id, entered_at
         LIMIT %(limit)s) l (card_id, phase_id, entered_at, left_at, spent, over)
  JOIN {card} c ON c.id = l.card_id
 ORDER BY l.over DESC, l.card_id, l.entered_at
"""
    ).format(**_T)


# Settings for this transaction only: no JIT (compiling these one-off aggregates costs more than
# running them) and memory to sort a busy month's stays of a phase without spilling to disk.
_SESSION = ["SET LOCAL jit = off", "SET LOCAL work_mem = '64MB'"]


def _float(value) -> float | None:
    return None if value is None else float(value)


def _compute_sql(report: SlaReport, late_limit: int) -> None:
    by_phase = {f.phase.pk: f for f in report.phases}
    with_sla = [f.phase for f in report.phases if f.phase.sla_hours is not None]
    params = {
        "pipe": report.pipe.pk,
        "sla_phases": [p.pk for p in with_sla],
        "sla_hours": [p.sla_hours for p in with_sla],
        "start": report.start,
        "end": report.end,
        "as_of": report.as_of,
        "days": report.pipe.expiration_days or 0,
        "limit": late_limit,
    }
    for n, figures in enumerate(report.phases):
        params[f"phase_{n}"], params[f"hours_{n}"] = figures.phase.pk, figures.phase.sla_hours
    e2e = report.end_to_end
    missed = 0
    rows = []
    with transaction.atomic(), connection.cursor() as cursor:
        for setting in _SESSION:
            cursor.execute(setting)
        cursor.execute(_FIRST_CREATED_SQL.format(**_T), params)
        params["first_created"], finished = cursor.fetchone()
        cursor.execute(
            _figures_sql(len(report.phases), with_sla=bool(with_sla), finished=finished > 0), params
        )
        for kind, phase_id, count, second, third, quantiles in cursor.fetchall():
            median, p90 = quantiles or (None, None)
            if kind == "closed":
                figures = by_phase[phase_id]
                figures.stays, figures.median, figures.p90 = count, _float(median), _float(p90)
                figures.met = None if figures.phase.sla_hours is None else second
                report.late_total += third
            elif kind == "open":
                by_phase[phase_id].open_over = count
                report.late_total += count - second  # closed in the month too: already counted
            elif kind == "finished":
                e2e.finished = count
                e2e.within_deadline = second if report.pipe.expiration_days else None
                e2e.median, e2e.p90 = _float(median), _float(p90)
            else:
                missed = count
        e2e.every_phase_met = e2e.finished - missed
        if report.late_total:
            with_sla_numbers = [n for n, f in enumerate(report.phases) if f.phase.sla_hours is not None]
            cursor.execute(_late_sql(with_sla_numbers), params)
            rows = cursor.fetchall()
    code = report.pipe.code
    for card_id, phase_id, entered, left, spent, title, number in rows:
        phase = by_phase[phase_id].phase
        report.late.append(
            LateStay(
                card_id=card_id,
                reference=card_reference(code, number, card_id),
                title=title,
                phase=phase,
                entered_at=entered,
                left_at=left,
                spent=spent,
                over=spent - phase.sla_hours * 3600,
            )
        )


# ---------------------------------------------------------------- elsewhere: the same figures in Python


def _compute_python(report: SlaReport, late_limit: int) -> None:
    phases = {f.phase.pk: f for f in report.phases}
    start, end, as_of = report.start, report.end, report.as_of
    durations: dict[int, list[float]] = {pk: [] for pk in phases}
    late: list[tuple[int, int, dt.datetime, dt.datetime | None, float]] = []
    closed = PhaseEntry.objects.filter(phase_id__in=phases, left_at__gte=start, left_at__lt=end)
    for card_id, phase_id, entered, left in closed.values_list(
        "card_id", "phase_id", "entered_at", "left_at"
    ):
        spent = (left - entered).total_seconds()
        durations[phase_id].append(spent)
        sla = phases[phase_id].phase.sla_hours
        if sla is not None:
            if spent <= sla * 3600:
                phases[phase_id].met += 1
            else:
                late.append((card_id, phase_id, entered, left if left < as_of else None, spent))
    for pk, values in durations.items():
        values.sort()
        phases[pk].stays = len(values)
        phases[pk].median, phases[pk].p90 = percentile(values, 0.5), percentile(values, 0.9)

    with_sla = [pk for pk, f in phases.items() if f.phase.sla_hours is not None]
    open_at_as_of = PhaseEntry.objects.filter(phase_id__in=with_sla, entered_at__lt=as_of).exclude(
        left_at__lt=as_of
    )
    for card_id, phase_id, entered, left in open_at_as_of.values_list(
        "card_id", "phase_id", "entered_at", "left_at"
    ):
        spent = (as_of - entered).total_seconds()
        if spent > phases[phase_id].phase.sla_hours * 3600:
            phases[phase_id].open_over += 1
            if not (left is not None and start <= left < end):  # not already counted as closed late
                late.append((card_id, phase_id, entered, None, spent))

    e2e = report.end_to_end
    finished = list(
        Card.objects.filter(pipe=report.pipe, finished_at__gte=start, finished_at__lt=end).values_list(
            "pk", "created_at", "finished_at"
        )
    )
    missed: set[int] = set()
    sla_of = {f.phase.pk: f.phase.sla_hours for f in report.phases if f.phase.sla_hours is not None}
    for card_id, phase_id, entered, left, finished_at in PhaseEntry.objects.filter(
        card_id__in=[pk for pk, _c, _f in finished], phase_id__in=sla_of
    ).values_list("card_id", "phase_id", "entered_at", "left_at", "card__finished_at"):
        if ((left or finished_at) - entered).total_seconds() > sla_of[phase_id] * 3600:
            missed.add(card_id)
    totals = sorted((f - c).total_seconds() for _pk, c, f in finished)
    e2e.finished = len(finished)
    e2e.every_phase_met = len(finished) - len(missed)
    e2e.median, e2e.p90 = percentile(totals, 0.5), percentile(totals, 0.9)
    if report.pipe.expiration_days:
        limit = report.pipe.expiration_days * 86400
        e2e.within_deadline = sum(1 for t in totals if t <= limit)

    report.late_total = len(late)
    # Most over first; ties by card, then entry time (as the SQL orders them).
    late.sort(key=lambda row: (-(row[4] - phases[row[1]].phase.sla_hours * 3600), row[0], row[2]))
    titles, numbers = {}, {}
    for pk, title, number in Card.objects.filter(pk__in={row[0] for row in late[:late_limit]}).values_list(
        "pk", "title", "number"
    ):
        titles[pk], numbers[pk] = title, number
    code = report.pipe.code
    for card_id, phase_id, entered, left, spent in late[:late_limit]:
        phase = phases[phase_id].phase
        report.late.append(
            LateStay(
                card_id=card_id,
                reference=card_reference(code, numbers.get(card_id), card_id),
                title=titles.get(card_id, ""),
                phase=phase,
                entered_at=entered,
                left_at=left,
                spent=spent,
                over=spent - phase.sla_hours * 3600,
            )
        )


# ---------------------------------------------------------------- presentation helpers


def hours(seconds: float | None) -> str:
    """Seconds as hours with one decimal, for CSV."""
    return "" if seconds is None else f"{seconds / 3600:.1f}"


def write_summary_csv(report: SlaReport, out) -> None:
    """The per-phase and end-to-end figures as CSV rows."""
    writer = csv_safe_writer(out)
    writer.writerow(
        [
            _("Pipe"),
            _("Month"),
            _("Phase"),
            _("SLA (h)"),
            _("Stays ended"),
            _("Met SLA"),
            _("Share met (%)"),
            _("Median (h)"),
            _("P90 (h)"),
            _("Open past SLA"),
        ]
    )
    for f in report.phases:
        writer.writerow(
            [
                report.pipe.name,
                report.month_label,
                f.phase.name,
                f.sla_hours or "",
                f.stays,
                "" if f.met is None else f.met,
                "" if f.share is None else f"{f.share * 100:.1f}",
                hours(f.median),
                hours(f.p90),
                f.open_over,
            ]
        )
    e2e = report.end_to_end
    writer.writerow(
        [
            report.pipe.name,
            report.month_label,
            _("End to end (finished cards)"),
            (e2e.deadline_days or 0) * 24 or "",
            e2e.finished,
            "" if e2e.within_deadline is None else e2e.within_deadline,
            "" if e2e.deadline_share is None else f"{e2e.deadline_share * 100:.1f}",
            hours(e2e.median),
            hours(e2e.p90),
            "",
        ]
    )


def write_late_csv(rows: Iterable[LateStay], out, *, tz: dt.tzinfo, title_of=lambda stay: stay.title) -> None:
    """The late stays as CSV rows, times in the organization's time zone."""
    writer = csv_safe_writer(out)
    writer.writerow(
        [
            _("Card"),
            _("Title"),
            _("Phase"),
            _("SLA (h)"),
            _("Entered"),
            _("Left"),
            _("Time in phase (h)"),
            _("Over SLA by (h)"),
        ]
    )
    for stay in rows:
        writer.writerow(
            [
                stay.reference,
                title_of(stay),
                stay.phase.name,
                stay.phase.sla_hours,
                stay.entered_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                stay.left_at.astimezone(tz).strftime("%Y-%m-%d %H:%M") if stay.left_at else _("still open"),
                hours(stay.spent),
                hours(stay.over),
            ]
        )
