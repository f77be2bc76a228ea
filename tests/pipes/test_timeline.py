"""The timeline is append-only and hash-chained: edits, deletions and reordering are detected; a seal
names a dropped tail, an erased payload needs its erasure event, and values are what events replay to."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from pipes.models import Card, CardEvent
from pipes.services import Actor, card_comment, card_create, card_erase_personal_data, card_update_fields
from pipes.timeline import SealError, timeline_seal_latest, timeline_seal_write, verify_timelines
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


@pytest.fixture
def seal_dir(settings, tmp_path):
    settings.TRILHO_TIMELINE_SEAL_DIR = str(tmp_path / "seals")
    return tmp_path / "seals"


def sealed_breaks(card):
    card.refresh_from_db()
    return [str(b) for b in verify_timelines([card], seal=timeline_seal_latest())]


def drop_tail(card, *, keep: int) -> None:
    """What someone with database access does to cut a card's last events without a chain break."""
    head = CardEvent.objects.get(card=card, seq=keep)
    CardEvent.objects.filter(card=card, seq__gt=keep).delete()
    Card.objects.filter(pk=card.pk).update(event_count=keep, last_event_hash=head.hash)


def test_it_names_a_card_whose_last_events_were_dropped_since_the_seal(world, seal_dir):
    card = card_with_history(world)
    timeline_seal_write()
    drop_tail(card, keep=2)
    assert breaks(card) == []  # the chain alone cannot tell
    assert sealed_breaks(card) == [
        f"card {card.pk}, timeline: the seal recorded 3 events, now 2: events were dropped since"
    ]


def test_it_names_a_card_whose_tail_was_rewritten_after_the_seal(world, seal_dir):
    card = card_with_history(world)
    timeline_seal_write()
    drop_tail(card, keep=2)
    card_comment(actor=Actor.for_user(world.member), card=Card.objects.get(pk=card.pk), text="Another")
    assert sealed_breaks(card) == [
        f"card {card.pk}, event #3: differs from the head the seal recorded: the timeline was rewritten"
    ]


def test_it_accepts_events_added_after_the_seal(world, seal_dir):
    card = card_with_history(world)
    timeline_seal_write()
    card_comment(actor=Actor.for_user(world.member), card=card, text="Later")
    assert sealed_breaks(card) == []


def test_it_names_a_card_deleted_since_the_seal(world, seal_dir):
    card = card_with_history(world)
    call_command("seal_timeline", stdout=io.StringIO())
    Card.objects.filter(pk=card.pk).delete()
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("verify_timeline", stdout=out)
    assert f"card {card.pk}, timeline: the seal recorded 3 events, and the card is gone" in out.getvalue()


def test_it_refuses_a_seal_whose_file_was_edited(world, seal_dir):
    card = card_with_history(world)
    path = timeline_seal_write().path
    data = json.loads(path.read_text())
    data["cards"][str(card.pk)] = [2, CardEvent.objects.get(card=card, seq=2).hash]
    path.write_text(json.dumps(data))
    with pytest.raises(SealError, match="digest does not verify"):
        timeline_seal_latest()


def test_it_names_a_payload_blanked_without_an_erasure_event(world):
    card = card_with_history(world)
    CardEvent.objects.filter(card=card, seq=2).update(payload=None, payload_salt="")
    assert breaks(card) == [f"card {card.pk}, event #2: content erased, and no erasure event accounts for it"]


def test_it_accepts_payloads_an_erasure_event_accounts_for(world):
    card = card_with_history(world)
    erased = card_erase_personal_data(
        actor=Actor.for_user(world.owner), card=card, field_keys=["requester_email"], identifiers=[]
    )
    assert erased.event_seqs  # the creation event held the address
    assert breaks(card) == []


def test_it_names_a_value_changed_without_an_event(world):
    card = card_with_history(world)
    Card.objects.filter(pk=card.pk).update(values={**card.values, "category": "Services"})
    assert breaks(card) == [
        f"card {card.pk}, timeline: current values of category are not what the timeline replays to"
        " (changed without an event)"
    ]


def test_it_names_dropped_events_through_the_commands(world, seal_dir):
    card = card_with_history(world)
    out = io.StringIO()
    call_command("seal_timeline", stdout=out)
    assert "Sealed" in out.getvalue() and len(list(seal_dir.glob("timeline-seal-*.json"))) == 1
    call_command("verify_timeline", stdout=io.StringIO())  # nothing dropped yet
    drop_tail(card, keep=2)
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 break"):
        call_command("verify_timeline", stdout=out)
    assert f"card {card.pk}, timeline: the seal recorded 3 events, now 2" in out.getvalue()
