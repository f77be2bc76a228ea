"""Fixtures of the rail's tests: scripted model servers, an external system, and a pipe with steps."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agents.models import Agent, AllowedHost, Provider
from orchestrator.models import Mechanism, Risk, Step
from pipes.models import PhaseEntry
from tests.modelservers import ExternalSystem, OllamaServer, OpenAIServer


@pytest.fixture
def rail_settings(settings):
    """Short timeouts and no backoff, so failure paths stay fast."""
    settings.TRILHO_MODEL_TIMEOUT_SECONDS = 0.5
    settings.TRILHO_RAIL_RETRY_BASE_SECONDS = 0
    settings.TRILHO_HTTP_ALLOWED_PRIVATE = True  # the test servers listen on loopback
    settings.TRILHO_SECRETS = {"erp_token": "s3cret-token"}
    settings.TRILHO_MODEL_PRICING = {
        "openai/gpt-test": {"input": Decimal("2.00"), "output": Decimal("8.00")},
    }
    settings.TRILHO_LOCAL_COMPUTE_COST_PER_1M = Decimal("0.10")
    settings.TRILHO_BASELINE_MODEL = "openai/gpt-test"
    settings.TRILHO_COST_CURRENCY = "BRL"
    return settings


@pytest.fixture
def ollama(rail_settings):
    with OllamaServer() as server:
        rail_settings.OLLAMA_BASE_URL = server.url
        yield server


@pytest.fixture
def openai(rail_settings):
    with OpenAIServer() as server:
        rail_settings.OPENAI_BASE_URL = server.url + "/v1"
        rail_settings.OPENAI_API_KEY = "test-key"
        yield server


@pytest.fixture
def external(world, rail_settings):
    with ExternalSystem() as server:
        AllowedHost.objects.create(organization=world.org, host="127.0.0.1", note="test ERP")
        yield server


def make_agent(pipe, **overrides) -> Agent:
    spec = dict(
        pipe=pipe,
        key="triage",
        name="Triage agent",
        instructions="Classify purchase requests.",
        provider=Provider.OLLAMA,
        model="llama-test",
        escalation_provider=Provider.OPENAI,
        escalation_model="gpt-test",
        readable_fields=["item", "amount", "requester_email", "quote"],
        writable_fields=["category", "cost_center"],
        allowed_phases=["approval", "rejected"],
        decisions=["approve", "reject", "escalate"],
        authority_field="amount",
        authority_limit=Decimal("10000"),
        confidence_threshold=Decimal("0.70"),
    )
    spec.update(overrides)
    return Agent.objects.create(**spec)


def make_step(phase, **overrides) -> Step:
    spec = dict(
        phase=phase,
        position=1,
        key="classify",
        name="Classify the request",
        mechanism=Mechanism.AUTO,
        risk=Risk.MEDIUM,
        on_approve="approval",
        on_reject="rejected",
        max_attempts=2,
    )
    spec.update(overrides)
    return Step.objects.create(**spec)


def drain(rounds: int = 30) -> None:
    """Run every unprocessed phase entry in this process, as a worker would (retries without waiting)."""
    from orchestrator.models import RunStatus, StepRun
    from orchestrator.rail import entry_run

    for _ in range(rounds):
        pending = list(PhaseEntry.objects.filter(processed_at__isnull=True).values_list("pk", flat=True))
        if not pending:
            return
        for entry_id in pending:
            outcome = entry_run(entry_id=entry_id)
            if outcome.retry_in is not None:
                StepRun.objects.filter(entry_id=entry_id, status=RunStatus.PENDING).update(
                    next_attempt_at=None
                )
    raise AssertionError("the rail did not settle")
