"""Fixtures of the API tests: the personas' world, tokens made through the production service, and a
client that talks JSON with a token."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from django.test import Client

from orchestrator.api.tokens import token_create


def make_token(world, user, *, scope="write", kind="personal", pipes=None, name="script"):
    return token_create(
        user=user,
        organization=world.org,
        name=name,
        kind=kind,
        scope=scope,
        pipes=pipes if pipes is not None else [world.pipe],
    ).secret


class ApiClient:
    """Django's test client speaking JSON, with a bearer token (or a session, when `token` is None)."""

    def __init__(self, token: str | None = None, client: Client | None = None):
        self.client = client or Client()
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}

    def get(self, path: str, **params):
        return self.client.get(path, params, **self.headers)

    def post(self, path: str, body=None, *, key: str | None = None, **extra):
        headers = dict(self.headers, **extra)
        if key is not None:
            headers["HTTP_IDEMPOTENCY_KEY"] = key
        return self.client.post(path, json.dumps(body or {}), content_type="application/json", **headers)


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api_as(world):
    """api_as(user, scope=...) -> an ApiClient with a new token of `user` on the world's pipe."""

    def make(user, **kwargs):
        return ApiClient(make_token(world, user, **kwargs))

    return make
