"""Two actors changing the same card at once on PostgreSQL never lose an update."""

import threading

import pytest
from django.db import connection

from pipes.models import Card
from pipes.services import Actor, CardConflictError, CardError, card_create, card_move, card_update_fields
from pipes.timeline import verify_timelines
from tests.personas import good_start_values

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_together(*calls):
    barrier = threading.Barrier(len(calls))
    outcomes = [None] * len(calls)

    def worker(i, call):
        try:
            barrier.wait()
            outcomes[i] = call()
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcomes[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return outcomes


def fresh(card):
    return Card.objects.get(pk=card.pk)


def test_it_keeps_both_of_two_simultaneous_field_updates(world):
    card = card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())
    for i in range(5):
        outcomes = run_together(
            lambda i=i: card_update_fields(
                actor=Actor.for_user(world.member), card=fresh(card), values={"cost_center": f"CC-{100 + i}"}
            ),
            lambda i=i: card_update_fields(
                actor=Actor.for_user(world.admin), card=fresh(card), values={"item": f"Item {i}"}
            ),
        )
        assert not any(isinstance(o, Exception) for o in outcomes), outcomes
    card.refresh_from_db()
    assert card.version == 11 and card.event_count == 11
    assert card.values["cost_center"] == "CC-104" and card.values["item"] == "Item 4"
    assert list(verify_timelines([card])) == []


def test_it_lets_exactly_one_of_two_moves_from_the_same_version_win(world):
    card = card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())
    card = card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    version = card.version
    outcomes = run_together(
        lambda: card_move(
            actor=Actor.for_user(world.member),
            card=fresh(card),
            to_phase=world.phase("approval"),
            expected_version=version,
        ),
        lambda: card_move(
            actor=Actor.for_user(world.admin),
            card=fresh(card),
            to_phase=world.phase("rejected"),
            expected_version=version,
        ),
    )
    winners = [o for o in outcomes if isinstance(o, Card)]
    losers = [o for o in outcomes if isinstance(o, CardError)]
    assert len(winners) == 1 and len(losers) == 1 and isinstance(losers[0], CardConflictError)
    card.refresh_from_db()
    assert card.phase_id == winners[0].phase_id and card.version == version + 1
    assert card.phase_entries.count() == 2


def test_it_serialises_moves_without_a_version_so_the_second_sees_the_first(world):
    card = card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())
    card = card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    outcomes = run_together(
        lambda: card_move(
            actor=Actor.for_user(world.member), card=fresh(card), to_phase=world.phase("approval")
        ),
        lambda: card_move(
            actor=Actor.for_user(world.admin), card=fresh(card), to_phase=world.phase("approval")
        ),
    )
    assert sum(isinstance(o, Card) for o in outcomes) == 1
    assert any("already in Approval" in str(o) for o in outcomes)


def test_it_lets_only_one_of_two_simultaneous_moves_into_a_phase_with_one_place_left(world):
    approval = world.phase("approval")
    approval.wip_limit, approval.wip_blocks = 1, True
    approval.save()
    for round_ in range(3):  # each round the limit leaves one place, and two cards race for it
        pair = [card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())]
        pair.append(
            card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())
        )
        for card in pair:
            card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
        approval.wip_limit = round_ + 1
        approval.save()
        outcomes = run_together(
            *(
                lambda card=card: card_move(
                    actor=Actor.for_user(world.member), card=fresh(card), to_phase=approval
                )
                for card in pair
            )
        )
        assert sum(isinstance(o, Card) for o in outcomes) == 1, outcomes
        assert any("at its limit of" in str(o) for o in outcomes), outcomes
        assert Card.objects.filter(phase=approval).count() == round_ + 1


def test_it_lets_only_one_of_two_simultaneous_new_cards_into_a_first_phase_with_one_place_left(world):
    triage = world.phase("triage")
    triage.wip_limit, triage.wip_blocks = 1, True
    triage.save()
    for round_ in range(3):
        triage.wip_limit = round_ + 1
        triage.save()
        outcomes = run_together(
            *(
                lambda: card_create(
                    actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values()
                )
                for _ in range(2)
            )
        )
        assert sum(isinstance(o, Card) for o in outcomes) == 1, outcomes
        assert Card.objects.filter(phase=triage).count() == round_ + 1
