"""A step's emails go out at most once: written to the outbox with the step's result, sent after commit,
never sent again after a crash between the send and its record (orchestrator/rail/outbox.py)."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.utils import timezone

from agents.actions import Effect
from orchestrator.models import EmailOutbox, Mechanism, OutboxStatus, StepRun, TraceKind
from orchestrator.rail.outbox import emails_send, emails_write, outbox_sweep
from pipes.services import Actor, card_create
from tests.orchestrator.conftest import drain, make_step
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db

EMAIL = {
    "type": "send_email",
    "to": "{field.requester_email}",
    "subject": "We got {card.reference}",
    "body": "Item: {field.item}",
}


class WorkerKilled(BaseException):
    """The worker's process stopping dead (SIGKILL): nothing after this line of the worker runs."""


class KilledAfterSendBackend(LocmemBackend):
    """Delivers the message (to Django's locmem outbox), then the worker dies before recording it."""

    def send_messages(self, messages):
        super().send_messages(messages)
        raise WorkerKilled()


def email_step(world):
    return make_step(
        world.phase("triage"),
        key="mail",
        name="Acknowledge",
        mechanism=Mechanism.AUTOMATION,
        actions=[EMAIL],
        on_approve="",
        on_reject="",
    )


def run_the_rail(world, capture):
    card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    with capture(execute=True):  # the step's commit callbacks run as they would on a worker
        drain()


def test_it_sends_a_steps_email_after_commit_and_marks_it_sent(
    world, rail_settings, django_capture_on_commit_callbacks
):
    email_step(world)
    run_the_rail(world, django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1
    row = EmailOutbox.objects.get()
    run = StepRun.objects.get()
    assert row.status == OutboxStatus.SENT and row.sent_at is not None
    assert row.key == f"run-{run.pk}-a1-0"
    assert run.events.filter(kind=TraceKind.TOOL_CALL, data__status="sent").count() == 1


def test_it_does_not_send_twice_after_a_crash_between_the_send_and_its_record(
    world, rail_settings, django_capture_on_commit_callbacks
):
    rail_settings.EMAIL_BACKEND = f"{__name__}.KilledAfterSendBackend"
    rail_settings.TRILHO_EMAIL_SENDING_STALE_SECONDS = 0  # the dead worker's row is stale at once
    email_step(world)
    with pytest.raises(WorkerKilled):
        run_the_rail(world, django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1  # it went out, and the worker died before saying so
    rail_settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    # Another worker takes over: the entry again, the run's emails again, and the sweep.
    drain()
    run = StepRun.objects.get()
    emails_send(run_id=run.pk, worker="other")
    outbox_sweep(pending_after_seconds=0)
    emails_send(run_id=run.pk, worker="other")

    assert len(mail.outbox) == 1
    row = EmailOutbox.objects.get()
    assert row.status == OutboxStatus.UNKNOWN
    unknown = run.events.get(kind=TraceKind.ERROR, data__status="unknown")
    assert "may or may not have been sent" in unknown.summary and "at most once" in unknown.summary


def test_it_writes_and_sends_one_email_when_the_same_apply_runs_twice(
    world, rail_settings, django_capture_on_commit_callbacks
):
    email_step(world)
    run_the_rail(world, django_capture_on_commit_callbacks)
    run = StepRun.objects.get()
    again = Effect("send_email", {"index": 0, "to": ["ana@example.com"], "subject": "again", "body": "x"})
    emails_write(run=run, emails=[again])  # a takeover applying the same run and attempt: same key
    emails_send(run_id=run.pk, worker="other")
    assert EmailOutbox.objects.count() == 1 and len(mail.outbox) == 1


def test_it_sends_an_email_its_dead_worker_never_started(world, rail_settings):
    email_step(world)
    card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    drain()  # committed, but the worker died before its after-commit send (no callbacks run)
    assert EmailOutbox.objects.get().status == OutboxStatus.PENDING and not mail.outbox
    assert outbox_sweep(pending_after_seconds=0) == {"sent": 1, "unknown": 0}
    assert len(mail.outbox) == 1 and EmailOutbox.objects.get().status == OutboxStatus.SENT


def test_it_does_not_send_an_email_before_the_sending_worker_is_stale(world, rail_settings):
    email_step(world)
    card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    drain()
    EmailOutbox.objects.update(status=OutboxStatus.SENDING)  # another worker is sending it right now
    EmailOutbox.objects.update(sending_at=timezone.now())
    assert outbox_sweep(pending_after_seconds=0) == {"sent": 0, "unknown": 0}
    assert EmailOutbox.objects.get().status == OutboxStatus.SENDING and not mail.outbox
