"""The webhooks' pages: the inbound URL other systems post to, and the delivery log of a pipe (its admins)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.request import RawPostDataException
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from .inbound import InboundRefusal, inbound_receive
from .outbound import delivery_resend, webhook_enable
from .selectors import (
    deliveries_of_pipe,
    delivery_get,
    outbound_get,
    pipe_get_for_webhook_admin,
    webhooks_of_pipe,
)

SIGNED_HEADERS = ("Authorization", "Trilho-Webhook-Timestamp", "Trilho-Webhook-Signature")


@csrf_exempt  # another system posts here; the webhook's signature or token is the check
@require_POST
def inbound(request: HttpRequest, key: str) -> JsonResponse:
    """Open, update or move a card from another system's JSON (orchestrator.webhooks.inbound)."""
    headers = {name: request.headers.get(name, "") for name in SIGNED_HEADERS}
    try:
        body = request.body
    except RawPostDataException:  # a form post a middleware has read already: no JSON body to check
        body = b""
    try:
        result = inbound_receive(key=key, headers=headers, body=body)
    except InboundRefusal as refusal:
        return JsonResponse(refusal.body(), status=refusal.status)
    return JsonResponse(result.body(), status=201 if result.created else 200)


def _page(request: HttpRequest, pipe, **extra) -> HttpResponse:
    inbound_hooks, outbound_hooks = webhooks_of_pipe(pipe=pipe)
    context = {
        "pipe": pipe,
        "inbound_hooks": inbound_hooks,
        "outbound_hooks": outbound_hooks,
        "deliveries": deliveries_of_pipe(pipe=pipe),
        **extra,
    }
    template = "webhooks/deliveries.html#deliveries-body" if request.htmx else "webhooks/deliveries.html"
    return render(request, template, context)


@login_required
@require_GET
def deliveries(request: HttpRequest, pipe_id: int) -> HttpResponse:
    pipe = pipe_get_for_webhook_admin(user=request.user, pk=pipe_id)
    return _page(request, pipe)


@login_required
@require_POST
def resend(request: HttpRequest, pipe_id: int, delivery_id: int) -> HttpResponse:
    pipe = pipe_get_for_webhook_admin(user=request.user, pk=pipe_id)
    delivery = delivery_resend(delivery=delivery_get(pipe=pipe, pk=delivery_id), user=request.user)
    if request.htmx:
        return _page(request, pipe, resent=delivery)
    return redirect(reverse("webhooks:deliveries", kwargs={"pipe_id": pipe.pk}))


@login_required
@require_POST
def enable(request: HttpRequest, pipe_id: int, webhook_id: int) -> HttpResponse:
    pipe = pipe_get_for_webhook_admin(user=request.user, pk=pipe_id)
    hook = webhook_enable(webhook=outbound_get(pipe=pipe, pk=webhook_id), user=request.user)
    if request.htmx:
        return _page(request, pipe, enabled=hook)
    return redirect(reverse("webhooks:deliveries", kwargs={"pipe_id": pipe.pk}))
