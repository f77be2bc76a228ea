"""A card's journey on PostgreSQL and Redis with a real Celery worker: automation, local model,
foundation model and a person, through the credit-analysis template, to its final phase."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from agents.models import AllowedHost
from orchestrator.inbox.services import inbox_decide
from orchestrator.models import Mechanism, ReviewTask, RunStatus, Step, StepRun
from pipes.choices import PipeRole, RailStatus
from pipes.design import pipe_import, process_template_load
from pipes.models import Card
from pipes.roles import pipe_role_grant
from pipes.services import Actor, card_create
from pipes.timeline import verify_card, verify_timelines
from tests.modelservers import ExternalSystem, OllamaServer, OpenAIServer, answer, ok
from tests.orchestrator.conftest import wait_for
from tests.orchestrator.helpers import pdf_with_text
from tests.personas import good_start_values

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def credit(world, rail_settings, media_root):
    pipe = pipe_import(organization=world.org, definition=process_template_load("credit_analysis"))
    pipe_role_grant(pipe=pipe, user=world.reviewer, role=PipeRole.REVIEWER)
    pipe_role_grant(pipe=pipe, user=world.member, role=PipeRole.MEMBER)
    return pipe


def test_it_takes_a_card_through_all_four_mechanisms_to_the_final_phase(world, credit, rail_settings, worker):
    rail_settings.TRILHO_SECRETS = {"bureau_token": "bureau-secret"}
    rail_settings.TRILHO_MODEL_TIMEOUT_SECONDS = 5
    with ExternalSystem() as bureau, OllamaServer() as ollama, OpenAIServer() as openai:
        rail_settings.OLLAMA_BASE_URL = ollama.url
        rail_settings.OPENAI_BASE_URL = openai.url + "/v1"
        rail_settings.OPENAI_API_KEY = "test"
        AllowedHost.objects.create(organization=world.org, host="127.0.0.1")
        lookup = Step.objects.get(phase__pipe=credit, key="bureau_lookup")
        lookup.actions[0]["url"] = bureau.url + "/v1/reports"
        lookup.save()
        bureau.push(ok({"score": 812, "negative_records": "None"}))
        ollama.push(answer("done", {"revenue_last_year": "2400000", "debt_ratio": "35"}, 0.9))
        opinion = "Solid revenue, moderate debt; rating C because of the short history."
        openai.push(
            answer(
                "refer",
                {"risk_rating": "C - high", "recommended_limit": "80000", "analyst_opinion": opinion},
                0.88,
            )
        )

        card = card_create(
            actor=Actor.for_user(world.member),
            pipe=credit,
            values={
                "customer_name": "Padaria Pão Quente Ltda",
                "customer_cnpj": "12.345.678/0001-90",
                "segment": "Retail",
                "requested_limit": "90000",
                "payment_term": "28 days",
                "sales_rep_email": "rep@example.com",
            },
            files={
                "financial_statements": [
                    SimpleUploadedFile("balance.pdf", pdf_with_text("Revenue 2,400,000"), "application/pdf")
                ]
            },
        )
        # automation → local model → foundation model, all in the worker; then a person.
        task = wait_for(
            lambda: ReviewTask.objects.filter(card=card, status="open").first(), what="the committee review"
        )
        card.refresh_from_db()
        assert card.phase.key == "committee" and card.rail_status == RailStatus.WAITING_REVIEW
        assert bureau.requests[0].headers["Authorization"] == "Bearer bureau-secret"
        assert "Revenue 2,400,000" in ollama.prompts()[0]
        assert "rep@example.com" not in ollama.prompts()[0] + openai.prompts()[0]

        inbox_decide(
            task=task,
            user=world.reviewer,
            decision="approve",
            comment="Approved in the committee of today.",
            values={"committee_decision": "Approved", "committee_date": "2026-03-02"},
        )
        wait_for(
            lambda: Card.objects.get(pk=card.pk).phase_entries.filter(
                phase__key="approved", processed_at__isnull=False
            ),
            what="the final phase entry to be processed",
        )

    card.refresh_from_db()
    assert card.phase.key == "approved" and card.finished_at is not None
    assert card.rail_status == RailStatus.IDLE
    assert card.values["bureau_score"] == "812" and card.values["risk_rating"] == "C - high"
    assert card.values["revenue_last_year"] == {"amount": "2400000.00", "currency": "BRL"}
    runs = {r.step_name: r for r in StepRun.objects.filter(card=card)}
    assert {name: (r.mechanism, r.status) for name, r in runs.items()} == {
        "Query the credit bureau": (Mechanism.AUTOMATION, RunStatus.DONE),
        "Read the financial statements": (Mechanism.LOCAL_MODEL, RunStatus.DONE),
        "Credit opinion": (Mechanism.FOUNDATION_MODEL, RunStatus.DONE),
        "Committee vote": (Mechanism.HUMAN, RunStatus.DONE),
    }
    local, foundation = runs["Read the financial statements"], runs["Credit opinion"]
    assert local.model == "llama3.2" and local.cost == Decimal("0.000016")
    assert foundation.model == "gpt-4o-mini" and foundation.decision == "refer"
    assert foundation.cost > 0 and foundation.baseline_cost > 0
    assert runs["Committee vote"].cost == 0  # decided without opening the task: no minutes billed
    for run in runs.values():
        assert run.started_at and run.finished_at and run.latency_ms is not None and run.attempts == 1
    kinds = set(foundation.events.values_list("kind", flat=True))
    assert {"inputs", "prompt", "raw_output", "routing", "changes"} <= kinds
    assert runs["Query the credit bureau"].events.filter(kind="http_call").exists()
    assert (
        list(card.events.filter(kind="step").values_list("payload__run_id", flat=True)).count(
            runs["Committee vote"].pk
        )
        == 2
    )  # waiting, then decided
    assert list(verify_card(card, card.events.order_by("seq"))) == []


def test_the_beat_job_marks_a_late_card_and_its_late_step_runs_on_the_worker(world, rail_settings, worker):
    """Celery beat sends mark_late_cards every minute; here the test sends it once, as beat would."""
    import datetime as dt

    from django.conf import settings
    from django.utils import timezone

    from orchestrator.models import Trigger
    from orchestrator.rail.tasks import mark_late_cards
    from pipes.models import Notification, PhaseEntry

    schedule = settings.CELERY_BEAT_SCHEDULE["mark-late-cards"]
    assert schedule["task"] == mark_late_cards.name and schedule["schedule"] <= 60
    Step.objects.create(
        phase=world.phase("triage"),
        key="escalate",
        name="Escalate",
        trigger=Trigger.LATE,
        mechanism=Mechanism.AUTOMATION,
        actions=[{"type": "comment", "text": "Over the SLA: escalated."}],
    )
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    wait_for(lambda: PhaseEntry.objects.filter(card=card, processed_at__isnull=False).exists(), what="entry")
    assert not StepRun.objects.filter(card=card).exists()  # not late yet: nothing ran
    entered = timezone.now() - dt.timedelta(hours=25)  # triage's SLA is 24 h
    Card.objects.filter(pk=card.pk).update(phase_entered_at=entered)
    PhaseEntry.objects.filter(card=card).update(entered_at=entered)

    mark_late_cards.delay()

    run = wait_for(lambda: StepRun.objects.filter(card=card, status=RunStatus.DONE).first(), what="late step")
    card.refresh_from_db()
    assert run.step_name == "Escalate"
    assert card.late_at == entered + dt.timedelta(hours=24)
    assert card.events.filter(kind="late").count() == 1
    assert card.events.get(kind="commented").payload["text"] == "Over the SLA: escalated."
    assert Notification.objects.filter(card=card, user=world.admin).exists()
    assert list(verify_timelines([card])) == []
