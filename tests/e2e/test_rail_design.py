"""The designer's steps in a real Chromium: a pipe admin (not an owner) builds an automation step with a
condition from dropdowns and rows of actions, saves it and dry-runs it on a card -- no page reload, no
JSON typed -- and the card is left as it was."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from orchestrator.models import Step
from pipes.models import Card, CardEvent
from pipes.services import Actor, card_create
from tests.personas import good_start_values

pytestmark = pytest.mark.e2e


@pytest.mark.django_db(transaction=True)
def test_an_admin_builds_an_automation_step_and_dry_runs_it_without_a_reload(login, live_server, world):
    card = card_create(
        actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values(amount="9000")
    )
    before = (card.version, dict(card.values), card.phase_id, CardEvent.objects.filter(card=card).count())
    triage = world.phase("triage")
    page = login(world.admin)
    page.goto(f"{live_server.url}/design/pipes/{world.pipe.pk}/steps/")
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page

    page.get_by_role("link", name="+ Add a step to Triage").click()
    expect(page.get_by_role("heading", name="New step")).to_be_visible()
    page.fill("#step-name", "Route big purchases")
    # the new automation starts with a "Set a field" action
    page.select_option("#act-0-field", "category")
    page.fill("input[name=act-0-value-text]", "Hardware")
    page.get_by_role("button", name="+ Condition").click()
    page.select_option("select[name=cond-0-field]", "amount")
    page.select_option("select[name=cond-0-op]", "gt")
    page.fill("input[name=cond-0-value]", "5000")
    page.get_by_role("button", name="Move the card", exact=True).click()
    page.select_option("#act-1-to", "approval")
    page.get_by_role("button", name="Add step").first.click()
    expect(page.locator(".rd-saved")).to_be_visible()

    step = Step.objects.get(phase=triage, name="Route big purchases")
    assert step.condition == {"field": "amount", "op": "gt", "value": 5000}
    assert step.actions == [
        {"type": "set_field", "field": "category", "value": "Hardware"},
        {"type": "move", "to": "approval"},
    ]
    expect(page.locator(f"#step-tile-{step.pk}")).to_contain_text("Amount is more than 5000")

    page.select_option("#dry-card", str(card.pk))
    page.get_by_role("button", name="Dry run", exact=True).click()
    result = page.locator("#dry-run-result")
    expect(result).to_contain_text("What the automation would do")
    expect(result).to_contain_text("Hardware")
    expect(result).to_contain_text("Approval")
    assert page.evaluate("window.__sameDocument === true")

    card = Card.objects.get(pk=card.pk)
    assert (card.version, card.values, card.phase_id, CardEvent.objects.filter(card=card).count()) == before


@pytest.mark.django_db(transaction=True)
def test_a_mistake_is_shown_beside_its_input_and_nothing_is_saved(login, live_server, world):
    page = login(world.admin)
    page.goto(f"{live_server.url}/design/pipes/{world.pipe.pk}/steps/?new={world.phase('triage').pk}")
    page.fill("#step-name", "Route big purchases")
    page.select_option("#act-0-field", "category")
    page.fill("input[name=act-0-value-text]", "Hardware")
    page.get_by_role("button", name="+ Condition").click()
    page.select_option("select[name=cond-0-field]", "amount")
    page.select_option("select[name=cond-0-op]", "gt")
    page.fill("input[name=cond-0-value]", "a lot")
    page.get_by_role("button", name="Add step").first.click()
    expect(page.locator(".rd-cond .field-error")).to_contain_text("Enter a number")
    expect(page.locator("input[name=cond-0-value]")).to_have_value("a lot")
    assert not Step.objects.filter(name="Route big purchases").exists()


@pytest.mark.django_db(transaction=True)
def test_an_admin_gives_an_agent_a_scope_and_an_authority_limit_in_dollars(login, live_server, world):
    from agents.models import Agent

    page = login(world.admin)
    page.goto(f"{live_server.url}/design/pipes/{world.pipe.pk}/agents/")
    page.evaluate("window.__sameDocument = true")
    page.get_by_role("link", name="+ New agent").click()
    page.fill("#id_name", "Purchase triage")
    page.fill("#id_model", "llama3.2")
    reads = page.locator("#id_readable_fields-group")
    reads.get_by_label("Item", exact=True).check()
    reads.get_by_label("Amount", exact=True).check()
    page.locator("#id_writable_fields-group").get_by_label("Category").check()
    decisions = page.locator("#id_decisions-group")
    decisions.get_by_label("Approve", exact=True).check()
    decisions.get_by_label("Escalate to a person").check()
    page.select_option("#id_authority_field", "amount")
    page.fill("#id_authority_limit", "2500")
    page.select_option("#id_authority_currency", "USD")
    page.get_by_role("button", name="Create agent").first.click()
    expect(page.locator(".rd-saved")).to_be_visible()
    expect(page.locator("#agent-list")).to_contain_text("up to USD 2,500")
    agent = Agent.objects.get(pipe=world.pipe, name="Purchase triage")
    assert agent.readable_fields == ["item", "amount"] and agent.writable_fields == ["category"]
    assert agent.decisions == ["approve", "escalate"]
    assert (str(agent.authority_limit), agent.authority_currency) == ("2500.00", "USD")
    assert page.evaluate("window.__sameDocument === true")
