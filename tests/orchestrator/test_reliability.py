"""The rail under failure, on PostgreSQL and a real broker (Redis, or RabbitMQ with
TRILHO_TEST_BROKER_URL=amqp://...): the broker down or frozen when a card moves, a worker killed in the
middle of a step, two workers handed the same entry, and the sweeps on time behind a backlog of steps."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from django.db.models import Q
from django.utils import timezone

from orchestrator.models import Mechanism, RunStatus, StepRun
from orchestrator.rail.dispatch import dispatch_entry
from orchestrator.rail.tasks import sweep_phase_entries, sweep_stale_leases
from pipes.models import PhaseEntry
from pipes.services import Actor, card_create
from tests.brokerproxy import BrokerProxy
from tests.modelservers import ok
from tests.orchestrator.conftest import celery_point, make_step, wait_for, worker_in_process
from tests.personas import good_start_values

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

WORKER_SETTINGS = {"TRILHO_HTTP_ALLOWED_PRIVATE": True, "TRILHO_RAIL_LEASE_SECONDS": 2, "TRILHO_SECRETS": {}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def test_it_runs_an_entry_recorded_while_the_broker_was_down(world, broker_celery):
    app, queue = broker_celery.app, broker_celery.queue
    set_category_step(world)
    with BrokerProxy(broker_celery.url) as broker:
        celery_point(app, broker_url=broker.url, queue=queue)
        with worker_in_process(app, [queue]):
            before = submit(world)
            wait_for(lambda: (r := run_of(before)) and r.status == RunStatus.DONE, what="the first card")

        # The broker is gone (its connections cut, nothing listening): moving a card still works and
        # answers at once; its entry waits in the outbox.
        broker.down()
        started = time.monotonic()
        card = submit(world)
        assert time.monotonic() - started < 1
        entry = PhaseEntry.objects.get(card=card)
        assert entry.dispatched_at is None and entry.processed_at is None
        assert sweep_phase_entries(older_than_seconds=0) == 0  # still down: nothing sent, nothing lost

        broker.up()  # the broker is back
        with worker_in_process(app, [queue]):
            assert sweep_phase_entries(older_than_seconds=0) == 1  # what beat runs every 30 s
            wait_for(lambda: (r := run_of(card)) and r.status == RunStatus.DONE, what="the swept entry")
    card.refresh_from_db()
    entry.refresh_from_db()
    assert card.values["category"] == "Hardware" and category_changes(card) == 1
    assert entry.dispatch_count == 1 and entry.processed_at is not None


def test_it_runs_a_step_again_after_its_worker_is_killed_and_applies_it_once(
    world, broker_celery, worker_processes, external
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
        lambda: (
            StepRun.objects.filter(pk=run.pk)
            .filter(Q(lease_until__lt=timezone.now()) | Q(status=RunStatus.DONE))
            .exists()
        ),
        what="the lease",
    )
    sent = sweep_phase_entries(older_than_seconds=0)  # the entry was dispatched but never processed
    if broker_celery.amqp:
        # RabbitMQ gives a dead worker's unacknowledged message back at once: the second worker may
        # have taken the step over with it before the sweep (its lease ran out while that worker started).
        assert sent <= 1
    else:
        assert sent == 1  # Redis holds it for its visibility timeout (an hour): the sweep sends it
    wait_for(lambda: StepRun.objects.get(pk=run.pk).status == RunStatus.DONE, what="the retried step")

    run.refresh_from_db()
    card.refresh_from_db()
    assert run.attempts == 2
    assert card.values["category"] == "Hardware" and category_changes(card) == 1
    keys = external.idempotency_keys()
    assert len(keys) == 2 and keys[0] == keys[1] == f"trilho-run-{run.pk}-0"
    assert run.events.filter(kind="retry", summary="attempt 2 of 2").exists()
    assert card.events.filter(kind="step").count() == 1


def test_it_runs_an_entry_once_when_two_workers_get_it(world, broker_celery, worker_processes, external):
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
    world, broker_celery, worker_processes, external
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


@pytest.mark.parametrize("connected", [False, True], ids=["new-connection", "pooled-connection"])
def test_it_answers_a_new_card_while_the_broker_hangs_and_runs_its_step_later(
    world, broker_celery, connected
):
    """A frozen broker (SIGSTOP, a stalled network): it takes connections and never answers. The move
    commits and answers within the broker timeouts settings give (about a second), whether the web
    process opens a connection now or holds one from before the freeze; the step runs after the thaw."""
    app, queue = broker_celery.app, broker_celery.queue
    set_category_step(world)
    with BrokerProxy(broker_celery.url) as broker:
        celery_point(app, broker_url=broker.url, queue=queue)
        if connected:
            with app.producer_or_acquire() as producer:  # a connection in the pool, used once
                producer.connection.ensure_connection(max_retries=1)
        broker.freeze()
        started = time.monotonic()
        card = submit(world)  # commits, then sends its phase entry after the commit
        elapsed = time.monotonic() - started
        assert elapsed < 2, f"the request waited {elapsed:.1f} s for a hung broker"
        entry = PhaseEntry.objects.get(card=card)
        assert entry.processed_at is None

        broker.thaw()  # the broker is back
        with worker_in_process(app, [queue]):
            assert sweep_phase_entries(older_than_seconds=0) <= 1  # what beat runs, if it was not sent
            wait_for(lambda: (r := run_of(card)) and r.status == RunStatus.DONE, what="the entry")
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
    world, broker_celery, worker_processes, external
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
    world, broker_celery, worker_processes, external
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


# ---------------------------------------------------------------- the sweeps behind a backlog of steps

BEAT_EVERY_HALF_SECOND = {
    **WORKER_SETTINGS,
    "CELERY_BEAT_SCHEDULE": {
        "beat-heartbeat": {"task": "orchestrator.tasks.beat_heartbeat", "schedule": 0.5},
    },
}


def beat_ticks(*, seconds: float, until=lambda: False) -> list:
    """The distinct times beat's heartbeat was stored (RailHeartbeat) over `seconds`, or until `until()`."""
    from orchestrator.models import RailHeartbeat

    ticks, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline and not until():
        at = RailHeartbeat.objects.filter(name="beat").values_list("at", flat=True).first()
        if at is not None and (not ticks or at != ticks[-1]):
            ticks.append(at)
        time.sleep(0.05)
    return ticks


def test_the_sweeps_run_on_their_own_queue_while_every_step_worker_is_stuck(
    world, broker_celery, worker_processes, external, tmp_path
):
    """Beat's jobs are routed to the sweep queue: a sweep worker runs them on time while the only step
    worker is stuck on a step and more steps wait behind it."""
    hold = threading.Event()
    external.default = ok({"id": 1}, hold=hold)
    set_category_step(world, external=external)
    worker_processes("steps", queues=("step",), **WORKER_SETTINGS)
    cards = [submit(world) for _ in range(5)]
    wait_for(lambda: len(external.requests) == 1, what="the step worker to be stuck on the ERP")
    try:
        worker_processes(
            "sweeper", queues=("sweep",), beat=str(tmp_path / "beat-schedule"), **BEAT_EVERY_HALF_SECOND
        )
        ticks = beat_ticks(seconds=3)
        assert len(ticks) >= 3, ticks  # every half second, with the step queue going nowhere
        assert len(external.requests) == 1
    finally:
        hold.set()
    for card in cards:
        wait_for(lambda card=card: (r := run_of(card)) and r.status == RunStatus.DONE, what="the backlog")


def test_a_worker_on_both_queues_runs_the_sweeps_between_steps_of_a_backlog(
    world, broker_celery, worker_processes, external, tmp_path
):
    """One worker with beat, on both queues (what `make worker` and bin/run-dev start): beat's jobs wait at
    most for the step in hand, never for the whole backlog."""
    step_seconds, backlog = 0.4, 12
    external.default = ok({"id": 1}, delay=step_seconds)
    set_category_step(world, external=external)
    for _ in range(backlog):
        submit(world)  # nobody consumes yet: ~5 s of steps queued
    worker_processes("solo", beat=str(tmp_path / "beat-schedule"), **BEAT_EVERY_HALF_SECOND)
    wait_for(lambda: len(external.requests) >= 1, timeout=30, what="the worker to start on the backlog")
    ticks = beat_ticks(seconds=30, until=lambda: len(external.requests) >= backlog - 1)
    assert len(external.requests) < backlog, "the backlog was gone before any tick was seen"
    assert len(ticks) >= 3, ticks
    gaps = [(b - a).total_seconds() for a, b in zip(ticks, ticks[1:], strict=False)]
    assert max(gaps) < backlog * step_seconds / 2, gaps  # a tick waits for a step or a few, not for the queue


def test_a_worker_told_to_stop_stops_within_seconds(broker_celery, worker_processes):
    """SIGTERM (docker stop, systemd): the worker's event loop notices at once, even on RabbitMQ where
    nothing else wakes it for up to 10 s, so it releases its leases before a 10 s grace period ends."""
    worker = worker_processes("stopping", **WORKER_SETTINGS)
    started = time.monotonic()
    worker.terminate()
    worker.process.wait(15)
    assert time.monotonic() - started < 5
