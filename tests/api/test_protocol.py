"""The API's protocol: idempotency, rate limits, the session with CSRF, the schema and docs, real HTTP,
and the other resources (organizations, pipes, reviews, runs, the SLA report)."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest
from django.db import connection
from django.test import Client

from orchestrator.models import IdempotencyRecord, StepRun
from pipes.models import Card
from tests.api.conftest import ApiClient, make_token
from tests.personas import build_world, good_start_values

pytestmark = pytest.mark.django_db


def cards_url(world) -> str:
    return f"/api/v1/pipes/{world.pipe.pk}/cards"


# ---------------------------------------------------------------- idempotency


def test_a_repeated_key_returns_the_first_answer_and_creates_nothing(world, api_as):
    api = api_as(world.member)
    body = {"values": good_start_values()}
    first = api.post(cards_url(world), body, key="k-1")
    again = api.post(cards_url(world), body, key="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert Card.objects.count() == 1


def test_a_key_reused_with_another_body_is_422(world, api_as):
    api = api_as(world.member)
    api.post(cards_url(world), {"values": good_start_values()}, key="k-2")
    response = api.post(cards_url(world), {"values": good_start_values(item="Other")}, key="k-2")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"
    assert Card.objects.count() == 1


def test_a_refused_request_leaves_the_key_free(world, api_as):
    api = api_as(world.member)
    assert api.post(cards_url(world), {"values": {"item": "x"}}, key="k-3").status_code == 422
    assert api.post(cards_url(world), {"values": good_start_values()}, key="k-3").status_code == 201


def test_keys_are_per_caller(world, api_as):
    body = {"values": good_start_values()}
    assert api_as(world.member).post(cards_url(world), body, key="same").status_code == 201
    assert api_as(world.admin).post(cards_url(world), body, key="same").status_code == 201
    assert Card.objects.count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_simultaneous_repeats_create_one_card():
    world = build_world()
    secret = make_token(world, world.member)
    body = json.dumps({"values": good_start_values()})
    answers: list = []
    barrier = threading.Barrier(4)

    def post():
        client = Client()
        barrier.wait()
        try:
            response = client.post(
                cards_url(world),
                body,
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {secret}",
                HTTP_IDEMPOTENCY_KEY="race",
            )
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Card.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1
    assert {status for status, _ in answers} == {201}
    assert len({json.dumps(b, sort_keys=True) for _, b in answers}) == 1


# ---------------------------------------------------------------- rate limit


def test_it_limits_requests_per_token(world, api_as, settings):
    settings.TRILHO_API_RATE_PER_MINUTE = 3
    api = api_as(world.member, scope="read")
    for _ in range(3):
        assert api.get(cards_url(world)).status_code == 200
    refused = api.get(cards_url(world))
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json()["errors"][0]["code"] == "rate_limited"
    assert api_as(world.admin, scope="read").get(cards_url(world)).status_code == 200  # another token


# ---------------------------------------------------------------- the browser's session


def test_the_session_works_with_csrf_on_posts(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.member)
    assert client.get(cards_url(world)).status_code == 200
    body = json.dumps({"values": good_start_values()})
    refused = client.post(cards_url(world), body, content_type="application/json")
    assert refused.status_code == 403 and not Card.objects.exists()
    client.get("/api-tokens/")  # any page sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    allowed = client.post(cards_url(world), body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert allowed.status_code == 201, allowed.content


# ---------------------------------------------------------------- schema and docs


def test_the_schema_lists_every_endpoint_and_error(client):
    schema = client.get("/api/v1/openapi.json").json()
    assert schema["openapi"].startswith("3.1")
    move = schema["paths"]["/api/v1/pipes/{pipe_id}/cards/{card_id}/move"]["post"]
    assert {"200", "400", "401", "403", "404", "409", "422", "429"} <= set(move["responses"])
    assert {"BearerAuth", "TokenAuth"} & set(schema["components"]["securitySchemes"]) or schema["components"][
        "securitySchemes"
    ]


def test_the_docs_page_loads_only_local_scripts(client):
    response = client.get("/api/v1/docs")
    html = response.content.decode()
    assert response.status_code == 200
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "cdn" not in html.lower()
    assert "<script>" not in html  # no inline script: only src= files and a JSON data block
    assert "/static/ninja/swagger-ui-bundle.js" in html


@pytest.mark.django_db(transaction=True)
def test_it_answers_over_real_http(live_server):
    world = build_world()
    secret = make_token(world, world.member)
    request = urllib.request.Request(
        f"{live_server.url}{cards_url(world)}",
        data=json.dumps({"values": good_start_values()}).encode(),
        headers={
            "Authorization": f"Bearer {secret}",
            "Content-Type": "application/json",
            "Idempotency-Key": "x1",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
        card = json.loads(response.read())
    get = urllib.request.Request(
        f"{live_server.url}{cards_url(world)}/{card['id']}", headers={"Authorization": f"Bearer {secret}"}
    )
    with urllib.request.urlopen(get, timeout=10) as response:
        assert json.loads(response.read())["reference"] == card["reference"]


# ---------------------------------------------------------------- organizations, pipes, SLA


def test_organizations_are_the_callers(world, api_as):
    session = ApiClient()
    session.client.force_login(world.outsider)
    assert [o["slug"] for o in session.get("/api/v1/organizations").json()] == ["other"]
    assert [o["slug"] for o in api_as(world.owner, scope="read").get("/api/v1/organizations").json()] == [
        "acme"
    ]


def test_a_pipe_comes_with_phases_fields_and_labels(world, api_as):
    pipe = api_as(world.viewer, scope="read").get(f"/api/v1/pipes/{world.pipe.pk}").json()
    assert [p["key"] for p in pipe["phases"]] == ["triage", "approval", "done", "rejected"]
    assert pipe["phases"][0]["allowed_next"] == ["approval", "rejected"]
    assert {"item", "po_number"} <= {f["key"] for f in pipe["fields"]}
    assert pipe["role"] == "viewer" and pipe["can_work"] is False


@pytest.mark.parametrize(
    ("role", "status"), [("owner", 200), ("admin", 200), ("member", 403), ("outsider", 404)]
)
def test_the_sla_report_is_for_pipe_admins(world, role, status):
    api = (
        ApiClient(make_token(world, getattr(world, role), scope="read"))
        if role != "outsider"
        else ApiClient()
    )
    if role == "outsider":
        api.client.force_login(world.outsider)
    response = api.get(f"/api/v1/pipes/{world.pipe.pk}/sla", month="2026-03")
    assert response.status_code == status, response.content
    if status == 200:
        assert response.json()["month"] == "2026-03"


# ---------------------------------------------------------------- reviews and runs


@pytest.fixture
def review(world):
    from tests.inbox.conftest import approval_step, card_in_approval, task_of

    approval_step(world)
    card = card_in_approval(world)
    return task_of(card)


def test_a_reviewer_lists_and_decides_through_the_inbox(world, review, api_as):
    api = api_as(world.reviewer)
    assert [t["id"] for t in api.get("/api/v1/reviews").json()] == [review.pk]
    assert api.get(f"/api/v1/reviews/{review.pk}").json()["status"] == "open"
    refused = api.post(f"/api/v1/reviews/{review.pk}/decide", {"decision": "reject"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "comment"
    decided = api.post(
        f"/api/v1/reviews/{review.pk}/decide", {"decision": "approve", "values": {"po_number": "PO-9"}}
    )
    assert decided.status_code == 200, decided.content
    assert decided.json()["final"] is True and decided.json()["task"]["status"] != "open"
    again = api.post(f"/api/v1/reviews/{review.pk}/decide", {"decision": "approve"})
    assert again.status_code == 409


def test_a_reviewer_who_may_not_see_personal_data_may_not_set_it_through_the_api(world, api_as):
    from tests.inbox.conftest import approval_step, card_in_approval, task_of
    from tests.inbox.test_services import supplier_phone

    supplier_phone(world)
    approval_step(world)
    card = card_in_approval(world)
    task = task_of(card)
    refused = api_as(world.reviewer).post(
        f"/api/v1/reviews/{task.pk}/decide",
        {"decision": "approve", "values": {"supplier_phone": "+55 11 99999-0000"}},
    )
    assert refused.status_code == 403, refused.content
    assert [e["field"] for e in refused.json()["errors"]] == ["supplier_phone"]
    card.refresh_from_db()
    task.refresh_from_db()
    assert task.status == "open" and "supplier_phone" not in card.values


@pytest.mark.parametrize("role", ["member", "viewer", "requester", "outsider"])
def test_only_reviewers_know_a_review(world, review, role):
    api = ApiClient()
    api.client.force_login(getattr(world, role))
    assert api.get(f"/api/v1/reviews/{review.pk}").status_code == 404
    assert api.post(f"/api/v1/reviews/{review.pk}/decide", {"decision": "approve"}).status_code == 404


@pytest.mark.parametrize(
    ("role", "status"), [("member", 200), ("admin", 200), ("viewer", 403), ("outsider", 404)]
)
def test_a_run_and_its_trace_for_the_rail_s_people(world, review, role, status):
    run = StepRun.objects.get(pk=review.run_id)
    api = ApiClient()
    api.client.force_login(getattr(world, role))
    response = api.get(f"/api/v1/runs/{run.pk}")
    assert response.status_code == status
    if status == 200:
        assert response.json()["trace"]
        runs = api.get(f"/api/v1/pipes/{world.pipe.pk}/cards/{run.card_id}/runs").json()
        assert [r["id"] for r in runs] == [run.pk]
