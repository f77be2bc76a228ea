"""Reads of the webhooks: the pipe for its admins, its webhooks and their recent deliveries."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils.translation import gettext as _

from pipes.models import Pipe
from pipes.selectors import pipe_get_for_user

from ..models import InboundWebhook, OutboundWebhook, WebhookDelivery

DELIVERIES_SHOWN = 100


def pipe_get_for_webhook_admin(*, user: AbstractBaseUser, pk: int) -> Pipe:
    """The pipe, when `user` administers it: 404 for people outside it, 403 for its other roles."""
    try:
        pipe, access = pipe_get_for_user(user=user, pk=pk)
    except PermissionDenied:
        raise PermissionDenied(_("Only admins of this pipe may see its webhooks.")) from None
    if not access.can_administer:
        raise PermissionDenied(_("Only admins of this pipe may see its webhooks."))
    return pipe


def webhooks_of_pipe(*, pipe: Pipe) -> tuple[list[InboundWebhook], list[OutboundWebhook]]:
    return list(pipe.inbound_webhooks.all()), list(pipe.outbound_webhooks.all())


def deliveries_of_pipe(*, pipe: Pipe, limit: int = DELIVERIES_SHOWN) -> list[WebhookDelivery]:
    return list(
        WebhookDelivery.objects.filter(webhook__pipe=pipe)
        .select_related("webhook", "card__pipe")
        .order_by("-created_at", "-pk")[:limit]
    )


def delivery_get(*, pipe: Pipe, pk: int) -> WebhookDelivery:
    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=pk, webhook__pipe=pipe).first()
    if delivery is None:
        raise Http404
    return delivery


def outbound_get(*, pipe: Pipe, pk: int) -> OutboundWebhook:
    hook = OutboundWebhook.objects.filter(pk=pk, pipe=pipe).first()
    if hook is None:
        raise Http404
    return hook
