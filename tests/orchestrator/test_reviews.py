"""Human steps: review tasks, review_decide and how the rail continues after a decision."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orchestrator.models import Mechanism, ReviewStatus, ReviewTask, RunStatus, StepRun
from orchestrator.services import RailError, RailPermissionError, review_decide
from pipes.choices import RailStatus
from pipes.models import Notification
from pipes.services import Actor, CardError, card_create, card_move
from tests.modelservers import low_confidence
from tests.orchestrator.conftest import drain, make_agent, make_step
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db


@pytest.fixture
def human_step(world, rail_settings):
    return make_step(
        world.phase("approval"),
        key="approve",
        name="Manager approval",
        mechanism=Mechanism.HUMAN,
        question="Approve this purchase?",
        on_approve="done",
        on_reject="rejected",
    )


def in_approval(world):
    card = card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())
    from pipes.services import card_update_fields

    card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    card_move(actor=Actor.for_user(world.member), card=card, to_phase=world.phase("approval"))
    drain()
    card.refresh_from_db()
    return card


def test_it_makes_the_card_wait_for_a_reviewer(world, human_step):
    card = in_approval(world)
    task = ReviewTask.objects.get(card=card)
    assert card.rail_status == RailStatus.WAITING_REVIEW and card.rail_note == "Approve this purchase?"
    assert task.status == ReviewStatus.OPEN and task.allowed_decisions == ["approve", "reject"]
    assert task.reason == "the step is decided by a person"
    notified = set(Notification.objects.filter(card=card).values_list("user__username", flat=True))
    assert {"reviewer", "admin", "owner"} <= notified
    assert card.phase_entries.get(phase__key="approval").processed_at is not None


def test_it_applies_the_decision_and_moves_the_card(world, human_step, settings):
    settings.TRILHO_HUMAN_COST_PER_MINUTE = Decimal("2.00")
    card = in_approval(world)
    task = ReviewTask.objects.get(card=card)
    review_decide(
        task=task, user=world.reviewer, decision="approve", comment="OK", values={"po_number": "PO-1"}
    )
    card.refresh_from_db()
    run = StepRun.objects.get(pk=task.run_id)
    task.refresh_from_db()
    assert card.phase.key == "done" and card.values["po_number"] == "PO-1"
    assert task.status == ReviewStatus.DECIDED and task.decided_by == world.reviewer
    assert run.status == RunStatus.DONE and run.mechanism == Mechanism.HUMAN and run.decision == "approve"
    assert run.cost == Decimal("10.00")  # 5 minutes (task never opened) at 2.00
    assert run.events.last().kind == "review"
    decided = card.events.filter(kind="step").last()
    assert decided.actor_kind == "user" and decided.actor_label == "Reviewer"
    assert decided.reason == "Decided approve: OK"
    assert card.events.get(kind="moved", payload__to="done").actor_label == "Review by Reviewer"
    assert card.rail_status == RailStatus.IDLE


def test_it_refuses_a_second_decision_with_a_clear_error(world, human_step):
    card = in_approval(world)
    task = ReviewTask.objects.get(card=card)
    review_decide(
        task=task,
        user=world.reviewer,
        decision="reject",
        comment="Too expensive",
        values={"po_number": "PO-0"},
    )
    with pytest.raises(RailError) as exc:
        review_decide(task=task, user=world.admin, decision="approve", values={"po_number": "PO-2"})
    assert exc.value.message == "This review was already decided by Reviewer; nothing was changed."
    card.refresh_from_db()
    assert card.phase.key == "rejected" and card.values["po_number"] == "PO-0"


@pytest.mark.parametrize("who", ["member", "viewer", "requester", "outsider"])
def test_it_lets_only_reviewers_decide(world, human_step, who):
    card = in_approval(world)
    task = ReviewTask.objects.get(card=card)
    with pytest.raises(RailPermissionError):
        review_decide(task=task, user=getattr(world, who), decision="approve", values={"po_number": "PO-1"})
    task.refresh_from_db()
    assert task.status == ReviewStatus.OPEN


def test_it_refuses_a_decision_outside_the_allowed_ones(world, human_step):
    task = ReviewTask.objects.get(card=in_approval(world))
    with pytest.raises(RailError, match="Choose one of: approve, reject"):
        review_decide(task=task, user=world.reviewer, decision="maybe")


def test_it_changes_nothing_when_the_process_refuses_the_decision(world, human_step):
    card = in_approval(world)
    task = ReviewTask.objects.get(card=card)
    with pytest.raises(CardError) as exc:
        review_decide(task=task, user=world.reviewer, decision="approve")  # PO number is required to leave
    assert "po_number" in exc.value.errors
    task.refresh_from_db()
    card.refresh_from_db()
    assert task.status == ReviewStatus.OPEN and card.phase.key == "approval"


def test_it_continues_with_the_next_step_when_the_decision_keeps_the_card(world, human_step):
    human_step.on_approve = ""
    human_step.save()
    make_step(
        world.phase("approval"),
        position=2,
        key="order",
        name="Place the order",
        mechanism=Mechanism.AUTOMATION,
        actions=[
            {"type": "set_field", "field": "po_number", "value": "PO-9"},
            {"type": "move", "to": "done"},
        ],
    )
    card = in_approval(world)
    task = ReviewTask.objects.get(card=card)
    review_decide(task=task, user=world.reviewer, decision="approve")
    drain()
    card.refresh_from_db()
    assert card.phase.key == "done" and card.values["po_number"] == "PO-9"


def test_it_applies_the_agents_proposal_when_the_reviewer_approves_it(world, ollama, openai):
    agent = make_agent(world.pipe)
    make_step(world.phase("triage"), agent=agent)
    ollama.push(low_confidence("approve", {"category": "Software"}, 0.2))
    openai.push(low_confidence("approve", {"category": "Software"}, 0.4))
    card = card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())
    drain()
    task = ReviewTask.objects.get(card=card)
    assert task.proposal["values"] == {"category": "Software"}
    review_decide(task=task, user=world.reviewer, decision="approve")
    card.refresh_from_db()
    assert card.values["category"] == "Software" and card.phase.key == "approval"


def test_it_cancels_the_review_when_a_person_moves_the_card_away(world, human_step):
    card = in_approval(world)
    card_move(actor=Actor.for_user(world.member), card=card, to_phase=world.phase("triage"))
    drain()
    task = ReviewTask.objects.get(card=card)
    assert task.status == ReviewStatus.CANCELLED
    with pytest.raises(RailError, match="already cancelled"):
        review_decide(task=task, user=world.reviewer, decision="approve")
