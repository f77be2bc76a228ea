"""Automation actions run by the rail: card changes, email, and HTTP to allowed hosts only."""

from __future__ import annotations

import pytest
from django.core import mail

from agents.actions import action_validate
from agents.http import HttpRefused, http_send
from agents.models import AllowedHost
from orchestrator.models import Mechanism, RunStatus, StepRun, TraceKind
from pipes.choices import RailStatus
from pipes.models import Card
from pipes.services import Actor, card_create
from tests.modelservers import error, ok
from tests.orchestrator.conftest import drain, make_step
from tests.personas import build_purchase_pipe, good_start_values

pytestmark = pytest.mark.django_db


def automation(world, *actions, **extra):
    return make_step(
        world.phase("triage"),
        key="auto",
        name="Automation",
        mechanism=Mechanism.AUTOMATION,
        actions=list(actions),
        on_approve="",
        on_reject="",
        **extra,
    )


def submit(world, **values):
    card = card_create(
        actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values(**values)
    )
    drain()
    card.refresh_from_db()
    return card


def test_it_sends_a_templated_json_body_with_a_secret_and_an_idempotency_key(world, external):
    external.push(ok({"data": {"po": "PO-777", "category": "Hardware"}}))
    automation(
        world,
        {
            "type": "http",
            "method": "POST",
            "url": external.url + "/orders/{card.reference}?item={field.item}",
            "headers": {"Authorization": {"$secret": "erp_token", "prefix": "Bearer "}},
            "body": {
                "order": {
                    "item": {"$field": "item"},
                    "amount": {"$field": "amount"},
                    "ref": {"$card": "reference"},
                },
                "note": {"$text": "Requested: {field.item}"},
                "literal": "{field.item}",
            },
            "timeout": 2,
            "response_map": {"category": "data.category", "cost_center": "data.missing"},
        },
    )
    card = submit(world)
    request = external.requests[0]
    ref = card.reference
    assert request.path == f"/orders/{ref}?item=Laptop%20for%20Ana"
    assert request.headers["Authorization"] == "Bearer s3cret-token"
    assert request.headers["Idempotency-Key"] == f"trilho-run-{StepRun.objects.get().pk}-0"
    assert request.body == {
        "order": {
            "item": "Laptop for Ana",
            "amount": {"amount": "4500.00", "currency": "BRL"},
            "ref": ref,
        },
        "note": "Requested: Laptop for Ana",
        "literal": "{field.item}",  # plain strings are never templates
    }
    assert card.values["category"] == "Hardware" and "cost_center" not in card.values
    call = StepRun.objects.get().events.get(kind=TraceKind.HTTP_CALL).data
    assert call["headers"]["Authorization"] == "Bearer ***" and call["status"] == 200
    assert "s3cret-token" not in str(StepRun.objects.get().events.values_list("data", flat=True))


def test_it_retries_a_5xx_with_the_same_idempotency_key(world, external):
    external.push(error(503), ok())
    automation(world, {"type": "http", "url": external.url + "/hook", "body": {"id": {"$card": "id"}}})
    submit(world)
    run = StepRun.objects.get()
    assert run.status == RunStatus.DONE and run.attempts == 2
    keys = external.idempotency_keys()
    assert len(keys) == 2 and keys[0] == keys[1]


def test_it_fails_the_step_on_a_4xx_without_retrying(world, external):
    external.push(ok({"error": "bad"}, status=422))
    automation(world, {"type": "http", "url": external.url + "/hook"})
    card = submit(world)
    run = StepRun.objects.get()
    assert run.status == RunStatus.FAILED and run.attempts == 1 and "HTTP 422" in run.error
    assert card.rail_status == RailStatus.FAILED


def test_it_does_not_follow_redirects(world, external):
    external.push(ok({}, status=302))
    automation(world, {"type": "http", "url": external.url + "/hook"})
    submit(world)
    assert "HTTP 302" in StepRun.objects.get().error and len(external.requests) == 1


def test_it_refuses_hosts_the_organization_did_not_allow(world, external):
    AllowedHost.objects.all().delete()
    automation(world, {"type": "http", "url": external.url + "/hook"})
    card = submit(world)
    run = StepRun.objects.get()
    assert run.status == RunStatus.FAILED
    assert "host 127.0.0.1 is not in the organization's allowed hosts" in run.error
    assert external.requests == [] and card.rail_status == RailStatus.FAILED


def test_it_refuses_loopback_unless_the_setting_allows_private_addresses(world, external, settings):
    settings.TRILHO_HTTP_ALLOWED_PRIVATE = False
    automation(world, {"type": "http", "url": external.url + "/hook"})
    submit(world)
    assert "address 127.0.0.1 is not a public address" in StepRun.objects.get().error
    assert external.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.8/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://0.0.0.0/",
        "http://192.168.1.1/",
        "http://[::ffff:127.0.0.1]/",
    ],
)
def test_it_refuses_private_and_link_local_addresses(world, settings, url):
    settings.TRILHO_HTTP_ALLOWED_PRIVATE = False
    host = (
        url.split("//")[1].split("/")[0].rsplit(":", 1)[0]
        if "[" not in url
        else url.split("[")[1].split("]")[0]
    )
    AllowedHost.objects.create(organization=world.org, host=host)
    with pytest.raises(HttpRefused, match="not a public address"):
        http_send(organization_id=world.org.pk, method="GET", url=url, headers={})


def test_it_refuses_names_that_resolve_to_private_addresses(world, settings):
    settings.TRILHO_HTTP_ALLOWED_PRIVATE = False
    AllowedHost.objects.create(organization=world.org, host="localhost")
    with pytest.raises(HttpRefused, match="not a public address"):
        http_send(organization_id=world.org.pk, method="GET", url="http://localhost:9/", headers={})


def test_it_matches_allowed_hosts_exactly_or_by_wildcard(world):
    AllowedHost.objects.create(organization=world.org, host="*.erp.example.com")
    for url in (
        "http://erp.example.com.evil.net/",
        "http://evilerp.example.com/",
        "ftp://api.erp.example.com/",
    ):
        with pytest.raises(HttpRefused):
            http_send(organization_id=world.org.pk, method="GET", url=url, headers={})
    with pytest.raises(HttpRefused, match="credentials"):
        http_send(
            organization_id=world.org.pk, method="GET", url="http://u:p@api.erp.example.com/", headers={}
        )


def test_it_fails_clearly_when_a_secret_is_missing(world, external):
    automation(world, {"type": "http", "url": external.url, "headers": {"X-Key": {"$secret": "nope"}}})
    submit(world)
    assert "secret 'nope' is not configured" in StepRun.objects.get().error


def test_it_sets_fields_assigns_labels_comments_and_moves(world, rail_settings):
    automation(
        world,
        {"type": "set_field", "field": "category", "value": "Software"},
        {"type": "set_field", "field": "cost_center", "value": "CC-123"},
        {"type": "assign", "users": ["member", "admin@example.com"]},
        {"type": "add_label", "label": "Priority"},
        {"type": "comment", "text": "Routed {card.reference} ({field.category}, {field.amount})"},
        {"type": "move", "to": "approval"},
    )
    card = submit(world)
    assert card.phase.key == "approval"
    assert card.values["category"] == "Software" and card.values["cost_center"] == "CC-123"
    assert set(card.assignees.values_list("username", flat=True)) == {"member", "admin"}
    assert list(card.labels.values_list("name", flat=True)) == ["Priority"]
    comment = card.events.get(kind="commented")
    assert comment.payload["text"] == f"Routed {card.reference} (Software, BRL 4,500.00)"
    assert comment.actor_kind == "system" and comment.actor_label == "Automation: Automation"
    kinds = list(card.events.values_list("kind", flat=True))
    assert kinds.index("moved") > kinds.index("commented")


def test_it_creates_a_connected_card_in_another_pipe(world, rail_settings):
    other = build_purchase_pipe(world.org, slug="follow-ups", code="FU")
    from pipes.models import Field

    Field.objects.create(
        pipe=world.pipe, key="follow_up", label="Follow-up", type="connection", config={"pipe": "follow-ups"}
    )
    automation(
        world,
        {
            "type": "create_card",
            "pipe": "follow-ups",
            "values": {
                "item": {"$text": "Follow-up of {card.reference}"},
                "amount": {"$field": "amount"},
                "requester_email": "ops@example.com",
            },
            "link_field": "follow_up",
        },
    )
    card = submit(world)
    created = Card.objects.get(pipe=other)
    assert (
        created.title == f"Follow-up of {card.reference}" and created.values["amount"]["amount"] == "4500.00"
    )
    assert card.values["follow_up"] == [created.pk]
    assert created.events.get(kind="created").reason == f"connected to {card.reference}"


def test_it_sends_an_email_once(world, rail_settings, django_capture_on_commit_callbacks):
    automation(
        world,
        {
            "type": "send_email",
            "to": "{field.requester_email}",
            "subject": "We got {card.reference}",
            "body": "Item: {field.item}",
        },
    )
    with django_capture_on_commit_callbacks(execute=True):  # sent once the step's result is committed
        card = submit(world)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ana@example.com"] and mail.outbox[0].subject == f"We got {card.reference}"
    assert StepRun.objects.get().events.filter(kind=TraceKind.TOOL_CALL).count() == 1


def test_it_changes_nothing_when_one_card_change_is_refused(world, rail_settings):
    automation(
        world,
        {"type": "set_field", "field": "category", "value": "Software"},
        {"type": "set_field", "field": "cost_center", "value": "not a cost center"},
    )
    card = submit(world)
    assert "category" not in card.values
    run = StepRun.objects.get()
    assert run.status == RunStatus.FAILED and "Use the form CC-123." in run.error


def test_it_names_every_problem_of_an_action_definition():
    keys, phases = {"amount", "item"}, {"triage", "done"}
    assert action_validate({"type": "teleport"}, "a", field_keys=keys, phase_keys=phases) == [
        "a.type: one of set_field, move, assign, add_label, comment, create_card, send_email, http"
    ]
    assert action_validate({"type": "move", "to": "moon"}, "a", field_keys=keys, phase_keys=phases) == [
        "a.to: unknown phase 'moon'"
    ]
    problems = action_validate(
        {
            "type": "http",
            "method": "TRACE",
            "url": "file:///etc/passwd",
            "body": {"x": {"$field": "nope"}, "y": {"$eval": "1+1"}},
            "timeout": 600,
            "response_map": {"ghost": "a.b"},
        },
        "steps[0].actions[1]",
        field_keys=keys,
        phase_keys=phases,
    )
    assert problems == [
        "steps[0].actions[1].method: GET, POST, PUT, PATCH or DELETE",
        "steps[0].actions[1].url: an http:// or https:// URL",
        "steps[0].actions[1].body.x: unknown field 'nope'",
        "steps[0].actions[1].body.y: unknown substitution '$eval'",
        "steps[0].actions[1].timeout: seconds, between 0 and 60",
        "steps[0].actions[1].response_map: unknown field 'ghost'",
    ]


def test_it_does_not_repeat_a_request_that_succeeded_when_the_step_is_retried(world, external):
    external.push(ok({"data": {"category": "Hardware"}}), error(503), ok())
    automation(
        world,
        {"type": "http", "url": external.url + "/first", "response_map": {"category": "data.category"}},
        {"type": "http", "url": external.url + "/second"},
    )
    card = submit(world)
    run = StepRun.objects.get()
    assert run.status == RunStatus.DONE and run.attempts == 2
    assert [r.path for r in external.requests] == ["/first", "/second", "/second"]
    assert card.values["category"] == "Hardware"
    reused = run.events.get(kind=TraceKind.HTTP_CALL, attempt=2, data__index=0)
    assert reused.data["reused"] is True
