"""Benchmark of the REST API's card writes on PostgreSQL over real HTTP, beside the board's moves.

Seeds a pipe as bench/board.py does (10,000 cards over 6 phases, 8 members), in a database of its own
(the database of DATABASE_URL with the name `trilho_bench_api`, dropped and created anew), gives each
member a personal read-and-write token made through the token service (orchestrator.api.tokens), starts
gunicorn with DEBUG off against it, and prints for an API card create (`POST /api/v1/pipes/<id>/cards`),
an API card move (`POST /api/v1/pipes/<id>/cards/<id>/move`) and, on the same server and data, the
board's card move (`POST /pipes/<id>/cards/<id>/move/`, HTMX, signed in):

- queries per request (counted in-process with Django's test client on the same database and code),
- p50/p95 of the time a request takes over loopback HTTP, one client after the other (--requests each),
- per second with 8 concurrent clients (each with its own token or session and its own cards), their
  p50/p95, and the CPU per request of the web workers, PostgreSQL's backends of the bench database,
  this client and the whole machine.

Every API POST carries an Idempotency-Key (a new UUID), as docs/api.md recommends; the key's record is
part of the figures. The rate limit stays on, raised out of reach (TRILHO_API_RATE_PER_MINUTE), so its
cost is counted but it refuses nothing.

Usage:
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/trilho .venv/bin/python bench/api.py
    options: --cards 10000 --phases 6 --requests 200 --clients 8 --seconds 15 --max-per-client 5000
             --workers <CPUs> --port 8198 --broker redis://127.0.0.1:6379/14 (default: $CELERY_BROKER_URL,
             else memory://) --quick (a smoke run: 600 cards, 20 requests, 25 per client,
             2 s per concurrent phase; its figures mean nothing)

Every phase is bounded by a count and a time: the script stops by itself. Benchmarks print figures;
they never fail a build on a timing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import board  # noqa: E402 - bench/board.py: database, server, seed, session and CPU helpers

ROOT = board.ROOT
BENCH_DB = "trilho_bench_api"
board.BENCH_DB = BENCH_DB  # board's helpers (database URL, recreate, PostgreSQL CPU) read it at call time
RATE_OUT_OF_REACH = 1_000_000_000


# ---------------------------------------------------------------- HTTP client


class ApiSession:
    """A keep-alive HTTP connection that talks JSON with a bearer token."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.token = token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None, float]:
        headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if method == "POST":
            headers["Idempotency-Key"] = str(uuid.uuid4())
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
            raw = response.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            raise
        elapsed = time.perf_counter() - started
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return response.status, parsed, elapsed


class ApiCreator:
    """Opens cards through the API, one after the other."""

    def __init__(self, session: ApiSession, pipe_id: int, name: str):
        self.session = session
        self.path = f"/api/v1/pipes/{pipe_id}/cards"
        self.name = name
        self.turn = 0
        self.failures = 0
        self.last_refusal = ""

    def one(self) -> float:
        self.turn += 1
        body = {"values": {"item": f"{self.name} {self.turn}", "amount": "1200.00"}}
        status, answer, elapsed = self.session.request("POST", self.path, body)
        if status != 201:
            self.failures += 1
            self.last_refusal = f"{status} {answer}"
        return elapsed


class ApiMover:
    """Moves its own cards one phase on through the API (the last phase back to the first), by phase key."""

    def __init__(
        self, session: ApiSession, pipe_id: int, phase_keys: list[str], cards: list[tuple[int, str, int]]
    ):
        self.session = session
        self.pipe_id = pipe_id
        self.phase_keys = phase_keys
        self.cards = [list(c) for c in cards]  # [id, phase key, version]
        self.turn = 0
        self.failures = 0
        self.last_refusal = ""

    def one(self) -> float:
        card = self.cards[self.turn % len(self.cards)]
        self.turn += 1
        target = self.phase_keys[(self.phase_keys.index(card[1]) + 1) % len(self.phase_keys)]
        status, answer, elapsed = self.session.request(
            "POST",
            f"/api/v1/pipes/{self.pipe_id}/cards/{card[0]}/move",
            {"to_phase": target, "expected_version": card[2]},
        )
        if status == 200 and answer:
            card[1], card[2] = answer["phase"]["key"], answer["version"]
        else:
            self.failures += 1
            self.last_refusal = f"{status} {answer}"
            status, answer, _ = self.session.request("GET", f"/api/v1/pipes/{self.pipe_id}/cards/{card[0]}")
            if status == 200 and answer:  # start again from where the card really is
                card[1], card[2] = answer["phase"]["key"], answer["version"]
        return elapsed


class BoardMover(board.Mover):
    """bench/board.py's mover, with the interface of the API's (`one`)."""

    def one(self) -> float:
        return self.move_one()


# ---------------------------------------------------------------- measurements


def count_queries(pipe, user, token: str, api_card, board_card, phases: list) -> dict[str, int]:
    """Queries of one API create and move (with and without Idempotency-Key) and one board move."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    cards_path = f"/api/v1/pipes/{pipe.pk}/cards"
    counts: dict[str, int] = {}

    def post(name: str, path: str, body: dict, expected: int, key: bool) -> None:
        extra = {"HTTP_IDEMPOTENCY_KEY": str(uuid.uuid4())} if key else {}
        with CaptureQueriesContext(connection) as queries:
            response = api.post(path, json.dumps(body), content_type="application/json", **extra)
        assert response.status_code == expected, response.content[:300]
        counts[name] = len(queries)

    api.get(cards_path, {"limit": 1})  # warm the caches a first request fills
    body = {"values": {"item": "Counted", "amount": "1200.00"}}
    post("api create", cards_path, body, 201, key=True)
    post("api create, no key", cards_path, body, 201, key=False)

    def next_phase(card, steps: int = 1):
        position = next(i for i, p in enumerate(phases) if p.pk == card.phase_id)
        return phases[(position + steps) % len(phases)]

    move_path = f"/api/v1/pipes/{pipe.pk}/cards/{api_card.pk}/move"
    version = api_card.version
    for name, steps, key in (("api move", 1, True), ("api move, no key", 2, False)):
        body = {"to_phase": next_phase(api_card, steps).key, "expected_version": version}
        post(name, move_path, body, 200, key=key)
        version += 1

    web = Client()
    web.force_login(user)
    web.get(f"/pipes/{pipe.pk}/")
    with CaptureQueriesContext(connection) as queries:
        response = web.post(
            f"/pipes/{pipe.pk}/cards/{board_card.pk}/move/",
            {"to_phase": next_phase(board_card).pk, "expected_version": board_card.version},
            HTTP_HX_REQUEST="true",
        )
    assert response.status_code == 200, response.content[:300]
    counts["board move"] = len(queries)
    return counts


def cpu_snapshot(server_pid: int) -> tuple[float, float, float, float]:
    return (
        board.workers_cpu_seconds(server_pid),
        board.postgres_cpu_seconds(),
        sum(os.times()[:2]),
        board.machine_busy_seconds(),
    )


class Sequential:
    """One client's requests one after the other: times and the web workers' CPU per request."""

    def __init__(self, client, *, server_pid: int, requests: int, max_seconds: float):
        for _ in range(5):  # warm up
            client.one()
        warm_failures = client.failures
        before = board.workers_cpu_seconds(server_pid)
        deadline = time.monotonic() + max_seconds
        self.times: list[float] = []
        while len(self.times) < requests and time.monotonic() < deadline:
            self.times.append(client.one())
        self.web_cpu = (board.workers_cpu_seconds(server_pid) - before) / max(1, len(self.times))
        self.failures = client.failures - warm_failures


class Concurrent:
    """N clients at once for `seconds` (or `max_each` requests each): rate, times and CPU per request."""

    def __init__(self, clients: list, *, server_pid: int, seconds: float, max_each: int):
        self.clients = clients
        before_failures = [c.failures for c in clients]
        times: list[list[float]] = [[] for _ in clients]
        stop = threading.Event()
        gate = threading.Barrier(len(clients) + 1)

        def run(i: int) -> None:
            gate.wait()
            while not stop.is_set() and len(times[i]) < max_each:
                try:
                    times[i].append(clients[i].one())
                except (http.client.HTTPException, OSError):
                    clients[i].failures += 1
                    time.sleep(0.05)

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(clients))]
        for t in threads:
            t.start()
        gate.wait()
        began = time.perf_counter()
        cpu_before = cpu_snapshot(server_pid)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(t.is_alive() for t in threads):
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join(timeout=60)  # a request times out after 30 s: every thread is done by then
        self.wall = time.perf_counter() - began
        cpu_after = cpu_snapshot(server_pid)
        self.cpu = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
        self.times = [x for client_times in times for x in client_times]
        self.failures = sum(c.failures - b for c, b in zip(clients, before_failures, strict=True))

    @property
    def per_second(self) -> float:
        return len(self.times) / self.wall if self.wall else 0.0


def ms(seconds: float) -> str:
    return board.ms(seconds)


def p50_p95(times: list[float]) -> str:
    if not times:
        return "-"
    return f"{ms(statistics.median(times))} / {ms(board.percentile(times, 95))}"


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--phases", type=int, default=6)
    parser.add_argument("--requests", type=int, default=200, help="sequential requests of each kind")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each concurrent phase")
    parser.add_argument(
        "--max-per-client", type=int, default=5000, help="requests per client per concurrent phase"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--port", type=int, default=8198)
    parser.add_argument("--broker", default=os.environ.get("CELERY_BROKER_URL") or "memory://")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny counts, figures mean nothing")
    args = parser.parse_args()
    if args.quick:
        args.cards, args.requests, args.seconds, args.max_per_client = 600, 20, 2.0, 25
    if args.clients < 1 or args.cards < 6 * args.clients or args.requests < 1:
        raise SystemExit("--cards must be at least 6 per client, --clients and --requests at least 1")

    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit(
            "set DATABASE_URL to a PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432/trilho"
        )
    bench_url = board.bench_database_url(database_url)
    data_dir = tempfile.mkdtemp(prefix="trilho-bench-api-")
    env = board.server_env(args, bench_url, data_dir)
    env["TRILHO_API_RATE_PER_MINUTE"] = str(RATE_OUT_OF_REACH)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))

    print(f"database {BENCH_DB} (recreated), broker {args.broker}, gunicorn {args.workers} sync workers")
    print("load average before: {:.2f} {:.2f} {:.2f} on {} CPUs".format(*os.getloadavg(), os.cpu_count()))
    board.recreate_database(database_url)
    import django

    django.setup()
    from django.core.management import call_command

    from orchestrator.api.tokens import token_create

    call_command("migrate", run_syncdb=True, verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    started = time.perf_counter()
    pipe, phases, users, cards = board.seed(cards=args.cards, phases=args.phases)
    board.vacuum_analyze()
    print(f"seeded {args.cards} cards over {args.phases} phases in {time.perf_counter() - started:.1f} s")
    clients = min(args.clients, len(users))
    if clients < args.clients:
        print(f"(the seed has {len(users)} people: {clients} clients)")
    tokens = [
        token_create(
            user=user,
            organization=pipe.organization,
            name=f"bench {i}",
            kind="personal",
            scope="write",
            pipes=[pipe],
        ).secret
        for i, user in enumerate(users[:clients])
    ]
    phase_ids = [p.pk for p in phases]
    key_of = {p.pk: p.key for p in phases}

    # Each client's own cards: the board's movers, then the API's, never the same card twice.
    per_client = max(1, min(40, args.cards // (3 * clients)))
    board_cards = [cards[i * per_client : (i + 1) * per_client] for i in range(clients)]
    offset = clients * per_client
    api_cards = [cards[offset + i * per_client : offset + (i + 1) * per_client] for i in range(clients)]
    queries = count_queries(pipe, users[0], tokens[0], cards[-2], cards[-1], phases)
    from django.db import connection

    connection.close()

    server = board.start_server(args, env)
    max_seconds = max(60.0, 4 * args.seconds)  # a sequential phase's bound, beside its count
    try:
        sessions = [ApiSession(args.port, token) for token in tokens]
        status, answer, _ = sessions[0].request("GET", "/api/v1/organizations")
        if status != 200:
            raise SystemExit(f"the API refused the bench's token: {status} {answer}")
        web_sessions = []
        for user in users[:clients]:
            session = board.Session(args.port)
            session.login(user.username)
            web_sessions.append(session)

        creators = [ApiCreator(s, pipe.pk, f"API bench {i}") for i, s in enumerate(sessions)]
        api_movers = [
            ApiMover(
                s,
                pipe.pk,
                [key_of[i] for i in phase_ids],
                [(c.pk, key_of[c.phase_id], c.version) for c in own],
            )
            for s, own in zip(sessions, api_cards, strict=True)
        ]
        board_movers = [
            BoardMover(s, pipe.pk, phase_ids, [(c.pk, c.phase_id, c.version) for c in own])
            for s, own in zip(web_sessions, board_cards, strict=True)
        ]
        kinds = {
            "API card create": creators,
            "API card move": api_movers,
            "board card move (HTMX)": board_movers,
        }
        sequential = {
            name: Sequential(group[0], server_pid=server.pid, requests=args.requests, max_seconds=max_seconds)
            for name, group in kinds.items()
        }
        concurrent = {
            name: Concurrent(group, server_pid=server.pid, seconds=args.seconds, max_each=args.max_per_client)
            for name, group in kinds.items()
        }
    finally:
        stop_server(server)
        shutil.rmtree(data_dir, ignore_errors=True)
        if args.broker.startswith("redis://"):
            import redis

            redis.Redis.from_url(args.broker).flushdb()

    query_counts = {
        "API card create": f"{queries['api create']} ({queries['api create, no key']} without Idempotency-Key)",
        "API card move": f"{queries['api move']} ({queries['api move, no key']} without Idempotency-Key)",
        "board card move (HTMX)": str(queries["board move"]),
    }
    cpus = os.cpu_count() or 1
    print()
    for name in kinds:
        one, many = sequential[name], concurrent[name]
        web, database, client, machine = many.cpu
        done = max(1, len(many.times))
        print(name)
        print(f"  queries per request   {query_counts[name]}")
        print(f"  web worker CPU        {ms(one.web_cpu)} per request (one client)")
        print(f"  p50 / p95 over {len(one.times):<5}  {p50_p95(one.times)}   ({one.failures} refused)")
        print(
            f"  {clients} clients, {many.wall:.1f} s   {many.per_second:.0f} per second, p50 / p95 {p50_p95(many.times)}"
            f"   ({many.failures} refused or failed)"
        )
        print(
            f"  CPU per request       web workers {ms(web / done)}, PostgreSQL {ms(database / done)}, "
            f"this client {ms(client / done)}, whole machine {ms(machine / done)}"
        )
        print(
            f"  machine busy          {100 * machine / (many.wall * cpus):.0f}% of {cpus} CPUs "
            f"({100 * (machine - web - database - client) / (many.wall * cpus):.0f}% by other processes)"
        )
    refusals = {c.last_refusal for group in kinds.values() for c in group if getattr(c, "last_refusal", "")}
    for refusal in sorted(refusals)[:3]:
        print(f"  a refusal: {refusal[:300]}")
    print()
    print(f"side by side ({clients} concurrent clients)")
    print(f"  {'':24}{'per second':>12}{'p50':>12}{'p95':>12}{'queries':>9}")
    for name in kinds:
        many = concurrent[name]
        p50 = ms(statistics.median(many.times)) if many.times else "-"
        p95 = ms(board.percentile(many.times, 95)) if many.times else "-"
        count = query_counts[name].split()[0]
        print(f"  {name:24}{many.per_second:>12.0f}{p50:>12}{p95:>12}{count:>9}")
    print()
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if args.quick:
        print("--quick: a smoke run with tiny counts; these figures are not representative")
    return 0


if __name__ == "__main__":
    sys.exit(main())
