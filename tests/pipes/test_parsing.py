"""Ids, counts, days and moments read from what people type: None for anything unusable, and
nothing near the edges of Python's dates or the database's integers."""

import datetime as dt

import pytest

from pipes.parsing import FIRST_DAY, LAST_DAY, MAX_INT, parse_day, parse_id, parse_int, parse_moment

SAO_PAULO = dt.timezone(dt.timedelta(hours=-3))


@pytest.mark.parametrize(
    "raw", ["", " ", "abc", "-1", "²", "١٢", "1_000", "1e3", "1.0", "9" * 20, str(MAX_INT + 1)]
)
def test_it_reads_no_count_from_text_that_is_not_one(raw):
    assert parse_int(raw) is None


@pytest.mark.parametrize(("raw", "value"), [("0", 0), (" 42 ", 42), (str(MAX_INT), MAX_INT)])
def test_it_reads_counts_in_ascii_digits(raw, value):
    assert parse_int(raw) == value


def test_it_reads_no_id_zero_and_keeps_a_count_inside_its_bounds():
    assert parse_id("0") is None and parse_id("7") == 7
    assert parse_int("11", high=10) is None and parse_int("3", low=5) is None


@pytest.mark.parametrize("raw", ["2026-02-30", "0001-01-01", "9999-12-31", "10000-01-01", "2026-3-1x", None])
def test_it_reads_no_day_that_does_not_exist_or_sits_at_an_edge(raw):
    assert parse_day(raw) is None


def test_it_reads_days_inside_the_range():
    assert parse_day(" 2026-03-31 ") == dt.date(2026, 3, 31)
    assert parse_day(FIRST_DAY.isoformat()) == FIRST_DAY and parse_day(LAST_DAY.isoformat()) == LAST_DAY


@pytest.mark.parametrize(
    "raw",
    ["2026-02-30T10:00", "9999-12-31T23:59", "0001-01-01T00:00+14:00", "2026-03-01T10:00+99:00", "soon"],
)
def test_it_reads_no_moment_that_does_not_exist_or_leaves_the_range(raw):
    assert parse_moment(raw, tz=SAO_PAULO) is None


def test_it_reads_a_moment_without_an_offset_in_the_given_zone():
    assert parse_moment("2026-03-31T09:00", tz=SAO_PAULO) == dt.datetime(2026, 3, 31, 12, 0, tzinfo=dt.UTC)
    assert parse_moment("2026-03-31T09:00Z", tz=SAO_PAULO) == dt.datetime(2026, 3, 31, 9, 0, tzinfo=dt.UTC)
