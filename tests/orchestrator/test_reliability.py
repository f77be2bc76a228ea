"""The rail under failure, on PostgreSQL and Redis: the broker down when a card moves, a worker
killed in the middle of a step, and two workers handed the same entry."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from contextlib import contextmanager

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from orchestrator.models import Mechanism, RunStatus, StepRun
from orchestrator.rail.dispatch import dispatch_entry
from orchestrator.rail.tasks import sweep_phase_entries, sweep_stale_leases
from pipes.models import PhaseEntry
from pipes.services import Actor, card_create
from tests.modelservers import ok
from tests.orchestrator.conftest import celery_point, make_step, wait_for
from tests.personas import good_start_values

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

WORKER_SETTINGS = {"TRILHO_HTTP_ALLOWED_PRIVATE": True, "TRILHO_RAIL_LEASE_SECONDS": 2, "TRILHO_SECRETS": {}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def redis_server(port: int):
    """A Redis of our own, so the test can take the broker down and bring it back."""
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _listening(port), timeout=10, what="redis-server to listen")
        yield process
    finally:
        process.terminate()
        process.wait(10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def set_category_step(world, *, external=None):
    actions = []
    if external is not None:
        actions.append(
            {
                "type": "http",
                "method": "POST",
                "url": external.url + "/orders",
                "body": {"ref": {"$card": "reference"}},
            }
        )
    actions.append({"type": "set_field", "field": "category", "value": "Hardware"})
    return make_step(
        world.phase("triage"),
        key="erp",
        name="Register in the ERP",
        mechanism=Mechanism.AUTOMATION,
        actions=actions,
        on_approve="",
        on_reject="",
    )


def submit(world):
    return card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())


def run_of(card) -> StepRun | None:
    return StepRun.objects.filter(card=card).first()


def category_changes(card) -> int:
    return sum("category" in e.field_keys for e in card.events.filter(kind="fields_changed"))


@pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server to stop and start a broker"
)
def test_it_runs_an_entry_recorded_while_the_broker_was_down(world, redis_celery):
    app, queue = redis_celery.app, redis_celery.queue
    port = free_port()
    own_broker = f"redis://127.0.0.1:{port}/0"
    set_category_step(world)
    with redis_server(port):
        celery_point(app, broker_url=own_broker, queue=queue)
        with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue]):
            before = submit(world)
            wait_for(lambda: (r := run_of(before)) and r.status == RunStatus.DONE, what="the first card")

    # The broker is down: moving a card still works; its entry waits in the outbox. With the
    # transport options settings should give Redis brokers, the request waits well under a second.
    app.conf.broker_transport_options = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
    celery_point(app, broker_url=own_broker, queue=queue)
    started = time.monotonic()
    card = submit(world)
    assert time.monotonic() - started < 1
    entry = PhaseEntry.objects.get(card=card)
    assert entry.dispatched_at is None and entry.processed_at is None
    assert sweep_phase_entries(older_than_seconds=0) == 0  # still down: nothing sent, nothing lost

    app.conf.broker_transport_options = {}
    with redis_server(port):  # the broker is back
        celery_point(app, broker_url=own_broker, queue=queue)
        with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue]):
            assert sweep_phase_entries(older_than_seconds=0) == 1  # what beat runs every 30 s
            wait_for(lambda: (r := run_of(card)) and r.status == RunStatus.DONE, what="the swept entry")
    card.refresh_from_db()
    entry.refresh_from_db()
    assert card.values["category"] == "Hardware" and category_changes(card) == 1
    assert entry.dispatch_count == 1 and entry.processed_at is not None


def test_it_runs_a_step_again_after_its_worker_is_killed_and_applies_it_once(
    world, redis_celery, worker_processes, external
):
    hold = threading.Event()
    external.push(ok({"id": 1}, hold=hold), ok({"id": 1}))
    set_category_step(world, external=external)
    first = worker_processes("first", **WORKER_SETTINGS)
    card = submit(world)
    wait_for(lambda: len(external.requests) == 1, what="the first worker to call the ERP")
    first.kill()  # SIGKILL in the middle of the step
    hold.set()
    run = run_of(card)
    assert run.status == RunStatus.RUNNING and run.attempts == 1 and category_changes(card) == 0

    worker_processes("second", **WORKER_SETTINGS)
    wait_for(
        lambda: StepRun.objects.filter(pk=run.pk, lease_until__lt=timezone.now()).exists(), what="the lease"
    )
    assert sweep_phase_entries(older_than_seconds=0) == 1  # the entry was dispatched but never processed
    wait_for(lambda: StepRun.objects.get(pk=run.pk).status == RunStatus.DONE, what="the retried step")

    run.refresh_from_db()
    card.refresh_from_db()
    assert run.attempts == 2
    assert card.values["category"] == "Hardware" and category_changes(card) == 1
    keys = external.idempotency_keys()
    assert len(keys) == 2 and keys[0] == keys[1] == f"trilho-run-{run.pk}-0"
    assert run.events.filter(kind="retry", summary="attempt 2 of 2").exists()
    assert card.events.filter(kind="step").count() == 1


def test_it_runs_an_entry_once_when_two_workers_get_it(world, redis_celery, worker_processes, external):
    external.default = ok({"id": 1}, delay=0.5)  # long enough for both workers to hold a message
    set_category_step(world, external=external)
    one = worker_processes("one", **WORKER_SETTINGS)
    two = worker_processes("two", **WORKER_SETTINGS)
    card = submit(world)
    entry = PhaseEntry.objects.get(card=card)
    assert dispatch_entry(entry.pk)  # the same entry, sent a second time
    wait_for(
        lambda: PhaseEntry.objects.filter(pk=entry.pk, processed_at__isnull=False).exists(), what="the entry"
    )
    wait_for(
        lambda: (
            sum("run_phase_entry" in line and "succeeded" in line for w in (one, two) for line in w.output)
            == 2
        ),
        what="both messages to be handled",
    )
    received = [
        sum("run_phase_entry" in line and "received" in line for line in w.output) for w in (one, two)
    ]
    assert received == [1, 1]
    run = run_of(card)
    card.refresh_from_db()
    assert run.status == RunStatus.DONE and run.attempts == 1
    assert len(external.requests) == 1 and category_changes(card) == 1
    entry.refresh_from_db()
    assert entry.dispatch_count == 2


def terminate_other_connections() -> int:
    """pg_terminate_backend on every other connection to the test database: the workers' (a restart)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_it_completes_a_step_whose_database_connection_was_terminated(
    world, redis_celery, worker_processes, external
):
    hold = threading.Event()
    external.push(ok({"id": 1}, hold=hold), ok({"id": 1}))
    set_category_step(world, external=external)
    worker_processes("only", **WORKER_SETTINGS)
    card = submit(world)
    wait_for(lambda: len(external.requests) == 1, what="the worker to call the ERP")
    assert terminate_other_connections() >= 1  # the worker's connection, in the middle of the step
    hold.set()

    wait_for(lambda: StepRun.objects.get(card=card).status == RunStatus.DONE, what="the step to complete")
    run = run_of(card)
    card.refresh_from_db()
    assert run.attempts == 1  # the lost connection was not the step's failure
    assert card.values["category"] == "Hardware" and category_changes(card) == 1
    keys = external.idempotency_keys()
    assert len(keys) == 2 and keys[0] == keys[1]


@contextmanager
def silent_broker():
    """A broker that hangs, as a frozen Redis does: it accepts connections, reads, and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)
    stop, clients = threading.Event(), []

    def read(conn):
        conn.settimeout(0.1)
        while not stop.is_set():
            try:
                if not conn.recv(65536):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def accept():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            clients.append(conn)
            threading.Thread(target=read, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        for conn in clients:
            conn.close()
        server.close()


def test_it_answers_a_new_card_while_the_broker_hangs_and_runs_its_step_later(world, redis_celery, settings):
    app, queue = redis_celery.app, redis_celery.queue
    set_category_step(world)
    # What settings give a Redis broker: about a second to connect or answer, one quick retry.
    before = (app.conf.broker_transport_options, app.conf.broker_connection_timeout)
    app.conf.broker_transport_options = settings.TRILHO_REDIS_TRANSPORT_OPTIONS
    app.conf.broker_connection_timeout = settings.CELERY_BROKER_CONNECTION_TIMEOUT
    try:
        with silent_broker() as port:
            celery_point(app, broker_url=f"redis://127.0.0.1:{port}/0", queue=queue)
            started = time.monotonic()
            card = submit(world)  # commits, then sends its phase entry after the commit
            elapsed = time.monotonic() - started
    finally:
        app.conf.broker_transport_options, app.conf.broker_connection_timeout = before
    assert elapsed < 2, f"the request waited {elapsed:.1f} s for a hung broker"
    entry = PhaseEntry.objects.get(card=card)
    assert entry.dispatched_at is None and entry.processed_at is None  # left for the sweep

    celery_point(app, broker_url=redis_celery.url, queue=queue)  # the broker is back
    with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue]):
        assert sweep_phase_entries(older_than_seconds=0) == 1
        wait_for(lambda: (r := run_of(card)) and r.status == RunStatus.DONE, what="the swept entry")
    card.refresh_from_db()
    assert card.values["category"] == "Hardware" and category_changes(card) == 1


def beat_until_done(run_id: int, *, timeout: float) -> int:
    """What beat does every few seconds (here every half second), until the run is done: send again
    the entries whose step lost its worker. Returns how many entries it sent."""
    sent, deadline = 0, time.monotonic() + timeout
    while StepRun.objects.get(pk=run_id).status != RunStatus.DONE:
        assert time.monotonic() < deadline, "the step did not run again"
        sent += sweep_stale_leases()
        time.sleep(0.5)
    return sent


def test_it_runs_a_killed_step_again_on_another_worker_as_soon_as_its_lease_runs_out(
    world, redis_celery, worker_processes, external
):
    lease = 3  # 20 s in production: a killed step runs again within about 25 s
    hold = threading.Event()
    external.push(ok({"id": 1}, hold=hold), ok({"id": 1}))
    set_category_step(world, external=external)
    workers = [
        worker_processes(name, **{**WORKER_SETTINGS, "TRILHO_RAIL_LEASE_SECONDS": lease}) for name in "ab"
    ]
    card = submit(world)
    wait_for(lambda: len(external.requests) == 1, what="a worker to call the ERP")
    run = run_of(card)
    holder = next(w for w in workers if run.claimed_by.endswith(f":{w.process.pid}"))
    holder.kill()  # SIGKILL in the middle of the step
    killed = time.monotonic()
    hold.set()

    assert beat_until_done(run.pk, timeout=lease + 10) == 1  # sent once, when its lease ran out
    assert time.monotonic() - killed < lease + 3
    run.refresh_from_db()
    card.refresh_from_db()
    assert run.attempts == 2 and card.values["category"] == "Hardware" and category_changes(card) == 1
    assert len(external.requests) == 2 and len(set(external.idempotency_keys())) == 1


def test_it_never_claims_a_step_twice_while_it_runs_longer_than_its_lease(
    world, redis_celery, worker_processes, external
):
    external.default = ok({"id": 1}, delay=4)  # four leases long
    set_category_step(world, external=external)
    for name in ("one", "two"):
        worker_processes(name, **{**WORKER_SETTINGS, "TRILHO_RAIL_LEASE_SECONDS": 1})
    card = submit(world)
    entry = PhaseEntry.objects.get(card=card)
    wait_for(lambda: len(external.requests) == 1, what="a worker to call the ERP")
    while not PhaseEntry.objects.filter(pk=entry.pk, processed_at__isnull=False).exists():
        assert dispatch_entry(entry.pk)  # a redelivered message, again and again, while the step runs
        assert sweep_stale_leases() == 0  # the lease is renewed: never stale
        time.sleep(0.5)
    run = run_of(card)
    card.refresh_from_db()
    assert run.status == RunStatus.DONE and run.attempts == 1
    assert len(external.requests) == 1 and category_changes(card) == 1
