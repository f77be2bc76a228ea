"""Reads of the board: getters' 404/403 rules, columns and counts, filters, changes, home and masking."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pipes.board.selectors import (
    BoardFilters,
    board_columns,
    board_counts,
    card_list_for_board,
    cards_changed_since,
    home_pipes,
)
from pipes.masking import field_text, mask_text
from pipes.models import Card, Label, Phase
from pipes.roles import pipe_access
from pipes.selectors import board_schema, card_get_for_user, pipe_get_for_user
from pipes.services import Actor, card_assign, card_create, card_set_rail_status, card_update_fields
from tests.personas import good_start_values


def new_card(world, **values) -> Card:
    return card_create(
        actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values(**values)
    )


def schema_for(world, user=None):
    user = user or world.member
    return board_schema(pipe=world.pipe, access=pipe_access(user=user, pipe=world.pipe))


# ---------------------------------------------------------------- getters


def test_it_gets_the_pipe_for_people_who_see_the_board(world):
    for user in (world.owner, world.admin, world.member, world.reviewer, world.viewer):
        pipe, access = pipe_get_for_user(user=user, pk=world.pipe.pk)
        assert pipe == world.pipe and access.can_view_board


def test_it_hides_the_pipe_from_outsiders_and_refuses_requesters(world):
    with pytest.raises(Http404):
        pipe_get_for_user(user=world.outsider, pk=world.pipe.pk)
    with pytest.raises(PermissionDenied):
        pipe_get_for_user(user=world.requester, pk=world.pipe.pk)
    with pytest.raises(Http404):
        pipe_get_for_user(user=world.member, pk=999999)


def test_it_refuses_writes_to_viewers_and_reviewers(world):
    card = new_card(world)
    for user in (world.viewer, world.reviewer):
        card_get_for_user(user=user, pk=card.pk, pipe_id=world.pipe.pk)
        with pytest.raises(PermissionDenied):
            card_get_for_user(user=user, pk=card.pk, pipe_id=world.pipe.pk, write=True)
    found, access = card_get_for_user(user=world.member, pk=card.pk, pipe_id=world.pipe.pk, write=True)
    assert found == card and access.can_work


def test_it_does_not_find_a_card_through_another_pipe(world):
    from tests.personas import build_purchase_pipe

    other = build_purchase_pipe(world.org, slug="other", code="OT")
    card = new_card(world)
    with pytest.raises(Http404):
        card_get_for_user(user=world.owner, pk=card.pk, pipe_id=other.pk)


# ---------------------------------------------------------------- columns


def test_it_shows_the_newest_cards_of_each_phase_first(world):
    cards = [new_card(world, item=f"Item {i}") for i in range(3)]
    Card.objects.filter(pk=cards[0].pk).update(created_at=timezone.now() + dt.timedelta(minutes=5))
    columns = board_columns(schema=schema_for(world), filters=BoardFilters())
    triage = columns[0]
    assert triage.phase.key == "triage"
    assert [t.title for t in triage.cards] == ["Item 0", "Item 2", "Item 1"]
    assert triage.counts.total == 3 and triage.next_offset is None
    assert [c.phase.key for c in columns] == ["triage", "approval", "done", "rejected"]


def test_it_limits_each_column_and_pages_the_rest(world):
    for i in range(7):
        new_card(world, item=f"Item {i}")
    schema = schema_for(world)
    [triage, *_] = board_columns(schema=schema, filters=BoardFilters(), limit=3)
    assert [t.title for t in triage.cards] == ["Item 6", "Item 5", "Item 4"] and triage.next_offset == 3
    page, next_offset = card_list_for_board(
        schema=schema, phase=triage.phase, filters=BoardFilters(), offset=3, limit=3
    )
    assert [t.title for t in page] == ["Item 3", "Item 2", "Item 1"] and next_offset == 6
    page, next_offset = card_list_for_board(
        schema=schema, phase=triage.phase, filters=BoardFilters(), offset=6, limit=3
    )
    assert [t.title for t in page] == ["Item 0"] and next_offset is None


def test_it_counts_all_shown_and_late_cards_per_phase_in_two_queries_at_most(world):
    late, _fresh, mine = new_card(world), new_card(world), new_card(world)
    Card.objects.filter(pk=late.pk).update(phase_entered_at=timezone.now() - dt.timedelta(hours=25))
    card_assign(actor=Actor.system(), card=mine, users=[world.member])
    schema = schema_for(world)
    filters = BoardFilters(assignee="me", user_id=world.member.pk)
    with CaptureQueriesContext(connection) as queries:
        counts = board_counts(schema=schema, filters=filters)
    assert len(queries) == 2  # the totals, and the matching cards (a WHERE their indexes can answer)
    triage = counts[world.phase("triage").pk]
    assert (triage.total, triage.shown, triage.late) == (3, 1, 0)
    triage_pk = world.phase("triage").pk
    with CaptureQueriesContext(connection) as queries:
        unfiltered = board_counts(schema=schema, filters=BoardFilters())[triage_pk]
    assert len(queries) == 1
    assert (unfiltered.total, unfiltered.shown, unfiltered.late) == (3, 3, 1)
    late_filter = BoardFilters(late=True)
    assert board_counts(schema=schema, filters=late_filter)[world.phase("triage").pk].shown == 1


def test_few_and_many_matches_show_the_same_first_cards_of_every_column(world, monkeypatch):
    """Under filters, the first cards come from one pass over the matches when they are few, from one
    index scan per column when they are many: both ways must show the same cards in the same order."""
    from pipes.board import selectors as board_selectors

    cards = [new_card(world, item=f"Chair {i}" if i % 2 else f"Desk {i}") for i in range(14)]
    Card.objects.filter(pk__in=[c.pk for c in cards[::3]]).update(phase=world.phase("rejected"))
    schema = schema_for(world)
    filters = BoardFilters(q="chair")

    def shown() -> list[tuple[str, list[str]]]:
        columns = board_columns(schema=schema, filters=filters, limit=3)
        return [(c.phase.key, [t.title for t in c.cards], c.next_offset) for c in columns]

    few = shown()
    monkeypatch.setattr(board_selectors, "FEW_MATCHES", 0)
    assert shown() == few
    triage = {key: titles for key, titles, _next in few}["triage"]
    assert triage == ["Chair 13", "Chair 11", "Chair 7"]  # newest first, desks and moved chairs left out


def test_it_builds_tiles_with_badges_key_fields_and_people(world):
    card = new_card(world, item="Chair", amount="1234.5")
    card_assign(actor=Actor.system(), card=card, users=[world.admin])
    card_set_rail_status(card_id=card.pk, status="waiting_review")
    Card.objects.filter(pk=card.pk).update(due_at=timezone.now() - dt.timedelta(hours=1))
    [tile] = board_columns(schema=schema_for(world), filters=BoardFilters())[0].cards
    assert tile.reference == f"PR-{card.number}"
    assert tile.key_values == [("Amount", "BRL 1,234.50")]
    assert tile.is_overdue and not tile.is_late
    assert tile.rail_badge == ("warning", "Waiting for review")
    assert [p.get_full_name() for p in tile.assignee_list] == ["Admin"]
    assert tile.detail_url == f"/pipes/{world.pipe.pk}/cards/{card.pk}/"


def test_it_does_not_call_finished_cards_late_or_overdue(world):
    card = new_card(world)
    Card.objects.filter(pk=card.pk).update(
        finished_at=timezone.now(),
        due_at=timezone.now() - dt.timedelta(days=1),
        phase_entered_at=timezone.now() - dt.timedelta(days=9),
    )
    [tile] = board_columns(schema=schema_for(world), filters=BoardFilters())[0].cards
    assert not tile.is_late and not tile.is_overdue


def test_it_warns_when_a_column_reaches_its_wip_limit(world):
    triage = world.phase("triage")
    triage.wip_limit = 2
    triage.save()
    new_card(world)
    assert not board_columns(schema=schema_for(world), filters=BoardFilters())[0].wip_reached
    new_card(world)
    assert board_columns(schema=schema_for(world), filters=BoardFilters())[0].wip_reached


# ---------------------------------------------------------------- filters


def test_it_reads_filters_from_the_url(world):
    filters = BoardFilters.from_query(
        {"q": "  laptop ", "assignee": "me", "label": "x", "late": "1", "created_from": "2026-02-30"},
        user=world.member,
    )
    assert filters.q == "laptop" and filters.assignee_id == world.member.pk
    assert filters.label == "" and filters.late and filters.created_from is None
    assert filters.qs == "?q=laptop&assignee=me&late=1"


def test_it_filters_by_created_range_in_the_organization_time_zone(world):
    card = new_card(world, item="Night owl")
    # 01:30 UTC on 10 March is still 9 March in São Paulo (UTC-3).
    Card.objects.filter(pk=card.pk).update(created_at=dt.datetime(2026, 3, 10, 1, 30, tzinfo=dt.UTC))
    schema = schema_for(world)
    on_9 = BoardFilters(created_from=dt.date(2026, 3, 9), created_to=dt.date(2026, 3, 9))
    on_10 = BoardFilters(created_from=dt.date(2026, 3, 10), created_to=dt.date(2026, 3, 10))
    assert [t.title for t in board_columns(schema=schema, filters=on_9)[0].cards] == ["Night owl"]
    assert board_columns(schema=schema, filters=on_10)[0].cards == []


def test_it_searches_field_values_but_not_pii_hidden_from_the_viewer(world):
    card = new_card(world, item="Desk", requester_email="joana@empresa.com")
    card_update_fields(actor=Actor.system(), card=card, values={"cost_center": "CC-123"})
    by_member, by_viewer = schema_for(world), schema_for(world, world.viewer)
    assert board_columns(schema=by_member, filters=BoardFilters(q="cc-12"))[0].cards
    assert board_columns(schema=by_member, filters=BoardFilters(q="joana"))[0].cards
    assert not board_columns(schema=by_viewer, filters=BoardFilters(q="joana"))[0].cards


def test_the_search_index_prefilter_changes_no_answer(world):
    # On PostgreSQL a term of three characters or more is first looked up in trigram indexes of the
    # title and of the values as text; the exact search still decides.
    new_card(world, item="Standing desk")
    schema = schema_for(world)
    assert board_columns(schema=schema, filters=BoardFilters(q="ding de"))[0].cards
    # "item" is in every card's values as text (a key), but in no searched value.
    assert not board_columns(schema=schema, filters=BoardFilters(q="item"))[0].cards
    quoted = new_card(world, item='The "big" desk')
    assert [t.pk for t in board_columns(schema=schema, filters=BoardFilters(q='"big"'))[0].cards] == [
        quoted.pk
    ]


def test_it_filters_by_label(world):
    labeled, _plain = new_card(world, item="Labeled"), new_card(world, item="Plain")
    label = Label.objects.get(name="Priority")
    labeled.labels.add(label)
    columns = board_columns(schema=schema_for(world), filters=BoardFilters(label=str(label.pk)))
    assert [t.title for t in columns[0].cards] == ["Labeled"]
    assert columns[0].counts.shown == 1 and columns[0].counts.total == 2


# ---------------------------------------------------------------- changes


def test_it_lists_changed_cards_and_those_to_take_off(world):
    kept, dropped, quiet = new_card(world, item="Kept"), new_card(world, item="Dropped"), new_card(world)
    card_assign(actor=Actor.system(), card=kept, users=[world.member])
    since = timezone.now()
    card_update_fields(actor=Actor.system(), card=kept, values={"cost_center": "CC-001"})
    card_set_rail_status(card_id=dropped.pk, status="running")
    changes = cards_changed_since(
        schema=schema_for(world), filters=BoardFilters(assignee="me", user_id=world.member.pk), since=since
    )
    assert [t.pk for t in changes.tiles] == [kept.pk]
    assert changes.removed == [dropped.pk]
    assert quiet.pk not in changes.removed
    assert changes.counts[world.phase("triage").pk].total == 3


def test_it_answers_a_quiet_board_in_one_query(world):
    new_card(world)
    schema = schema_for(world)
    with CaptureQueriesContext(connection) as queries:
        changes = cards_changed_since(schema=schema, filters=BoardFilters(), since=timezone.now())
    assert len(queries) == 1 and changes.tiles == [] and changes.counts == {}


# ---------------------------------------------------------------- home


def test_it_groups_pipes_by_organization_with_open_and_late_counts(world):
    late, _open, done = new_card(world), new_card(world), new_card(world)
    Card.objects.filter(pk=late.pk).update(phase_entered_at=timezone.now() - dt.timedelta(hours=30))
    Card.objects.filter(pk=done.pk).update(finished_at=timezone.now())
    [group] = home_pipes(user=world.member)
    assert group.organization == world.org
    [summary] = group.pipes
    assert (summary.open_count, summary.late_count, summary.phase_count) == (2, 1, 4)


def test_it_shows_no_board_pipes_to_requesters_and_outsiders(world):
    assert home_pipes(user=world.requester) == []
    assert all(s.pipe != world.pipe for g in home_pipes(user=world.outsider) for s in g.pipes)


def test_it_counts_home_pipes_in_constant_queries(world):
    from tests.personas import build_purchase_pipe

    for i in range(3):
        build_purchase_pipe(world.org, slug=f"extra-{i}", code=f"E{i}")
        Phase.objects.create(pipe=world.pipe, name=f"More {i}", key=f"more-{i}", position=20 + i, sla_hours=1)
    new_card(world)
    with CaptureQueriesContext(connection) as queries:
        home_pipes(user=world.owner)
    assert len(queries) <= 4


# ---------------------------------------------------------------- masking


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("joana.silva@empresa.com.br", "j***@e***.br"),
        ("ana@example.com", "a***@e***.com"),
        ("+55 11 98765-4321", "*** 4321"),
        ("123.456.789-09", "*** 8909"),
        ("Joana Silva", "J***"),
        ("", ""),
    ],
)
def test_it_masks_personal_data(text, masked):
    assert mask_text(text) == masked


def test_it_masks_only_pii_fields_for_people_without_the_permission(world):
    email = world.pipe.fields.get(key="requester_email")
    item = world.pipe.fields.get(key="item")
    assert field_text(email, "ana@example.com", can_view_pii=False) == "a***@e***.com"
    assert field_text(email, "ana@example.com", can_view_pii=True) == "ana@example.com"
    assert field_text(item, "Laptop", can_view_pii=False) == "Laptop"
