"""Benchmark of the kanban board on PostgreSQL over real HTTP.

Seeds a pipe with 10,000 cards over 6 phases in a database of its own (the database of
DATABASE_URL with the name `trilho_bench_board`, dropped and created anew), starts gunicorn
with DEBUG off against it, and prints for the board page and for a card move:

- queries per request (counted in-process with Django's test client on the same database and code),
- p50/p95 of the time a request takes over loopback HTTP (sequential, >= 200 requests each;
  this is the server's time plus a few tens of microseconds of loopback and client),
- moves per second with 8 concurrent clients (each moving its own cards), and their p50/p95,
- the CPU time the gunicorn workers spent per request (from /proc; PostgreSQL's own is not counted),
  a figure that says more than the times when the machine is busy with other work,
- during the concurrent moves, the CPU per move of the web workers, of PostgreSQL's backends of the
  bench database, of this client and of the whole machine, and how busy the machine was.

Usage:
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/trilho .venv/bin/python bench/board.py
    options: --cards 10000 --phases 6 --requests 200 --clients 8 --seconds 15 --workers <CPUs> --port 8199
             --broker redis://127.0.0.1:6379/14 (default: $CELERY_BROKER_URL, else memory://)
             --org-cards 900000 (more cards in other pipes of the organization: with --cards 100000,
             a million across it) --no-floor

It also runs the floor (bench/floor.py: Django's own authenticated move, served the same way on the
same database) and prints Trilho's moves/s as a share of it.

Targets (issue 14): moves/s >= 0.5 x the floor of the same run, move p95 < 40 ms, board p95 < 60 ms
at 10,000 and 100,000 cards (and a million across the organization) with the same query count,
search and filters p95 < 100 ms.
Benchmarks print figures; they never fail a build on a timing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "trilho_bench_board"
PASSWORD = "bench-password-123"
VERSION_RE = re.compile(r'data-version="(\d+)"')
PHASE_RE = re.compile(r'data-phase-id="(\d+)"')


# ---------------------------------------------------------------- database and server


def bench_database_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{BENCH_DB}"))


def recreate_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


def server_env(args, database_url: str, data_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "DEBUG": "false",
            "SECRET_KEY": "bench-only-secret-key-" + "b" * 40,
            "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "SECURE_SSL_REDIRECT": "false",
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            "SECURE_HSTS_SECONDS": "0",
            "SECURE_HSTS_PRELOAD": "false",
            "TRILHO_DATA_DIR": data_dir,
            "CELERY_BROKER_URL": args.broker,
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "orchestrator.settings",
        }
    )
    return env


def start_server(args, env: dict[str, str]) -> subprocess.Popen:
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    process = subprocess.Popen(
        [
            gunicorn,
            "orchestrator.wsgi:application",
            "--bind",
            f"127.0.0.1:{args.port}",
            "--workers",
            str(args.workers),
            "--worker-class",
            "sync",
            "--backlog",
            "256",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", args.port), timeout=0.5).close()
            return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit("gunicorn exited at start-up") from None
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("gunicorn did not start listening within 30 s")


# ---------------------------------------------------------------- seed


def seed(*, cards: int, phases: int):
    """A pipe with `phases` phases (the last final) and `cards` cards, inserted in bulk."""
    from django.contrib.auth import get_user_model

    from pipes.choices import FieldType, PipeRole
    from pipes.models import Card, Field, Label, Organization, Phase, Pipe
    from pipes.roles import pipe_role_grant

    User = get_user_model()
    org = Organization.objects.create(name="Bench Co", slug="bench", time_zone="America/Sao_Paulo")
    pipe = Pipe.objects.create(
        organization=org, name="Bench pipe", slug="bench", code="BN", title_field="item",
        key_fields=["amount", "category"],
    )  # fmt: skip
    phase_rows = [
        Phase.objects.create(
            pipe=pipe,
            name=f"Phase {i + 1}",
            key=f"p{i + 1}",
            position=i + 1,
            sla_hours=24 * (i + 1) if i < phases - 1 else None,
            wip_limit=5000 if i == 1 else None,
            is_final=i == phases - 1,
        )
        for i in range(phases)
    ]
    Field.objects.create(
        pipe=pipe, key="item", label="Item", type=FieldType.SHORT_TEXT, required=True, position=1
    )
    Field.objects.create(pipe=pipe, key="amount", label="Amount", type=FieldType.CURRENCY, position=2)
    Field.objects.create(pipe=pipe, key="email", label="Email", type=FieldType.EMAIL, position=3, pii=True)
    Field.objects.create(
        pipe=pipe, key="category", label="Category", type=FieldType.SELECT, position=1, phase=phase_rows[0],
        options=["Hardware", "Software", "Services"],
    )  # fmt: skip
    labels = [
        Label.objects.create(pipe=pipe, name=n, color=c)
        for n, c in (("Urgent", "#c4302b"), ("IT", "#1f6feb"))
    ]
    users = []
    for i in range(8):
        user = User.objects.create_user(
            f"bench{i}", f"bench{i}@example.com", PASSWORD, first_name=f"Bench {i}"
        )
        pipe_role_grant(pipe=pipe, user=user, role=PipeRole.MEMBER)
        users.append(user)
    now = dt.datetime.now(dt.UTC)
    rows = [
        Card(
            pipe=pipe,
            phase=phase_rows[i % phases],
            title=f"Request {i}",
            values={
                "item": f"Request {i}",
                "amount": {"amount": f"{(i % 997) * 10}.00", "currency": "BRL"},
                "email": f"person{i}@example.com",
                "category": ("Hardware", "Software", "Services")[i % 3],
            },
            created_at=now - dt.timedelta(minutes=i),
            updated_at=now - dt.timedelta(minutes=i),
            phase_entered_at=now - dt.timedelta(hours=i % 100),
            finished_at=now if i % phases == phases - 1 else None,
        )
        for i in range(cards)
    ]
    created = Card.objects.bulk_create(rows, batch_size=2000)
    Card.assignees.through.objects.bulk_create(
        [Card.assignees.through(card_id=c.pk, user_id=users[n % 8].pk) for n, c in enumerate(created[::3])],
        batch_size=2000,
    )
    Card.labels.through.objects.bulk_create(
        [Card.labels.through(card_id=c.pk, label_id=labels[n % 2].pk) for n, c in enumerate(created[::4])],
        batch_size=2000,
    )
    return pipe, phase_rows, users, created


def seed_organization(*, pipe, cards: int, phases: int, per_pipe: int = 100_000) -> int:
    """`cards` more cards in other pipes of `pipe`'s organization (`per_pipe` each), inserted by
    PostgreSQL itself (generate_series): the board of one pipe must not slow down with the size of
    its organization. Returns the number of pipes added."""
    from django.db import connection

    from pipes.models import Phase, Pipe

    added = 0
    while added * per_pipe < cards:
        n = min(per_pipe, cards - added * per_pipe)
        added += 1
        other = Pipe.objects.create(
            organization=pipe.organization, name=f"Other pipe {added}", slug=f"other-{added}",
            code=f"O{added}", title_field="item",
        )  # fmt: skip
        phase_ids = [
            Phase.objects.create(
                pipe=other, name=f"Phase {i + 1}", key=f"p{i + 1}", position=i + 1,
                sla_hours=24 * (i + 1) if i < phases - 1 else None, is_final=i == phases - 1,
            ).pk
            for i in range(phases)
        ]  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO pipes_card (
                    pipe_id, number, phase_id, title, values, requester_email, tracking_token, submission_key,
                    created_at, updated_at, phase_entered_at, finished_at, version, requested_fields,
                    rail_status, rail_note, last_event_hash, event_count
                )
                SELECT %s, i, (%s::bigint[])[i %% %s + 1], 'Other ' || i,
                    jsonb_build_object('item', 'Other ' || i, 'email', 'other' || i || '@example.com'),
                    '', md5(%s || '-' || i), '', now() - i * interval '1 minute', now() - i * interval '1 minute',
                    now() - (i %% 100) * interval '1 hour', CASE WHEN i %% %s = %s THEN now() END, 1, '[]'::jsonb,
                    'idle', '', '', 0
                FROM generate_series(1, %s) AS i
                """,
                [other.pk, phase_ids, phases, str(other.pk), phases, phases - 1, n],
            )
            cursor.execute("UPDATE pipes_pipe SET last_card_number = %s WHERE id = %s", [n, other.pk])
    return added


def vacuum_analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")  # index-only counts need the visibility map set


# ---------------------------------------------------------------- HTTP client


class Session:
    """A keep-alive HTTP connection with cookies, signed in as one person."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None, headers: dict | None = None):
        body = urlencode(form, doseq=True) if form is not None else None
        sent = {"Host": "127.0.0.1", "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        if "csrftoken" in self.cookies:
            sent["X-CSRFToken"] = self.cookies["csrftoken"]
        sent.update(headers or {})
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=sent)
            response = self.conn.getresponse()
            data = response.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            raise
        elapsed = time.perf_counter() - started
        for header in response.msg.get_all("Set-Cookie") or []:
            for key, morsel in SimpleCookie(header).items():
                self.cookies[key] = morsel.value
        return response.status, data.decode("utf-8", "replace"), elapsed

    def login(self, username: str) -> None:
        status, html, _ = self.request("GET", "/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
        status, _, _ = self.request(
            "POST",
            "/accounts/login/",
            {"csrfmiddlewaretoken": token, "username": username, "password": PASSWORD},
        )
        if status != 302 or "sessionid" not in self.cookies:
            raise SystemExit(f"login as {username} failed ({status})")


def _process_cpu(pid: str) -> tuple[int, float]:
    """(parent pid, CPU seconds used) of a process, from /proc; (0, 0.0) when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0, 0.0
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def workers_cpu_seconds(master_pid: int) -> float:
    """CPU time (user + system) used so far by the gunicorn master's worker processes, from /proc."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent, used = _process_cpu(entry)
            if parent == master_pid:
                total += used
    return total


def postgres_cpu_seconds() -> float:
    """CPU time used so far by PostgreSQL's backends serving the bench database (from their titles)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read()
        except OSError:
            continue
        if title.startswith(b"postgres: ") and f" {BENCH_DB} ".encode() in title:
            total += _process_cpu(entry)[1]
    return total


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (every process, ours or not), from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# ---------------------------------------------------------------- measurements


class Mover:
    """Moves its own cards one phase on (the last phase back to the first), tracking their versions."""

    def __init__(
        self, session: Session, pipe_id: int, phase_ids: list[int], cards: list[tuple[int, int, int]]
    ):
        self.session = session
        self.pipe_id = pipe_id
        self.phase_ids = phase_ids
        self.cards = [list(c) for c in cards]  # [id, phase_id, version]
        self.turn = 0
        self.failures = 0

    def move_one(self) -> float:
        card = self.cards[self.turn % len(self.cards)]
        self.turn += 1
        target = self.phase_ids[(self.phase_ids.index(card[1]) + 1) % len(self.phase_ids)]
        status, html, elapsed = self.session.request(
            "POST",
            f"/pipes/{self.pipe_id}/cards/{card[0]}/move/",
            {"to_phase": target, "expected_version": card[2]},
            {"HX-Request": "true"},
        )
        version = VERSION_RE.search(html)
        if version:
            card[2] = int(version.group(1))
        if status == 200:
            card[1] = target
        else:
            self.failures += 1
        return elapsed


class FloorMover:
    """Moves floor cards (bench/floor.py) one phase on: the same client, the same kind of request."""

    def __init__(self, session: Session, cards: list[int]):
        self.session = session
        self.cards = cards
        self.turn = 0
        self.failures = 0

    def move_one(self) -> float:
        card = self.cards[self.turn % len(self.cards)]
        self.turn += 1
        status, _, elapsed = self.session.request("POST", f"/m/{card}", {}, {"HX-Request": "true"})
        if status != 200:
            self.failures += 1
        return elapsed


# The floor's two tables (bench/floor.py), in the bench database, with 10,000 cards.
FLOOR_TABLES = (
    "DROP TABLE IF EXISTS floor_event, floor_card",
    "CREATE TABLE floor_card (id serial PRIMARY KEY, phase int NOT NULL, version int NOT NULL)",
    "CREATE TABLE floor_event (id bigserial PRIMARY KEY, card_id int NOT NULL REFERENCES floor_card, "
    "kind text NOT NULL, body text NOT NULL)",
    "INSERT INTO floor_card (phase, version) SELECT mod(g, 6), 1 FROM generate_series(1, 10000) g",
    "ANALYZE floor_card",
)


def start_floor(args, database_url: str) -> subprocess.Popen:
    """gunicorn serving bench/floor.py on --port + 1 with as many workers as Trilho's."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in FLOOR_TABLES:
            conn.execute(statement)
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["FLOOR_DATABASE_URL"] = database_url
    process = subprocess.Popen(
        [gunicorn, "floor:application", "--bind", f"127.0.0.1:{args.port + 1}", "--workers", str(args.workers),
         "--worker-class", "sync", "--backlog", "256", "--log-level", "warning"],
        cwd=ROOT / "bench",
        env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", args.port + 1), timeout=0.5).close()
            return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit("the floor's gunicorn exited at start-up") from None
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("the floor's gunicorn did not start listening within 30 s")


def run_concurrently(movers, seconds: float) -> tuple[list[float], float, int]:
    """Every mover moving as fast as it can for `seconds`: (all times, wall seconds, failures)."""
    times: list[list[float]] = [[] for _ in movers]
    stop = threading.Event()
    gate = threading.Barrier(len(movers) + 1)
    failures_before = sum(m.failures for m in movers)

    def run(i: int) -> None:
        gate.wait()
        while not stop.is_set():
            try:
                times[i].append(movers[i].move_one())
            except (http.client.HTTPException, OSError):
                movers[i].failures += 1

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(movers))]
    for t in threads:
        t.start()
    gate.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    return [x for ts in times for x in ts], wall, sum(m.failures for m in movers) - failures_before


def count_queries(pipe_id: int, user, card_id: int, phase_id: int, version: int) -> tuple[int, int]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(user)
    client.get(f"/pipes/{pipe_id}/")
    with CaptureQueriesContext(connection) as board:
        assert client.get(f"/pipes/{pipe_id}/").status_code == 200
    with CaptureQueriesContext(connection) as move:
        response = client.post(
            f"/pipes/{pipe_id}/cards/{card_id}/move/",
            {"to_phase": phase_id, "expected_version": version},
            HTTP_HX_REQUEST="true",
        )
        assert response.status_code == 200, response.content[:300]
    return len(board), len(move)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--phases", type=int, default=6)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--port", type=int, default=8199)
    parser.add_argument("--broker", default=os.environ.get("CELERY_BROKER_URL") or "memory://")
    parser.add_argument(
        "--org-cards",
        type=int,
        default=0,
        help="cards in other pipes of the same organization (100,000 per pipe): e.g. 900000 with "
        "--cards 100000 for a million across the organization",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the floor (bench/floor.py: Django's own authenticated move)",
    )
    args = parser.parse_args()

    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit(
            "set DATABASE_URL to a PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432/trilho"
        )
    bench_url = bench_database_url(database_url)
    data_dir = tempfile.mkdtemp(prefix="trilho-bench-")
    env = server_env(args, bench_url, data_dir)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))

    print(f"database {BENCH_DB} (recreated), broker {args.broker}, gunicorn {args.workers} sync workers")
    print("load average before: {:.2f} {:.2f} {:.2f} on {} CPUs".format(*os.getloadavg(), os.cpu_count()))
    recreate_database(database_url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    started = time.perf_counter()
    pipe, phases, users, cards = seed(cards=args.cards, phases=args.phases)
    print(f"seeded {args.cards} cards over {args.phases} phases in {time.perf_counter() - started:.1f} s")
    if args.org_cards:
        started = time.perf_counter()
        others = seed_organization(pipe=pipe, cards=args.org_cards, phases=args.phases)
        print(
            f"seeded {args.org_cards} more cards in {others} other pipes of the organization "
            f"in {time.perf_counter() - started:.1f} s"
        )
    vacuum_analyze()
    phase_ids = [p.pk for p in phases]

    probe = next(c for c in reversed(cards) if c.phase_id == phase_ids[0])  # one not moved below
    board_queries, move_queries = count_queries(pipe.pk, users[0], probe.pk, phase_ids[1], 1)
    from django.db import connection

    connection.close()

    server = start_server(args, env)
    try:
        session = Session(args.port)
        session.login(users[0].username)
        board_path = f"/pipes/{pipe.pk}/"
        for _ in range(10):  # warm every worker
            status, html, _ = session.request("GET", board_path)
            assert status == 200, status
        shown = html.count('class="card-title"')
        # A baseline: the sign-in page, the cheapest page of the app, through the same middleware.
        cpu_before = workers_cpu_seconds(server.pid)
        baseline_times = [session.request("GET", "/accounts/login/")[2] for _ in range(args.requests)]
        baseline_cpu = (workers_cpu_seconds(server.pid) - cpu_before) / len(baseline_times)
        board_times = []
        cpu_before = workers_cpu_seconds(server.pid)
        for _ in range(args.requests):
            status, _, elapsed = session.request("GET", board_path)
            assert status == 200, status
            board_times.append(elapsed)
        board_cpu = (workers_cpu_seconds(server.pid) - cpu_before) / len(board_times)
        # Search and filters: a term found in a few cards' titles, one in every card's, then people, late and
        # a label at once.
        filtered = {
            "search (?q=Request 4242)": f"{board_path}?q=Request+4242",
            "search matching every card (?q=Request)": f"{board_path}?q=Request",
            "filters (assignee, late, label)": f"{board_path}?assignee=me&late=1&label=1",
        }
        filtered_times = {}
        for name, path in filtered.items():
            session.request("GET", path)
            times = []
            for _ in range(max(20, args.requests // 4)):
                status, _, elapsed = session.request("GET", path)
                assert status == 200, status
                times.append(elapsed)
            filtered_times[name] = times

        # Sequential moves: one client, its own cards (not the one the query count moved).
        per_client = [[] for _ in range(args.clients)]
        for n, card in enumerate(cards[: args.clients * 40]):
            per_client[n % args.clients].append((card.pk, card.phase_id, card.version))
        mover = Mover(session, pipe.pk, phase_ids, per_client[0])
        for _ in range(5):
            mover.move_one()
        cpu_before = workers_cpu_seconds(server.pid)
        move_times = [mover.move_one() for _ in range(args.requests)]
        move_cpu = (workers_cpu_seconds(server.pid) - cpu_before) / len(move_times)
        sequential_failures = mover.failures

        # Concurrent moves: N clients, each with its own session and cards.
        movers = []
        for i in range(args.clients):
            s = Session(args.port)
            s.login(users[i].username)
            movers.append(Mover(s, pipe.pk, phase_ids, per_client[i] if i else mover.cards))
        concurrent_times: list[list[float]] = [[] for _ in movers]
        stop = threading.Event()
        gate = threading.Barrier(len(movers) + 1)

        def run(i: int) -> None:
            gate.wait()
            while not stop.is_set():
                try:
                    concurrent_times[i].append(movers[i].move_one())
                except (http.client.HTTPException, OSError):
                    movers[i].failures += 1

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(movers))]
        for t in threads:
            t.start()
        gate.wait()
        began = time.perf_counter()
        cpu_before = (
            workers_cpu_seconds(server.pid),
            postgres_cpu_seconds(),
            sum(os.times()[:2]),
            machine_busy_seconds(),
        )
        time.sleep(args.seconds)
        stop.set()
        for t in threads:
            t.join()
        wall = time.perf_counter() - began
        cpu_after = (
            workers_cpu_seconds(server.pid),
            postgres_cpu_seconds(),
            sum(os.times()[:2]),
            machine_busy_seconds(),
        )
        concurrent_cpu = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
        all_concurrent = [x for times in concurrent_times for x in times]
        concurrent_failures = sum(m.failures for m in movers) - sequential_failures
    finally:
        server.terminate()
        server.wait(timeout=20)
    floor_figures = None
    if not args.no_floor:
        # The floor, served the same way, on the same database, by as many workers, with as many clients.
        floor_server = start_floor(args, bench_url)
        try:
            floor_movers = []
            for i in range(args.clients):
                s = Session(args.port + 1)
                s.login(users[i].username)
                floor_movers.append(FloorMover(s, list(range(1 + i, 10_000, args.clients))))
            run_concurrently(floor_movers, 2)  # warm every worker
            floor_cpu_before = (workers_cpu_seconds(floor_server.pid), machine_busy_seconds())
            floor_times, floor_wall, floor_failures = run_concurrently(floor_movers, args.seconds)
            floor_cpu = [
                after - before
                for before, after in zip(
                    floor_cpu_before,
                    (workers_cpu_seconds(floor_server.pid), machine_busy_seconds()),
                    strict=True,
                )
            ]
            floor_figures = (floor_times, floor_wall, floor_failures, floor_cpu)
        finally:
            floor_server.terminate()
            floor_server.wait(timeout=20)
        shutil.rmtree(data_dir, ignore_errors=True)
        if args.broker.startswith("redis://"):
            import redis

            redis.Redis.from_url(args.broker).flushdb()

    print()
    print("baseline: the sign-in page (GET /accounts/login/)")
    print(f"  web worker CPU        {ms(baseline_cpu)} per request")
    print(
        f"  p50 / p95 over {len(baseline_times)}   {ms(statistics.median(baseline_times))} / "
        f"{ms(percentile(baseline_times, 95))}"
    )
    print(f"board page ({args.cards} cards, {args.phases} phases, {shown} cards rendered)")
    print(f"  queries per request   {board_queries}")
    print(f"  web worker CPU        {ms(board_cpu)} per request")
    print(
        f"  p50 / p95 over {len(board_times)}   {ms(statistics.median(board_times))} / {ms(percentile(board_times, 95))}"
    )
    for name, times in filtered_times.items():
        print(f"board page, {name}")
        print(f"  p50 / p95 over {len(times)}   {ms(statistics.median(times))} / {ms(percentile(times, 95))}")
    print("card move (POST, HTMX)")
    print(f"  queries per request   {move_queries}")
    print(f"  web worker CPU        {ms(move_cpu)} per request")
    print(
        f"  p50 / p95 over {len(move_times)}   {ms(statistics.median(move_times))} / {ms(percentile(move_times, 95))}"
        f"   ({sequential_failures} refused)"
    )
    print(f"concurrent moves, {args.clients} clients for {wall:.1f} s")
    print(
        f"  moves per second      {len(all_concurrent) / wall:.0f}   ({concurrent_failures} refused or failed)"
    )
    print(
        f"  p50 / p95             {ms(statistics.median(all_concurrent))} / {ms(percentile(all_concurrent, 95))}"
    )
    moves = max(1, len(all_concurrent))
    web, database, client, machine = concurrent_cpu
    print(
        f"  CPU per move          web workers {ms(web / moves)}, PostgreSQL {ms(database / moves)}, "
        f"this client {ms(client / moves)}, whole machine {ms(machine / moves)}"
    )
    print(
        f"  machine busy          {100 * machine / (wall * (os.cpu_count() or 1)):.0f}% of {os.cpu_count()} CPUs "
        f"({100 * (machine - web - database - client) / (wall * (os.cpu_count() or 1)):.0f}% by other processes)"
    )
    if floor_figures is not None:
        floor_times, floor_wall, floor_failures, (floor_web, floor_machine) = floor_figures
        floor_rate = len(floor_times) / floor_wall
        floor_moves = max(1, len(floor_times))
        print(
            f"floor: Django's own authenticated move (bench/floor.py), {args.clients} clients for {floor_wall:.1f} s"
        )
        print(f"  moves per second      {floor_rate:.0f}   ({floor_failures} failed)")
        print(
            f"  p50 / p95             {ms(statistics.median(floor_times))} / {ms(percentile(floor_times, 95))}"
        )
        print(
            f"  CPU per move          web workers {ms(floor_web / floor_moves)}, "
            f"whole machine {ms(floor_machine / floor_moves)}"
        )
        print(f"  Trilho / floor        {len(all_concurrent) / wall / floor_rate:.2f}   (target >= 0.50)")
    print()
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print("targets: board p95 < 60 ms, move p95 < 40 ms, moves/s >= 0.5 x the floor of the same run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
