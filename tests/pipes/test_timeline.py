"""The timeline is append-only and hash-chained: edits, deletions and reordering are detected."""

from django.db import connection

from pipes.models import CardEvent
from pipes.services import Actor, card_comment, card_create, card_update_fields
from pipes.timeline import verify_timelines
from tests.personas import good_start_values


def card_with_history(world):
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Software"})
    card_comment(actor=Actor.for_user(world.member), card=card, text="Checked the quote")
    card.refresh_from_db()
    return card


def breaks(card):
    card.refresh_from_db()
    return [str(b) for b in verify_timelines([card])]


def test_it_chains_each_event_to_the_previous_one(world):
    card = card_with_history(world)
    events = list(card.events.order_by("seq"))
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].prev_hash == "" and events[1].prev_hash == events[0].hash
    assert card.last_event_hash == events[2].hash and card.event_count == 3
    assert breaks(card) == []


def test_it_detects_a_payload_edited_in_the_database(world):
    card = card_with_history(world)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pipes_cardevent SET payload = %s WHERE card_id = %s AND seq = 2",
            ['{"changes": {"category": {"before": null, "after": "Hardware"}}}', card.pk],
        )
    assert breaks(card) == [f"card {card.pk}, event #2: content was changed after it was written"]


def test_it_detects_metadata_edited_in_the_database(world):
    card = card_with_history(world)
    CardEvent.objects.filter(card=card, seq=3).update(actor_label="Someone else")
    assert any("event #3: metadata or hash" in b for b in breaks(card))


def test_it_detects_a_deleted_event(world):
    card = card_with_history(world)
    CardEvent.objects.filter(card=card, seq=2).delete()
    found = breaks(card)
    assert any("expected event #2" in b for b in found)


def test_it_detects_the_last_event_deleted(world):
    card = card_with_history(world)
    CardEvent.objects.filter(card=card, seq=3).delete()
    assert any("last events are missing" in b for b in breaks(card))


def test_it_detects_a_rewritten_chain_without_the_server_key(world, settings):
    card = card_with_history(world)
    settings.TRILHO_TIMELINE_KEY = "attacker-guess"
    assert breaks(card)  # someone with database access alone cannot recompute valid hashes
