"""A card write on a pipe without webhooks asks nothing; a webhook added later is heard at once."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator.models import DeliveryStatus, OutboundWebhook, WebhookDelivery
from orchestrator.webhooks.outbound import pipe_has_active_hooks
from pipes.services import Actor, card_create
from tests.personas import good_start_values


def test_it_remembers_that_a_pipe_has_no_webhooks_and_hears_a_new_one_at_once(world):
    assert pipe_has_active_hooks(world.pipe.pk) is False
    with CaptureQueriesContext(connection) as queries:
        assert pipe_has_active_hooks(world.pipe.pk) is False
    assert not queries.captured_queries
    OutboundWebhook.objects.create(pipe=world.pipe, name="ERP", url="https://erp.example.com/hook")
    card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())
    assert WebhookDelivery.objects.filter(event="card.created").count() == 1
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PENDING
