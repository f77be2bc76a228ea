"""Money on the rail: each price in its currency, conversion only at the operator's dated rate, no
sums across currencies, estimates named as estimates, and no minutes billed for an unopened review."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse

from orchestrator.inbox.services import inbox_decide
from orchestrator.models import Mechanism, ReviewTask, StepRun, TraceKind
from orchestrator.rail import costs
from orchestrator.rail.services import review_open
from pipes.services import Actor, card_create, card_move, card_update_fields
from tests.modelservers import answer, low_confidence
from tests.orchestrator.conftest import drain, make_agent, make_step
from tests.personas import good_start_values
from tests.test_settings import clean_env, run_python

GOOD = {"category": "Hardware", "cost_center": "CC-100"}
RATE = {("USD", "BRL"): (Decimal("5.42"), dt.date(2026, 12, 1))}


@pytest.fixture
def in_brl(rail_settings):
    rail_settings.TRILHO_COST_CURRENCY = "BRL"
    rail_settings.TRILHO_FX_RATES = RATE
    return rail_settings


def test_it_refuses_to_add_amounts_of_different_currencies():
    with pytest.raises(costs.CurrencyMismatch):
        costs.Money(Decimal("1.00"), "USD") + costs.Money(Decimal("1.00"), "BRL")


def test_it_prices_a_foundation_model_in_its_own_currency_usd_unless_the_entry_says(in_brl):
    in_brl.TRILHO_MODEL_PRICING = {
        "openai/gpt-test": {"input": Decimal("2.00"), "output": Decimal("8.00")},
        "anthropic/claude-test": {"input": Decimal("10"), "output": Decimal("10"), "currency": "EUR"},
    }
    usd = costs.model_cost(provider="openai", model="gpt-test", input_tokens=1_000_000, output_tokens=0)
    eur = costs.model_cost(provider="anthropic", model="claude-test", input_tokens=1_000_000, output_tokens=0)
    assert usd == costs.Money(Decimal("2.000000"), "USD") and eur.currency == "EUR"


def test_it_converts_at_the_operators_rate_both_ways(in_brl):
    assert costs.Money(Decimal("2"), "USD").to("BRL") == costs.Money(Decimal("10.840000"), "BRL")
    assert costs.Money(Decimal("5.42"), "BRL").to("USD") == costs.Money(Decimal("1.000000"), "USD")


def test_it_refuses_to_convert_without_a_rate(in_brl):
    with pytest.raises(costs.NoRate):
        costs.Money(Decimal("1"), "EUR").to("BRL")


def test_it_refuses_to_start_when_model_prices_need_a_rate_nobody_set(tmp_path):
    result = run_python("import orchestrator.settings", clean_env(tmp_path, TRILHO_COST_CURRENCY="BRL"))
    assert result.returncode != 0 and "set TRILHO_FX_RATES" in result.stderr


def test_it_reads_dated_rates_from_the_environment(tmp_path):
    code = "from orchestrator import settings as s; print(s.TRILHO_FX_RATES)"
    env = clean_env(tmp_path, TRILHO_COST_CURRENCY="BRL", TRILHO_FX_RATES="USD:BRL=5.42@2026-12-01")
    result = run_python(code, env)
    assert result.returncode == 0, result.stderr
    assert "('USD', 'BRL'): (Decimal('5.42'), datetime.date(2026, 12, 1))" in result.stdout


def test_it_records_a_foundation_model_call_in_the_cost_currency_with_the_rate_used(
    world, ollama, openai, in_brl
):
    make_step(world.phase("triage"), agent=make_agent(world.pipe))
    ollama.push(low_confidence("approve", GOOD))
    openai.push(answer("reject", {"category": "Services"}, 0.95))
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    drain()
    run = StepRun.objects.get(card=card)
    assert run.mechanism == Mechanism.FOUNDATION_MODEL and run.currency == "BRL"
    # local: 160 tokens at BRL 0.10 per million; foundation: USD 0.000560 at 5.42 BRL per USD
    assert run.cost == Decimal("0.000016") + Decimal("0.003035")
    traced = run.events.filter(kind=TraceKind.RAW_OUTPUT).last().data["cost"]
    assert traced == {
        "amount": "0.000560",
        "currency": "USD",
        "recorded": "0.003035",
        "recorded_currency": "BRL",
        "rate": {"pair": "USD:BRL", "rate": "5.42", "as_of": "2026-12-01"},
    }


@pytest.fixture
def human_step(world, rail_settings):
    return make_step(
        world.phase("approval"),
        key="approve",
        name="Manager approval",
        mechanism=Mechanism.HUMAN,
        on_approve="done",
        on_reject="rejected",
    )


def waiting_task(world) -> ReviewTask:
    card = card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())
    card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    card_move(actor=Actor.for_user(world.member), card=card, to_phase=world.phase("approval"))
    drain()
    return ReviewTask.objects.get(card=card)


def test_it_bills_no_minutes_for_a_review_nobody_opened(world, human_step):
    task = waiting_task(world)
    inbox_decide(task=task, user=world.reviewer, decision="approve", values={"po_number": "PO-1"})
    assert StepRun.objects.get(pk=task.run_id).cost == 0


def test_it_bills_the_minutes_from_opening_to_the_decision(world, human_step, clock, settings):
    settings.TRILHO_HUMAN_COST_PER_MINUTE = Decimal("2.00")
    task = waiting_task(world)
    review_open(task=task, user=world.reviewer)
    clock.advance(minutes=3)
    inbox_decide(
        task=ReviewTask.objects.get(pk=task.pk),
        user=world.reviewer,
        decision="approve",
        values={"po_number": "PO-1"},
    )
    assert StepRun.objects.get(pk=task.run_id).cost == Decimal("6.00")


def test_it_labels_the_foundation_only_and_saved_figures_as_estimates_and_names_the_rate(
    client, world, ollama, openai, in_brl
):
    make_step(world.phase("triage"), agent=make_agent(world.pipe))
    ollama.push(answer("approve", GOOD, 0.9))
    card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    drain()
    client.force_login(world.owner)
    page = client.get(reverse("rail:pipe_costs", args=[world.pipe.pk])).content.decode()
    assert "On the foundation model alone (estimate)" in page and "Saved (estimate)" in page
    assert (
        "Foundation only and Saved are estimates: each step priced at the list price of openai/gpt-test"
        in page
    )
    assert "converted at 5.42 BRL per USD, the rate of 1 Dec 2026 set by the operator" in page


def test_it_does_not_add_runs_recorded_in_another_currency_to_the_totals(
    client, world, ollama, openai, in_brl
):
    make_step(world.phase("triage"), agent=make_agent(world.pipe))
    ollama.push(answer("approve", GOOD, 0.9))
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    drain()
    StepRun.objects.filter(card=card).update(currency="USD", cost=Decimal("3.00"))  # before the switch to BRL
    client.force_login(world.owner)
    response = client.get(reverse("rail:pipe_costs", args=[world.pipe.pk]))
    report = response.context["report"]
    assert report.total.cost == 0 and [(r.key, r.cost) for r in report.other_currencies] == [
        ("USD", Decimal("3.00"))
    ]
    assert "Runs recorded in another currency are not added to these totals: USD 3.00 (1 run)" in (
        response.content.decode()
    )
