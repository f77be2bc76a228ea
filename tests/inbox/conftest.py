"""Builders of the inbox's tests: review tasks made by the rail's real path (a card entering a phase
whose step hands it to a person), with or without an agent's draft."""

from __future__ import annotations

import pytest

from orchestrator.models import Mechanism, ReviewTask, Risk, Step
from pipes.models import Card
from pipes.services import Actor, card_create, card_move, card_update_fields
from tests.modelservers import OllamaServer, low_confidence
from tests.orchestrator.conftest import drain, make_agent, make_step
from tests.orchestrator.conftest import rail_settings as rail_settings  # noqa: F401  (fixture)
from tests.personas import good_start_values

DRAFT = {"category": "Software", "cost_center": "CC-123"}


def approval_step(world, **overrides) -> Step:
    """A human step in Approval: approve moves the card to Purchased, reject to Rejected."""
    spec = dict(
        key="approve",
        name="Manager approval",
        mechanism=Mechanism.HUMAN,
        question="Approve this purchase?",
        on_approve="done",
        on_reject="rejected",
        risk=Risk.HIGH,
    )
    spec.update(overrides)
    return make_step(world.phase("approval"), **spec)


def card_in_approval(world, *, by=None, item: str = "Laptop for Ana", **values) -> Card:
    """A request filed by `by` (the requester persona by default), triaged and moved to Approval; the rail ran."""
    requester = by or world.requester
    card = card_create(
        actor=Actor.for_user(requester), pipe=world.pipe, values=good_start_values(item=item, **values)
    )
    card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    card_move(actor=Actor.for_user(world.member), card=card, to_phase=world.phase("approval"))
    drain()
    card.refresh_from_db()
    return card


def task_of(card: Card) -> ReviewTask:
    return ReviewTask.objects.get(card=card, status="open")


@pytest.fixture
def ollama_only(rail_settings):  # noqa: F811
    """A scripted Ollama; the agents of these tests have no foundation model, so an unsure answer goes to a person."""
    with OllamaServer() as server:
        rail_settings.OLLAMA_BASE_URL = server.url
        yield server


def triage_agent_step(world, **overrides) -> Step:
    """An agent classifies requests in Triage; approve moves the card to Approval."""
    agent = make_agent(world.pipe, escalation_provider="", escalation_model="")
    spec = dict(agent=agent, on_approve="approval", on_reject="rejected")
    spec.update(overrides)
    return make_step(world.phase("triage"), **spec)


def drafted_card(
    world, server, *, by=None, confidence: float = 0.55, values=None, item: str = "Laptop for Ana"
) -> Card:
    """A request the agent drafted but was unsure about: it waits for a reviewer with the agent's proposal."""
    server.push(low_confidence("approve", dict(DRAFT if values is None else values), confidence))
    card = card_create(
        actor=Actor.for_user(by or world.requester), pipe=world.pipe, values=good_start_values(item=item)
    )
    drain()
    card.refresh_from_db()
    return card
