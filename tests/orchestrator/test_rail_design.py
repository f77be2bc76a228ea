"""The designer's rail pages: a phase's steps (rows, never JSON), the dry run on a card, agents and allowed
hosts -- each through its real URL, per persona, saved through the design service."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from agents.models import Agent, AllowedHost
from orchestrator.design.steps_build import errors_from_design
from orchestrator.models import Mechanism, Risk, Step, StepRun, TraceEvent, Trigger
from orchestrator.rail.apply import agent_actor
from pipes.choices import FieldType
from pipes.design import definition_load, pipe_export
from pipes.design.importexport import pipe_import
from pipes.models import Card, CardEvent, Field, Organization, PhaseEntry
from pipes.services import Actor, CardAuthorityError, authority_check, card_create, card_update_fields
from tests.orchestrator.conftest import make_agent, make_step
from tests.personas import build_purchase_pipe, good_start_values

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


def _as(client, user):
    client.force_login(user)
    return client


def _step_url(name, world, step=None):
    args = [world.pipe.pk] + ([step.pk] if step is not None else [])
    return reverse(f"rail_design:{name}", args=args)


def _automation_post(world, **extra):
    """A new automation step in Triage: when Amount > 5,000, set Category and move to Approval."""
    data = {
        "phase": world.phase("triage").pk,
        "name": "Big purchases",
        "mechanism": "automation",
        "trigger": "entered",
        "risk": "low",
        "attempts": "3",
        "cond-count": "1",
        "cond-0-field": "amount",
        "cond-0-op": "gt",
        "cond-0-value": "5000",
        "act-count": "2",
        "act-0-type": "set_field",
        "act-0-field": "category",
        "act-0-value-mode": "text",
        "act-0-value-text": "Hardware",
        "act-1-type": "move",
        "act-1-to": "approval",
    }
    data.update(extra)
    return data


def _card(world, **values):
    return card_create(
        actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values(**values)
    )


def _snapshot(card):
    card = Card.objects.get(pk=card.pk)
    return {
        "version": card.version,
        "values": card.values,
        "phase": card.phase_id,
        "labels": sorted(card.labels.values_list("pk", flat=True)),
        "events": CardEvent.objects.filter(card=card).count(),
        "runs": StepRun.objects.count(),
        "traces": TraceEvent.objects.count(),
        "entries": PhaseEntry.objects.count(),
    }


# ---------------------------------------------------------------- steps: pages and permissions


def test_it_lists_each_phases_steps_with_their_condition_in_words(client, world):
    make_step(
        world.phase("triage"),
        mechanism=Mechanism.AUTO,
        condition={"field": "amount", "op": "gt", "value": 5000},
    )
    response = _as(client, world.admin).get(_step_url("steps", world))
    assert response.status_code == 200
    assert "Classify the request" in response.content.decode()
    assert "Amount is more than 5000" in response.content.decode()


@pytest.mark.parametrize(
    "role,status", [("owner", 200), ("admin", 200), ("member", 403), ("reviewer", 403), ("outsider", 404)]
)
def test_it_opens_the_steps_page_to_admins_and_owners_only(client, world, role, status):
    assert _as(client, getattr(world, role)).get(_step_url("steps", world)).status_code == status


def test_the_steps_page_costs_the_same_queries_however_many_steps(
    client, world, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = _as(client, world.admin)
    agent = make_agent(world.pipe)
    make_step(world.phase("triage"), key="one", agent=agent)
    url = _step_url("steps", world)
    client.get(url)  # sessions and caches warmed
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    for i, phase in enumerate(("triage", "approval", "approval", "done", "rejected")):
        make_step(
            world.phase(phase),
            key=f"more{i}",
            agent=agent,
            condition={"field": "amount", "op": "gt", "value": i},
        )
    with CaptureQueriesContext(connection) as many:
        assert client.get(url).status_code == 200
    assert len(many) == len(few)


def test_it_keeps_another_organizations_pipe_out_of_reach(client, world):
    other = build_purchase_pipe(Organization.objects.get(slug="other"), slug="theirs", code="TH")
    step = make_step(other.phases.get(key="triage"))
    client.force_login(world.admin)
    assert client.get(reverse("rail_design:steps", args=[other.pk])).status_code == 404
    assert (
        client.post(reverse("rail_design:step_edit", args=[other.pk, step.pk]), {"name": "x"}).status_code
        == 404
    )
    # nor can Acme's pipe reach it by id
    assert (
        client.get(reverse("rail_design:step_edit", args=[world.pipe.pk, step.pk]), **HX).status_code == 404
    )


# ---------------------------------------------------------------- steps: saving


def test_it_creates_an_automation_step_from_rows(client, world):
    response = _as(client, world.admin).post(_step_url("step_new", world), _automation_post(world), **HX)
    assert response.status_code == 200, response.content.decode()[:2000]
    step = Step.objects.get(phase=world.phase("triage"), key="big_purchases")
    assert step.condition == {"field": "amount", "op": "gt", "value": 5000}
    assert step.actions == [
        {"type": "set_field", "field": "category", "value": "Hardware"},
        {"type": "move", "to": "approval"},
    ]
    assert step.mechanism == Mechanism.AUTOMATION and step.agent is None
    assert 'hx-swap-oob="true"' in response.content.decode()  # the list beside it is refreshed


def test_it_builds_an_http_call_to_an_allowed_host_with_a_secret_header_and_a_nested_body(client, world):
    AllowedHost.objects.create(organization=world.org, host="*.acme.example")
    data = _automation_post(
        world,
        **{
            "cond-count": "0",
            "act-count": "1",
            "act-0-type": "http",
            "act-0-method": "POST",
            "act-0-scheme": "https",
            "act-0-host": "erp.acme.example",
            "act-0-path": "/orders/{card.reference}",
            "act-0-timeout": "15",
            "act-0-headers-count": "1",
            "act-0-headers-0-key": "Authorization",
            "act-0-headers-0-mode": "secret",
            "act-0-headers-0-text": "erp_token",
            "act-0-headers-0-prefix": "Bearer ",
            "act-0-bodyrows-count": "2",
            "act-0-bodyrows-0-key": "order.total",
            "act-0-bodyrows-0-mode": "field",
            "act-0-bodyrows-0-field": "amount",
            "act-0-bodyrows-1-key": "order.ref",
            "act-0-bodyrows-1-mode": "card",
            "act-0-bodyrows-1-card": "reference",
            "act-0-map-count": "1",
            "act-0-map-0-key": "cost_center",
            "act-0-map-0-text": "data.cost_center",
        },
    )
    response = _as(client, world.admin).post(_step_url("step_new", world), data, **HX)
    assert response.status_code == 200, response.content.decode()[:2000]
    step = Step.objects.get(key="big_purchases")
    assert step.condition is None
    assert step.actions == [
        {
            "type": "http",
            "method": "POST",
            "url": "https://erp.acme.example/orders/{card.reference}",
            "headers": {"Authorization": {"$secret": "erp_token", "prefix": "Bearer "}},
            "body": {"order": {"total": {"$field": "amount"}, "ref": {"$card": "reference"}}},
            "timeout": 15,
            "response_map": {"cost_center": "data.cost_center"},
        }
    ]
    # and the editor shows the stored step back as the same rows
    page = client.get(_step_url("steps", world) + f"?step={step.pk}").content.decode()
    assert 'name="act-0-host" id="act-0-host" value="erp.acme.example"' in page
    assert 'value="order.total"' in page


def test_it_refuses_a_host_the_organization_does_not_allow_and_saves_nothing(client, world):
    data = _automation_post(
        world,
        **{
            "act-count": "1",
            "act-0-type": "http",
            "act-0-method": "GET",
            "act-0-host": "evil.example",
            "act-0-path": "/x",
        },
    )
    response = _as(client, world.admin).post(_step_url("step_new", world), data, **HX)
    assert response.status_code == 422
    assert "evil.example is not one of the organization&#x27;s allowed hosts." in response.content.decode()
    assert not Step.objects.filter(key="big_purchases").exists()


def test_it_refuses_a_comparison_with_a_word_where_a_number_is_needed(client, world):
    step = make_step(world.phase("triage"), mechanism=Mechanism.HUMAN, question="OK?")
    before = Step.objects.filter(pk=step.pk).values().get()
    data = {
        "name": "Classify the request",
        "mechanism": "human",
        "trigger": "entered",
        "risk": "low",
        "attempts": "3",
        "cond-count": "1",
        "cond-0-field": "amount",
        "cond-0-op": "gt",
        "cond-0-value": "lots",
    }
    response = _as(client, world.admin).post(_step_url("step_edit", world, step), data, **HX)
    assert response.status_code == 422
    html = response.content.decode()
    assert "Enter a number, like 1250 or 1250.50." in html
    assert 'name="cond-0-value" value="lots"' in html  # shown again as typed
    assert Step.objects.filter(pk=step.pk).values().get() == before


def test_it_refuses_a_model_step_without_an_agent(client, world):
    data = _automation_post(world, mechanism="local_model", **{"act-count": "0"})
    response = _as(client, world.admin).post(_step_url("step_new", world), data, **HX)
    assert response.status_code == 422
    assert "A step run by a model needs an agent." in response.content.decode()
    assert not Step.objects.filter(key="big_purchases").exists()


def test_the_design_services_refusal_lands_beside_the_agent_and_nothing_is_saved(client, world):
    hosted_only = make_agent(
        world.pipe,
        key="hosted",
        provider="openai",
        model="gpt-test",
        escalation_provider="",
        escalation_model="",
    )
    data = _automation_post(world, mechanism="local_model", agent=str(hosted_only.pk), **{"act-count": "0"})
    response = _as(client, world.admin).post(_step_url("step_new", world), data, **HX)
    assert response.status_code == 422
    html = response.content.decode().replace("&#x27;", "'")
    assert "agent 'hosted' has no local (ollama/…) model" in html
    assert html.index("agent 'hosted' has no local") > html.index('id="step-agent"')  # beside the input
    assert not Step.objects.filter(key="big_purchases").exists()


def test_it_saves_a_person_step_with_what_each_decision_does(client, world):
    step = make_step(world.phase("approval"), key="approve", name="Approve", mechanism=Mechanism.HUMAN)
    data = {
        "name": "Manager approval",
        "key": "approve",
        "mechanism": "human",
        "trigger": "late",
        "risk": "high",
        "four_eyes": "on",
        "question": "Approve this purchase?",
        "reviewer": str(world.reviewer.pk),
        "on_approve": "done",
        "on_reject": "rejected",
        "on_done": "",
        "attempts": "2",
    }
    response = _as(client, world.admin).post(_step_url("step_edit", world, step), data, **HX)
    assert response.status_code == 200, response.content.decode()[:2000]
    step.refresh_from_db()
    assert (step.name, step.trigger, step.risk, step.four_eyes) == (
        "Manager approval",
        Trigger.LATE,
        Risk.HIGH,
        True,
    )
    assert (step.on_approve, step.on_reject, step.reviewer_id, step.max_attempts) == (
        "done",
        "rejected",
        world.reviewer.pk,
        2,
    )


def test_it_keeps_a_nested_condition_it_cannot_show_as_rows(client, world):
    nested = {
        "not": {"any": [{"field": "urgent", "op": "true"}, {"field": "amount", "op": "gt", "value": 10}]}
    }
    step = make_step(world.phase("triage"), mechanism=Mechanism.HUMAN, condition=nested)
    page = _as(client, world.admin).get(_step_url("step_edit", world, step), **HX).content.decode()
    assert 'name="cond-kept" value="1"' in page
    data = {
        "name": "Renamed",
        "mechanism": "human",
        "trigger": "entered",
        "risk": "low",
        "attempts": "2",
        "cond-kept": "1",
    }
    assert client.post(_step_url("step_edit", world, step), data, **HX).status_code == 200
    step.refresh_from_db()
    assert step.name == "Renamed" and step.condition == nested


def test_its_buttons_add_and_remove_rows_without_saving(client, world):
    client = _as(client, world.admin)
    data = _automation_post(world, _op="add_action:send_email")
    response = client.post(_step_url("step_new", world), data, **HX)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="act-2-subject"' in html and 'name="act-count" value="3"' in html
    response = client.post(_step_url("step_new", world), _automation_post(world, _op="remove_action:0"), **HX)
    assert 'name="act-count" value="1"' in response.content.decode()
    assert not Step.objects.filter(key="big_purchases").exists()


def test_it_deletes_a_step_through_the_design_service(client, world):
    step = make_step(world.phase("triage"))
    response = _as(client, world.member).post(_step_url("step_delete", world, step), **HX)
    assert response.status_code == 403 and Step.objects.filter(pk=step.pk).exists()
    response = _as(client, world.admin).post(_step_url("step_delete", world, step), **HX)
    assert response.status_code == 200
    assert not Step.objects.filter(pk=step.pk).exists()


def test_it_runs_a_step_earlier_or_later_in_its_phase(client, world):
    triage = world.phase("triage")
    first = make_step(triage, key="first", name="First", position=1, mechanism=Mechanism.HUMAN)
    second = make_step(triage, key="second", name="Second", position=2, mechanism=Mechanism.HUMAN)
    url = reverse("rail_design:step_move", args=[world.pipe.pk, second.pk])
    assert _as(client, world.member).post(url, {"direction": "up"}, **HX).status_code == 403
    assert list(Step.objects.filter(phase=triage).order_by("position").values_list("key", flat=True)) == [
        "first",
        "second",
    ]
    response = _as(client, world.admin).post(url, {"direction": "up"}, **HX)
    assert response.status_code == 200
    assert list(Step.objects.filter(phase=triage).order_by("position").values_list("key", flat=True)) == [
        "second",
        "first",
    ]
    assert pipe_export(world.pipe)["phases"][0]["steps"][0]["key"] == "second"
    client.post(url, {"direction": "up"}, **HX)  # already first: nothing to trade
    assert Step.objects.get(pk=first.pk).position == 2


def test_a_member_cannot_save_a_step(client, world):
    response = _as(client, world.member).post(_step_url("step_new", world), _automation_post(world), **HX)
    assert response.status_code == 403
    assert not Step.objects.exists()


def test_the_checkers_paths_land_beside_the_inputs_of_this_step():
    errors = errors_from_design(
        {
            "": [
                "phases[1].steps[0].actions[2].field: unknown field 'x'",
                "phases[1].steps[0].when.field: unknown field 'y'",
                "phases[1].steps[3].name: required",
            ]
        },
        step_path="phases[1].steps[0]",
    )
    assert errors["act-2-field"] == ["unknown field 'x'"]
    assert errors["cond"] == ["unknown field 'y'"]
    assert errors[""] == ["phases[1].steps[3].name: required"]  # another step's: shown whole, above


# ---------------------------------------------------------------- the dry run


def test_a_dry_run_shows_the_changes_and_the_move_and_leaves_the_card_as_it_was(client, world):
    step = make_step(
        world.phase("triage"),
        mechanism=Mechanism.AUTOMATION,
        condition={"field": "amount", "op": "gt", "value": 1000},
        actions=[
            {"type": "set_field", "field": "category", "value": "Software"},
            {"type": "comment", "text": "Checked {field.item}"},
            {"type": "add_label", "label": "Priority"},
            {"type": "send_email", "to": "{field.requester_email}", "subject": "Got it", "body": "Hi"},
        ],
        on_done="approval",
    )
    card = _card(world)
    before = _snapshot(card)
    url = _step_url("step_dry_run", world, step) + f"?card={card.pk}"
    response = _as(client, world.admin).get(url, **HX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Category" in html and "Software" in html  # the field, before → after
    assert "Triage" in html and "Approval" in html  # the move
    assert "Would email ana@example.com" in html
    assert "Comments: “Checked Laptop for Ana”" in html
    assert "met" in html
    assert _snapshot(card) == before


def test_a_dry_run_says_which_rule_decides_and_where_it_leads(client, world):
    step = make_step(
        world.phase("triage"),
        mechanism=Mechanism.AUTO,
        agent=None,
        rules=[
            {
                "when": {"field": "amount", "op": "lt", "value": 10000},
                "decision": "approve",
                "reason": "small",
            }
        ],
        on_approve="approval",
    )
    card = _card(world)
    card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    before = _snapshot(card)
    html = (
        _as(client, world.admin)
        .get(_step_url("step_dry_run", world, step) + f"?card={card.pk}", **HX)
        .content.decode()
    )
    assert "Rule 1 matches" in html and "without a model" in html
    assert "Approval" in html
    assert _snapshot(card) == before


def test_a_dry_run_of_an_agent_step_names_the_models_it_would_ask_and_the_authority(client, world):
    agent = make_agent(world.pipe, authority_limit=Decimal("1000"), writable_fields=["category"])
    step = make_step(world.phase("triage"), agent=agent)
    card = _card(world)  # 4,500 BRL: above the agent's authority
    html = (
        _as(client, world.admin)
        .get(_step_url("step_dry_run", world, step) + f"?card={card.pk}", **HX)
        .content.decode()
    )
    assert "above the agent&#x27;s authority" in html
    small = _card(world, amount="500.00")
    html = client.get(_step_url("step_dry_run", world, step) + f"?card={small.pk}", **HX).content.decode()
    assert "ollama/llama-test" in html and "openai/gpt-test" in html


def test_a_dry_run_sends_no_http_request(client, world):
    AllowedHost.objects.create(organization=world.org, host="erp.acme.invalid")
    step = make_step(
        world.phase("triage"),
        mechanism=Mechanism.AUTOMATION,
        actions=[
            {
                "type": "http",
                "method": "POST",
                "url": "https://erp.acme.invalid/orders",
                "response_map": {"cost_center": "cc"},
            }
        ],
    )
    card = _card(world)
    before = _snapshot(card)
    html = (
        _as(client, world.admin)
        .get(_step_url("step_dry_run", world, step) + f"?card={card.pk}", **HX)
        .content.decode()
    )
    assert "Would call POST https://erp.acme.invalid/orders" in html
    assert "would fail" not in html
    assert _snapshot(card) == before


def test_a_dry_run_says_a_call_to_a_host_not_allowed_would_be_refused(client, world):
    step = make_step(
        world.phase("triage"),
        mechanism=Mechanism.AUTOMATION,
        actions=[{"type": "http", "method": "GET", "url": "https://unknown.example/x"}],
    )
    card = _card(world)
    url = _step_url("step_dry_run", world, step) + f"?card={card.pk}"
    html = _as(client, world.admin).get(url, **HX).content.decode().replace("&#x27;", "'")
    assert "The call to unknown.example would be refused" in html


def test_a_rule_sets_fields_as_written_with_its_decision(client, world):
    agent = make_agent(world.pipe)
    step = make_step(world.phase("triage"), agent=agent)
    data = {
        "name": "Classify the request",
        "mechanism": "auto",
        "trigger": "entered",
        "risk": "medium",
        "agent": str(agent.pk),
        "on_approve": "approval",
        "on_reject": "rejected",
        "attempts": "2",
        "rule-count": "1",
        "rule-0-field": "amount",
        "rule-0-op": "lt",
        "rule-0-value": "100",
        "rule-0-decision": "approve",
        "rule-0-reason": "small purchase",
        "rule-0-values-count": "2",
        "rule-0-values-0-key": "category",
        "rule-0-values-0-mode": "text",
        "rule-0-values-0-text": "Services",
        "rule-0-values-1-key": "cost_center",
        "rule-0-values-1-mode": "text",
        "rule-0-values-1-text": "CC-100",
    }
    client = _as(client, world.admin)
    response = client.post(_step_url("step_edit", world, step), data, **HX)
    assert response.status_code == 200, response.content.decode()[:2000]
    step.refresh_from_db()
    assert step.rules == [
        {
            "when": {"field": "amount", "op": "lt", "value": 100},
            "decision": "approve",
            "reason": "small purchase",
            "values": {"category": "Services", "cost_center": "CC-100"},
        }
    ]
    # a rule's values are applied as written: a field's value is not substituted there, so it is refused
    data.update({"rule-0-values-1-mode": "field", "rule-0-values-1-field": "item"})
    response = client.post(_step_url("step_edit", world, step), data, **HX)
    assert response.status_code == 422
    assert "A rule sets values as written" in response.content.decode()
    step.refresh_from_db()
    assert step.rules[0]["values"]["cost_center"] == "CC-100"


def test_a_dry_run_on_a_card_elsewhere_says_so(client, world):
    step = make_step(
        world.phase("approval"), mechanism=Mechanism.HUMAN, trigger=Trigger.LATE, on_approve="done"
    )
    card = _card(world)  # in Triage
    url = _step_url("step_dry_run", world, step) + f"?card={card.pk}"
    html = _as(client, world.admin).get(url, **HX).content.decode()
    assert f"{card.reference} is in Triage, not in Approval" in html
    assert "This step runs when a card becomes late in its phase." in html


def test_a_dry_run_needs_a_card_of_this_pipe(client, world):
    step = make_step(world.phase("triage"))
    other = build_purchase_pipe(Organization.objects.get(slug="other"), slug="theirs", code="TH")
    foreign = card_create(actor=Actor.system(), pipe=other, values=good_start_values())
    response = _as(client, world.admin).get(
        _step_url("step_dry_run", world, step) + f"?card={foreign.pk}", **HX
    )
    assert response.status_code == 422
    assert "Choose a card of this pipe." in response.content.decode()
    assert (
        _as(client, world.member)
        .get(_step_url("step_dry_run", world, step) + f"?card={foreign.pk}", **HX)
        .status_code
        == 403
    )


# ---------------------------------------------------------------- agents


def _agent_post(**extra):
    data = {
        "name": "Purchase triage",
        "instructions": "Classify purchase requests.",
        "provider": "ollama",
        "model": "llama3.2",
        "escalation_provider": "openai",
        "escalation_model": "gpt-4o-mini",
        "readable_fields": ["item", "amount", "category"],
        "writable_fields": ["category"],
        "allowed_phases": ["approval", "rejected"],
        "decisions": ["approve", "reject", "escalate"],
        "other_decisions": "hold",
        "authority_field": "amount",
        "authority_limit": "10000",
        "authority_currency": "USD",
        "confidence_threshold": "80",
        "may_see_pii": "",
    }
    data.update(extra)
    return data


def test_it_creates_an_agent_from_checkboxes_with_its_authority_currency(client, world):
    url = reverse("rail_design:agent_new", args=[world.pipe.pk])
    response = _as(client, world.admin).post(url, _agent_post(), **HX)
    assert response.status_code == 200, response.content.decode()[:2000]
    agent = Agent.objects.get(pipe=world.pipe, key="purchase_triage")
    assert agent.readable_fields == ["item", "amount", "category"]
    assert agent.writable_fields == ["category"]
    assert agent.allowed_phases == ["approval", "rejected"]
    assert agent.decisions == ["approve", "reject", "escalate", "hold"]
    assert (agent.authority_field, agent.authority_limit, agent.authority_currency) == (
        "amount",
        Decimal("10000"),
        "USD",
    )
    assert agent.confidence_threshold == Decimal("0.80")
    assert (agent.escalation_provider, agent.escalation_model) == ("openai", "gpt-4o-mini")
    # the currency travels with the definition and comes back on import
    definition = pipe_export(world.pipe)
    assert definition["agents"][0]["authority"] == {"field": "amount", "limit": 10000, "currency": "USD"}
    definition.update(slug="copy", code="CP")
    copy = pipe_import(organization=world.org, definition=definition)
    assert Agent.objects.get(pipe=copy).authority_currency == "USD"


def test_an_agent_writes_personal_data_only_when_it_may_see_it(client, world):
    url = reverse("rail_design:agent_new", args=[world.pipe.pk])
    refused = _as(client, world.admin).post(
        url, _agent_post(writable_fields=["category", "requester_email"]), **HX
    )
    assert (
        "An agent that may not see personal data may not write it either: Your email."
        in refused.content.decode()
    )
    assert not Agent.objects.filter(pipe=world.pipe).exists()
    saved = _as(client, world.admin).post(
        url, _agent_post(writable_fields=["category", "requester_email"], may_see_pii="on"), **HX
    )
    assert saved.status_code == 200
    agent = Agent.objects.get(pipe=world.pipe, key="purchase_triage")
    assert agent.writable_fields == ["category", "requester_email"] and agent.may_see_pii


def test_the_definition_checker_refuses_a_currency_that_is_not_a_code(world):
    from pipes.design import DefinitionError, definition_check

    make_agent(world.pipe, authority_limit=Decimal("10000"), authority_currency="USD")
    definition = pipe_export(world.pipe)
    definition_check(definition)
    definition["agents"][0]["authority"]["currency"] = "dollars"
    with pytest.raises(DefinitionError) as refused:
        definition_check(definition)
    assert any("agents[0].authority.currency" in m for m in refused.value.messages)


def test_the_authority_currency_reaches_the_write_path(world):
    agent = make_agent(world.pipe, authority_limit=Decimal("10000"), authority_currency="USD")
    card = _card(world, amount="500.00")  # 500 BRL: within the number, but in another currency
    with pytest.raises(CardAuthorityError) as refused:
        authority_check(actor=agent_actor(agent, world.pipe.pk), pipe=world.pipe, values=card.values)
    assert refused.value.rail_code == "authority_currency"


def test_a_new_agents_limit_is_in_the_organizations_currency_by_default(client, world):
    html = (
        _as(client, world.admin)
        .get(reverse("rail_design:agent_new", args=[world.pipe.pk]), **HX)
        .content.decode()
    )
    assert '<option value="BRL" selected>BRL</option>' in html


@pytest.mark.parametrize(
    "change,field,message",
    [
        (
            {"confidence_threshold": "150"},
            "confidence_threshold",
            "Ensure this value is less than or equal to 100.",
        ),
        ({"writable_fields": ["category", "nope"]}, "writable_fields", "Select a valid choice."),
        ({"authority_limit": ""}, "authority_limit", "Enter the limit, or choose no limit."),
        ({"other_decisions": "Put On Hold"}, "other_decisions", "a decision is one lowercase word"),
        ({"writable_fields": ["quote"]}, "writable_fields", "Select a valid choice."),
    ],
)
def test_it_refuses_a_bad_agent_beside_the_field_and_saves_nothing(client, world, change, field, message):
    url = reverse("rail_design:agent_new", args=[world.pipe.pk])
    response = _as(client, world.admin).post(url, _agent_post(**change), **HX)
    assert response.status_code == 422
    html = response.content.decode().replace("&#x27;", "'")
    assert message in html
    assert f'id="id_{field}' in html
    assert not Agent.objects.exists()


def test_it_edits_an_agent_and_refuses_to_delete_one_a_step_uses(client, world):
    agent = make_agent(world.pipe)
    make_step(world.phase("triage"), agent=agent)
    client = _as(client, world.admin)
    url = reverse("rail_design:agent_edit", args=[world.pipe.pk, agent.pk])
    response = client.post(url, _agent_post(name="Triage agent", key="triage", may_see_pii="on"), **HX)
    assert response.status_code == 200
    agent.refresh_from_db()
    assert agent.may_see_pii and agent.authority_currency == "USD"
    response = client.post(reverse("rail_design:agent_delete", args=[world.pipe.pk, agent.pk]), **HX)
    assert response.status_code == 409
    assert "Steps use this agent" in response.content.decode()
    assert Agent.objects.filter(pk=agent.pk).exists()


@pytest.mark.parametrize("role,status", [("member", 403), ("viewer", 403), ("outsider", 404)])
def test_only_admins_and_owners_edit_agents(client, world, role, status):
    agent = make_agent(world.pipe)
    url = reverse("rail_design:agent_edit", args=[world.pipe.pk, agent.pk])
    response = _as(client, getattr(world, role)).post(url, _agent_post(name="Hijacked", key="triage"), **HX)
    assert response.status_code == status
    agent.refresh_from_db()
    assert agent.name == "Triage agent"


# ---------------------------------------------------------------- allowed hosts


def _hosts(world):
    return reverse("rail_design:hosts", args=[world.pipe.pk])


def test_an_owner_allows_and_removes_a_host(client, world):
    client = _as(client, world.owner)
    response = client.post(_hosts(world), {"host": "ERP.Acme.example", "note": "ERP"}, **HX)
    assert response.status_code == 200
    host = AllowedHost.objects.get(organization=world.org)
    assert host.host == "erp.acme.example"
    response = client.post(reverse("rail_design:host_delete", args=[world.pipe.pk, host.pk]), **HX)
    assert response.status_code == 200
    assert not AllowedHost.objects.exists()


@pytest.mark.parametrize(
    "host,message",
    [
        ("https://erp.acme.example/api", "Only the host name, without https:// or a path."),
        ("erp acme", "A host name like erp.example.com or *.example.com."),
        ("*.*.example", "A host name like erp.example.com or *.example.com."),
    ],
)
def test_it_refuses_what_is_not_a_host_name(client, world, host, message):
    response = _as(client, world.owner).post(_hosts(world), {"host": host}, **HX)
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not AllowedHost.objects.exists()


def test_it_refuses_a_host_allowed_already(client, world):
    AllowedHost.objects.create(organization=world.org, host="erp.acme.example")
    response = _as(client, world.owner).post(_hosts(world), {"host": "erp.acme.example"}, **HX)
    assert response.status_code == 422
    assert AllowedHost.objects.count() == 1


def test_a_pipe_admin_sees_the_hosts_but_only_owners_change_them(client, world):
    host = AllowedHost.objects.create(organization=world.org, host="erp.acme.example")
    client = _as(client, world.admin)
    page = client.get(_hosts(world)).content.decode()
    assert "erp.acme.example" in page and "Only owners of the organization" in page
    assert client.post(_hosts(world), {"host": "evil.example"}, **HX).status_code == 403
    assert (
        client.post(reverse("rail_design:host_delete", args=[world.pipe.pk, host.pk]), **HX).status_code
        == 403
    )
    assert list(AllowedHost.objects.values_list("host", flat=True)) == ["erp.acme.example"]


def test_another_organizations_host_is_out_of_reach(client, world):
    other = Organization.objects.get(slug="other")
    theirs = AllowedHost.objects.create(organization=other, host="their.example")
    response = _as(client, world.owner).post(
        reverse("rail_design:host_delete", args=[world.pipe.pk, theirs.pk]), **HX
    )
    assert response.status_code == 404
    assert AllowedHost.objects.filter(pk=theirs.pk).exists()
    assert _as(client, world.outsider).get(_hosts(world)).status_code == 404


def test_the_designer_tabs_lead_to_steps_agents_and_hosts(client, world):
    html = _as(client, world.admin).get(reverse("designer:pipe", args=[world.pipe.pk])).content.decode()
    for name in ("steps", "agents", "hosts"):
        assert reverse(f"rail_design:{name}", args=[world.pipe.pk]) in html


def test_an_exported_pipe_with_designed_steps_imports_again(client, world):
    AllowedHost.objects.create(organization=world.org, host="erp.acme.example")
    _as(client, world.admin).post(_step_url("step_new", world), _automation_post(world), **HX)
    definition = pipe_export(world.pipe)
    assert definition_load  # the same format the YAML import reads
    definition.update(slug="again", code="AG")
    again = pipe_import(organization=world.org, definition=definition)
    assert Step.objects.get(phase__pipe=again, key="big_purchases").condition == {
        "field": "amount",
        "op": "gt",
        "value": 5000,
    }
    assert Field.objects.filter(pipe=again, type=FieldType.CURRENCY).exists()
