"""Deciding in one pass: bulk approval offers only what it can decide and takes the shared fields once;
a rejection asks only what its move needs and takes the reason from the comment; the review screen's
conditional fields follow live."""

from __future__ import annotations

import pytest
from django.urls import reverse

from orchestrator.inbox.selectors import InboxFilters, inbox_rows
from orchestrator.inbox.services import inbox_bulk_approve, inbox_decide
from orchestrator.models import Risk
from pipes.choices import FieldType
from pipes.models import Field
from tests.inbox.conftest import approval_step, card_in_approval, task_of

pytestmark = pytest.mark.django_db


def decision_fields(world) -> None:
    """The approval phase asks for a Decision and, once it is Rejected, why (as the demo's invoices do)."""
    phase = world.phase("approval")
    Field.objects.create(
        pipe=world.pipe,
        phase=phase,
        key="decision",
        label="Decision",
        type=FieldType.SELECT,
        required=True,
        position=3,
        options=["Approved", "Rejected"],
    )
    Field.objects.create(
        pipe=world.pipe,
        phase=phase,
        key="rejection_reason",
        label="Why is it rejected?",
        type=FieldType.LONG_TEXT,
        required=True,
        position=4,
        condition={"field": "decision", "op": "eq", "value": "Rejected"},
    )


@pytest.fixture
def low_risk(world, rail_settings):
    decision_fields(world)
    return approval_step(world, risk=Risk.LOW)


def test_it_offers_bulk_approval_with_the_fields_it_needs(world, low_risk):
    card = card_in_approval(world)
    (row,) = inbox_rows(user=world.reviewer, filters=InboxFilters())
    assert row.task.card_id == card.pk and row.bulk_ok
    assert [f.key for f in row.bulk_needs] == ["po_number", "decision"]


def test_it_leaves_out_of_bulk_approval_what_the_review_cannot_set(world, rail_settings):
    decision_fields(world)
    from tests.orchestrator.conftest import make_agent

    agent = make_agent(world.pipe, writable_fields=["cost_center"])
    approval_step(world, risk=Risk.LOW, agent=agent)
    card_in_approval(world)
    (row,) = inbox_rows(user=world.reviewer, filters=InboxFilters())
    assert not row.bulk_ok and "PO number, Decision" in row.bulk_blocked


def test_it_approves_in_bulk_with_the_shared_fields_filled_once(world, low_risk):
    cards = [card_in_approval(world, item=f"Chair {i}") for i in range(3)]
    result = inbox_bulk_approve(
        task_ids=[task_of(c).pk for c in cards],
        user=world.reviewer,
        values={"po_number": "PO-77", "decision": "Approved"},
    )
    assert len(result.approved) == 3 and result.refused == []
    for card in cards:
        card.refresh_from_db()
        assert card.phase.key == "done" and card.values["decision"] == "Approved"


def test_it_rejects_in_one_pass_with_the_comment_as_the_reason(world, low_risk):
    card = card_in_approval(world)
    outcome = inbox_decide(
        task=task_of(card),
        user=world.reviewer,
        decision="reject",
        comment="The supplier is not on the approved list.",
        values={"po_number": "PO-9", "decision": "Rejected", "rejection_reason": ""},
    )
    card.refresh_from_db()
    assert outcome.final and card.phase.key == "rejected"
    assert card.values["rejection_reason"] == "The supplier is not on the approved list."


def test_it_shows_a_conditional_field_as_soon_as_its_condition_holds(client, world, low_risk):
    task = task_of(card_in_approval(world))
    client.force_login(world.reviewer)
    page = client.get(reverse("inbox:task", args=[task.pk])).content.decode()
    assert 'id="draft-rejection_reason" hidden' in page and "hx-post=" in page
    response = client.post(
        reverse("inbox:fields", args=[task.pk]), {"f-decision": "Rejected"}, HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert 'id="draft-rejection_reason"' in body and "Why is it rejected?" in body and "hx-swap-oob" in body
