"""The draft a reviewer gets when the models hand a case over: the best answer the rail saw, kept."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orchestrator.models import ReviewTask, RunStatus, StepRun
from pipes.services import Actor, card_create
from tests.modelservers import answer, low_confidence
from tests.orchestrator.conftest import drain, make_agent, make_step
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db


@pytest.fixture
def triage(world, ollama, openai):
    return make_step(world.phase("triage"), agent=make_agent(world.pipe))


def submit(world):
    return card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())


def test_it_hands_the_most_confident_of_two_unsure_answers_to_the_reviewer(world, triage, ollama, openai):
    ollama.push(low_confidence("approve", {"category": "Hardware", "cost_center": "CC-100"}, 0.65))
    openai.push(low_confidence("reject", {"category": "Services"}, 0.40))
    card = submit(world)
    drain()
    task = ReviewTask.objects.get(card=card)
    assert task.proposal["decision"] == "approve"
    assert task.proposal["values"] == {"category": "Hardware", "cost_center": "CC-100"}
    assert task.confidence == Decimal("0.65")


def test_it_keeps_the_later_answer_when_it_is_the_more_confident(world, triage, ollama, openai):
    ollama.push(low_confidence("approve", {"category": "Hardware"}, 0.30))
    openai.push(low_confidence("reject", {"category": "Services"}, 0.60))
    card = submit(world)
    drain()
    task = ReviewTask.objects.get(card=card)
    assert task.proposal["decision"] == "reject" and task.proposal["values"] == {"category": "Services"}


def test_it_keeps_the_agents_draft_when_the_process_refuses_its_move(world, triage, ollama, openai):
    # Leaving triage needs a category; the answer sets only the cost center: the move is refused.
    ollama.push(answer("approve", {"cost_center": "CC-100"}, 0.95, reasoning="Cost center from the quote."))
    card = submit(world)
    drain()
    card.refresh_from_db()
    run, task = StepRun.objects.get(card=card), ReviewTask.objects.get(card=card)
    assert card.phase.key == "triage" and run.status == RunStatus.WAITING_REVIEW
    assert task.proposal["decision"] == "approve" and task.proposal["values"] == {"cost_center": "CC-100"}
    assert task.reasoning == "Cost center from the quote."
