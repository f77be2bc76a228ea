"""A person's erasure reaches the outbound webhooks: the deliveries of the cards it touched, waiting or
sent, keep none of the person's data (payloads, last errors and the attempts' log), and what is still
waiting goes out redacted, signed as ever. Other cards' deliveries are left alone; a rehearsal
(dry run) changes nothing."""

from __future__ import annotations

import json

import pytest

from orchestrator.models import DeliveryStatus, WebhookDelivery
from orchestrator.webhooks.outbound import delivery_attempt
from pipes.governance import subject_erase
from pipes.models import Field
from pipes.services import ERASED, Actor, card_create, card_move, card_update_fields
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db

EMAIL = "joana.silva@example.com"
OLD_EMAIL = "joana@old.example"  # what she gave first: kept in the first events


def joana_card(world, **values):
    card = card_create(
        actor=Actor.for_user(world.requester),
        pipe=world.pipe,
        values=good_start_values(requester_email=OLD_EMAIL, **values),
    )
    card = card_update_fields(
        actor=Actor.for_user(world.member),
        card=card,
        values={"category": "Hardware", "requester_email": EMAIL},
    )
    return card_move(actor=Actor.for_user(world.member), card=card, to_phase=world.phase("approval"))


def kept(delivery: WebhookDelivery) -> str:
    return json.dumps([delivery.payload, delivery.error, delivery.log])


def test_an_erasure_redacts_the_deliveries_of_the_cards_it_touched(world, receiver):
    card = joana_card(world)
    other = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    sent = WebhookDelivery.objects.get(card=card, event="card.created")
    assert delivery_attempt(delivery_id=sent.pk) is None  # delivered: its payload stays in the log
    # A receiver that echoed the body in its error: the log keeps that too.
    moved = WebhookDelivery.objects.get(card=card, event="card.moved")
    WebhookDelivery.objects.filter(pk=moved.pk).update(
        error=f"HTTP 500: unknown requester {EMAIL}",
        log=[{"at": "2025-03-10T13:05:22Z", "status": 500, "error": f"unknown requester {EMAIL}", "ms": 12}],
    )
    others_before = kept(WebhookDelivery.objects.get(card=other))
    assert OLD_EMAIL in kept(WebhookDelivery.objects.get(pk=sent.pk))

    subject_erase(user=world.admin, organization=world.org, identifier=EMAIL)

    deliveries = list(WebhookDelivery.objects.filter(card=card))
    assert sorted(d.event for d in deliveries) == ["card.created", "card.fields_updated", "card.moved"]
    for delivery in deliveries:
        assert EMAIL not in kept(delivery) and OLD_EMAIL not in kept(delivery), delivery.event
    created = next(d for d in deliveries if d.event == "card.created")
    assert created.status == DeliveryStatus.DELIVERED
    assert created.payload["data"]["values"]["requester_email"] == ERASED
    assert created.payload["data"]["values"]["item"] == "Laptop for Ana"  # not personal data: kept
    updated = next(d for d in deliveries if d.event == "card.fields_updated")
    change = updated.payload["data"]["changes"]["requester_email"]
    assert set(change.values()) == {ERASED}
    assert updated.payload["data"]["changes"]["category"]["after"] == "Hardware"
    moved = next(d for d in deliveries if d.event == "card.moved")
    assert moved.error == f"HTTP 500: unknown requester {ERASED}"
    assert moved.log[0]["error"] == f"unknown requester {ERASED}"
    assert kept(WebhookDelivery.objects.get(card=other)) == others_before


def test_a_waiting_delivery_goes_out_redacted_and_signed(world, receiver):
    card = joana_card(world)
    subject_erase(user=world.admin, organization=world.org, identifier=EMAIL)
    waiting = WebhookDelivery.objects.get(card=card, event="card.created")
    assert waiting.status == DeliveryStatus.PENDING
    delivery_attempt(delivery_id=waiting.pk)
    (got,) = receiver.received
    assert got.signature_ok
    assert EMAIL.encode() not in got.body and OLD_EMAIL.encode() not in got.body
    assert got.json["data"]["values"]["requester_email"] == ERASED


def test_a_personal_title_is_erased_from_the_card_summary(world, receiver):
    Field.objects.filter(pipe=world.pipe, key="item").update(pii=True)
    card = joana_card(world, item="Wheelchair for Joana Silva")
    subject_erase(user=world.admin, organization=world.org, identifier=EMAIL)
    for delivery in WebhookDelivery.objects.filter(card=card):
        assert delivery.payload["card"]["title"] == ERASED, delivery.event
        assert "Joana Silva" not in kept(delivery), delivery.event


def test_a_rehearsed_erasure_changes_no_delivery(world, receiver):
    card = joana_card(world)
    before = {d.pk: kept(d) for d in WebhookDelivery.objects.filter(card=card)}
    report = subject_erase(user=world.admin, organization=world.org, identifier=EMAIL, dry_run=True)
    assert report.cards
    assert {d.pk: kept(d) for d in WebhookDelivery.objects.filter(card=card)} == before
