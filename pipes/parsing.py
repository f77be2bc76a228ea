"""Reading ids, counts, days and moments out of what people type into URLs and forms.

Each helper returns None for anything it can't use, so a view can ignore a bad filter or answer
with a plain message, never a 500. Two edges make "parses" not enough: Python's dates stop at
the years 1 and 9999 and the database's integers at 2**63 - 1. A day near an edge overflows
later -- the end of that day, the next month, the shift to UTC -- and an id past 2**63 - 1 makes
the database refuse the query. So what reaches the rest of the code stays a year inside the
dates' edges, and ids and counts inside the database's integers.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime

FIRST_DAY = dt.date(2, 1, 1)
LAST_DAY = dt.date(9998, 12, 31)
MAX_INT = 2**63 - 1  # PostgreSQL's bigint, SQLite's INTEGER: every id column


def parse_int(raw: Any, *, low: int = 0, high: int = MAX_INT) -> int | None:
    """A whole number written in ASCII digits, between `low` and `high`, or None.

    str.isdigit() alone lets "²" through (int() then fails) and int() alone reads "1_000" and
    " -3"; neither is what a person means by a number in a form.
    """
    text = str(raw).strip() if raw is not None else ""
    if not text or not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_INT)):
        return None
    value = int(text)
    return value if low <= value <= high else None


def parse_id(raw: Any) -> int | None:
    """The primary key a form or query names, or None when it can't be one."""
    return parse_int(raw, low=1)


def day_in_range(value: dt.date) -> bool:
    """Whether `value` is a day the rest of the code can step around (see the module docstring)."""
    day = value.date() if isinstance(value, dt.datetime) else value
    return FIRST_DAY <= day <= LAST_DAY


def parse_day(raw: Any) -> dt.date | None:
    """A real day written as YYYY-MM-DD, inside FIRST_DAY..LAST_DAY, or None."""
    try:
        value = parse_date(str(raw or "").strip())
    except ValueError:  # well formed, but no such day (2026-02-30)
        return None
    return value if value is not None and day_in_range(value) else None


def parse_moment(raw: Any, *, tz: dt.tzinfo) -> dt.datetime | None:
    """An aware datetime from ISO text (a time without an offset is in `tz`), in range, or None."""
    try:
        value = parse_datetime(str(raw or "").strip())
    except ValueError:  # no such day or time, or an offset of a day or more
        return None
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    try:
        in_utc = value.astimezone(dt.UTC)
    except OverflowError:
        return None
    return value if day_in_range(value) and day_in_range(in_utc) else None
