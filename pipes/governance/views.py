"""Governance pages: SLA report, audit trail, data-subject requests and retention.

Only pipe admins (and organization owners, who administer every pipe of their organization)
open them; someone with no part in the pipe or organization gets a 404, anyone else a 403.
Times show in the organization's time zone.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import zoneinfo
from collections.abc import Iterable, Iterator

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from ..choices import ActorKind
from ..csvsafe import csv_safe_writer
from ..design import DesignError
from ..durations import duration_text
from ..masking import title_shown
from ..models import Card, Membership, Organization, Pipe, PrivacyRequest
from ..parsing import parse_day, parse_int
from ..roles import PipeAccess, is_org_owner
from ..selectors import pipe_get_for_user
from ..services import CardError
from .audit import AuditFilters, AuditScope, audit_entries, audit_page, sources_for
from .privacy import (
    privacy_requests,
    subject_digest,
    subject_erase,
    subject_export,
    subject_fields,
    subject_pipes,
)
from .retention import (
    TracePruning,
    pipe_policy,
    pipe_policy_update,
    retention_apply,
    retention_due,
    retention_runs,
    trace_retention_apply,
)
from .selectors import governed_pipes, owned_organizations
from .sla_report import MonthError, SlaReport, sla_report, write_late_csv, write_summary_csv

AUDIT_PAGE_SIZE = 50
LATE_EXPORT_LIMIT = 1_000_000
AUDIT_MAX_PAGE = 200


# ---------------------------------------------------------------- getters


def _pipe_for_admin(request: HttpRequest, pipe_id: int) -> tuple[Pipe, PipeAccess]:
    """The pipe, when the user administers it: 404 for outsiders, 403 for other roles."""
    try:
        pipe, access = pipe_get_for_user(user=request.user, pk=pipe_id)
    except PermissionDenied:
        raise PermissionDenied(_("Only admins of this pipe may open its governance pages.")) from None
    if not access.can_administer:
        raise PermissionDenied(_("Only admins of this pipe may open its governance pages."))
    return pipe, access


def _org_for_member(request: HttpRequest, slug: str) -> Organization:
    """The organization, when the user belongs to it (404 otherwise)."""
    org = get_object_or_404(Organization, slug=slug)
    user = request.user
    if not (user.is_superuser or Membership.objects.filter(organization=org, user=user).exists()):
        raise Http404
    return org


def _tz(org: Organization) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(org.time_zone)


def _render(request: HttpRequest, org: Organization, template: str, context: dict, status: int = 200):
    """Render in the organization's time zone."""
    with timezone.override(_tz(org)):
        return render(request, template, {"nav_active": "governance", **context}, status=status)


def _csv_download(name: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response.write("\ufeff")  # spreadsheets open UTF-8 CSV correctly with a BOM
    return response


# ---------------------------------------------------------------- index


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    pipes = list(governed_pipes(user=request.user))
    owned = list(owned_organizations(user=request.user))
    orgs: dict[int, dict] = {}
    for pipe in pipes:
        entry = orgs.setdefault(pipe.organization_id, {"org": pipe.organization, "pipes": [], "owner": False})
        entry["pipes"].append(pipe)
    for org in owned:
        orgs.setdefault(org.pk, {"org": org, "pipes": [], "owner": True})["owner"] = True
    if not orgs:
        raise PermissionDenied(_("Governance pages are for pipe admins and organization owners."))
    return render(
        request,
        "governance/index.html",
        {"nav_active": "governance", "orgs": sorted(orgs.values(), key=lambda o: o["org"].name)},
    )


# ---------------------------------------------------------------- SLA report


def _title_shown(pipe: Pipe, access: PipeAccess):
    """How card titles are shown: masked when the title field is PII the user may not see."""
    title_of = title_shown(pipe=pipe, can_view_pii=access.can_view_pii)
    return lambda stay: title_of(stay.title)


@login_required
@require_GET
def sla_report_view(request: HttpRequest, pipe_id: int) -> HttpResponse:
    pipe, access = _pipe_for_admin(request, pipe_id)
    tz = _tz(pipe.organization)
    month = request.GET.get("month") or timezone.now().astimezone(tz).strftime("%Y-%m")
    export = request.GET.get("export")
    error = ""
    started = time.perf_counter()
    try:
        report = sla_report(pipe=pipe, month=month, late_limit=LATE_EXPORT_LIMIT if export == "late" else 200)
    except MonthError as exc:
        error = str(exc)
        report = sla_report(pipe=pipe, month=timezone.now().astimezone(tz).strftime("%Y-%m"))
    elapsed = time.perf_counter() - started
    title_of = _title_shown(pipe, access)
    if export == "summary" and not error:
        response = _csv_download(f"sla-{pipe.slug}-{report.month_label}.csv")
        write_summary_csv(report, response)
        return response
    if export == "late" and not error:
        response = _csv_download(f"sla-late-{pipe.slug}-{report.month_label}.csv")
        write_late_csv(report.late, response, tz=tz, title_of=title_of)
        return response
    for stay in report.late:
        stay.shown_title = title_of(stay)
    return _render(
        request,
        pipe.organization,
        "governance/sla_report.html",
        {
            "pipe": pipe,
            "report": report,
            "error": error,
            "elapsed_ms": round(elapsed * 1000),
            "tiles": _sla_tiles(report),
            "this_month": timezone.now().astimezone(tz).strftime("%Y-%m"),
        },
        status=400 if error else 200,
    )


def _sla_tiles(report: SlaReport) -> list[dict]:
    e2e = report.end_to_end
    met = sum(p.met or 0 for p in report.phases)
    with_sla = sum(p.stays for p in report.phases if p.met is not None)
    return [
        {
            "label": _("Phase stays within SLA"),
            "value": met / with_sla if with_sla else None,
            "kind": "share",
            "note": _("%(met)d of %(n)d stays that ended this month") % {"met": met, "n": with_sla},
        },
        {
            "label": _("Finished within deadline"),
            "value": e2e.deadline_share,
            "kind": "share",
            "note": (
                _("%(n)d of %(total)d cards, deadline %(d)d days")
                % {"n": e2e.within_deadline or 0, "total": e2e.finished, "d": e2e.deadline_days}
                if e2e.deadline_days
                else _("This pipe has no deadline.")
            ),
        },
        {
            "label": _("Met every phase SLA"),
            "value": e2e.phases_share,
            "kind": "share",
            "note": _("%(n)d of %(total)d finished cards")
            % {"n": e2e.every_phase_met, "total": e2e.finished},
        },
        {
            "label": _("Cycle time, median"),
            "value": e2e.median,
            "kind": "duration",
            "note": _("90th percentile: %(p90)s") % {"p90": _duration(e2e.p90)},
        },
    ]


def _duration(seconds: float | None) -> str:
    return duration_text(seconds)


# ---------------------------------------------------------------- audit trail


def _audit_filters(request: HttpRequest, tz: dt.tzinfo, scope: AuditScope) -> AuditFilters:
    actor = request.GET.get("actor", "")
    if actor not in ActorKind.values:
        actor = ""
    keys = {s.key for s in sources_for(scope)}
    sources = frozenset(s for s in request.GET.getlist("source") if s in keys)

    def day(name: str) -> dt.datetime | None:
        value = parse_day(request.GET.get(name, ""))
        return dt.datetime.combine(value, dt.time(), tzinfo=tz) if value else None

    until = day("until")
    return AuditFilters(
        actor_kind=actor,
        sources=sources,
        since=day("since"),
        until=until + dt.timedelta(days=1) if until else None,
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


def _audit_csv(entries: Iterable, *, tz: dt.tzinfo, name: str) -> StreamingHttpResponse:
    writer = csv_safe_writer(_Echo())

    def rows() -> Iterator[str]:
        yield "\ufeff"
        yield writer.writerow(
            [_("When"), _("Source"), _("Actor kind"), _("Actor"), _("Action"), _("Object"), _("Details")]
        )
        for entry in entries:
            yield writer.writerow(
                [
                    entry.at.astimezone(tz).isoformat(timespec="seconds"),
                    entry.source,
                    entry.actor_kind,
                    entry.actor,
                    entry.action,
                    entry.subject,
                    " | ".join(entry.details),
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _audit_response(request: HttpRequest, *, scope: AuditScope, title: str, context: dict) -> HttpResponse:
    org = scope.organization
    tz = _tz(org)
    filters = _audit_filters(request, tz, scope)
    if request.GET.get("export") == "csv":
        stamp = timezone.now().astimezone(tz).strftime("%Y%m%d-%H%M")
        name = f"audit-{slugify(title)[:40]}-{stamp}.csv"
        return _audit_csv(audit_entries(scope=scope, filters=filters), tz=tz, name=name)
    try:
        page = max(1, min(AUDIT_MAX_PAGE, int(request.GET.get("page", "1"))))
    except ValueError:
        page = 1
    rows, has_next = audit_page(scope=scope, filters=filters, page=page, size=AUDIT_PAGE_SIZE)
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("export", None)
    sources = sources_for(scope)
    context = {
        **context,
        "scope": scope,
        "title": title,
        "rows": rows,
        "page": page,
        "has_next": has_next and page < AUDIT_MAX_PAGE,
        "filters": filters,
        "actor_kinds": ActorKind.choices,
        "sources": [
            {
                "key": s.key,
                "label": s.label,
                "on": (s.key in filters.sources) if filters.sources else s.default,
            }
            for s in sources
        ],
        "since": request.GET.get("since", ""),
        "until": request.GET.get("until", ""),
        "qs": query.urlencode(),
        "tz_name": org.time_zone,
    }
    template = "governance/audit.html#results" if request.htmx else "governance/audit.html"
    return _render(request, org, template, context)


@login_required
@require_GET
def pipe_audit(request: HttpRequest, pipe_id: int) -> HttpResponse:
    pipe, access = _pipe_for_admin(request, pipe_id)
    scope = AuditScope(
        level="pipe", organization=pipe.organization, pipes=(pipe,), can_view_pii=access.can_view_pii
    )
    return _audit_response(request, scope=scope, title=pipe.name, context={"pipe": pipe})


@login_required
@require_GET
def card_audit(request: HttpRequest, card_id: int) -> HttpResponse:
    card = Card.objects.filter(pk=card_id).only("pk", "pipe_id").first()
    if card is None:
        raise Http404
    pipe, access = _pipe_for_admin(request, card.pipe_id)
    card = Card.objects.select_related("phase").get(pk=card_id)
    card.pipe = pipe
    scope = AuditScope(
        level="card",
        organization=pipe.organization,
        pipes=(pipe,),
        card=card,
        can_view_pii=access.can_view_pii,
    )
    title = title_shown(pipe=pipe, can_view_pii=access.can_view_pii)(card.title)
    return _audit_response(
        request,
        scope=scope,
        title=card.reference,
        context={"pipe": pipe, "card": card, "card_title": title},
    )


@login_required
@require_GET
def org_audit(request: HttpRequest, org_slug: str) -> HttpResponse:
    org = _org_for_member(request, org_slug)
    if not (request.user.is_superuser or is_org_owner(request.user, org.pk)):
        raise PermissionDenied(_("Only owners of %(org)s may open its audit trail.") % {"org": org.name})
    scope = AuditScope(level="organization", organization=org, pipes=tuple(org.pipes.all()))
    return _audit_response(request, scope=scope, title=org.name, context={"org": org})


# ---------------------------------------------------------------- data-subject requests


@login_required
@require_http_methods(["GET", "POST"])
def privacy(request: HttpRequest, org_slug: str) -> HttpResponse:
    """Find a person, export what Trilho holds about them, or erase it. POST only, so the person's
    email never lands in a URL, a browser history or an access log."""
    org = _org_for_member(request, org_slug)
    pipes = list(subject_pipes(user=request.user, organization=org))
    if not pipes:
        raise PermissionDenied(
            _("Only admins of a pipe of %(org)s handle data-subject requests.") % {"org": org.name}
        )
    fields = subject_fields(pipes=pipes)
    field_choices = sorted({(f.key, f.label) for f in fields}, key=lambda kv: kv[1].lower())
    identifier = request.POST.get("identifier", "").strip()[:254]
    field_key = request.POST.get("field", "")
    if field_key and field_key not in {k for k, _l in field_choices} | {"requester_email"}:
        field_key = ""
    action = request.POST.get("action", "") if request.method == "POST" else ""
    context = {
        "org": org,
        "pipes": pipes,
        "field_choices": field_choices,
        "identifier": identifier,
        "field_key": field_key,
        "requests": privacy_requests(organization=org, pipes=pipes),
    }
    status = 200
    if action and not identifier:
        context["error"] = _("Enter the email or other identifier of the person.")
        return _render(request, org, "governance/privacy.html", context, status=422)

    if action == "export":
        data, record = subject_export(
            user=request.user, organization=org, identifier=identifier, field_key=field_key
        )
        response = HttpResponse(
            json.dumps(data, indent=2, ensure_ascii=False, default=str), content_type="application/json"
        )
        response["Content-Disposition"] = f'attachment; filename="subject-export-{org.slug}-{record.pk}.json"'
        response["Cache-Control"] = "no-store"
        return response

    if action == "erase":
        confirmation = request.POST.get("confirm", "").strip()
        if confirmation.lower() != identifier.lower() or request.POST.get("understood") != "1":
            context["confirm_error"] = _(
                "Type the identifier again exactly and tick the box to confirm the erasure."
            )
            status = 422
            action = "preview"
        else:
            try:
                report = subject_erase(
                    user=request.user, organization=org, identifier=identifier, field_key=field_key
                )
            except CardError as exc:
                context["error"] = exc.message
                return _render(request, org, "governance/privacy.html", context, status=422)
            context.update(
                erased=report,
                identifier="",
                requests=privacy_requests(organization=org, pipes=pipes),
            )
            return _render(request, org, "governance/privacy.html", context)

    if action == "preview":
        preview = subject_erase(
            user=request.user, organization=org, identifier=identifier, field_key=field_key, dry_run=True
        )
        digest = subject_digest(identifier)
        context.update(
            preview=preview,
            earlier=PrivacyRequest.objects.filter(organization=org, subject_digest=digest).select_related(
                "requested_by"
            )[:10],
        )
    response = _render(request, org, "governance/privacy.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


# ---------------------------------------------------------------- retention


def _count_param(request: HttpRequest, name: str) -> int | None:
    return parse_int(request.GET.get(name, ""))


@login_required
@require_http_methods(["GET", "POST"])
def retention(request: HttpRequest, pipe_id: int) -> HttpResponse:
    pipe, _access = _pipe_for_admin(request, pipe_id)
    policy = pipe_policy(pipe=pipe)
    context: dict = {"pipe": pipe, "policy": policy, "errors": {}}
    status = 200
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "save":
            values, errors = {}, {}
            for name in ("retention_days", "trace_retention_days"):
                raw = request.POST.get(name, "").strip()
                days = parse_int(raw)
                if not raw:
                    values[name] = None
                elif days is not None:
                    values[name] = days
                else:
                    errors[name] = [_("Enter a whole number of days, or leave it empty.")]
            if not errors:
                try:
                    pipe_policy_update(user=request.user, pipe=pipe, **values)
                except DesignError as exc:
                    errors = exc.errors
            if not errors:
                return redirect(reverse("governance:retention", args=[pipe.pk]) + "?saved=1")
            context.update(errors=errors, posted=request.POST)
            status = 422
        elif action == "apply":
            run = retention_apply(pipe=pipe)
            return redirect(reverse("governance:retention", args=[pipe.pk]) + f"?anonymised={run.total}")
        elif action == "prune":
            pruned = trace_retention_apply(pipe=pipe).get(pipe.pk, TracePruning())
            return redirect(reverse("governance:retention", args=[pipe.pk]) + f"?pruned={pruned.runs}")
    due = retention_due(pipe=pipe)
    context.update(
        due_count=due.count(),
        due_cards=list(due[:20]),
        saved=request.GET.get("saved") == "1",
        anonymised=_count_param(request, "anonymised"),
        pruned=_count_param(request, "pruned"),
        runs=retention_runs(pipe=pipe),
        traces_due=trace_retention_apply(pipe=pipe, dry_run=True).get(pipe.pk),
    )
    return _render(request, pipe.organization, "governance/retention.html", context, status=status)
