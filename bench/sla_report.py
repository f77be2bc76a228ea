"""Benchmark of the monthly SLA report on a pipe of a million cards, on PostgreSQL.

Seeds, in a database of its own (the database of DATABASE_URL named `trilho_bench_sla`, created
when missing), two pipes of --cards cards each (default 1,000,000), each card with its phase
entries (about 3.8 per card), written with COPY through psycopg:

- "Bench SLA": the cards spread over --months months of 2025 (the realistic pipe);
- "Bench SLA peak": the cards all created in January 2025, so about 900,000 of them finish in
  that one month (the pathological month: every figure aggregates nearly the whole pipe).

A seeded database is reused on the next run unless --reseed is given (or its shape changed).
Then it times pipes.governance.sla_report.sla_report for each scenario: the busiest month of the realistic pipe,
and the peak pipe's month; the first (cold) run and the median of --runs warm runs, with the
figures it computed.

Usage:
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/trilho .venv/bin/python bench/sla_report.py
    options: --cards 1000000 --months 12 --runs 5 --reseed --only busiest|peak

Target (issue 8): under 5 s for a million-card pipe on a 2-core machine.
Benchmarks print figures; they never fail a build on a timing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "trilho_bench_sla"
PIPE_SLUG = "bench-sla"
PEAK_SLUG = "bench-sla-peak"
CHUNK = 50_000

# phase key, name, SLA hours, mean hours spent (log-normal), final
PHASES = [
    ("intake", "Intake", 8, 5.0, False),
    ("review", "Review", 48, 30.0, False),
    ("approval", "Approval", 24, 14.0, False),
    ("done", "Done", None, None, True),
    ("rejected", "Rejected", None, None, True),
]


def bench_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{BENCH_DB}"))


def ensure_database(url: str) -> None:
    import psycopg

    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone():
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


def recreate_database(url: str) -> None:
    import psycopg

    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


def setup_django(url: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


# ---------------------------------------------------------------- seeding with COPY


def _text(value) -> str:
    """A value in COPY's text format (our data has no tabs, newlines or backslashes)."""
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _columns(model, given: dict) -> tuple[list[str], list]:
    """Every concrete column of `model`: the given values, else the field's default."""
    names, defaults = [], []
    for f in model._meta.concrete_fields:
        names.append(f.column)
        if f.column in given or f.name in given:
            defaults.append(given.get(f.column, given.get(f.name)))
        else:
            defaults.append(f.get_default())  # "" for text columns without a default, else None
    return names, defaults


def _seeded_as(cards: int, months: int) -> str:
    return f"bench seed: {cards} cards over {months} months"


def _hours(rng: random.Random, mean: float) -> float:
    return rng.lognormvariate(0, 0.8) * mean / 1.377  # mean of lognormal(0, 0.8) is e^0.32 ≈ 1.377


def seed(*, slug: str, name: str, code: str, cards: int, months: int, seed_value: int = 8) -> None:
    import psycopg
    from django.db import connection

    from pipes.models import Card, Organization, Phase, PhaseEntry, Pipe

    org, _ = Organization.objects.get_or_create(
        slug="bench", defaults={"name": "Bench Ltda", "time_zone": "UTC"}
    )
    pipe = Pipe.objects.create(
        organization=org,
        name=name,
        slug=slug,
        code=code,
        expiration_days=10,
        description=_seeded_as(cards, months),
    )
    phases = {}
    for position, (key, name, sla, _mean, final) in enumerate(PHASES, start=1):
        phases[key] = Phase.objects.create(
            pipe=pipe, name=name, key=key, position=position, sla_hours=sla, is_final=final
        )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {Card._meta.db_table}")
        next_card = cursor.fetchone()[0] + 1
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {PhaseEntry._meta.db_table}")
        next_entry = cursor.fetchone()[0] + 1

    rng = random.Random(seed_value)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    span = (
        dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=30.44 * months) - start
    ).total_seconds()
    end_of_data = start + dt.timedelta(seconds=span)
    card_cols, card_defaults = _columns(
        Card,
        {"pipe_id": pipe.pk, "title": "", "values": {}, "requester_email": "", "tracking_token": ""},
    )
    entry_cols, entry_defaults = _columns(PhaseEntry, {})
    cix = {name: i for i, name in enumerate(card_cols)}
    eix = {name: i for i, name in enumerate(entry_cols)}
    dsn = connection.settings_dict
    conninfo = f"dbname={dsn['NAME']} user={dsn['USER']} host={dsn['HOST']} port={dsn['PORT'] or 5432}"
    if dsn.get("PASSWORD"):
        conninfo += f" password={dsn['PASSWORD']}"
    made = entries_made = 0
    started = time.perf_counter()
    with psycopg.connect(conninfo) as conn:
        while made < cards:
            n = min(CHUNK, cards - made)
            card_lines, entry_lines = [], []
            for i in range(n):
                card_id = next_card + made + i
                created = start + dt.timedelta(seconds=rng.random() * span)
                moment, path_taken = created, []
                outcome = "done"
                for key, _name, _sla, mean, final in PHASES:
                    if final:
                        break
                    spent = dt.timedelta(hours=_hours(rng, mean))
                    left = moment + spent
                    if left > end_of_data or rng.random() < 0.01:  # still open in this phase
                        path_taken.append((key, moment, None))
                        outcome = None
                        break
                    path_taken.append((key, moment, left))
                    moment = left
                    if key == "review" and rng.random() < 0.12:
                        outcome = "rejected"
                        break
                if outcome:
                    path_taken.append((outcome, moment, None))
                current, entered_current, _ = path_taken[-1]
                row = list(card_defaults)
                row[cix["id"]] = card_id
                row[cix["phase_id"]] = phases[current].pk
                row[cix["title"]] = f"Bench card {card_id}"
                row[cix["created_at"]] = created
                row[cix["updated_at"]] = entered_current
                row[cix["phase_entered_at"]] = entered_current
                row[cix["finished_at"]] = entered_current if outcome else None
                card_lines.append("\t".join(_text(v) for v in row))
                for key, entered, left in path_taken:
                    entry = list(entry_defaults)
                    entry[eix["id"]] = next_entry + entries_made
                    entry[eix["card_id"]] = card_id
                    entry[eix["phase_id"]] = phases[key].pk
                    entry[eix["entered_at"]] = entered
                    entry[eix["left_at"]] = left
                    entry[eix["dispatched_at"]] = entered
                    entry[eix["processed_at"]] = entered
                    entry_lines.append("\t".join(_text(v) for v in entry))
                    entries_made += 1
            with conn.cursor() as cur:
                with cur.copy(f"COPY {Card._meta.db_table} ({', '.join(card_cols)}) FROM STDIN") as copy:
                    copy.write("\n".join(card_lines) + "\n")
                with cur.copy(
                    f"COPY {PhaseEntry._meta.db_table} ({', '.join(entry_cols)}) FROM STDIN"
                ) as copy:
                    copy.write("\n".join(entry_lines) + "\n")
            conn.commit()
            made += n
            print(
                f"  seeded {made:,} cards, {entries_made:,} phase entries ({time.perf_counter() - started:.0f} s)"
            )
        with conn.cursor() as cur:
            for model in (Card, PhaseEntry):
                table = model._meta.db_table
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
                )
            conn.commit()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {Card._meta.db_table}")
        conn.execute(f"VACUUM ANALYZE {PhaseEntry._meta.db_table}")
    print(
        f"seeded {cards:,} cards and {entries_made:,} phase entries in {time.perf_counter() - started:.1f} s"
    )


# ---------------------------------------------------------------- the measurement


def busiest_month(pipe) -> tuple[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_char(date_trunc('month', finished_at AT TIME ZONE 'UTC'), 'YYYY-MM'), count(*) "
            "FROM pipes_card WHERE pipe_id = %s AND finished_at IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 1",
            [pipe.pk],
        )
        month, finished = cursor.fetchone()
        return month, finished


def _scenarios(args) -> list[tuple[str, str, str, str, int]]:
    """(key, pipe slug, pipe name, code, months) of each seeded pipe."""
    return [
        ("busiest", PIPE_SLUG, "Bench SLA", "BS", args.months),
        ("peak", PEAK_SLUG, "Bench SLA peak", "BP", 1),
    ]


def measure(key: str, pipe, *, runs: int) -> None:
    from django.db import connection

    from pipes.durations import duration_text
    from pipes.governance.sla_report import sla_report
    from pipes.models import Card, PhaseEntry

    cards = Card.objects.filter(pipe=pipe).count()
    entries = PhaseEntry.objects.filter(card__pipe=pipe).count()
    month, finished = busiest_month(pipe)
    now = dt.datetime(2026, 1, 15, tzinfo=dt.UTC)
    print(
        f"\n[{key}] pipe {pipe.name!r}: {cards:,} cards, {entries:,} phase entries; "
        f"report for {month} ({finished:,} cards finished in it)"
    )

    connection.close()
    started = time.perf_counter()
    report = sla_report(pipe=pipe, month=month, now=now)
    cold = time.perf_counter() - started
    warm = []
    for _ in range(runs):
        started = time.perf_counter()
        sla_report(pipe=pipe, month=month, now=now)
        warm.append(time.perf_counter() - started)

    print(f"engine: {report.engine}")
    for f in report.phases:
        share = f"{f.share * 100:.1f}%" if f.share is not None else "-"
        print(
            f"  {f.phase.name:<10} stays {f.stays:>7,}  within SLA {share:>6}  "
            f"median {duration_text(f.median):>10}  p90 {duration_text(f.p90):>10}  open past SLA {f.open_over:,}"
        )
    e2e = report.end_to_end
    print(
        f"  end to end: {e2e.finished:,} finished, within deadline {e2e.within_deadline:,}, "
        f"every phase met {e2e.every_phase_met:,}, median {duration_text(e2e.median)}, p90 {duration_text(e2e.p90)}"
    )
    print(f"  late stays: {report.late_total:,} (page lists {len(report.late)})")
    print(
        f"[{key}] SLA report, {cards:,} cards, {month}: first run {cold:.2f} s, "
        f"warm median {statistics.median(warm):.2f} s (min {min(warm):.2f}, max {max(warm):.2f}, "
        f"{runs} runs); target < 5 s; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--only", choices=["busiest", "peak"], help="measure one scenario only")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("Set DATABASE_URL to a PostgreSQL server (postgres://postgres@127.0.0.1:5432/trilho).")
        return 0
    url = bench_url(url)
    ensure_database(url)
    setup_django(url)

    from django.core.management import call_command
    from django.db import connection

    from pipes.models import Pipe

    scenarios = _scenarios(args)
    seeded = {p.slug: p.description for p in Pipe.objects.filter(slug__in=[s[1] for s in scenarios])}
    if args.reseed or any(
        seeded.get(slug) != _seeded_as(args.cards, months) for _k, slug, *_r, months in scenarios
    ):
        connection.close()
        recreate_database(url)
        call_command("migrate", verbosity=0)
        for _key, slug, name, code, months in scenarios:
            print(f"seeding {name!r}: {args.cards:,} cards over {months} month(s) with COPY…")
            seed(slug=slug, name=name, code=code, cards=args.cards, months=months)
    for key, slug, *_rest in scenarios:
        if args.only in (None, key):
            pipe = Pipe.objects.select_related("organization").get(slug=slug)
            measure(key, pipe, runs=args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
