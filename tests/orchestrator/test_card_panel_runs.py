"""The card panel links each step of its timeline to the run and trace, and offers Retry on a failed step."""

from __future__ import annotations

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


def _panel(client, run) -> str:
    url = reverse("card_detail", args=[run.pipe_id, run.card_id])
    return client.get(url, HTTP_HX_REQUEST="true").content.decode()


def test_it_links_the_steps_on_the_card_timeline_to_their_run(client, world, failed_run):
    client.force_login(world.member)
    page = _panel(client, failed_run)
    assert f'href="{reverse("rail:run", args=[failed_run.pk])}"' in page
    assert "Run and trace" in page and 'id="failed-run"' in page


def test_it_shows_no_run_links_to_people_who_may_not_open_runs(client, world, failed_run):
    client.force_login(world.viewer)
    page = _panel(client, failed_run)
    assert reverse("rail:run", args=[failed_run.pk]) not in page
    assert 'id="retry-step"' not in page


def test_it_retries_a_failed_step_from_the_card_panel(client, world, failed_run, ollama):
    client.force_login(world.member)
    assert 'id="retry-step"' in _panel(client, failed_run)
    ollama.push(answer("approve", GOOD, 0.9))
    response = client.post(
        reverse("card_retry", args=[failed_run.pipe_id, failed_run.card_id]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert "will run again" in response["HX-Trigger"]
    failed_run.refresh_from_db()
    assert failed_run.status == RunStatus.PENDING
    drain()
    card = failed_run.card
    card.refresh_from_db()
    assert card.phase.key == "approval" and card.rail_status == RailStatus.IDLE


def test_it_refuses_a_retry_from_the_card_of_a_viewer(client, world, failed_run):
    client.force_login(world.viewer)
    response = client.post(
        reverse("card_retry", args=[failed_run.pipe_id, failed_run.card_id]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 403
    failed_run.refresh_from_db()
    assert failed_run.status == RunStatus.FAILED


def test_it_says_there_is_nothing_to_retry_on_a_card_whose_steps_did_not_fail(client, world):
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    client.force_login(world.member)
    response = client.post(reverse("card_retry", args=[world.pipe.pk, card.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert "No step of this card is waiting to be retried." in response["HX-Trigger"]
