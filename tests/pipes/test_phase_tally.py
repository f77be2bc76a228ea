"""The board's column totals: on PostgreSQL each phase's tally (pipes.models.PhaseTally) is kept by
triggers whatever writes the cards; everywhere, the totals the board shows are the cards each phase
holds."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from pipes.board.selectors import BoardFilters, board_counts
from pipes.models import Card, Phase, PhaseTally
from pipes.roles import pipe_access
from pipes.selectors import board_schema
from pipes.services import Actor, card_create, card_move, card_update_fields
from tests.personas import good_start_values


def held(world) -> dict[int, int]:
    """Cards per phase of the world's pipe, counted."""
    return {p.pk: Card.objects.filter(phase=p).count() for p in world.pipe.phases.all()}


def shown(world) -> dict[int, int]:
    """The totals the board shows for each phase."""
    pipe = world.pipe
    schema = board_schema(pipe=pipe, access=pipe_access(user=world.member, pipe=pipe))
    counts = board_counts(schema=schema, filters=BoardFilters())
    return {p.pk: counts[p.pk].total for p in schema.phases}


def tallied(world) -> dict[int, int]:
    """Each phase's tally row, with what this transaction changed of it since (its pending rows)."""
    rows = dict(PhaseTally.objects.filter(phase__pipe=world.pipe).values_list("phase_id", "cards"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT phase_id, SUM(n) FROM pipes_phasetally_pending GROUP BY phase_id")
        pending = dict(cursor.fetchall())
    return {p.pk: rows.get(p.pk) + pending.get(p.pk, 0) for p in world.pipe.phases.all()}


def assert_totals_right(world) -> None:
    counted = held(world)
    assert shown(world) == counted
    if connection.vendor == "postgresql":
        assert tallied(world) == counted


@pytest.mark.django_db
def test_the_totals_follow_every_way_cards_are_written(world):
    actor = Actor.for_user(world.member)
    cards = [card_create(actor=actor, pipe=world.pipe, values=good_start_values()) for _ in range(3)]
    assert_totals_right(world)
    card = card_update_fields(actor=actor, card=cards[0], values={"category": "Hardware"})
    card_move(actor=actor, card=card, to_phase=world.phase("approval"))
    assert_totals_right(world)
    card_update_fields(actor=actor, card=Card.objects.get(pk=cards[1].pk), values={"cost_center": "CC-123"})
    assert_totals_right(world)  # a write that moves nothing changes no total
    Card.objects.bulk_create(
        [
            Card(pipe=world.pipe, phase=world.phase("rejected"), title=f"Bulk {i}", number=100 + i)
            for i in range(5)
        ]
    )
    assert_totals_right(world)
    Card.objects.filter(title__startswith="Bulk").update(
        phase=world.phase("done")
    )  # one statement, five moves
    assert_totals_right(world)
    Card.objects.filter(title__in=["Bulk 0", "Bulk 1"]).delete()
    Card.objects.filter(pk=cards[2].pk).delete()
    assert_totals_right(world)
    extra = Phase.objects.create(pipe=world.pipe, name="Extra", key="extra", position=9)
    assert_totals_right(world)
    assert held(world)[extra.pk] == 0


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_rolled_back_write_leaves_the_tallies_as_they_were(world):
    actor = Actor.for_user(world.member)
    card_create(actor=actor, pipe=world.pipe, values=good_start_values())
    before = tallied(world)
    with pytest.raises(RuntimeError), transaction.atomic():
        card_create(actor=actor, pipe=world.pipe, values=good_start_values())
        Card.objects.update(phase=world.phase("rejected"))
        raise RuntimeError("rolled back")
    assert tallied(world) == before
    assert_totals_right(world)


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_truncated_card_table_leaves_every_phase_at_zero(world):
    card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE waits for no deferred check
        cursor.execute(f"TRUNCATE {Card._meta.db_table} CASCADE")
    assert set(tallied(world).values()) == {0}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_simultaneous_moves_in_opposite_directions_neither_deadlock_nor_miscount(world):
    triage, approval = world.phase("triage"), world.phase("approval")
    Card.objects.bulk_create(
        [
            Card(pipe=world.pipe, phase=triage if i % 2 else approval, title=f"Card {i}", number=i)
            for i in range(40)
        ]
    )
    ids = {p.pk: list(Card.objects.filter(phase=p).values_list("pk", flat=True)) for p in (triage, approval)}
    errors: list[Exception] = []
    barrier = threading.Barrier(2)

    def shuttle(mine: list[int], there: Phase, back: Phase) -> None:
        try:
            barrier.wait()
            for _ in range(5):
                for to in (there, back):
                    for pk in mine:
                        with transaction.atomic():  # each move its own transaction, as on the board
                            Card.objects.filter(pk=pk).update(phase=to)
        except Exception as exc:  # noqa: BLE001 - a deadlock or any other error fails the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=shuttle, args=(ids[triage.pk], approval, triage)),
        threading.Thread(target=shuttle, args=(ids[approval.pk], triage, approval)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert_totals_right(world)
    assert held(world)[triage.pk] == 20 == held(world)[approval.pk]


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_transaction_writing_many_cards_changes_each_tally_row_once_and_the_rest_at_commit(world):
    """Each tally row is updated once per transaction; the phase's further changes wait in pending rows
    (migration 0014), which the same transaction's board adds and the commit folds in."""
    actor = Actor.for_user(world.member)
    before = tallied(world)
    triage = world.phase("triage").pk
    with transaction.atomic():
        for _ in range(30):
            card_create(actor=actor, pipe=world.pipe, values=good_start_values())
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM pipes_phasetally_pending WHERE phase_id = %s", [triage])
            assert cursor.fetchone()[0] == 29  # the first went to the tally row itself
        assert shown(world)[triage] == before[triage] + 30 == held(world)[triage]
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # what the commit runs: the fold
            cursor.execute("SELECT COUNT(*) FROM pipes_phasetally_pending")
            assert cursor.fetchone()[0] == 0
    assert_totals_right(world)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_tallies_are_right_after_a_committed_transaction_of_many_cards(world):
    actor = Actor.for_user(world.member)
    with transaction.atomic():
        cards = [card_create(actor=actor, pipe=world.pipe, values=good_start_values()) for _ in range(20)]
        Card.objects.filter(pk__in=[c.pk for c in cards[:7]]).update(phase=world.phase("rejected"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM pipes_phasetally_pending")
        assert cursor.fetchone()[0] == 0
    assert_totals_right(world)
    assert held(world)[world.phase("rejected").pk] == 7
