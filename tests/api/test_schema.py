"""schemathesis against the live OpenAPI document: for every operation, generated requests never get a
5xx, and every answer (status, content type, body) matches the schema.

Requests run in-process through Django's WSGI application (the whole middleware stack, the test
database), with a write token of the pipe's admin; half the generated ids are the seeded pipe's and
card's, so bodies reach the write path instead of stopping at a 404. Bounded to stay well under a
minute: a few examples per operation, no shrinking past the first failure.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from orchestrator.api.v1 import api
from pipes.services import Actor, card_create
from tests.api.conftest import make_token
from tests.personas import good_start_values

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(autouse=True)
def _wsgi_keeps_the_test_connection():
    # A real WSGI request closes the database connection when it starts and ends; the test's
    # transaction lives on it, so keep it open, as Django's own test client does.
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def settings_for_schema(settings, media_root):
    settings.ALLOWED_HOSTS = ["localhost", "testserver"]
    settings.TRILHO_API_RATE_PER_MINUTE = 0  # generated traffic would hit the limit (tested on its own)
    return settings


@pytest.fixture
def seeded(world):
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    return {"pipe_id": world.pipe.pk, "card_id": card.pk, "token": make_token(world, world.admin)}


# The document the API serves at /api/v1/openapi.json (tests/api/test_protocol.py reads it over HTTP),
# loaded at collection so each operation is a test of its own; requests go to Django's WSGI app.
schema = schemathesis.openapi.from_dict(api.get_openapi_schema(path_params={}))
schema.app = WSGIHandler()


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_api_matches_its_schema(case, seeded, settings_for_schema):
    for name in ("pipe_id", "card_id"):
        value = (case.path_parameters or {}).get(name)
        if isinstance(value, int) and value % 2:
            case.path_parameters[name] = seeded[name]
    case.call_and_validate(headers={"Authorization": f"Bearer {seeded['token']}"}, checks=CHECKS)
