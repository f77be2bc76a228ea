"""Human steps: review tasks, their decision (through the inbox's decide service, the only public way) and
how the rail continues after a decision."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orchestrator.inbox.services import inbox_decide
from orchestrator.models import Mechanism, ReviewStatus, ReviewTask, RunStatus, StepRun
from orchestrator.rail.services import RailError, RailPermissionError
from pipes.choices import PipeRole, RailStatus
from pipes.models import Card, Notification
from pipes.roles import pipe_role_grant
from pipes.services import Actor, CardError, card_create, card_move
from tests.modelservers import answer, low_confidence
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
    inbox_decide(
        task=task, user=world.reviewer, decision="approve", comment="OK", values={"po_number": "PO-1"}
    )
    card.refresh_from_db()
    run = StepRun.objects.get(pk=task.run_id)
    task.refresh_from_db()
    assert card.phase.key == "done" and card.values["po_number"] == "PO-1"
    assert task.status == ReviewStatus.DECIDED and task.decided_by == world.reviewer
    assert run.status == RunStatus.DONE and run.mechanism == Mechanism.HUMAN and run.decision == "approve"
    assert run.cost == 0  # the task was never opened: no minutes of a person billed
    assert run.events.last().kind == "review"
    decided = card.events.filter(kind="step").last()
    assert decided.actor_kind == "user" and decided.actor_label == "Reviewer"
    assert decided.reason == "Decided approve: OK"
    assert card.events.get(kind="moved", payload__to="done").actor_label == "Review by Reviewer"
    assert card.rail_status == RailStatus.IDLE


def test_it_refuses_a_second_decision_with_a_clear_error(world, human_step):
    card = in_approval(world)
    task = ReviewTask.objects.get(card=card)
    inbox_decide(
        task=task,
        user=world.reviewer,
        decision="reject",
        comment="Too expensive",
        values={"po_number": "PO-0"},
    )
    with pytest.raises(RailError) as exc:
        inbox_decide(task=task, user=world.admin, decision="approve", values={"po_number": "PO-2"})
    assert exc.value.message == "This review was already decided (reject) by Reviewer; nothing was changed."
    card.refresh_from_db()
    assert card.phase.key == "rejected" and card.values["po_number"] == "PO-0"


@pytest.mark.parametrize("who", ["member", "viewer", "requester", "outsider"])
def test_it_lets_only_reviewers_decide(world, human_step, who):
    card = in_approval(world)
    task = ReviewTask.objects.get(card=card)
    with pytest.raises(RailPermissionError):
        inbox_decide(task=task, user=getattr(world, who), decision="approve", values={"po_number": "PO-1"})
    task.refresh_from_db()
    assert task.status == ReviewStatus.OPEN


def test_it_refuses_a_decision_outside_the_allowed_ones(world, human_step):
    task = ReviewTask.objects.get(card=in_approval(world))
    with pytest.raises(RailError, match="Choose one of: approve, reject"):
        inbox_decide(task=task, user=world.reviewer, decision="maybe")


def test_it_changes_nothing_when_the_process_refuses_the_decision(world, human_step):
    card = in_approval(world)
    task = ReviewTask.objects.get(card=card)
    with pytest.raises(CardError) as exc:
        inbox_decide(task=task, user=world.reviewer, decision="approve")  # PO number is required to leave
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
    inbox_decide(task=task, user=world.reviewer, decision="approve")
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
    inbox_decide(task=task, user=world.reviewer, decision="approve")
    card.refresh_from_db()
    assert card.values["category"] == "Software" and card.phase.key == "approval"


def test_it_cancels_the_review_when_a_person_moves_the_card_away(world, human_step):
    card = in_approval(world)
    card_move(actor=Actor.for_user(world.member), card=card, to_phase=world.phase("triage"))
    drain()
    task = ReviewTask.objects.get(card=card)
    assert task.status == ReviewStatus.CANCELLED
    with pytest.raises(RailError, match="was cancelled"):
        inbox_decide(task=task, user=world.reviewer, decision="approve")


def test_it_clears_the_badge_when_a_person_moves_the_card_to_a_phase_without_steps(world, human_step):
    card = in_approval(world)
    assert card.rail_status == RailStatus.WAITING_REVIEW
    card_move(actor=Actor.for_user(world.member), card=card, to_phase=world.phase("triage"))
    drain()  # Triage has no steps: the entry is sent all the same, the rail has a review to wind up
    card.refresh_from_db()
    assert card.rail_status == RailStatus.IDLE


def test_an_idle_card_entering_a_phase_without_steps_costs_the_rail_nothing(world, human_step):
    from pipes.models import PhaseEntry

    card = card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())
    entry = PhaseEntry.objects.get(card=card, left_at__isnull=True)  # Triage: no steps
    assert entry.processed_at is not None and entry.dispatched_at is not None


# ---------------------------------------------------------------- four eyes on a model's answer

GOOD = {"category": "Hardware", "cost_center": "CC-100"}


def confident_four_eyes_card(world, server, mechanism: str) -> Card:
    """A request whose four-eyes step's model answers approve at confidence 0.97; the rail has run."""
    make_step(world.phase("triage"), agent=make_agent(world.pipe), mechanism=mechanism, four_eyes=True)
    server.push(answer("approve", GOOD, 0.97))
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    drain()
    card.refresh_from_db()
    return card


@pytest.fixture(params=[Mechanism.FOUNDATION_MODEL, Mechanism.LOCAL_MODEL])
def confident_card(request, world, ollama, openai):
    server = openai if request.param == Mechanism.FOUNDATION_MODEL else ollama
    return confident_four_eyes_card(world, server, request.param)


def test_it_hands_a_confident_answer_on_a_four_eyes_step_to_people(world, confident_card):
    task = ReviewTask.objects.get(card=confident_card)
    assert confident_card.phase.key == "triage" and "category" not in confident_card.values
    assert confident_card.rail_status == RailStatus.WAITING_REVIEW
    assert task.status == ReviewStatus.OPEN and task.run.status == RunStatus.WAITING_REVIEW
    assert task.proposal["decision"] == "approve" and task.proposal["values"]["category"] == "Hardware"
    assert task.confidence == Decimal("0.97") and task.inbox.approvals_required == 2
    assert task.reason.endswith("with confidence 0.97; four eyes: two people approve → human")


def test_it_needs_two_approvals_before_a_confident_answer_takes_effect(world, confident_card):
    task = ReviewTask.objects.get(card=confident_card)
    first = inbox_decide(task=task, user=world.reviewer, decision="approve")
    confident_card.refresh_from_db()
    assert (
        not first.final and confident_card.phase.key == "triage" and "category" not in confident_card.values
    )

    second = inbox_decide(task=task, user=world.admin, decision="approve")

    confident_card.refresh_from_db()
    assert second.final and confident_card.phase.key == "approval"
    assert confident_card.values["category"] == "Hardware"


def test_it_refuses_the_same_person_twice_on_a_confident_answer(world, confident_card):
    task = ReviewTask.objects.get(card=confident_card)
    inbox_decide(task=task, user=world.reviewer, decision="approve")
    with pytest.raises(RailPermissionError, match="a second, different reviewer"):
        inbox_decide(task=task, user=world.reviewer, decision="approve")
    confident_card.refresh_from_db()
    assert confident_card.phase.key == "triage" and task_status(task) == ReviewStatus.OPEN


def test_it_refuses_the_requester_on_a_confident_answer(world, confident_card):
    pipe_role_grant(
        pipe=world.pipe, user=world.requester, role=PipeRole.REVIEWER
    )  # they review this pipe too
    task = ReviewTask.objects.get(card=confident_card)
    inbox_decide(task=task, user=world.reviewer, decision="approve")
    with pytest.raises(RailPermissionError, match="You filed this request"):
        inbox_decide(task=task, user=world.requester, decision="approve")
    confident_card.refresh_from_db()
    assert confident_card.phase.key == "triage" and task_status(task) == ReviewStatus.OPEN


def test_it_hands_a_rules_decision_on_a_four_eyes_step_to_people(world, rail_settings):
    rule = {"when": {"field": "item", "op": "not_empty"}, "decision": "approve", "values": GOOD}
    make_step(world.phase("triage"), agent=make_agent(world.pipe), rules=[rule], four_eyes=True)
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    drain()
    card.refresh_from_db()
    task = ReviewTask.objects.get(card=card)
    assert card.phase.key == "triage" and task.status == ReviewStatus.OPEN
    assert task.proposal["values"] == GOOD and task.inbox.approvals_required == 2
    assert (
        task.reason
        == "rule 1 matched; approve proposed without a model; four eyes: two people approve → human"
    )


def task_status(task: ReviewTask) -> str:
    return ReviewTask.objects.values_list("status", flat=True).get(pk=task.pk)
