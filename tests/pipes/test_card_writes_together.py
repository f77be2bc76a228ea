"""card_writes_together: the writes of a locked card by card_update_fields and card_record_step sent as one
statement when the block ends (PostgreSQL), with the same rows, audit entry, chained events and hooks
as one statement each; any other write of the card in the block sends them first."""

import pytest
from auditlog.context import set_actor
from auditlog.models import LogEntry
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from pipes import hooks
from pipes.models import Card, CardEvent
from pipes.services import (
    Actor,
    card_assign,
    card_create,
    card_lock,
    card_record_step,
    card_update_fields,
    card_writes_join,
    card_writes_together,
)
from pipes.timeline import verify_timelines
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db


@pytest.fixture
def card(world):
    return card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())


def data_statements(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].upper().startswith(("INSERT", "UPDATE", "WITH", "DELETE"))]


def test_a_field_change_and_a_step_record_are_one_statement_with_everything_each_would_write(world, card):
    announced: list[CardEvent] = []

    def receiver(event, **kwargs):
        announced.append((event.pk, event.kind))

    hooks.card_event_recorded.connect(receiver, weak=False)
    try:
        # The audit log's context (the middleware's, in a request) names who acted on its entries.
        with set_actor(world.member), transaction.atomic(), CaptureQueriesContext(connection) as queries:
            locked = card_lock(card=card)
            with card_writes_together(locked):
                locked = card_update_fields(
                    actor=Actor.for_user(world.member), card=locked, values={"category": "Hardware"}
                )
                card_record_step(actor=Actor.system("Rail"), card=locked, payload={"step": "Stamp"})
                assert announced == [] or connection.vendor != "postgresql"  # announced once written
    finally:
        hooks.card_event_recorded.disconnect(receiver)

    if connection.vendor == "postgresql":
        assert len(data_statements(queries)) == 1, data_statements(queries)
    stored = Card.objects.get(pk=card.pk)
    assert stored.values["category"] == "Hardware" and stored.version == card.version + 1
    assert stored.event_count == card.event_count + 2
    events = list(stored.events.order_by("seq"))
    assert [e.kind for e in events[-2:]] == ["fields_changed", "step"]
    assert [kind for _pk, kind in announced] == ["fields_changed", "step"]
    assert [pk for pk, _kind in announced] == [e.pk for e in events[-2:]]  # the hooks had the saved rows
    assert list(verify_timelines([stored])) == []
    entry = LogEntry.objects.get_for_object(stored).filter(action=LogEntry.Action.UPDATE).latest("pk")
    assert entry.actor == world.member and "category" in str(entry.changes)


def test_another_write_of_the_card_in_the_block_sends_what_was_gathered_first(world, card):
    with transaction.atomic():
        locked = card_lock(card=card)
        with card_writes_together(locked):
            locked = card_update_fields(
                actor=Actor.for_user(world.member), card=locked, values={"category": "Hardware"}
            )
            locked = card_assign(actor=Actor.for_user(world.member), card=locked, users=[world.member])
            card_record_step(actor=Actor.system("Rail"), card=locked, payload={"step": "Stamp"})
    stored = Card.objects.get(pk=card.pk)
    kinds = list(stored.events.order_by("seq").values_list("kind", flat=True))
    assert kinds[-3:] == ["fields_changed", "assigned", "step"]
    assert stored.values["category"] == "Hardware" and list(stored.assignees.all()) == [world.member]
    assert stored.event_count == len(kinds) and list(verify_timelines([stored])) == []


def test_nothing_gathered_is_written_when_the_block_fails(world, card):
    with pytest.raises(RuntimeError), transaction.atomic():
        locked = card_lock(card=card)
        with card_writes_together(locked):
            card_update_fields(
                actor=Actor.for_user(world.member), card=locked, values={"category": "Hardware"}
            )
            raise RuntimeError("the step failed")
    stored = Card.objects.get(pk=card.pk)
    assert "category" not in stored.values and stored.event_count == card.event_count
    assert list(verify_timelines([stored])) == []


@pytest.mark.postgres
def test_writes_gathered_across_a_savepoint_that_rolled_back_are_refused_not_half_written(world, card):
    with pytest.raises(RuntimeError), transaction.atomic():
        locked = card_lock(card=card)
        with card_writes_together(locked):
            card_update_fields(
                actor=Actor.for_user(world.member), card=locked, values={"category": "Hardware"}
            )
            try:
                with transaction.atomic():  # a savepoint, rolled back and carried on from
                    card_record_step(actor=Actor.system("Rail"), card=locked, payload={"step": "Stamp"})
                    raise ValueError("undone")
            except ValueError:
                pass
    stored = Card.objects.get(pk=card.pk)
    assert "category" not in stored.values and stored.event_count == card.event_count


@pytest.mark.postgres
def test_statements_joined_to_the_gathered_writes_go_in_their_one_statement(world, card):
    """The rail's run record joins the card's writes (card_writes_join): one statement for all; without
    a block gathering them, nothing is joined and the caller sends its own."""
    note = "UPDATE pipes_card SET requester_email = %s WHERE id = %s AND FALSE"  # would touch no row
    with transaction.atomic():
        locked = card_lock(card=card)
        assert card_writes_join(locked, [(note, ["x@example.com", card.pk])]) is False
        with CaptureQueriesContext(connection) as queries, card_writes_together(locked):
            locked = card_update_fields(
                actor=Actor.for_user(world.member), card=locked, values={"category": "Hardware"}
            )
            assert card_writes_join(
                locked,
                [
                    (
                        "UPDATE pipes_phaseentry SET dispatch_count = dispatch_count + 7 WHERE card_id = %s",
                        [card.pk],
                    )
                ],
            )
            assert data_statements(queries) == []  # nothing sent before the block ends
    sent = data_statements(queries)
    assert len(sent) == 1 and "dispatch_count + 7" in sent[0], sent
    assert card.phase_entries.get().dispatch_count >= 7
    assert Card.objects.get(pk=card.pk).values["category"] == "Hardware"
