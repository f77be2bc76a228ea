"""The router and the model paths, through the real langchain clients against scripted servers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orchestrator.models import Mechanism, PipeRailSettings, ReviewTask, Risk, RunStatus, StepRun, TraceKind
from pipes.choices import FieldType, RailStatus
from pipes.models import Field
from pipes.services import Actor, card_create
from tests.modelservers import answer, error, hang, low_confidence, malformed, slow
from tests.orchestrator.conftest import drain, make_agent, make_step
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db

GOOD = {"category": "Hardware", "cost_center": "CC-100"}


@pytest.fixture
def triage(world, ollama, openai):
    agent = make_agent(world.pipe)
    step = make_step(world.phase("triage"), agent=agent)
    return step


def submit(world, **values):
    return card_create(
        actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values(**values)
    )


def the_run(card) -> StepRun:
    return StepRun.objects.get(card=card)


def test_it_applies_a_confident_local_answer_and_moves_the_card(world, triage, ollama, openai):
    ollama.push(answer("approve", GOOD, 0.9))
    card = submit(world)
    drain()
    card.refresh_from_db()
    run = the_run(card)
    assert card.phase.key == "approval"
    assert card.values["category"] == "Hardware" and card.values["cost_center"] == "CC-100"
    assert run.status == RunStatus.DONE and run.mechanism == Mechanism.LOCAL_MODEL
    assert run.routing_reason == "local model llama-test decided approve with confidence 0.90"
    assert (run.input_tokens, run.output_tokens) == (120, 40)
    assert run.cost == Decimal("0.000016")  # 160 tokens at 0.10 per million
    assert run.baseline_cost == Decimal("0.001440")  # 120 in at 2.00 + 150 out at 8.00 per million
    assert openai.requests == []
    kinds = list(run.events.values_list("kind", flat=True))
    assert kinds == ["inputs", "prompt", "raw_output", "routing", "changes"]
    moved = card.events.get(kind="moved")
    assert moved.actor_kind == "agent" and moved.actor_label == "Triage agent"
    step_event = card.events.get(kind="step")
    assert step_event.payload["run_id"] == run.pk and step_event.payload["mechanism"] == "local_model"
    assert card.rail_status == RailStatus.IDLE


def test_it_escalates_a_low_confidence_local_answer_to_the_foundation_model(world, triage, ollama, openai):
    ollama.push(low_confidence("approve", GOOD))
    openai.push(answer("reject", {"category": "Services"}, 0.95))
    card = submit(world)
    drain()
    card.refresh_from_db()
    run = the_run(card)
    assert card.phase.key == "rejected" and card.values["category"] == "Services"
    assert run.mechanism == Mechanism.FOUNDATION_MODEL
    assert run.routing_reason == (
        "local confidence 0.31 below 0.70; foundation model gpt-test decided reject with confidence 0.95"
    )
    assert run.input_tokens == 240 and run.foundation_tokens == 160
    assert run.cost == Decimal("0.000016") + Decimal("0.000560")


@pytest.mark.parametrize(
    ("local_reply", "note"),
    [
        (malformed(), "local answer invalid"),
        (error(500), "local model llama-test unreachable"),
        (hang(2), "local model llama-test unreachable"),
    ],
    ids=["malformed", "500", "timeout"],
)
def test_it_falls_back_to_the_foundation_model_when_the_local_one_fails(
    world, triage, ollama, openai, local_reply, note
):
    ollama.push(local_reply)
    openai.push(answer("approve", GOOD, 0.88))
    card = submit(world)
    drain()
    card.refresh_from_db()
    run = the_run(card)
    assert card.phase.key == "approval"
    assert run.mechanism == Mechanism.FOUNDATION_MODEL
    assert run.routing_reason.startswith(note + "; foundation model gpt-test decided approve")


def test_it_records_why_a_malformed_answer_was_refused(world, triage, ollama, openai):
    ollama.push(malformed())
    openai.push(answer("approve", GOOD))
    card = submit(world)
    drain()
    event = the_run(card).events.get(kind=TraceKind.VALIDATION)
    assert "not valid JSON" in event.data["errors"][0]


def test_it_takes_a_slow_answer_that_arrives_within_the_timeout(world, triage, ollama, openai, settings):
    settings.TRILHO_MODEL_TIMEOUT_SECONDS = 2
    ollama.push(slow(0.4, "approve", GOOD, 0.9))
    card = submit(world)
    drain()
    card.refresh_from_db()
    run = the_run(card)
    assert card.phase.key == "approval" and run.mechanism == Mechanism.LOCAL_MODEL
    raw = run.events.get(kind=TraceKind.RAW_OUTPUT)
    assert raw.data["latency_ms"] >= 400
    assert run.latency_ms >= 400


def test_it_hands_over_to_a_person_when_no_model_is_reachable(world, triage, ollama, openai):
    ollama.push(error(500))
    openai.push(error(503))
    card = submit(world)
    drain()
    card.refresh_from_db()
    run = the_run(card)
    task = ReviewTask.objects.get(run=run)
    assert card.phase.key == "triage"
    assert card.rail_status == RailStatus.WAITING_REVIEW
    assert run.status == RunStatus.WAITING_REVIEW and run.mechanism == Mechanism.HUMAN
    assert run.routing_reason == (
        "no model reachable (local model llama-test unreachable; foundation model gpt-test unreachable) → human"
    )
    assert task.proposal is None and task.allowed_decisions == ["approve", "reject"]


def test_it_hands_over_when_both_models_are_unsure(world, triage, ollama, openai):
    ollama.push(low_confidence("approve", GOOD, 0.5))
    openai.push(low_confidence("approve", GOOD, 0.6))
    card = submit(world)
    drain()
    task = ReviewTask.objects.get(card=card)
    assert task.proposal["decision"] == "approve" and task.confidence == Decimal("0.60")
    assert task.reason == "local confidence 0.50 below 0.70; foundation confidence 0.60 below 0.70 → human"


def test_it_sends_high_risk_steps_to_a_person_without_asking_a_model(world, triage, ollama, openai):
    triage.risk = Risk.HIGH
    triage.save()
    card = submit(world)
    drain()
    assert ReviewTask.objects.get(card=card).reason == "risk high → human"
    assert ollama.requests == [] and openai.requests == []


def test_it_sends_amounts_above_the_agents_authority_to_a_person(world, triage, ollama, openai):
    card = submit(world, amount="52000")
    drain()
    run = the_run(card)
    assert run.routing_reason == "amount 52,000 exceeds authority 10,000 → human"
    assert ollama.requests == []


def test_it_sends_an_amount_in_another_currency_than_the_authoritys_to_a_person(
    world, triage, ollama, openai
):
    Field.objects.filter(pipe=world.pipe, key="amount").update(config={"currency": "USD"})
    card = submit(world, amount="500")  # small, but in dollars: the limit is in the organization's reais
    drain()
    assert the_run(card).routing_reason == "amount in USD, authority 10,000 is in BRL → human"
    assert ollama.requests == []


def with_budget_authority(world, **scope):
    """An agent whose authority limit reads an optional number field, "budget"."""
    Field.objects.create(pipe=world.pipe, key="budget", label="Budget", type=FieldType.NUMBER, position=9)
    return make_step(world.phase("triage"), agent=make_agent(world.pipe, authority_field="budget", **scope))


def test_it_sends_a_case_whose_amount_is_empty_to_a_person_without_asking_a_model(world, ollama, openai):
    with_budget_authority(world)
    card = submit(world)
    drain()
    assert (
        ReviewTask.objects.get(card=card).reason == "budget empty, authority 10,000 needs an amount → human"
    )
    assert ollama.requests == []


def test_it_hands_an_answer_the_write_path_refuses_for_authority_to_a_person(world, ollama, openai):
    with_budget_authority(world, writable_fields=["category", "cost_center", "budget"])
    ollama.push(answer("approve", GOOD, 0.95))  # it may set the budget, but leaves it empty
    card = submit(world)
    drain()
    card.refresh_from_db()
    run, task = the_run(card), ReviewTask.objects.get(card=card)
    assert card.phase.key == "triage" and "category" not in card.values
    assert run.status == RunStatus.WAITING_REVIEW
    assert task.reason == "budget empty, authority 10,000 needs an amount → human"
    assert task.proposal["decision"] == "approve" and task.proposal["values"]["category"] == "Hardware"
    assert not card.events.filter(actor_kind="agent", kind__in=["fields_changed", "moved"]).exists()


def test_it_lets_rules_settle_the_case_without_a_model(world, triage, ollama, openai):
    triage.rules = [
        {
            "when": {"field": "amount", "op": "lt", "value": 100},
            "decision": "approve",
            "values": {"category": "Services"},
            "reason": "small purchase",
        }
    ]
    triage.save()
    card = submit(world, amount="50")
    drain()
    card.refresh_from_db()
    run = the_run(card)
    assert card.phase.key == "approval" and card.values["category"] == "Services"
    assert run.mechanism == Mechanism.AUTOMATION
    assert run.routing_reason == "small purchase → approve without a model"
    assert ollama.requests == [] and run.cost == 0


def test_it_hands_over_once_the_monthly_budget_is_spent(world, triage, ollama, openai):
    PipeRailSettings.objects.create(pipe=world.pipe, monthly_token_budget=100)
    ollama.push(low_confidence("approve", GOOD), low_confidence("approve", GOOD))
    openai.push(answer("approve", GOOD, 0.9))
    first = submit(world)
    drain()
    assert the_run(first).mechanism == Mechanism.FOUNDATION_MODEL  # 160 tokens: the budget is now spent
    second = submit(world)
    drain()
    run = the_run(second)
    assert run.status == RunStatus.WAITING_REVIEW
    assert run.routing_reason == "local confidence 0.31 below 0.70; monthly token budget 100 spent → human"
    assert len(openai.requests) == 1


def test_it_runs_only_the_local_model_on_a_local_model_step(world, ollama, openai):
    agent = make_agent(world.pipe)
    make_step(world.phase("triage"), agent=agent, mechanism=Mechanism.LOCAL_MODEL)
    ollama.push(answer("approve", GOOD, 0.8))
    card = submit(world)
    drain()
    assert the_run(card).mechanism == Mechanism.LOCAL_MODEL
    assert openai.requests == []


def test_it_retries_an_unreachable_model_and_fails_the_step_after_its_attempts(world, ollama, openai):
    agent = make_agent(world.pipe)
    make_step(world.phase("triage"), agent=agent, mechanism=Mechanism.LOCAL_MODEL, max_attempts=2)
    ollama.push(error(500), hang(2))
    card = submit(world)
    drain()
    card.refresh_from_db()
    run = the_run(card)
    assert run.status == RunStatus.FAILED and run.attempts == 2
    assert "unavailable" in run.error
    assert card.rail_status == RailStatus.FAILED and "Classify the request" in card.rail_note
    assert card.phase.key == "triage"
    assert list(run.events.filter(kind=TraceKind.RETRY).values_list("attempt", flat=True)) == [1, 2]
    assert card.events.filter(kind="step").last().payload["status"] == "failed"


def test_it_counts_an_invalid_answer_as_a_failed_attempt_on_a_foundation_step(world, ollama, openai):
    agent = make_agent(world.pipe)
    make_step(world.phase("triage"), agent=agent, mechanism=Mechanism.FOUNDATION_MODEL, max_attempts=2)
    openai.push(malformed(), answer("approve", GOOD, 0.9))
    card = submit(world)
    drain()
    card.refresh_from_db()
    run = the_run(card)
    assert run.status == RunStatus.DONE and run.attempts == 2
    assert card.phase.key == "approval"
    assert run.events.filter(kind=TraceKind.VALIDATION).count() == 1


def test_it_lets_a_low_confidence_answer_on_a_local_step_go_to_a_person(world, ollama, openai):
    agent = make_agent(world.pipe)
    make_step(world.phase("triage"), agent=agent, mechanism=Mechanism.LOCAL_MODEL)
    ollama.push(low_confidence("approve", GOOD))
    card = submit(world)
    drain()
    task = ReviewTask.objects.get(card=card)
    assert task.reason == "local confidence 0.31 below 0.70 → human"
    assert task.proposal["values"] == {"category": "Hardware", "cost_center": "CC-100"}


def test_it_hands_over_when_the_agent_escalates(world, triage, ollama, openai):
    ollama.push(answer("escalate", {}, 0.9, reasoning="Needs a manager."))
    card = submit(world)
    drain()
    task = ReviewTask.objects.get(card=card)
    assert task.reason == "local model llama-test escalated → human"
    assert task.reasoning == "Needs a manager."


def test_it_skips_a_step_whose_condition_is_not_met(world, triage, ollama, openai):
    triage.condition = {"field": "urgent", "op": "true"}
    triage.save()
    card = submit(world)
    drain()
    run = the_run(card)
    assert run.status == RunStatus.SKIPPED and ollama.requests == []


# Each provider through its own client, for every kind of answer: where the router ends up.
OUTCOMES = [
    ("good", [answer("approve", GOOD, 0.9)], ("done", "approval")),
    ("slow", [slow(0.3, "approve", GOOD, 0.9)], ("done", "approval")),
    ("low confidence", [low_confidence("approve", GOOD)], ("waiting_review", "triage")),
    ("malformed JSON", [malformed(), malformed()], ("failed", "triage")),
    ("500", [error(500), error(500)], ("failed", "triage")),
    ("timeout", [hang(2), hang(2)], ("failed", "triage")),
]


@pytest.mark.parametrize(("case", "replies", "expected"), OUTCOMES, ids=[o[0] for o in OUTCOMES])
@pytest.mark.parametrize("mechanism", [Mechanism.LOCAL_MODEL, Mechanism.FOUNDATION_MODEL])
def test_it_ends_each_model_answer_where_the_router_says(
    world, ollama, openai, settings, mechanism, case, replies, expected
):
    settings.TRILHO_MODEL_TIMEOUT_SECONDS = 1
    make_step(world.phase("triage"), agent=make_agent(world.pipe), mechanism=mechanism, max_attempts=2)
    server = ollama if mechanism == Mechanism.LOCAL_MODEL else openai
    server.push(*replies)
    card = submit(world)
    drain()
    card.refresh_from_db()
    run = the_run(card)
    assert (run.status, card.phase.key) == expected
    assert len(server.requests) == (1 if expected[0] != "failed" else 2)
    other = openai if server is ollama else ollama
    assert other.requests == []
    if expected[0] == "failed":
        assert card.rail_status == RailStatus.FAILED and run.attempts == 2


def test_it_hands_a_foundation_model_step_to_a_person_when_the_budget_is_spent(world, openai):
    PipeRailSettings.objects.create(pipe=world.pipe, monthly_token_budget=0)
    make_step(world.phase("triage"), agent=make_agent(world.pipe), mechanism=Mechanism.FOUNDATION_MODEL)
    card = submit(world)
    drain()
    run = the_run(card)
    assert run.status == RunStatus.WAITING_REVIEW  # a spent budget is no design error: a person decides
    assert [p["code"] for p in run.reason_data["parts"]] == ["budget_spent"]
    assert run.reason_data["then"]["code"] == "no_model" and openai.requests == []


def test_it_hands_over_invalid_answers_as_answers_not_as_no_model_reached(world, triage, ollama, openai):
    ollama.push(malformed(), malformed(), malformed())
    openai.push(malformed(), malformed(), malformed())
    card = submit(world)
    drain()
    data = the_run(card).reason_data
    assert [p["code"] for p in data["parts"]] == ["answer_invalid", "answer_invalid"]
    assert data["then"]["code"] == "human"
