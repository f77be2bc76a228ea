"""Outbound webhooks against a real receiver on loopback: signed bodies, retries with backoff, event ids
for de-duplication, the outbox and its sweep, the SSRF guard, and auto-disable."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator.inbox.services import inbox_decide
from orchestrator.models import DeliveryStatus, OutboundWebhook, WebhookDelivery
from orchestrator.webhooks.outbound import (
    DELIVER,
    LONGEST_COUNTDOWN_SECONDS,
    deliver_later,
    delivery_attempt,
    delivery_resend,
)
from orchestrator.webhooks.tasks import sweep
from pipes.models import Notification
from pipes.services import Actor, CardError, card_create, card_move, card_update_fields
from tests.brokerproxy import BrokerProxy
from tests.inbox.conftest import approval_step, card_in_approval, task_of
from tests.orchestrator.conftest import celery_point, wait_for, worker_in_process
from tests.personas import good_start_values


def submit(world):
    return card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())


def only_delivery(event: str = "card.created") -> WebhookDelivery:
    return WebhookDelivery.objects.get(event=event)


@pytest.mark.django_db
def test_it_signs_a_delivery_so_the_receiver_verifies_it(world, receiver):
    card = submit(world)
    delivery = only_delivery()
    assert delivery_attempt(delivery_id=delivery.pk) is None
    (got,) = receiver.received
    assert got.signature_ok
    assert got.headers["Trilho-Webhook-Id"] == str(delivery.event_id) == got.json["id"]
    assert got.headers["Trilho-Webhook-Event"] == "card.created"
    assert got.json["version"] == 1 and got.json["card"]["reference"] == card.reference
    assert got.json["data"]["values"]["item"] == "Laptop for Ana"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.response_status == 200


@pytest.mark.django_db
def test_it_fails_the_signature_check_when_the_body_was_changed(world, receiver):
    from tests.webhooks.conftest import verify

    submit(world)
    delivery_attempt(delivery_id=only_delivery().pk)
    (got,) = receiver.received
    assert not verify(receiver.secret, got.headers, got.body.replace(b"4500", b"9999"))
    assert not verify("whsec_another", got.headers, got.body)


@pytest.mark.django_db
def test_it_retries_a_500_with_exponential_backoff(world, receiver):
    receiver.statuses.extend([500, 500])
    submit(world)
    delivery = only_delivery()
    assert delivery_attempt(delivery_id=delivery.pk) == 10  # base
    assert delivery_attempt(delivery_id=delivery.pk) is None  # not due yet: nothing sent
    assert len(receiver.received) == 1
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert delivery_attempt(delivery_id=delivery.pk) == 20  # doubled
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert delivery_attempt(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert [entry["status"] for entry in delivery.log] == [500, 500, 200]
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 3
    assert {r.headers["Trilho-Webhook-Id"] for r in receiver.received} == {str(delivery.event_id)}


@pytest.mark.django_db
def test_it_leaves_a_long_backoff_to_the_sweep_instead_of_a_message_held_on_a_worker(world, receiver):
    """A countdown message waits unacknowledged on a worker: RabbitMQ closes a consumer holding one past
    its consumer_timeout (30 min). A retry due later than LONGEST_COUNTDOWN_SECONDS is sent by the sweep."""
    from celery.signals import before_task_publish

    submit(world)
    delivery = only_delivery()
    published: list[tuple] = []

    def record(sender=None, headers=None, **kwargs):
        published.append((sender, headers.get("eta")))

    before_task_publish.connect(record)
    try:
        assert deliver_later(delivery.pk, 60)  # a short wait: a message with its countdown
        assert len(published) == 1 and published[0][1] is not None
        assert deliver_later(delivery.pk, LONGEST_COUNTDOWN_SECONDS + 1)  # a long one: nothing sent now
        assert len(published) == 1
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            next_attempt_at=timezone.now() - timedelta(minutes=1)
        )
        assert sweep(older_than_seconds=30) == 1  # due: the sweep sends it
        assert len(published) == 2 and published[1] == (DELIVER, None)
    finally:
        before_task_publish.disconnect(record)


@pytest.mark.django_db
def test_it_gives_up_after_its_attempts_and_sends_again_on_request(world, receiver, hook_settings):
    hook_settings.TRILHO_WEBHOOK_MAX_ATTEMPTS = 1
    receiver.statuses.append(503)
    submit(world)
    delivery = only_delivery()
    assert delivery_attempt(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED and delivery.response_status == 503
    delivery_resend(delivery=delivery, user=world.admin)
    delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.log[-2]["note"].startswith("sent again by")


@pytest.mark.django_db
def test_it_lets_the_receiver_recognise_a_duplicate_by_event_id(world, receiver):
    submit(world)
    delivery = only_delivery()
    delivery_attempt(delivery_id=delivery.pk)
    delivery_resend(delivery=delivery, user=world.admin)  # "send again" on a delivered event
    delivery_attempt(delivery_id=delivery.pk)
    first, second = receiver.received
    assert first.headers["Trilho-Webhook-Id"] == second.headers["Trilho-Webhook-Id"]
    assert not first.duplicate and second.duplicate and second.signature_ok


@pytest.mark.django_db
def test_it_records_no_event_for_a_refused_write(world, receiver):
    with pytest.raises(CardError):
        card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values={"item": "No amount"})
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_it_records_moved_fields_updated_and_finished_events(world, receiver):
    card = submit(world)
    member = Actor.for_user(world.member)
    card = card_update_fields(actor=member, card=card, values={"category": "Hardware"})
    card = card_move(actor=member, card=card, to_phase=world.phase("rejected"))
    events = list(WebhookDelivery.objects.order_by("pk").values_list("event", flat=True))
    assert events == ["card.created", "card.fields_updated", "card.moved", "card.finished"]
    moved = only_delivery("card.moved")
    assert moved.payload["data"]["from"] == "triage" and moved.payload["data"]["to"] == "rejected"
    updated = only_delivery("card.fields_updated")
    assert updated.payload["data"]["changes"]["category"]["after"] == "Hardware"


@pytest.mark.django_db
def test_it_sends_only_the_events_a_webhook_subscribed_to(world, receiver):
    OutboundWebhook.objects.filter(pk=receiver.hook.pk).update(events=["card.moved"])
    card = submit(world)
    card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_it_records_a_review_decided_event(world, receiver):
    approval_step(world)
    card = card_in_approval(world)
    card_update_fields(actor=Actor.for_user(world.member), card=card, values={"po_number": "PO-7"})
    inbox_decide(task=task_of(card), user=world.reviewer, decision="reject", comment="Too expensive")
    decided = only_delivery("review.decided")
    assert decided.payload["data"]["decision"] == "reject"
    assert decided.payload["data"]["comment"] == "Too expensive"


@pytest.mark.django_db
def test_it_refuses_a_host_the_organization_did_not_allow(world, receiver):
    from agents.models import AllowedHost

    AllowedHost.objects.filter(organization=world.org).delete()
    submit(world)
    delivery = only_delivery()
    assert delivery_attempt(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED and "allowed hosts" in delivery.error
    assert receiver.received == []


@pytest.mark.django_db
def test_it_refuses_a_private_address_unless_settings_allow_it(world, receiver, hook_settings):
    hook_settings.TRILHO_HTTP_ALLOWED_PRIVATE = False
    submit(world)
    delivery_attempt(delivery_id=only_delivery().pk)
    assert only_delivery().status == DeliveryStatus.FAILED and receiver.received == []


@pytest.mark.django_db
def test_it_turns_a_failing_webhook_off_and_tells_the_pipes_admins(world, receiver, hook_settings):
    hook_settings.TRILHO_WEBHOOK_MAX_ATTEMPTS = 1
    hook_settings.TRILHO_WEBHOOK_DISABLE_AFTER = 2
    receiver.statuses.extend([500, 500])
    for _ in range(2):
        submit(world)
    for delivery in WebhookDelivery.objects.order_by("pk"):
        delivery_attempt(delivery_id=delivery.pk)
    hook = OutboundWebhook.objects.get(pk=receiver.hook.pk)
    assert not hook.is_active and hook.disabled_at is not None and "HTTP 500" in hook.disabled_reason
    notified = set(
        Notification.objects.filter(message__contains="ERP").values_list("user__username", flat=True)
    )
    assert {"admin", "owner"} <= notified and "member" not in notified
    submit(world)  # a webhook that is off records nothing new
    assert WebhookDelivery.objects.count() == 2


# ---------------------------------------------------------------- a real broker and worker


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_it_retries_through_the_worker_with_growing_delays(world, receiver, hook_settings, worker):
    hook_settings.TRILHO_WEBHOOK_RETRY_BASE_SECONDS = 0.4
    receiver.statuses.extend([500, 500])
    submit(world)  # handed to the worker after commit
    wait_for(lambda: only_delivery().status == DeliveryStatus.DELIVERED, what="the delivery")
    first, second, third = (r.at for r in receiver.received)
    assert second - first >= 0.35 and third - second >= 0.75  # 0.4 s, then 0.8 s
    assert all(r.signature_ok for r in receiver.received)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_it_loses_no_delivery_while_the_broker_is_down(world, receiver, broker_celery):
    app, queue = broker_celery.app, broker_celery.queue
    with BrokerProxy(broker_celery.url) as broker:
        broker.down()
        celery_point(app, broker_url=broker.url, queue=queue)  # nothing listens there: the broker is down
        started = time.monotonic()
        submit(world)
        assert time.monotonic() - started < 2  # the write does not wait for the broker
        delivery = only_delivery()
        assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 0
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            next_attempt_at=timezone.now() - timedelta(minutes=1)
        )
        assert sweep(older_than_seconds=30) == 0  # still down: nothing sent, nothing lost
        broker.up()  # the broker is back
        with worker_in_process(app, [queue]):
            assert sweep(older_than_seconds=30) == 1  # what beat runs every 30 s
            wait_for(lambda: only_delivery().status == DeliveryStatus.DELIVERED, what="the swept delivery")
    (got,) = receiver.received
    assert got.signature_ok and got.headers["Trilho-Webhook-Id"] == str(delivery.event_id)
