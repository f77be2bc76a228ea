"""Where a card move and a board render spend their time: queries and a cProfile, in-process.

Seeds bench/board.py's data (10,000 cards over 6 phases by default) in a database of its own
(`trilho_bench_profile`, dropped and created anew), then, with Django's test client signed in as a
member and the same settings as the server (DEBUG off):

- lists the SQL statements of one board render and one card move (after a warm-up);
- profiles N moves and N board renders with cProfile and prints the top functions by own time and
  by cumulative time, with the CPU per operation.

Usage:
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/trilho .venv/bin/python bench/profile_move.py \
        [--cards 10000] [--moves 300] [--renders 100] [--top 25] [--sql] [--split] [--statement-times]
`--split` prints the CPU of each part of a move (timers, no profiler); `--statement-times` the wall
time per move of each statement, the database's share included.
A figure here is CPU in one process (no HTTP, no gunicorn); bench/board.py measures over HTTP.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import board  # noqa: E402 - bench/board.py: database, seed

board.BENCH_DB = "trilho_bench_profile"


def split_move(move, card_ids) -> None:
    """CPU of each part of a move (process time, unprofiled): timers wrapped around the view's calls."""
    import importlib

    parts = {
        "card read and access": ("pipes.board.views", "card_get_for_user"),
        "board schema": ("pipes.board.views", "board_schema"),
        "write path (services.card_move)": ("pipes.services", "card_move"),
        "  lock": ("pipes.services.cards", "_lock"),
        "  event": ("pipes.services.cards", "_event"),
        "  entry": ("pipes.services.cards", "_enter_phase"),
        "column counts": ("pipes.board.views", "board_counts"),
        "tile": ("pipes.board.views", "tile_from_card"),
        "template render": ("pipes.board.views", "render"),
        "design built (design_of)": ("pipes.selectors", "design_of"),
    }
    spent = dict.fromkeys(parts, 0.0)
    originals = []

    def timed(name, fn):
        def wrapper(*a, **kw):
            started = time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] += time.process_time() - started

        return wrapper

    for name, (module_name, attr) in parts.items():
        module = importlib.import_module(module_name)
        if not hasattr(module, attr):
            continue
        fn = getattr(module, attr)
        originals.append((module, attr, fn))
        setattr(module, attr, timed(name, fn))
    from django.urls import URLPattern, get_resolver

    def patterns(resolver):
        for p in resolver.url_patterns:
            yield from [p] if isinstance(p, URLPattern) else patterns(p)

    spent["view"] = 0.0
    route = next(p for p in patterns(get_resolver()) if p.name == "card_move" and "board" in p.lookup_str)
    view = route.callback
    route.callback = timed("view", view)
    started = time.process_time()
    for card_id in card_ids:
        move(card_id)
    total = time.process_time() - started
    for module, attr, fn in originals:
        setattr(module, attr, fn)
    route.callback = view
    n = len(card_ids)
    print(f"\nCPU per move, by part ({n} moves, timers only):")
    print(f"  {'whole request':34s} {1000 * total / n:6.2f} ms")
    print(f"  {'outside the view (middleware)':34s} {1000 * (total - spent['view']) / n:6.2f} ms")
    for name in ["view", *parts]:
        print(f"  {name:34s} {1000 * spent[name] / n:6.2f} ms")


def statement_times(move, card_ids) -> None:
    """Wall time per move of each kind of statement (its first 60 characters): the round trip and the
    database's work, which the CPU figures of this process leave out."""
    import re
    from collections import defaultdict

    from django.db import connection

    spent: dict[str, list[float]] = defaultdict(list)

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent[re.sub(r"\s+", " ", sql)[:60]].append(time.perf_counter() - started)

    with connection.execute_wrapper(timed):
        for card_id in card_ids:
            move(card_id)
    moves = max(1, len(card_ids))
    print(f"\nWall time per move in statements ({moves} moves, BEGIN and COMMIT not seen):")
    for sql, times in sorted(spent.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {1000 * sum(times) / moves:7.3f} ms  x{len(times) / moves:.1f}  {sql}")
    print(f"  {1000 * sum(map(sum, spent.values())) / moves:7.3f} ms  in all")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--phases", type=int, default=6)
    parser.add_argument("--moves", type=int, default=300)
    parser.add_argument("--renders", type=int, default=100)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sql", action="store_true", help="print each statement of one move and one render")
    parser.add_argument("--broker", default="memory://")
    parser.add_argument(
        "--split",
        action="store_true",
        help="CPU per move of each part of the view (timers around them, no profiler)",
    )
    parser.add_argument(
        "--statement-times",
        action="store_true",
        help="wall time per move of each statement (its first words), the database's share included",
    )
    parser.add_argument(
        "--dump", help="write each profile to this folder (move.prof, render.prof) for pstats"
    )
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("set DATABASE_URL to a PostgreSQL server")
    data_dir = tempfile.mkdtemp(prefix="trilho-profile-")
    os.environ.update(board.server_env(args, board.bench_database_url(database_url), data_dir))
    sys.path.insert(0, str(board.ROOT))
    board.recreate_database(database_url)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    call_command("migrate", run_syncdb=True, verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    pipe, phases, users, cards = board.seed(cards=args.cards, phases=args.phases)
    board.vacuum_analyze()
    phase_ids = [p.pk for p in phases]
    client = Client()
    client.force_login(users[0])
    board_path = f"/pipes/{pipe.pk}/"
    state = {c.pk: [c.phase_id, c.version] for c in cards[: 2 * args.moves + 20]}
    order = list(state)

    def move(card_id: int) -> int:
        phase_id, version = state[card_id]
        target = phase_ids[(phase_ids.index(phase_id) + 1) % len(phase_ids)]
        response = client.post(
            f"/pipes/{pipe.pk}/cards/{card_id}/move/",
            {"to_phase": target, "expected_version": version},
            HTTP_HX_REQUEST="true",
        )
        if response.status_code == 200:
            state[card_id] = [target, version + 1]
        return response.status_code

    for card_id in order[-10:]:  # warm up: templates, schema caches, connections
        move(card_id)
        client.get(board_path)

    with CaptureQueriesContext(connection) as render_q:
        assert client.get(board_path).status_code == 200
    with CaptureQueriesContext(connection) as move_q:
        assert move(order[-11]) == 200
    print(f"board render: {len(render_q)} statements; card move: {len(move_q)} statements")
    if args.sql:
        for title, queries in (("render", render_q), ("move", move_q)):
            print(f"--- {title}")
            for q in queries:
                print("  " + q["sql"][:220])

    if args.split:
        split_move(move, order[args.moves : 2 * args.moves])
    if args.statement_times:
        statement_times(move, order[args.moves : 2 * args.moves])

    for title, count, run in (
        ("card move", args.moves, lambda i: move(order[i])),
        ("board render", args.renders, lambda i: client.get(board_path).status_code),
    ):
        started = time.process_time()
        plain = [run(i) for i in range(count)] if title == "board render" else []
        if title == "card move":  # moves change the cards: time fresh ones, then profile the first again
            plain = [move(order[i]) for i in range(count, min(len(order), 2 * count))]
        if plain:
            print(
                f"\n{title}: {1000 * (time.process_time() - started) / len(plain):.2f} ms of CPU each, unprofiled"
            )
        profiler = cProfile.Profile(time.process_time)  # CPU, not waits: steady on a busy machine
        started = time.process_time()
        profiler.enable()
        statuses = [run(i) for i in range(count)]
        profiler.disable()
        if args.dump:
            os.makedirs(args.dump, exist_ok=True)
            profiler.dump_stats(os.path.join(args.dump, title.split()[-1] + ".prof"))
        cpu = time.process_time() - started
        bad = sum(1 for s in statuses if s != 200)
        print(
            f"\n=== {title}: {count} in {cpu:.2f} s of CPU under the profiler ({1000 * cpu / count:.1f} ms each)"
            f"{f', {bad} not 200' if bad else ''}"
        )
        for key in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(key).print_stats(args.top)
            lines = out.getvalue().splitlines()
            start = next(i for i, line in enumerate(lines) if "ncalls" in line)
            print(f"--- by {key}")
            print("\n".join(lines[start : start + args.top + 1]))
    connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
