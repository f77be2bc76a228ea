"""Pages of the rail: a run's whole trace, retrying a failed step, a pipe's costs, and the rail's health."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from pipes.models import Organization

from ..models import RunStatus
from .health import NOT_SENT_DAYS, NotAnOwner, owned_organization_ids, rail_health
from .selectors import (
    PERIODS,
    RailForbidden,
    pipe_cost_report,
    pipe_get_for_costs,
    run_get_for_user,
    run_shown,
)
from .services import RailError, step_run_retry

UNFINISHED = {RunStatus.PENDING, RunStatus.RUNNING}


def _run_or_403(user, run_id: int):
    try:
        return run_get_for_user(user=user, run_id=run_id)
    except RailForbidden:
        raise PermissionDenied from None


@login_required
@require_GET
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run, access = _run_or_403(request.user, run_id)
    shown = run_shown(run=run, access=access)  # personal data masked as on the card page
    context = {
        "run": shown.run,
        "card": run.card,
        "card_title": shown.card_title,
        "events": shown.events,
        "review": shown.review,
        "can_retry": access.can_work and run.status == RunStatus.FAILED and run.entry.left_at is None,
        "polling": run.status in UNFINISHED,
    }
    template = "rail/run.html#run-body" if request.htmx else "rail/run.html"
    return render(request, template, context)


@login_required
@require_POST
def run_retry(request: HttpRequest, run_id: int) -> HttpResponse:
    run, _access = _run_or_403(request.user, run_id)
    url = reverse("rail:run", kwargs={"run_id": run.pk})
    try:
        step_run_retry(run=run, user=request.user)
    except RailError as exc:
        if request.htmx:
            return render(request, "rail/_notice.html", {"error": exc.message}, status=409)
        messages.error(request, exc.message)
        return redirect(url)
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Location"] = url
        response["HX-Trigger"] = "rail:retried"
        return response
    messages.success(request, _("The step will run again in a moment."))
    return redirect(url)


@login_required
@require_GET
def pipe_costs(request: HttpRequest, pipe_id: int) -> HttpResponse:
    try:
        pipe = pipe_get_for_costs(user=request.user, pipe_id=pipe_id)
    except RailForbidden:
        raise PermissionDenied from None
    period = request.GET.get("period", "30d")
    report = pipe_cost_report(pipe=pipe, period=period)
    periods = [(key, _("Last %(n)d days") % {"n": days}) for key, days in PERIODS.items()]
    periods.append(("month", _("This month")))
    return render(request, "rail/costs.html", {"pipe": pipe, "report": report, "periods": periods})


@login_required
@require_GET
def health(request: HttpRequest) -> HttpResponse:
    """Beat's last tick and the workers that answer, for organization owners."""
    try:
        org_ids = owned_organization_ids(user=request.user)
    except NotAnOwner:
        raise PermissionDenied from None
    organization = Organization.objects.filter(pk__in=org_ids).order_by("pk").first()
    report = rail_health(organization_ids=org_ids)
    return render(
        request,
        "rail/health.html",
        {
            "health": report,
            "organization": organization,
            "not_sent_days": NOT_SENT_DAYS,
            "nav_active": "governance",  # reached from the governance page, with the other owners' pages
        },
    )
