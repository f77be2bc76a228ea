"""Benchmark of the rail: deterministic automation steps per second, end to end, with one worker.

Creates its own PostgreSQL database (`trilho_bench_rail` on the server of DATABASE_URL,
dropped and created anew), migrates it, imports a small pipe whose first phase has one
automation step (set a field) and starts ONE Celery worker process (`-P solo`) on Redis.
Then it prints:

- **throughput**: N cards created in one transaction (N phase entries committed at once, then
  dispatched after commit); steps per second = N / (last step done − commit), i.e. card entry →
  worker → claim → action → write path → trace, end to end;
- **latency**: M cards created one by one at a steady rate well below capacity; the added
  latency from each card's commit (the moment its transaction committed) to the start of its
  step in the worker (StepRun.started_at), p50/p95/max.

Usage:
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/trilho .venv/bin/python bench/rail.py
    options: --cards 1000 --latency-cards 200 --rate <cards/s, default 30% of the measured throughput>
             --broker redis://127.0.0.1:6379/14

Benchmarks print figures; they never fail a build on a timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "trilho_bench_rail"

DEFINITION = """
name: Rail bench
slug: rail-bench
code: RB
title_field: item
start_form:
  - key: item
    label: Item
    type: short_text
    required: true
phases:
  - key: inbox
    name: Inbox
    sla_hours: 8
    requester_status: Received
    allowed_next: [done]
    fields:
      - key: status
        label: Status
        type: short_text
    steps:
      - key: stamp
        name: Stamp
        mechanism: automation
        actions:
          - type: set_field
            field: status
            value: {$text: "seen {card.reference}"}
  - key: done
    name: Done
    final: true
    requester_status: Done
"""


def bench_database_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{BENCH_DB}"))


def recreate_database(url: str) -> None:
    import psycopg

    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


def drop_database(url: str) -> None:
    import psycopg

    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


class Worker:
    """One `celery worker -P solo` process consuming the bench's queue."""

    def __init__(self, *, env: dict, queue: str):
        celery = str(Path(sys.executable).parent / "celery")
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            [
                celery,
                "-A",
                "orchestrator",
                "worker",
                "-P",
                "solo",
                "-c",
                "1",
                "-Q",
                queue,
                "-n",
                "bench@%h",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def wait_ready(self, check, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit("the worker did not start:\n" + "\n".join(self.lines[-40:]))

    def cpu_seconds(self) -> float:
        """User + system CPU time of the worker process so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def wait_done(StepRun, RunStatus, *, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if StepRun.objects.filter(status=RunStatus.DONE).count() >= expected:
            return
        time.sleep(0.05)
    raise SystemExit(
        f"timed out: {StepRun.objects.filter(status=RunStatus.DONE).count()} of {expected} steps done"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=1000, help="cards for the throughput run")
    parser.add_argument("--latency-cards", type=int, default=200, help="cards for the latency run")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="cards per second in the latency run (default: 30%% of the throughput)",
    )
    parser.add_argument(
        "--broker",
        default=os.environ.get("TRILHO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        help="Redis URL",
    )
    args = parser.parse_args()

    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        print("bench/rail.py needs PostgreSQL: set DATABASE_URL=postgres://... (skipped)")
        return 0
    try:
        import redis

        redis.Redis.from_url(args.broker, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means no Redis to measure on
        print(f"bench/rail.py needs Redis at {args.broker} ({exc.__class__.__name__}; skipped)")
        return 0

    url = bench_database_url(database_url)
    recreate_database(database_url)
    queue = f"rail-bench-{uuid.uuid4().hex[:8]}"
    data_dir = tempfile.mkdtemp(prefix="trilho-bench-rail-")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": args.broker,
        "DJANGO_SETTINGS_MODULE": "orchestrator.settings",
        "TRILHO_DATA_DIR": data_dir,
        "DEBUG": "false",  # as in production: no query log in the worker
        "SECRET_KEY": "bench-" + uuid.uuid4().hex * 2,
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction
    from django.utils import timezone

    from orchestrator.celery import app
    from orchestrator.models import RunStatus, StepRun
    from pipes.design import definition_load, pipe_import
    from pipes.models import Organization, PhaseEntry
    from pipes.services import Actor, card_create

    call_command("migrate", verbosity=0)
    org = Organization.objects.create(name="Bench", slug="bench")
    pipe = pipe_import(organization=org, definition=definition_load(DEFINITION))
    app.conf.task_default_queue = queue
    app.conf.task_default_routing_key = queue
    actor = Actor.system("bench")

    worker = Worker(env=env, queue=queue)
    try:
        # warm up (and wait until the worker consumes): 20 cards
        for i in range(20):
            card_create(actor=actor, pipe=pipe, values={"item": f"warm-up {i}"})
        worker.wait_ready(lambda: StepRun.objects.filter(status=RunStatus.DONE).count() >= 20)
        StepRun.objects.all().delete()

        # throughput: N entries committed at once, one worker drains them
        cpu_before = worker.cpu_seconds()
        started = time.perf_counter()
        commit_at: list = []
        with transaction.atomic():
            transaction.on_commit(lambda: commit_at.append(timezone.now()))  # runs before the dispatches
            for i in range(args.cards):
                card_create(actor=actor, pipe=pipe, values={"item": f"card {i}"})
        created_s = time.perf_counter() - started
        wait_done(StepRun, RunStatus, expected=args.cards, timeout=600)
        worker_cpu = worker.cpu_seconds() - cpu_before
        last_done = max(StepRun.objects.values_list("finished_at", flat=True))
        first_start = min(StepRun.objects.values_list("started_at", flat=True))
        elapsed = (last_done - commit_at[0]).total_seconds()
        worker_span = (last_done - first_start).total_seconds()
        failed = StepRun.objects.exclude(status=RunStatus.DONE).count()
        StepRun.objects.all().delete()

        # latency: one card per transaction at a steady rate, well below capacity (no queue builds up)
        rate = args.rate or max(1.0, round(0.3 * args.cards / elapsed, 1))
        commits: dict[int, object] = {}
        interval = 1.0 / rate
        next_at = time.perf_counter()
        for i in range(args.latency_cards):
            with transaction.atomic():
                box: list = []
                transaction.on_commit(lambda box=box: box.append(timezone.now()))  # runs before the dispatch
                card = card_create(actor=actor, pipe=pipe, values={"item": f"paced {i}"})
            commits[card.pk] = box[0]
            next_at += interval
            time.sleep(max(0.0, next_at - time.perf_counter()))
        wait_done(StepRun, RunStatus, expected=args.latency_cards, timeout=120)
        latencies = [
            (started_at - commits[card_id]).total_seconds() * 1000
            for card_id, started_at in StepRun.objects.values_list("card_id", "started_at")
        ]
        end_to_end = [
            (finished_at - commits[card_id]).total_seconds() * 1000
            for card_id, finished_at in StepRun.objects.values_list("card_id", "finished_at")
        ]
        undispatched = PhaseEntry.objects.filter(dispatched_at__isnull=True).count()
    finally:
        worker.stop()
        from django.db import connections

        connections.close_all()
        drop_database(database_url)

    print(f"Rail benchmark — PostgreSQL + Redis, one worker process (-P solo), {os.cpu_count()} CPUs")
    print(f"  throughput: {args.cards} automation steps (set a field through the write path, traced)")
    print(f"    cards created and committed in one transaction: {created_s:.2f} s")
    print(f"    commit → last step done: {elapsed:.2f} s  =>  {args.cards / elapsed:.0f} steps/s end to end")
    print(
        f"    first step start → last step done: {worker_span:.2f} s  =>  {args.cards / worker_span:.0f} steps/s in the worker"
    )
    print(
        f"    worker CPU: {worker_cpu * 1000 / args.cards:.1f} ms per step (the rest is waiting on PostgreSQL and Redis)"
    )
    print(f"    not done: {failed}")
    print(f"  latency: {args.latency_cards} cards at {rate:g}/s, one transaction each")
    print(
        f"    commit → step start: p50 {percentile(latencies, 0.5):.1f} ms, p95 {percentile(latencies, 0.95):.1f} ms,"
        f" max {max(latencies):.1f} ms"
    )
    print(
        f"    commit → step done:  p50 {percentile(end_to_end, 0.5):.1f} ms, p95 {percentile(end_to_end, 0.95):.1f} ms"
        f" (mean {statistics.fmean(end_to_end):.1f} ms)"
    )
    print(f"    entries left undispatched: {undispatched}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
