"""A person's erasure reaches the answers the API keeps for Idempotency-Key repeats: a card's answer
keeps none of their data, a repeat replays the redacted answer, other cards' answers stay, and a
rehearsal (dry run) changes nothing."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from orchestrator.models import IdempotencyRecord
from pipes.governance import subject_erase
from pipes.models import Field
from pipes.services import ERASED
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db

EMAIL = "joana.silva@example.com"


@pytest.fixture
def api(world, api_as):
    return api_as(world.member)


def cards_url(world) -> str:
    return f"/api/v1/pipes/{world.pipe.pk}/cards"


def joana_card(world, api) -> dict:
    body = {"values": good_start_values(requester_email=EMAIL, item="Laptop for Joana")}
    created = api.post(cards_url(world), body, key="open-joana")
    assert created.status_code == 201, created.content
    return created.json()


def kept(key: str) -> str:
    return json.dumps(IdempotencyRecord.objects.get(key=key).body)


def test_an_erasure_redacts_the_kept_answers_about_the_card(world, api, media_root):
    Field.objects.filter(pipe=world.pipe, key="item").update(pii=True)  # the title is personal data too
    card = joana_card(world, api)
    url = f"{cards_url(world)}/{card['id']}"
    api.post(f"{url}/fields", {"values": {"category": "Hardware"}}, key="fill-joana")
    upload = SimpleUploadedFile(
        "receipt Laptop for Joana.pdf", b"%PDF-1.4 receipt", content_type="application/pdf"
    )
    attached = api.client.post(
        f"{url}/files", {"files": [upload]}, HTTP_IDEMPOTENCY_KEY="attach-joana", **api.headers
    )
    assert attached.status_code == 201, attached.content
    other = api.post(cards_url(world), {"values": good_start_values()}, key="open-other")
    other_before = kept("open-other")
    assert EMAIL in kept("open-joana") and "Laptop for Joana" in kept("attach-joana")

    subject_erase(user=world.admin, organization=world.org, identifier=EMAIL)

    for key in ("open-joana", "fill-joana", "attach-joana"):
        assert EMAIL not in kept(key) and "Laptop for Joana" not in kept(key), key
    answer = IdempotencyRecord.objects.get(key="open-joana").body
    assert answer["values"]["requester_email"] == answer["values"]["item"] == answer["title"] == ERASED
    assert answer["values"]["amount"] == {"amount": "4500.00", "currency": "BRL"}  # not personal data
    assert kept("open-other") == other_before and other.status_code == 201

    replay = api.post(
        cards_url(world),
        {"values": good_start_values(requester_email=EMAIL, item="Laptop for Joana")},
        key="open-joana",
    )
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert EMAIL not in replay.content.decode()


def test_a_rehearsed_erasure_keeps_the_answers(world, api):
    joana_card(world, api)
    before = kept("open-joana")
    report = subject_erase(user=world.admin, organization=world.org, identifier=EMAIL, dry_run=True)
    assert report.cards and kept("open-joana") == before
