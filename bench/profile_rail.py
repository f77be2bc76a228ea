"""Where an automation step spends its time on the worker: statements and a cProfile, in-process.

In a database of its own (`trilho_bench_rail_profile`, dropped and created anew) with bench/rail.py's
pipe (one automation step that sets a field), creates cards (their entries are sent to an in-memory
broker nobody consumes), then runs each card's entry through the worker's task function
(`orchestrator.tasks.run_phase_entry`, called in this process as a worker calls it, with Celery's
per-task database handling as the worker has it: see --close-each):

- lists the SQL statements of one step (after a warm-up) with --sql;
- the CPU of N steps without the profiler, then cProfile (timer: this process's CPU time, so waits
  on a busy machine do not count) of N more, with the top functions by own and cumulative time.

Usage:
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/trilho .venv/bin/python bench/profile_rail.py \
        [--steps 300] [--top 25] [--sql] [--close-each]

A figure here is CPU in one process, without the broker; bench/rail.py measures a real worker.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rail  # noqa: E402 - bench/rail.py: its pipe and database helpers

rail.BENCH_DB = "trilho_bench_rail_profile"


def backend_cpu(connection) -> float | None:
    """CPU so far of this process's PostgreSQL session (/proc: PostgreSQL on this machine), or None."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="steps timed, and as many profiled")
    parser.add_argument("--top", type=int, default=25, help="lines of each profile listing")
    parser.add_argument("--sql", action="store_true", help="print each statement of one step")
    parser.add_argument(
        "--close-each",
        action="store_true",
        help="close the database connection after every step (what Celery did before the worker reused it)",
    )
    parser.add_argument("--dump", help="write the profile to this file (for pstats or snakeviz)")
    parser.add_argument(
        "--client-side-binding",
        action="store_true",
        help="bind values on the client and prepare nothing, as Django does by default"
        " (TRILHO_DB_SERVER_SIDE_BINDING=false; the settings' default binds on the server and prepares)",
    )
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("set DATABASE_URL to a PostgreSQL server")
    rail.recreate_database(database_url)
    os.environ.update(
        {
            "DATABASE_URL": rail.bench_database_url(database_url),
            "CELERY_BROKER_URL": "memory://",
            "DJANGO_SETTINGS_MODULE": "orchestrator.settings",
            "TRILHO_DATA_DIR": tempfile.mkdtemp(prefix="trilho-profile-rail-"),
            "DEBUG": "false",
            "SECRET_KEY": "bench-" + uuid.uuid4().hex * 2,
            "LOG_LEVEL": "WARNING",
        }
    )
    sys.path.insert(0, str(rail.ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from orchestrator.models import RunStatus, StepRun
    from orchestrator.rail.tasks import run_phase_entry
    from pipes.design import definition_load, pipe_import
    from pipes.models import Organization, PhaseEntry
    from pipes.services import Actor, card_create

    try:
        call_command("migrate", verbosity=0)
        org = Organization.objects.create(name="Bench", slug="bench")
        pipe = pipe_import(organization=org, definition=definition_load(rail.DEFINITION))
        actor = Actor.system("bench")
        total = 2 * args.steps + 21
        with transaction.atomic():
            for i in range(total):
                card_create(actor=actor, pipe=pipe, values={"item": f"card {i}"})
        entries = list(
            PhaseEntry.objects.filter(processed_at__isnull=True).order_by("pk").values_list("pk", flat=True)
        )

        def step(entry_id: int) -> None:
            run_phase_entry(entry_id)
            if args.close_each:
                connection.close()

        if args.client_side_binding:
            connection.close()
            for option in ("server_side_binding", "prepare_threshold"):
                connection.settings_dict["OPTIONS"].pop(option, None)
        print(f"PostgreSQL: {rail.settings_binding()}")
        for entry_id in entries[:20]:  # warm up: caches, connection
            step(entry_id)
        with CaptureQueriesContext(connection) as queries:
            step(entries[20])
        print(f"one automation step: {len(queries)} statements")
        if args.sql:
            for q in queries:
                print("  " + q["sql"][:240])

        plain = entries[21 : 21 + args.steps]
        backend = backend_cpu(connection)
        started = time.process_time()
        for entry_id in plain:
            step(entry_id)
        cpu = time.process_time() - started
        print(
            f"\n{len(plain)} steps: {1000 * cpu / len(plain):.2f} ms of CPU each in this process, unprofiled"
        )
        if backend is not None and not args.close_each and (after := backend_cpu(connection)) is not None:
            print(f"  and {1000 * (after - backend) / len(plain):.2f} ms each in its PostgreSQL session")

        profiled = entries[21 + args.steps :]
        profiler = cProfile.Profile(time.process_time)  # CPU, not waits: steady on a busy machine
        started = time.process_time()
        profiler.enable()
        for entry_id in profiled:
            step(entry_id)
        profiler.disable()
        cpu = time.process_time() - started
        if args.dump:
            profiler.dump_stats(args.dump)
        done = StepRun.objects.filter(status=RunStatus.DONE).count()
        print(
            f"\n=== {len(profiled)} steps in {cpu:.2f} s of CPU under the profiler"
            f" ({1000 * cpu / len(profiled):.1f} ms each); {done} of {len(entries)} runs done"
        )
        for key in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(key).print_stats(args.top)
            lines = out.getvalue().splitlines()
            start = next(i for i, line in enumerate(lines) if "ncalls" in line)
            print(f"--- by {key}")
            print("\n".join(lines[start : start + args.top + 1]))
    finally:
        connection.close()
        rail.drop_database(database_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
