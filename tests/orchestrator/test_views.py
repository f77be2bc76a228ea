"""The run page, retrying a failed step from it, and the pipe's cost page."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
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


# ---------------------------------------------------------------- personal data on the run page

SECRET_EMAIL = "joana.secreta@empresa.com"
SECRET_ITEM = "Laptop for Joana Secreta"
SECRET_CC = "CC-481"
SECRET_DOC = "DOC-SECRET-9911"


def _worker_without_pii(world):
    """The member, still working the pipe, without the permission to see personal data."""
    from guardian.shortcuts import remove_perm

    from pipes.roles import forget_access

    remove_perm("view_pii", world.member, world.pipe)
    forget_access()
    return world.member


@pytest.fixture
def pii_run(world, ollama, openai):
    """A run whose agent may see personal data: the item (the title field), the email and the cost
    center are PII, and the model repeats them in its reasoning; then a review of a second proposal."""
    world.pipe.fields.filter(key__in=["item", "requester_email", "cost_center", "quote"]).update(pii=True)
    make_step(world.phase("triage"), agent=make_agent(world.pipe, may_see_pii=True))
    reasoning = f"{SECRET_EMAIL} asked for {SECRET_ITEM} on {SECRET_CC} before."
    ollama.push(
        answer("approve", {"category": "Hardware", "cost_center": SECRET_CC}, 0.9, reasoning=reasoning)
    )
    values = good_start_values(item=SECRET_ITEM, requester_email=SECRET_EMAIL)
    upload = SimpleUploadedFile("joana-id.txt", SECRET_DOC.encode(), content_type="text/plain")
    card = card_create(
        actor=Actor.for_user(world.requester), pipe=world.pipe, values=values, files={"quote": [upload]}
    )
    drain()
    return StepRun.objects.get(card=card)


def test_it_masks_personal_data_on_the_run_page_for_a_worker_without_view_pii(client, world, pii_run):
    held = str(list(pii_run.events.values("data")))
    assert SECRET_EMAIL in held and SECRET_DOC in held  # the trace holds them in clear
    client.force_login(_worker_without_pii(world))

    page = client.get(reverse("rail:run", args=[pii_run.pk])).content.decode()

    assert "Inputs seen" in page and "Prompt" in page and "Raw output" in page and "Changes applied" in page
    for secret in (SECRET_EMAIL, SECRET_ITEM, SECRET_CC, SECRET_DOC, "joana-id", "Joana"):
        assert secret not in page, secret
    assert "j***@e***.com" in page and "L***" in page and "C***" in page


def test_it_masks_personal_data_in_the_review_of_a_run(client, world, pii_run, ollama):
    from orchestrator.models import ReviewTask

    ReviewTask.objects.create(
        run=pii_run,
        card=pii_run.card,
        pipe=world.pipe,
        question=f"May {SECRET_EMAIL} buy this?",
        proposal={"decision": "approve", "values": {"cost_center": SECRET_CC}},
        reasoning=f"{SECRET_ITEM} is within policy.",
        allowed_decisions=["approve", "reject"],
    )
    client.force_login(_worker_without_pii(world))

    page = client.get(reverse("rail:run", args=[pii_run.pk])).content.decode()

    assert "Agent proposed" in page
    for secret in (SECRET_EMAIL, SECRET_ITEM, SECRET_CC):
        assert secret not in page, secret


def test_it_shows_the_run_in_clear_to_people_who_may_see_personal_data(client, world, pii_run):
    client.force_login(world.member)
    page = client.get(reverse("rail:run", args=[pii_run.pk])).content.decode()
    assert SECRET_EMAIL in page and SECRET_ITEM in page and SECRET_CC in page and SECRET_DOC in page


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
    with django_assert_max_num_queries(13):  # 12, and the menu's one query of what the person uses
        response = client.get(reverse("rail:pipe_costs", args=[world.pipe.pk]) + "?period=7d")
    assert response.status_code == 200
    report = response.context["report"]
    local = next(row for row in report.mechanisms if row.key == "local_model")
    assert (local.runs, local.done, local.tokens) == (1, 1, 160)
    assert local.cost == Decimal("0.000016") and local.baseline == Decimal("0.001440")
    assert report.total.saving == Decimal("0.001424")
    page = response.content.decode()
    assert "Per mechanism" in page and "Local model" in page and "Classify the request" in page


def test_a_run_without_trace_rows_says_so_by_its_state_never_that_it_is_queued(client, world, stamping_step):
    """A finished run whose trace rows are gone (pruned by retention, or never written) does not claim to
    be queued: the page says the trace was pruned, or that the run ended without one."""
    from django.utils import timezone

    from orchestrator.models import TraceEvent

    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    drain()
    run = StepRun.objects.get(card=card)
    TraceEvent.objects.filter(run=run).delete()
    client.force_login(world.admin)
    url = reverse("rail:run", kwargs={"run_id": run.pk})

    page = client.get(url).content.decode()
    assert "No trace for this run" in page and "The step is queued" not in page

    StepRun.objects.filter(pk=run.pk).update(trace_pruned_at=timezone.now())
    page = client.get(url).content.decode()
    assert "under the pipe&#x27;s trace retention" in page or "under the pipe's trace retention" in page
    assert "The step is queued" not in page and "No trace for this run" not in page
