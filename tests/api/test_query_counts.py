"""What an API write costs in queries, next to the same write on the board or the portal.

The API adds its own work to the write path's: recognising the token (one query with its pipes; its
last use written at most once a minute), an Idempotency-Key's record (an insert and the stored
answer), and the answer (the written card's assignees, labels and files). These tests keep that
overhead from creeping back: each API write is measured beside the page doing the same write, in
the same database state, so a change to the shared write path moves both."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from orchestrator.models import ApiToken
from pipes.models import Card
from pipes.services import Actor, card_create, card_update_fields
from tests.api.conftest import make_token
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db

# What an Idempotency-Key may add to a write: its transaction (2), the key's insert and the stored answer.
KEY_OVERHEAD = 4


def ready_card(world) -> Card:
    """A card in triage with what leaving it needs."""
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    return card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})


def count(call) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as queries:
        response = call()
    return len(queries.captured_queries), response


@pytest.fixture
def board(world):
    client = Client()
    client.force_login(world.member)
    return client


@pytest.fixture
def api(world):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {make_token(world, world.member)}"}
    client = Client()

    def post(path: str, body: dict, key: str | None = None):
        extra = dict(headers, **({"HTTP_IDEMPOTENCY_KEY": key} if key else {}))
        return client.post(path, json.dumps(body), content_type="application/json", **extra)

    return post


def board_move(world, board) -> int:
    card = ready_card(world)
    url = f"/pipes/{world.pipe.pk}/cards/{card.pk}/move/"
    queries, response = count(
        lambda: board.post(url, {"to_phase": world.phase("approval").pk}, HTTP_HX_REQUEST="true")
    )
    assert response.status_code == 200, response.content[:300]
    return queries


def api_move(world, api, key: str | None = None) -> int:
    card = ready_card(world)
    url = f"/api/v1/pipes/{world.pipe.pk}/cards/{card.pk}/move"
    queries, response = count(lambda: api(url, {"to_phase": "approval"}, key))
    assert response.status_code == 200, response.content
    assert response.json()["phase"]["key"] == "approval"
    return queries


def test_an_api_move_costs_what_the_board_s_does(world, board, api):
    board_move(world, board), api_move(world, api)  # warm up: caches of the design and the hooks
    on_board = board_move(world, board)
    assert api_move(world, api) <= on_board
    assert api_move(world, api, key="move-1") <= on_board + KEY_OVERHEAD
    assert on_board <= 20  # the write path itself (pipes) has its own bound in tests/pipes


def portal_create(world, board) -> int:
    values = {f"f-{k}": v for k, v in good_start_values().items()}
    queries, response = count(lambda: board.post(f"/portal/{world.pipe.pk}/new/", values))
    assert response.status_code == 302, response.content[:300]
    return queries


def api_create(world, api, key: str | None = None) -> int:
    queries, response = count(
        lambda: api(f"/api/v1/pipes/{world.pipe.pk}/cards", {"values": good_start_values()}, key)
    )
    assert response.status_code == 201, response.content
    return queries


def test_an_api_create_costs_what_the_portal_s_does(world, board, api):
    portal_create(world, board), api_create(world, api)
    in_portal = portal_create(world, board)
    assert api_create(world, api) <= in_portal
    assert api_create(world, api, key="create-1") <= in_portal + KEY_OVERHEAD


def test_a_token_s_last_use_is_written_at_most_once_a_minute(world, api):
    api_move(world, api)
    used = ApiToken.objects.get().last_used_at
    with CaptureQueriesContext(connection) as queries:
        api_move(world, api)
    writes = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "orchestrator_apitoken"')
    ]
    assert writes == []
    assert ApiToken.objects.get().last_used_at == used


def test_a_write_answers_the_card_as_a_read_then_shows_it(world, api_as):
    """The answer of a write is built from the row the write path saved (no second read of it): it
    must equal what reading the card afterwards returns."""
    client = api_as(world.member)
    created = client.post(
        f"/api/v1/pipes/{world.pipe.pk}/cards",
        {"values": good_start_values(urgent=True, urgency_reason="Broken")},
    )
    assert created.status_code == 201, created.content
    url = f"/api/v1/pipes/{world.pipe.pk}/cards/{created.json()['id']}"
    assert created.json() == client.get(url).json()
    label = world.pipe.labels.get()
    for action, body in (
        ("fields", {"values": {"category": "Software", "cost_center": "CC-123"}}),
        ("assign", {"assignees": [world.member.pk]}),
        ("labels", {"labels": [label.pk]}),
        ("move", {"to_phase": "approval"}),
    ):
        written = client.post(f"{url}/{action}", body)
        assert written.status_code == 200, written.content
        assert written.json() == client.get(url).json(), action
