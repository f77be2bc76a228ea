"""Two workers running the same phase entry at once, on the one-transaction path of an automation
(loop._run_at_once, whose run is inserted finished by the statement that finishes it on PostgreSQL):
both apply the step, one commits, the other's insert of the same entry-and-step run fails and rolls its
whole transaction back. One run, one field change, one step on the timeline, one audit entry."""

from __future__ import annotations

import threading
import time

import pytest
from auditlog.models import LogEntry
from django.db import connection, connections

from orchestrator.models import RunStatus, StepRun
from orchestrator.rail.tasks import run_phase_entry
from pipes.models import Card, CardEvent, PhaseEntry
from pipes.services import Actor, card_create
from pipes.timeline import verify_card
from tests.personas import good_start_values

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]  # rows locked by two connections


def waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def test_two_workers_on_one_entry_apply_its_automation_once(world, stamping_step):
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    entry_id = PhaseEntry.objects.get(card=card, processed_at__isnull=True).pk
    events_before = CardEvent.objects.filter(card=card).count()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            run_phase_entry(entry_id)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    # Hold the card's row lock so both workers load the entry (no run yet) and wait at the card's lock.
    holder = connections.create_connection("default")
    try:
        with holder.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT id FROM pipes_card WHERE id = %s FOR UPDATE", [card.pk])
            threads = [threading.Thread(target=worker) for _ in range(2)]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 20
            while waiting_on_a_lock() < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert waiting_on_a_lock() == 2, "both workers wait for the card"
            cursor.execute("COMMIT")
    finally:
        holder.close()
    for thread in threads:
        thread.join(30)
    assert not errors, errors

    runs = list(StepRun.objects.filter(entry_id=entry_id))
    assert [run.status for run in runs] == [RunStatus.DONE]
    stored = Card.objects.get(pk=card.pk)
    assert stored.values["category"] == "Hardware"
    events = list(CardEvent.objects.filter(card=card).order_by("seq"))
    assert [e.kind for e in events[events_before:]] == ["fields_changed", "step"]
    assert list(verify_card(stored, events)) == []
    updates = LogEntry.objects.get_for_object(stored).filter(action=LogEntry.Action.UPDATE)
    assert updates.count() == 1
    assert PhaseEntry.objects.get(pk=entry_id).processed_at is not None
