"""The write path given a card its transaction locked already (card_lock, or a previous write's result):
it neither reads nor locks the row again, and trusts the instance only while nothing it did was rolled
back and no other instance of the card was locked since. The audit entry of a field change is written
from the locked row, without reading it again."""

import pytest
from auditlog.models import LogEntry
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from pipes.models import Card, CardEvent
from pipes.services import Actor, CardError, card_create, card_lock, card_record_step, card_update_fields
from pipes.timeline import verify_card
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db


@pytest.fixture
def card(world):
    return card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())


def member(world):
    return Actor.for_user(world.member)


def card_reads(queries) -> list[str]:
    """The statements that read the card's row (every lock reads it)."""
    return [q["sql"] for q in queries if "FROM pipes_card" in q["sql"] or 'FROM "pipes_card"' in q["sql"]]


def savepoints(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].upper().startswith("SAVEPOINT")]


def timeline_breaks(card_id: int) -> list:
    stored = Card.objects.get(pk=card_id)
    return list(verify_card(stored, CardEvent.objects.filter(card=stored).order_by("seq")))


def test_it_locks_the_card_once_for_several_writes_in_one_transaction(world, card):
    with transaction.atomic():
        locked = card_lock(card=card)
        with CaptureQueriesContext(connection) as queries:
            locked = card_update_fields(actor=member(world), card=locked, values={"category": "Hardware"})
            card_record_step(actor=Actor.system("Rail"), card=locked, payload={"step": "Stamp"})

    assert card_reads(queries) == []
    assert savepoints(queries) == []
    stored = Card.objects.get(pk=card.pk)
    assert stored.values["category"] == "Hardware"
    assert stored.event_count == card.event_count + 2
    assert timeline_breaks(card.pk) == []


def test_it_keeps_the_audit_entry_of_each_field_change(world, card):
    with transaction.atomic():
        locked = card_lock(card=card)
        card_update_fields(actor=member(world), card=locked, values={"category": "Hardware"})

    entry = LogEntry.objects.get_for_object(card).filter(action=LogEntry.Action.UPDATE).latest("timestamp")
    before, after = entry.changes_dict["values"]
    assert "category" not in before and "Hardware" in after
    assert entry.object_id == card.pk


def test_it_reads_the_card_again_after_a_write_was_rolled_back_to_its_savepoint(world, card):
    class Undo(Exception):
        pass

    with transaction.atomic():
        locked = card_lock(card=card)
        with pytest.raises(Undo), transaction.atomic():
            card_update_fields(actor=member(world), card=locked, values={"category": "Software"})
            raise Undo
        # The instance still says Software and counts the rolled-back event: it is not trusted.
        with CaptureQueriesContext(connection) as queries:
            locked = card_update_fields(actor=member(world), card=locked, values={"cost_center": "CC-123"})

    assert len(card_reads(queries)) == 1
    stored = Card.objects.get(pk=card.pk)
    assert "category" not in stored.values
    assert stored.values["cost_center"] == "CC-123"
    assert stored.event_count == card.event_count + 1
    assert timeline_breaks(card.pk) == []


def test_a_refused_write_on_a_locked_card_leaves_the_transaction_going(world, card):
    with transaction.atomic():
        locked = card_lock(card=card)
        with pytest.raises(CardError):
            card_update_fields(actor=member(world), card=locked, values={"cost_center": "nope"})
        locked = card_update_fields(actor=member(world), card=locked, values={"cost_center": "CC-321"})

    assert Card.objects.get(pk=card.pk).values["cost_center"] == "CC-321"
    assert timeline_breaks(card.pk) == []


def test_an_instance_is_not_trusted_once_another_instance_of_the_card_was_locked(world, card):
    with transaction.atomic():
        first = card_lock(card=card)
        second = card_update_fields(
            actor=member(world), card=Card.objects.get(pk=card.pk), values={"category": "Services"}
        )
        assert second is not first
        with CaptureQueriesContext(connection) as queries:
            card_record_step(actor=Actor.system("Rail"), card=first, payload={"step": "Stamp"})

    assert len(card_reads(queries)) == 1  # the stale instance's row was read again
    assert Card.objects.get(pk=card.pk).values["category"] == "Services"
    assert timeline_breaks(card.pk) == []


@pytest.mark.django_db(transaction=True)
def test_a_card_locked_in_an_earlier_transaction_is_locked_again(world, card):
    with transaction.atomic():
        locked = card_lock(card=card)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        card_update_fields(actor=member(world), card=locked, values={"category": "Hardware"})

    assert len(card_reads(queries)) == 1
    assert timeline_breaks(card.pk) == []
