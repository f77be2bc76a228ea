"""The fast lane (settings.TRILHO_FAST_QUEUE): an entry whose phase's steps are all automations that call
no other system goes to a queue of its own, which workers of their own drain; any other entry, and every
entry while no lane is set, goes to the default queue. On PostgreSQL and a real broker (Redis, or
RabbitMQ with TRILHO_TEST_BROKER_URL=amqp://...), with a real worker process."""

from __future__ import annotations

import pytest
from django.db import transaction

from orchestrator.models import Mechanism, RunStatus, StepRun
from orchestrator.rail.dispatch import phase_is_quick, step_is_quick
from orchestrator.rail.tasks import sweep_phase_entries
from pipes.models import CardEvent, PhaseEntry
from pipes.services import Actor, card_create
from tests.orchestrator.conftest import make_step, wait_for
from tests.personas import good_start_values

SET_CATEGORY = {"type": "set_field", "field": "category", "value": "Hardware"}
CALL_ERP = {"type": "http", "method": "POST", "url": "http://127.0.0.1:9/orders"}


def submit(world):
    return card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())


def queued(app, name: str) -> int:
    """Messages waiting in queue `name` of the test broker (0 when the broker has no such queue)."""
    with app.connection_for_write() as conn:
        try:
            return conn.default_channel.queue_declare(queue=name, passive=True).message_count
        except Exception:  # noqa: BLE001 - the broker says it has no such queue
            return 0


@pytest.mark.parametrize(
    ("mechanism", "actions", "quick"),
    [
        (Mechanism.AUTOMATION, [SET_CATEGORY], True),
        (Mechanism.AUTOMATION, [SET_CATEGORY, {"type": "email", "to": "a@example.com"}], True),
        (Mechanism.AUTOMATION, [], True),
        (Mechanism.AUTOMATION, [CALL_ERP, SET_CATEGORY], False),
        (Mechanism.AUTO, [SET_CATEGORY], False),
        (Mechanism.HUMAN, [], False),
    ],
)
def test_a_step_is_quick_when_it_is_an_automation_that_calls_no_other_system(mechanism, actions, quick):
    assert step_is_quick(mechanism, actions) is quick


@pytest.mark.django_db
def test_a_phase_is_quick_only_while_every_step_of_it_is(world, rail_settings):
    triage, approval = world.phase("triage"), world.phase("approval")
    assert not phase_is_quick(world.pipe.pk, triage.pk)  # no steps: nothing to send anywhere
    make_step(triage, key="stamp", mechanism=Mechanism.AUTOMATION, actions=[SET_CATEGORY])
    make_step(approval, key="erp", mechanism=Mechanism.AUTOMATION, actions=[CALL_ERP])
    assert phase_is_quick(world.pipe.pk, triage.pk)
    assert not phase_is_quick(world.pipe.pk, approval.pk)
    # A slower step added later (an overdue one included) takes the phase out of the lane at once: the
    # step changes the pipe's design stamp, which the answer is cached by.
    make_step(triage, key="escalate", position=2, mechanism=Mechanism.AUTO, trigger="late")
    assert not phase_is_quick(world.pipe.pk, triage.pk)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_quick_entries_take_the_fast_lane_and_a_worker_of_that_lane_runs_them(
    world, broker_celery, worker_processes, rail_settings, stamping_step
):
    app, lane = broker_celery.app, broker_celery.fast_queue
    rail_settings.TRILHO_FAST_QUEUE = lane
    quick = submit(world)
    assert (queued(app, lane), queued(app, broker_celery.queue)) == (1, 0)

    # A worker of the lane alone, as docker-compose.yml's worker-fast: -P solo, a prefetch of 4.
    worker_processes("fast", queues=("fast",), CELERY_WORKER_PREFETCH_MULTIPLIER=4)
    wait_for(lambda: StepRun.objects.filter(card=quick, status=RunStatus.DONE).exists(), what="the fast lane")
    quick.refresh_from_db()
    assert quick.values["category"] == "Hardware"
    assert PhaseEntry.objects.get(card=quick).processed_at is not None

    # A step that calls out joins the phase: its next entry goes to the default queue, which that
    # worker does not drain.
    make_step(
        world.phase("triage"), key="erp", position=2, mechanism=Mechanism.AUTOMATION, actions=[CALL_ERP]
    )
    slow = submit(world)
    assert (queued(app, lane), queued(app, broker_celery.queue)) == (0, 1)
    assert not StepRun.objects.filter(card=slow).exists()

    # With no lane set, a quick entry goes to the default queue like any other.
    rail_settings.TRILHO_FAST_QUEUE = ""
    world.phase("triage").steps.filter(key="erp").delete()
    submit(world)
    assert (queued(app, lane), queued(app, broker_celery.queue)) == (0, 2)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_lane_worker_killed_with_messages_in_hand_loses_none_and_runs_each_once(
    world, broker_celery, worker_processes, rail_settings, stamping_step
):
    rail_settings.TRILHO_FAST_QUEUE = broker_celery.fast_queue
    fast = worker_processes("fast", queues=("fast",), CELERY_WORKER_PREFETCH_MULTIPLIER=4)
    with (
        transaction.atomic()
    ):  # 200 entries sent at once on commit: a backlog, 4 of them in the worker's hand
        cards = [submit(world) for _ in range(200)]
    wait_for(lambda: StepRun.objects.filter(status=RunStatus.DONE).exists(), what="the first quick step")
    fast.kill()  # SIGKILL: its prefetched messages were never acknowledged
    assert StepRun.objects.filter(status=RunStatus.DONE).count() < len(cards)

    # What beat's sweep does for entries sent over 30 s ago and never processed: send them again. Redis
    # keeps a dead worker's unacknowledged messages for its visibility timeout; RabbitMQ gives them
    # back at once, so some entries are sent twice: the second finds its entry processed.
    sweep_phase_entries(older_than_seconds=0)
    worker_processes("rescue", queues=("step", "fast"), CELERY_WORKER_PREFETCH_MULTIPLIER=4)
    wait_for(
        lambda: StepRun.objects.filter(status=RunStatus.DONE).count() == len(cards),
        timeout=60,
        what="every card's step",
    )
    assert not PhaseEntry.objects.filter(card__in=cards, processed_at__isnull=True).exists()
    assert StepRun.objects.filter(card__in=cards).count() == len(cards)  # one run per card
    changes = CardEvent.objects.filter(
        card__in=cards, kind="fields_changed", field_keys__contains=["category"]
    )
    assert changes.count() == len(cards)  # each step's effect applied once


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_an_entry_whose_phase_gained_a_slow_step_after_it_was_sent_leaves_the_lane_untouched(
    world, broker_celery, worker_processes, rail_settings, stamping_step
):
    """A designer adds a step for a person to a quick phase while its entry waits in the fast lane: the
    lane's worker runs nothing of it and sends it to the default queue, whose worker runs both steps."""
    app, lane = broker_celery.app, broker_celery.fast_queue
    rail_settings.TRILHO_FAST_QUEUE = lane
    card = submit(world)
    assert (queued(app, lane), queued(app, broker_celery.queue)) == (1, 0)
    make_step(world.phase("triage"), key="check", name="Check", position=2, mechanism=Mechanism.HUMAN)

    worker_processes(
        "fast",
        queues=("fast",),
        CELERY_WORKER_PREFETCH_MULTIPLIER=4,
        TRILHO_FAST_QUEUE=lane,  # as every process of a deployment has it (docker-compose.yml)
        CELERY_TASK_DEFAULT_QUEUE=broker_celery.queue,
    )
    wait_for(lambda: queued(app, broker_celery.queue) == 1, what="the entry sent to the default queue")
    assert queued(app, lane) == 0
    assert not StepRun.objects.filter(card=card).exists()  # not even the quick step ran on the lane
    assert PhaseEntry.objects.get(card=card).processed_at is None

    worker_processes("steps", queues=("step",))
    wait_for(
        lambda: StepRun.objects.filter(card=card, status=RunStatus.WAITING_REVIEW).exists(),
        what="the person's step, on the default queue's worker",
    )
    card.refresh_from_db()
    assert card.values["category"] == "Hardware"  # the quick step ran there, once, before it
    assert StepRun.objects.filter(card=card).count() == 2
