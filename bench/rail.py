"""Benchmark of the rail: deterministic automation steps per second, end to end, with a worker of as
many processes as the machine has CPUs, beside the no-op Celery floor measured in the same run.

Creates its own PostgreSQL database (`trilho_bench_rail` on the server of DATABASE_URL,
dropped and created anew), migrates it, imports a small pipe whose first phase has one
automation step (set a field) and starts the workers that run such a step as docker-compose.yml
runs them, on the broker (Redis or RabbitMQ): by default (`--lane fast`) the fast lane's
(TRILHO_FAST_QUEUE set to the bench's queue; `--concurrency` `-P solo` workers, one per CPU,
prefetch 4: worker-fast); with `--lane steps`, the default queue's worker (Celery's prefork pool
with `--concurrency` processes, prefetch 1: worker; `--concurrency 1` runs `-P solo`). Then it prints:

- **floor as ../shared/floors/README.md runs it** (the floor issue 17 names): N no-op messages sent to
  Redis (--shared-floor-broker), then one `-P solo` worker of bench/railfloor.py started and timed
  from its start to the last task run, start-up included; the target is judged against it;
- **warm floor**: on the same broker, a worker of a Celery app whose tasks do nothing
  (bench/railfloor.py, as ../shared/floors/capp.py: acks late, prefetch 16, no Django, no database)
  drains N no-op messages: tasks per second from the first publish to the last task run. Measured
  with one `-P solo` process (the floor's definition, ../shared/floors/README.md) and, for a prefork
  worker (`--lane steps`), with the same prefork pool too: stricter, like for like (the same broker
  and kind of worker process), and the ratio to each is printed;
- **throughput**: N cards created in one transaction (N phase entries committed at once, then
  dispatched after commit); steps per second = N / (last step done − commit), i.e. card entry →
  worker → claim → action → write path → trace, end to end; and its ratio to the floor
  (issue 17's target: at least 0.20);
- **latency**: M cards created one by one at a steady rate well below capacity; the added
  latency from each card's commit (the moment its transaction committed) to the start of its
  step in the worker (StepRun.started_at), p50/p95/max (issue 17's target: p95 under 50 ms).

The first line says how the worker's settings bind statements' values (TRILHO_DB_SERVER_SIDE_BINDING,
orchestrator/settings.py); the bench runs with the environment's settings.

Usage:
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/trilho .venv/bin/python bench/rail.py
    DATABASE_URL=... .venv/bin/python bench/rail.py --broker amqp://guest:guest@127.0.0.1:5672//
    DATABASE_URL=... .venv/bin/python bench/rail.py --quick      # checks the script works; figures mean little
    options: see --help (--lane, --cards, --latency-cards, --rate, --floor-tasks, --floor-prefetch, --concurrency,
    --worker-prefetch, --broker, --shared-floor-broker, --quick)

Benchmarks print figures; they never fail a build on a timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from railworkers import (  # noqa: E402 - bench/railworkers.py, beside this script
    CELERY_BROKER_ENV,
    ROOT,
    Worker,
    Workers,
    broker_check,
    floor_run,
    pool_name,
    process_cpu_seconds,
    queue_delete,
    shared_floor_run,
)

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


def lane_name(args) -> str:
    if args.lane == "fast":
        return (
            f"the fast lane's workers: {args.concurrency} × -P solo, prefetch {args.worker_prefetch or 4}"
            " (docker-compose.yml's worker-fast)"
        )
    return f"the default queue's worker: {pool_name(args.concurrency)} (docker-compose.yml's worker)"


class BackendsCpu:
    """The CPU the PostgreSQL sessions of the bench database spend while it runs, this process's own
    aside: the worker's session, and any it opens meanwhile. Sampled twice a second from /proc (when
    PostgreSQL runs on this machine and this user may read its processes): a session that ends between
    two samples loses at most half a second's worth."""

    def __init__(self, database_url: str):
        import psycopg
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.own = {cursor.fetchone()[0]}
        self.conn = psycopg.connect(database_url, autocommit=True)
        self.own.add(self.conn.info.backend_pid)
        self.first: dict[int, float] = self._sample()  # the sessions already there count from now
        self.last: dict[int, float] = dict(self.first)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _sample(self) -> dict[int, float]:
        pids = [
            row[0]
            for row in self.conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            ).fetchall()
        ]
        return {
            pid: cpu for pid in pids if pid not in self.own and (cpu := process_cpu_seconds(pid)) is not None
        }

    def _run(self) -> None:
        while not self.stopped.wait(0.5):
            for pid, cpu in self._sample().items():
                self.first.setdefault(pid, 0.0)  # a new session: all its CPU is the run's
                self.last[pid] = cpu

    def stop(self) -> float | None:
        """Seconds of CPU the sessions spent, or None when /proc told nothing."""
        self.stopped.set()
        self.thread.join()
        for pid, cpu in self._sample().items():
            self.first.setdefault(pid, 0.0)
            self.last[pid] = cpu
        self.conn.close()
        if not self.last:
            return None
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def sessions_opened() -> int:
    """Sessions PostgreSQL opened on the bench database so far (pg_stat_database, PostgreSQL 14+)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else -1


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat (idle and iowait are idle)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])  # guest time is counted in user time already
    return total - idle, total


def wait_done(StepRun, RunStatus, *, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if StepRun.objects.filter(status=RunStatus.DONE).count() >= expected:
            return
        time.sleep(0.05)
    raise SystemExit(
        f"timed out: {StepRun.objects.filter(status=RunStatus.DONE).count()} of {expected} steps done"
    )


def settings_binding() -> str:
    """How the worker's settings bind statements' values (TRILHO_DB_SERVER_SIDE_BINDING), as it runs."""
    from django.conf import settings

    options = settings.DATABASES["default"].get("OPTIONS", {})
    if not options.get("server_side_binding"):
        return "values bound on the client (TRILHO_DB_SERVER_SIDE_BINDING off)"
    threshold = options.get("prepare_threshold")
    prepared = "nothing prepared" if threshold is None else f"prepared after {threshold} runs"
    return f"values bound on the server, {prepared} (TRILHO_DB_SERVER_SIDE_BINDING on)"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--cards", type=int, default=1000, help="cards (automation steps) of the throughput run"
    )
    parser.add_argument(
        "--latency-cards", type=int, default=200, help="cards of the latency run, one at a time"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="cards per second in the latency run (0: 30%% of the measured throughput)",
    )
    parser.add_argument(
        "--floor-tasks",
        type=int,
        default=10000,
        help="no-op messages the floor's worker drains (0: no floor)",
    )
    parser.add_argument(
        "--floor-prefetch",
        type=int,
        default=16,
        help="the floor worker's prefetch multiplier (../shared/floors/capp.py uses 16)",
    )
    parser.add_argument(
        "--lane",
        choices=("fast", "steps"),
        default="fast",
        help="the worker that runs the steps, as docker-compose.yml runs it: `fast`, the fast lane's"
        " workers (TRILHO_FAST_QUEUE; --concurrency solo processes, prefetch 4: worker-fast), where an"
        " automation that calls no other system goes; `steps`, the default queue's worker (prefork with"
        " --concurrency processes, prefetch 1: worker)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=os.cpu_count() or 1,
        help="the Trilho worker's processes, one per CPU by default: with --lane fast, that many `-P solo`"
        " workers; with --lane steps, 1 runs `-P solo`, more Celery's prefork pool with that many. The"
        " floor is measured with one `-P solo` process (its definition) and, for a prefork pool, with"
        " the same pool too; the target is judged against the floor of the same kind of process",
    )
    parser.add_argument(
        "--worker-prefetch",
        type=int,
        default=0,
        help="the Trilho worker's prefetch multiplier (0: the lane's, as docker-compose.yml: 4 on the fast"
        " lane, the settings' CELERY_WORKER_PREFETCH_MULTIPLIER, 1, on the default queue)",
    )
    parser.add_argument(
        "--broker",
        default=os.environ.get("TRILHO_BENCH_BROKER_URL")
        or os.environ.get("TRILHO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        help="broker URL: Redis (redis://...) or RabbitMQ (amqp://guest:guest@127.0.0.1:5672//);"
        " env TRILHO_BENCH_BROKER_URL",
    )
    parser.add_argument(
        "--shared-floor-broker",
        default=os.environ.get("TRILHO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        help="the Redis of the floor as ../shared/floors/README.md runs it (issue 17's floor), measured"
        " beside the same-broker one whatever --broker is ('' skips it)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure the floors and the throughput this many times, one after the other, and print"
        " each round's ratios and their median (the machine's speed drifts between minutes)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (at most 200 cards, 50 latency cards, 2,000 floor tasks): checks the script works",
    )
    args = parser.parse_args()
    if args.quick:
        args.cards, args.latency_cards = min(args.cards, 200), min(args.latency_cards, 50)
        args.floor_tasks = min(args.floor_tasks, 2000)

    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        print("bench/rail.py needs PostgreSQL: set DATABASE_URL=postgres://... (skipped)")
        return 0
    problem = broker_check(args.broker)
    if problem:
        print(f"bench/rail.py needs a broker at {args.broker} ({problem}; skipped)")
        return 0

    for name in CELERY_BROKER_ENV:  # the broker is --broker's; Trilho's worker gets it below
        os.environ.pop(name, None)
    floors: dict[int, tuple[float, float, float]] = {}  # processes -> (tasks/s, worker CPU ms per task, main)
    if args.floor_tasks:  # first, before Django is set up in this process
        for concurrency in sorted({1, args.concurrency if args.lane == "steps" else 1}):
            floors[concurrency] = floor_run(
                broker=args.broker,
                tasks=args.floor_tasks,
                prefetch=args.floor_prefetch,
                concurrency=concurrency,
            )

    shared_floor = None  # ../shared/floors' floor: Redis, the worker started after the messages were sent
    if args.floor_tasks and args.shared_floor_broker and not broker_check(args.shared_floor_broker):
        shared_floor = shared_floor_run(broker=args.shared_floor_broker, tasks=args.floor_tasks)

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
        # the fast lane: the entries of the bench's automation phase go to the bench's queue through it
        "TRILHO_FAST_QUEUE": queue if args.lane == "fast" else "",
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

    if args.lane == "fast":
        prefetch = args.worker_prefetch or 4
        worker = Workers(
            [
                Worker(env=env, queue=queue, prefetch=prefetch, concurrency=1, name=f"-{i}")
                for i in range(args.concurrency)
            ]
        )
    else:
        worker = Worker(env=env, queue=queue, prefetch=args.worker_prefetch, concurrency=args.concurrency)
    try:
        # warm up (and wait until the worker consumes): 20 cards
        for i in range(20):
            card_create(actor=actor, pipe=pipe, values={"item": f"warm-up {i}"})
        worker.wait_ready(lambda: StepRun.objects.filter(status=RunStatus.DONE).count() >= 20)
        StepRun.objects.all().delete()

        def cards_committed(prefix: str) -> tuple[list, list]:
            """N cards created in one transaction (N entries committed at once, dispatched after commit):
            the commit's time, and (the machine's CPU ticks, this script's CPU seconds) at it."""
            commit_at: list = []
            at_commit: list = []
            with transaction.atomic():
                transaction.on_commit(  # runs before the dispatches
                    lambda: (
                        commit_at.append(timezone.now()),
                        at_commit.append((machine_ticks(), time.process_time())),
                    )
                )
                for i in range(args.cards):
                    card_create(actor=actor, pipe=pipe, values={"item": f"{prefix} {i}"})
            return commit_at, at_commit

        # throughput: N entries committed at once, one worker drains them
        split_before, sessions_before = worker.cpu_split(), sessions_opened()
        backends = BackendsCpu(url)
        started = time.perf_counter()
        commit_at, at_commit = cards_committed("card")
        created_s = time.perf_counter() - started
        wait_done(StepRun, RunStatus, expected=args.cards, timeout=600)
        (busy_before, total_before), script_before = at_commit[0]
        busy_after, total_after = machine_ticks()
        machine_busy = (busy_after - busy_before) / max(total_after - total_before, 1)
        script_cpu = time.process_time() - script_before
        split = [after - before for after, before in zip(worker.cpu_split(), split_before, strict=True)]
        worker_cpu = sum(split)
        postgres_cpu = backends.stop()
        sessions = sessions_opened() - sessions_before
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
        StepRun.objects.all().delete()

        # more rounds: the floors, then the throughput, again and again, each ratio read from figures
        # measured a minute apart (the Trilho workers idle meanwhile, started once)
        rounds: list[tuple[float, float | None, float | None]] = []  # (steps/s, named floor, warm floor)
        for r in range(args.rounds - 1):
            named = (
                shared_floor_run(broker=args.shared_floor_broker, tasks=args.floor_tasks)
                if shared_floor is not None
                else None
            )
            warm = (
                floor_run(broker=args.broker, tasks=args.floor_tasks, prefetch=args.floor_prefetch)[0]
                if 1 in floors
                else None
            )
            round_commit, _at = cards_committed(f"round {r + 2}")
            wait_done(StepRun, RunStatus, expected=args.cards, timeout=600)
            round_done = max(StepRun.objects.values_list("finished_at", flat=True))
            rounds.append((args.cards / (round_done - round_commit[0]).total_seconds(), named, warm))
            StepRun.objects.all().delete()
    finally:
        worker.stop()
        queue_delete(args.broker, queue)
        from django.db import connections

        connections.close_all()
        drop_database(database_url)

    broker = "RabbitMQ" if args.broker.startswith(("amqp", "pyamqp")) else "Redis"
    steps_rate = args.cards / elapsed
    binding = settings_binding()
    print(
        f"Rail benchmark — PostgreSQL + {broker}, {lane_name(args)},"
        f" {os.cpu_count()} CPUs; PostgreSQL {binding}"
    )
    for concurrency, (floor_rate, floor_cpu, floor_main) in floors.items():
        print(
            f"  floor, {pool_name(concurrency)}: {args.floor_tasks} no-op Celery tasks"
            f" (bench/railfloor.py, prefetch {args.floor_prefetch})"
        )
        print(
            f"    {floor_rate:.0f} tasks/s, first publish → last task run; worker CPU {floor_cpu:.2f} ms per task"
            + (f" (the main process {floor_main:.2f} ms)" if concurrency > 1 else "")
        )
    if shared_floor is not None:
        print(
            f"  floor as ../shared/floors/README.md runs it (issue 17's): {args.floor_tasks} no-op tasks sent to"
            " Redis, then one -P solo worker started (prefetch 16)"
        )
        print(f"    {shared_floor:.0f} tasks/s, worker start → last task run (its start-up included)")
    print(f"  throughput: {args.cards} automation steps (set a field through the write path, traced)")
    if args.worker_prefetch:
        print(f"    the workers' prefetch multiplier: {args.worker_prefetch} (--worker-prefetch)")
    print(f"    cards created and committed in one transaction: {created_s:.2f} s")
    print(f"    commit → last step done: {elapsed:.2f} s  =>  {steps_rate:.0f} steps/s end to end")
    print(
        f"    first step start → last step done: {worker_span:.2f} s  =>  {args.cards / worker_span:.0f} steps/s in the worker"
    )
    print(
        f"    worker CPU: {worker_cpu * 1000 / args.cards:.1f} ms per step (the rest is waiting on PostgreSQL and {broker})"
    )
    if args.concurrency > 1 and args.lane == "steps":
        print(
            f"      of which the pool's processes {split[1] * 1000 / args.cards:.1f} ms"
            f" and the main process (receiving, handing over, acknowledging) {split[0] * 1000 / args.cards:.1f} ms"
        )
    if postgres_cpu is not None:
        print(
            f"    PostgreSQL CPU: {postgres_cpu * 1000 / args.cards:.1f} ms per step"
            " (the bench database's sessions but this script's: the worker's)"
        )
    print(
        f"    this script meanwhile (sending the {args.cards} messages after commit, polling for the end):"
        f" {script_cpu * 1000 / args.cards:.1f} ms of CPU per step"
    )
    print(
        f"    the machine's CPUs busy from commit to the last step: {machine_busy:.0%}"
        " (every process: worker, PostgreSQL, broker, this script)"
    )
    print(f"    PostgreSQL sessions opened meanwhile: {sessions} (the worker keeps its connection)")
    print(f"    not done: {failed}")
    for concurrency, (floor_rate, _cpu, _main) in floors.items():
        ratio = steps_rate / floor_rate
        judged = concurrency == (args.concurrency if args.lane == "steps" else 1)
        print(
            f"    steps/s ÷ floor tasks/s ({pool_name(concurrency)}): {ratio:.3f}"
            + (
                f"  <= 0.20 of the warm drain on the same broker, the same kind of worker process (stricter"
                f" than issue 17's floor): {'meets it' if ratio >= 0.20 else 'below it'}"
                if judged
                else "  (the floor's definition, one process; for comparison)"
            )
        )
    if shared_floor is not None:
        ratio = steps_rate / shared_floor
        print(
            f"    steps/s ÷ ../shared/floors' floor (Redis, start-up included): {ratio:.3f}"
            f"  <= issue 17's target against the floor it names: at least 0.20"
            f" ({'meets it' if ratio >= 0.20 else 'below it'})"
        )
    if rounds:
        rounds.insert(0, (steps_rate, shared_floor, floors[1][0] if 1 in floors else None))
        print(f"  rounds (--rounds {args.rounds}): the floors, then {args.cards} steps, one after the other")
        for n, (steps, named, warm) in enumerate(rounds, start=1):
            print(
                f"    round {n}: {steps:.0f} steps/s"
                + (f"; named floor {named:.0f} tasks/s ({steps / named:.3f})" if named else "")
                + (f"; warm floor {warm:.0f} tasks/s ({steps / warm:.3f})" if warm else "")
            )
        for name, index in (("the named floor (issue 17's)", 1), ("the warm floor, same broker", 2)):
            ratios = [r[0] / r[index] for r in rounds if r[index]]
            if ratios:
                met = sum(ratio >= 0.20 for ratio in ratios)
                print(
                    f"    ratio to {name}: median {statistics.median(ratios):.3f},"
                    f" {met} of {len(ratios)} rounds at least 0.20"
                )
    print(f"  latency: {args.latency_cards} cards at {rate:g}/s, one transaction each")
    p95 = percentile(latencies, 0.95)
    print(
        f"    commit → step start: p50 {percentile(latencies, 0.5):.1f} ms, p95 {p95:.1f} ms,"
        f" max {max(latencies):.1f} ms ({'meets' if p95 < 50 else 'above'} issue 17's p95 target of 50 ms)"
    )
    print(
        f"    commit → step done:  p50 {percentile(end_to_end, 0.5):.1f} ms, p95 {percentile(end_to_end, 0.95):.1f} ms"
        f" (mean {statistics.fmean(end_to_end):.1f} ms)"
    )
    print(f"    entries left undispatched: {undispatched}")
    if args.quick:
        print("  (--quick: a smoke run; its figures mean little)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
