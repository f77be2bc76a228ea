"""The run page, retrying a failed step from it, and the pipe's cost page."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from orchestrator.models import Mechanism, RunStatus, StepRun
from pipes.choices import RailStatus
from pipes.services import Actor, card_create
from tests.modelservers import answer, error
from tests.orchestrator.conftest import drain, make_agent, make_step
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db

GOOD = {"category": "Hardware", "cost_center": "CC-100"}


@pytest.fixture
def done_run(world, ollama, openai):
    make_step(world.phase("triage"), agent=make_agent(world.pipe))
    ollama.push(answer("approve", GOOD, 0.9))
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    drain()
    return StepRun.objects.get(card=card)


@pytest.fixture
def failed_run(world, ollama, openai):
    make_step(
        world.phase("triage"), agent=make_agent(world.pipe), mechanism=Mechanism.LOCAL_MODEL, max_attempts=1
    )
    ollama.push(error(500))
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    drain()
    run = StepRun.objects.get(card=card)
    assert run.status == RunStatus.FAILED
    return run


def test_it_shows_the_whole_trace_of_a_run(client, world, done_run):
    client.force_login(world.member)
    response = client.get(reverse("rail:run", args=[done_run.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Classify the request" in page
    assert "local model llama-test decided approve with confidence 0.90" in page
    assert "Inputs seen" in page and "Raw output" in page and "Changes applied" in page
    assert "personal data, hidden from the agent" in page  # requester_email is PII
    assert "ana@example.com" not in page
    assert "Retry this step" not in page


@pytest.mark.parametrize(
    ("who", "status"), [("outsider", 404), ("viewer", 403), ("reviewer", 403), ("requester", 403)]
)
def test_it_hides_runs_from_people_who_do_not_work_the_pipe(client, world, done_run, who, status):
    client.force_login(getattr(world, who))
    assert client.get(reverse("rail:run", args=[done_run.pk])).status_code == status
    assert client.get(reverse("rail:pipe_costs", args=[world.pipe.pk])).status_code == status


def test_it_answers_404_for_a_run_that_does_not_exist(client, world):
    client.force_login(world.owner)
    assert client.get(reverse("rail:run", args=[999])).status_code == 404


def test_it_polls_only_while_the_run_is_unfinished(client, world, done_run):
    client.force_login(world.admin)
    page = client.get(reverse("rail:run", args=[done_run.pk])).content.decode()
    assert "hx-trigger" not in page
    StepRun.objects.filter(pk=done_run.pk).update(status=RunStatus.RUNNING)
    fragment = client.get(reverse("rail:run", args=[done_run.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 2s"' in fragment and "<html" not in fragment


def test_it_lets_a_member_retry_a_failed_step_from_the_run_page(client, world, failed_run, ollama):
    client.force_login(world.member)
    page = client.get(reverse("rail:run", args=[failed_run.pk])).content.decode()
    assert "Retry this step" in page and "The step failed:" in page
    ollama.push(answer("approve", GOOD, 0.9))
    response = client.post(reverse("rail:run_retry", args=[failed_run.pk]))
    assert response.status_code == 302
    failed_run.refresh_from_db()
    assert failed_run.status == RunStatus.PENDING
    card = failed_run.card
    card.refresh_from_db()
    assert card.rail_status == RailStatus.RUNNING
    assert card.events.filter(kind="step").last().payload["status"] == "retry requested"
    drain()
    failed_run.refresh_from_db()
    card.refresh_from_db()
    assert failed_run.status == RunStatus.DONE and card.phase.key == "approval"
    assert failed_run.events.filter(kind="retry", summary__startswith="retry requested by").exists()


def test_it_refuses_to_retry_a_step_that_did_not_fail(client, world, done_run):
    client.force_login(world.member)
    response = client.post(reverse("rail:run_retry", args=[done_run.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 409
    assert "Only a failed step can be retried" in response.content.decode()


def test_it_refuses_retries_by_people_who_only_view(client, world, failed_run):
    client.force_login(world.viewer)
    assert client.post(reverse("rail:run_retry", args=[failed_run.pk])).status_code == 403
    client.force_login(world.outsider)
    assert client.post(reverse("rail:run_retry", args=[failed_run.pk])).status_code == 404
    failed_run.refresh_from_db()
    assert failed_run.status == RunStatus.FAILED


def test_it_accepts_only_post_for_retries(client, world, failed_run):
    client.force_login(world.member)
    assert client.get(reverse("rail:run_retry", args=[failed_run.pk])).status_code == 405


def test_it_shows_costs_per_mechanism_next_to_the_foundation_only_cost(
    client, world, done_run, django_assert_max_num_queries
):
    client.force_login(world.owner)
    with django_assert_max_num_queries(12):
        response = client.get(reverse("rail:pipe_costs", args=[world.pipe.pk]) + "?period=7d")
    assert response.status_code == 200
    report = response.context["report"]
    local = next(row for row in report.mechanisms if row.key == "local_model")
    assert (local.runs, local.done, local.tokens) == (1, 1, 160)
    assert local.cost == Decimal("0.000016") and local.baseline == Decimal("0.001440")
    assert report.total.saving == Decimal("0.001424")
    page = response.content.decode()
    assert "Per mechanism" in page and "Local model" in page and "Classify the request" in page
