"""The API tokens page: a token's secret is shown once and stored hashed; owners see and revoke their
organization's tokens; nobody else may touch a token."""

from __future__ import annotations

import hashlib
import re

import pytest

from orchestrator.models import ApiToken
from tests.api.conftest import ApiClient, make_token

pytestmark = pytest.mark.django_db


def make_through_page(client, world, **overrides):
    data = {"name": "ERP sync", "scope": "write", "kind": "personal", "pipes": [world.pipe.pk], **overrides}
    return client.post("/api-tokens/", data, HTTP_HX_REQUEST="true")


def test_it_shows_the_secret_once_and_keeps_only_its_digest(client, world):
    client.force_login(world.member)
    response = make_through_page(client, world)
    assert response.status_code == 201
    assert "no-store" in response["Cache-Control"]
    secret = re.search(r'value="(trl_[A-Za-z0-9_-]{43})"', response.content.decode()).group(1)
    token = ApiToken.objects.get()
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in client.get("/api-tokens/").content.decode()  # never again
    assert token.prefix in client.get("/api-tokens/").content.decode()
    assert ApiClient(secret).get(f"/api/v1/pipes/{world.pipe.pk}/cards").status_code == 200


def test_it_refuses_a_token_without_pipes_or_name(client, world):
    client.force_login(world.member)
    response = make_through_page(client, world, name="", pipes=[])
    assert response.status_code == 422
    assert "Choose at least one pipe" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_it_refuses_pipes_the_person_takes_no_part_in(client, world):
    client.force_login(world.outsider)
    assert make_through_page(client, world).status_code == 422
    assert not ApiToken.objects.exists()


def test_an_owner_sees_and_revokes_every_token_of_the_organization(client, world):
    make_token(world, world.member, name="Member's script")
    token = ApiToken.objects.get()
    client.force_login(world.owner)
    assert "Member&#x27;s script" in client.get("/api-tokens/").content.decode()
    response = client.post(f"/api-tokens/{token.pk}/revoke/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_by == world.owner


@pytest.mark.parametrize("role", ["admin", "viewer", "outsider"])
def test_nobody_else_may_revoke_a_token(client, world, role):
    make_token(world, world.member, name="Member's own")
    token = ApiToken.objects.get()
    client.force_login(getattr(world, role))
    assert client.post(f"/api-tokens/{token.pk}/revoke/").status_code == 404
    assert "Member&#x27;s own" not in client.get("/api-tokens/").content.decode()
    token.refresh_from_db()
    assert token.revoked_at is None


def test_its_owner_revokes_it_and_it_stops_working(client, world):
    secret = make_token(world, world.member)
    client.force_login(world.member)
    client.post(f"/api-tokens/{ApiToken.objects.get().pk}/revoke/")
    assert ApiClient(secret).get(f"/api/v1/pipes/{world.pipe.pk}/cards").status_code == 401


def test_the_page_speaks_portuguese(client, world):
    client.force_login(world.member)
    html = client.get("/api-tokens/", HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert "Tokens de API" in html and "Criar token" in html


def test_an_api_refusal_speaks_the_callers_language(world, api_as):
    api = api_as(world.member, scope="read")
    response = api.client.post(
        f"/api/v1/pipes/{world.pipe.pk}/cards",
        "{}",
        content_type="application/json",
        HTTP_ACCEPT_LANGUAGE="pt-br",
        **api.headers,
    )
    assert response.json()["errors"][0]["message"].startswith("Este token só pode ler")


def test_an_upload_repeated_with_its_key_attaches_once(world, api_as, media_root):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from pipes.models import CardFile
    from pipes.services import Actor, card_create
    from tests.personas import good_start_values

    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    api = api_as(world.member)
    url = f"/api/v1/pipes/{world.pipe.pk}/cards/{card.pk}/files"
    for _ in range(2):
        upload = SimpleUploadedFile("quote.txt", b"Quote: 4500 BRL", content_type="text/plain")
        response = api.client.post(url, {"files": [upload]}, HTTP_IDEMPOTENCY_KEY="up-1", **api.headers)
        assert response.status_code == 201
    assert CardFile.objects.filter(card=card).count() == 1
