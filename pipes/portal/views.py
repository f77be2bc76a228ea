"""The request portal: start forms (signed in and public), a requester's own requests, and tracking by token.

Views parse the request, call pipes.services (the one write path) or the portal selectors, and render.
"""

from __future__ import annotations

import contextlib
import zoneinfo

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ..choices import FieldType
from ..models import Card, Field, Pipe
from ..roles import pipe_access
from ..security import client_address
from ..services import (
    Actor,
    CardAlreadySubmittedError,
    CardConflictError,
    CardError,
    CardPermissionError,
    card_attach_files,
    card_check_start,
    card_comment,
    card_create,
    card_update_fields,
)
from .forms import EMAIL_KEY, HONEYPOT_INPUT, STAGING_INPUT, PortalForm, initial_from_values, org_tz
from .mail import PORTAL_REASON, send_submission_email, tracking_url
from .selectors import (
    card_by_tracking_token,
    pipe_turnaround_hours,
    portal_groups,
    portal_pipe_for_request,
    portal_pipes_for_user,
    public_pipe_get,
    requester_answered,
    requester_card_counts,
    requester_card_get,
    requester_cards,
    requester_editable_fields,
    requester_file_get,
    requester_history,
    requester_last_ask,
    requester_pending,
    requester_rows,
    requester_status,
    requester_steps,
    requester_thread,
    requester_values,
    start_fields,
    turnaround_text,
)
from .staging import Staging, staging_sweep

PUBLIC_ACTOR_NAME = "Public form"
RATE_WINDOW_SECONDS = 600
RATE_SUBMISSIONS = 5  # accepted public submissions per address per window
RATE_ATTEMPTS = 30  # posts of any kind (errors included) per address per window


# ---------------------------------------------------------------- portal home


@login_required
@require_GET
def home(request):
    q = request.GET.get("q", "").strip()[:100]
    groups = portal_groups(portal_pipes_for_user(user=request.user, q=q))
    context = {
        "nav_active": "portal",
        "q": q,
        "groups": groups,
        "form_count": sum(g.count for g in groups),
        "multi_org": len({o.organization.pk for g in groups for o in g.organizations}) > 1,
        "recent": requester_rows(requester_cards(user=request.user, state="open")[:3]),
        "counts": requester_card_counts(user=request.user),
    }
    if request.htmx and request.htmx.target == "portal-forms":
        return render(request, "portal/home.html#forms", context)
    return render(request, "portal/home.html", context)


# ---------------------------------------------------------------- start forms


def _owner_id(request) -> int | None:
    return request.user.pk if request.user.is_authenticated else None


def _form_urls(pipe: Pipe, *, public: bool) -> dict[str, str]:
    if public:
        args = [pipe.organization.slug, pipe.slug]
        return {
            "action": reverse("portal:public_form", args=args),
            "fields": reverse("portal:public_fields", args=args),
        }
    return {
        "action": reverse("portal:start_form", args=[pipe.pk]),
        "fields": reverse("portal:start_fields", args=[pipe.pk]),
    }


def _bind_start_form(request, pipe: Pipe, *, public: bool, bound: bool) -> PortalForm:
    user = request.user if request.user.is_authenticated else None
    fields = start_fields(pipe)
    if not bound:
        initial = {}
        if user is not None and user.email:
            email = next((f for f in fields if f.type == FieldType.EMAIL and not f.condition), None)
            if email is not None:
                initial[email.key] = user.email
        return PortalForm(
            pipe=pipe,
            fields=fields,
            user=user,
            initial=initial,
            staging=Staging.open(None, owner_id=_owner_id(request)),
            public=public,
        )
    return PortalForm(
        pipe=pipe,
        fields=fields,
        user=user,
        data=request.POST,
        files=request.FILES,
        staging=Staging.open(request.POST.get(STAGING_INPUT), owner_id=_owner_id(request)),
        public=public,
    )


PANEL_INPUT = "_panel"  # the form sits in the board's side panel ("New card"), not on a portal page


def _in_panel(request, *, public: bool) -> bool:
    """The board's "New card" asks for the start form as a fragment of its side panel."""
    if public or not request.htmx:
        return False
    return (request.POST if request.method == "POST" else request.GET).get(PANEL_INPUT) == "1"


def _render_start_form(request, pipe: Pipe, form: PortalForm, *, public: bool, status: int = 200):
    non_final = [p for p in pipe.phases.order_by("position", "id") if not p.is_final]
    panel = _in_panel(request, public=public)
    context = {
        "nav_active": "portal",
        "pipe": pipe,
        "form": form,
        "public": public,
        "urls": _form_urls(pipe, public=public),
        "turnaround": turnaround_text(pipe_turnaround_hours(pipe)),
        "next_steps": list(dict.fromkeys(requester_status(p) for p in non_final)),
        "staging_token": form.staging.signed if form.staging else "",
        "honeypot": HONEYPOT_INPUT,
        "email_key": EMAIL_KEY,
        "panel": panel,
        "panel_input": PANEL_INPUT,
    }
    template = "portal/_start_form_panel.html" if panel else "portal/start_form.html"
    with timezone.override(org_tz(pipe)):
        response = render(request, template, context, status=status)
    if panel and status >= 400:
        response["HX-Retarget"] = "#panel"  # htmx swaps 4xx answers only where told to
        response["HX-Reswap"] = "innerHTML"
    return response


def _close(uploads: dict) -> None:
    for files in uploads.values():
        for upload in files:
            with contextlib.suppress(Exception):
                upload.close()


def _service_problems(*, actor: Actor, pipe: Pipe, form: PortalForm) -> dict[str, list[str]]:
    """What card_create would object to in the form as it stands (pipes.services.card_check_start).

    Used when the portal already found a problem of its own (a rejected upload, a missing email),
    so every field's error shows at once."""
    uploads = form.uploads()
    try:
        card_check_start(actor=actor, pipe=pipe, values=form.raw_values(), files=uploads)
    except CardError as exc:
        return exc.errors
    finally:
        _close(uploads)
    return {}


def _submit_start_form(request, pipe: Pipe, *, actor: Actor, public: bool):
    """Handle a posted start form: keep uploads, call card_create, come back with every error at its field."""
    staging_sweep()
    form = _bind_start_form(request, pipe, public=public, bound=True)
    form.stage_uploads()
    if form.remove_kept():
        return _render_start_form(request, pipe, form, public=public)
    if public:
        form.check_public_email()
    if form.has_errors:
        form.add_errors(_service_problems(actor=actor, pipe=pipe, form=form))
        return _render_start_form(request, pipe, form, public=public, status=422)
    uploads = form.uploads()
    first_post = True
    try:
        card = card_create(
            actor=actor,
            pipe=pipe,
            values=form.raw_values(),
            files=uploads,
            requester_email=form.requester_email() if public else "",
            reason=PORTAL_REASON,
            submission_key=form.staging.token,
        )
    except CardAlreadySubmittedError as exc:  # the same form posted again (a double click, a retry)
        card, first_post = exc.card, False
    except CardPermissionError as exc:
        raise PermissionDenied(exc.message) from None
    except CardError as exc:
        form.add_errors(exc.errors)
        return _render_start_form(request, pipe, form, public=public, status=422)
    finally:
        _close(uploads)
    form.staging.discard()
    card = Card.objects.select_related("pipe__organization", "phase").get(pk=card.pk)
    if first_post:
        transaction.on_commit(lambda: send_submission_email(card))
    if public:
        return redirect("portal:public_submitted", token=card.tracking_token)
    if _in_panel(request, public=public) and pipe_access(user=request.user, pipe=pipe).can_view_board:
        # Filed from the board: show the board with the new card open in its panel.
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("card_detail", args=[pipe.pk, card.pk])
        return response
    return redirect("portal:submitted", card_id=card.pk)


@login_required
@require_http_methods(["GET", "POST"])
def start_form(request, pipe_id: int):
    pipe = portal_pipe_for_request(user=request.user, pipe_id=pipe_id)
    if request.method == "POST":
        return _submit_start_form(request, pipe, actor=Actor.for_user(request.user), public=False)
    return _render_start_form(
        request, pipe, _bind_start_form(request, pipe, public=False, bound=False), public=False
    )


def _render_changed_rows(request, pipe: Pipe, *, public: bool):
    """The conditional fields that appear or disappear, as out-of-band swaps of their rows."""
    form = _bind_start_form(request, pipe, public=public, bound=True)
    context = {"rows": form.changed_rows(), "form": form, "urls": _form_urls(pipe, public=public)}
    with timezone.override(org_tz(pipe)):
        return render(request, "portal/_changed_rows.html", context)


@login_required
@require_POST
def start_fields_view(request, pipe_id: int):
    pipe = portal_pipe_for_request(user=request.user, pipe_id=pipe_id)
    return _render_changed_rows(request, pipe, public=False)


@login_required
@require_GET
def submitted(request, card_id: int):
    card = requester_card_get(user=request.user, card_id=card_id)
    return _render_submitted(request, card, public=False)


def _render_submitted(request, card: Card, *, public: bool):
    context = {
        "nav_active": "portal",
        "card": card,
        "public": public,
        "status": requester_status(card.phase),
        "tracking_url": tracking_url(card),
        "email": "" if public else card.requester_email,  # the token page shows no personal data
    }
    with timezone.override(org_tz(card.pipe)):
        return render(request, "portal/submitted.html", context)


# ---------------------------------------------------------------- public forms


def _count(key: str) -> int:
    cache.add(key, 0, RATE_WINDOW_SECONDS)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, RATE_WINDOW_SECONDS)
        return 1


def _too_many(request, pipe: Pipe):
    response = render(
        request,
        "portal/rate_limited.html",
        {"pipe": pipe, "minutes": RATE_WINDOW_SECONDS // 60},
        status=429,
    )
    response["Retry-After"] = str(RATE_WINDOW_SECONDS)
    return response


@require_http_methods(["GET", "POST"])
def public_form(request, org_slug: str, pipe_slug: str):
    pipe = public_pipe_get(org_slug=org_slug, pipe_slug=pipe_slug)
    if request.method == "GET":
        form = _bind_start_form(request, pipe, public=True, bound=False)
        return _render_start_form(request, pipe, form, public=True)
    address = client_address(request)
    submissions_key = f"portal:public:submitted:{address}"
    if (cache.get(submissions_key) or 0) >= RATE_SUBMISSIONS or _count(
        f"portal:public:attempts:{address}"
    ) > RATE_ATTEMPTS:
        return _too_many(request, pipe)
    if request.POST.get(HONEYPOT_INPUT):
        _count(submissions_key)  # a bot: pretend all is well and keep nothing
        return render(request, "portal/submitted.html", {"card": None, "public": True, "pipe": pipe})
    response = _submit_start_form(request, pipe, actor=Actor.anonymous(PUBLIC_ACTOR_NAME), public=True)
    if response.status_code == 302:
        _count(submissions_key)
    return response


@require_POST
def public_fields(request, org_slug: str, pipe_slug: str):
    pipe = public_pipe_get(org_slug=org_slug, pipe_slug=pipe_slug)
    return _render_changed_rows(request, pipe, public=True)


@require_GET
def public_submitted(request, token: str):
    card = card_by_tracking_token(token=token)
    return _render_submitted(request, card, public=True)


@require_GET
def tracking(request, token: str):
    """Status of a request for whoever holds its private link: status, reference and dates, no field values."""
    card = card_by_tracking_token(token=token)
    context = {
        "card": card,
        "status": requester_status(card.phase),
        "steps": requester_steps(card),
        "history": requester_history(card),
        "is_mine": request.user.is_authenticated and card.created_by_id == request.user.pk,
    }
    with timezone.override(org_tz(card.pipe)):
        response = render(request, "portal/tracking.html", context)
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Cache-Control"] = "private, no-store"
    return response


# ---------------------------------------------------------------- my requests


@login_required
@require_GET
def my_requests(request):
    state = request.GET.get("state", "open")
    if state not in ("open", "closed", "all"):
        state = "open"
    rows = requester_rows(requester_cards(user=request.user, state=state)[:200])
    context = {
        "nav_active": "requests",
        "state": state,
        "rows": rows,
        "counts": requester_card_counts(user=request.user),
    }
    return render(request, "portal/my_requests.html", context)


def _answer_form(request, card: Card, fields: list[Field], *, bound: bool) -> PortalForm:
    form = _bind_answer_form(request, card, fields, bound=bound)
    files = {cf.pk: cf for cf in card.files.all()}
    for pf in form.bound:
        pf.is_source = False  # a phase's few requester fields are shown by the card's values, not live
        if pf.field.type == FieldType.ATTACHMENT:
            pf.attached = [files[i] for i in card.values.get(pf.key) or [] if i in files]
    return form


def _bind_answer_form(request, card: Card, fields: list[Field], *, bound: bool) -> PortalForm:
    if bound:
        return PortalForm(
            pipe=card.pipe,
            fields=fields,
            user=request.user,
            data=request.POST,
            files=request.FILES,
            base_values=card.values,
        )
    return PortalForm(
        pipe=card.pipe,
        fields=fields,
        user=request.user,
        initial=initial_from_values(fields, card.values, tz=org_tz(card.pipe)),
        base_values=card.values,
    )


def _render_request(
    request,
    card: Card,
    *,
    answer: PortalForm | None = None,
    comment_error: str = "",
    comment_text: str = "",
    status: int = 200,
):
    fields = requester_editable_fields(card)
    if answer is None:
        answer = _answer_form(request, card, fields, bound=False) if fields else None
    answered = requester_answered(card)
    requested = set(card.requested_fields or [])
    context = {
        "pending": requester_pending(card, fields, answered=answered),
        "asked": [f for f in fields if f.key in requested] if not answered else [],
        "answered": answered and bool(requested),
        "ask": requester_last_ask(card) if requested and not answered else None,
        "nav_active": "requests",
        "card": card,
        "status": requester_status(card.phase),
        "steps": requester_steps(card),
        "answer": answer,
        "values": requester_values(card, exclude=[f.key for f in fields]),
        "thread": requester_thread(card),
        "history": requester_history(card),
        "tracking_url": tracking_url(card),
        "comment_error": comment_error,
        "comment_text": comment_text,
    }
    with timezone.override(zoneinfo.ZoneInfo(card.pipe.organization.time_zone)):
        return render(request, "portal/request_detail.html", context, status=status)


@login_required
@require_GET
def request_detail(request, card_id: int):
    card = requester_card_get(user=request.user, card_id=card_id)
    return _render_request(request, card)


@login_required
@require_POST
def request_answer(request, card_id: int):
    """The requester fills what the current phase asks of them (card_update_fields / card_attach_files)."""
    card = requester_card_get(user=request.user, card_id=card_id)
    fields = requester_editable_fields(card)
    if not fields:
        messages.info(request, _("Nothing is needed from you on this request right now."))
        return redirect("portal:request", card_id=card.pk)
    form = _answer_form(request, card, fields, bound=True)
    actor = Actor.for_user(request.user)
    try:
        # Files first: if a value is then refused, the files are already safe on the card.
        for pf in form.visible_fields:
            uploads = request.FILES.getlist(pf.name) if pf.field.type == FieldType.ATTACHMENT else []
            if uploads:
                card_attach_files(actor=actor, card=card, uploads=uploads, field_key=pf.key)
        values = form.raw_values(include_empty=True)
        if values:
            card = card_update_fields(actor=actor, card=card, values=values)
    except CardConflictError as exc:
        messages.error(request, exc.message)
        return redirect("portal:request", card_id=card.pk)
    except CardPermissionError as exc:
        raise PermissionDenied(exc.message) from None
    except CardError as exc:
        card.refresh_from_db()
        form = _answer_form(request, card, fields, bound=True)
        form.add_errors(exc.errors)
        return _render_request(request, card, answer=form, status=422)
    messages.success(request, _("Thank you — your answer was sent to the team."))
    return redirect("portal:request", card_id=card.pk)


@login_required
@require_POST
def request_comment(request, card_id: int):
    card = requester_card_get(user=request.user, card_id=card_id)
    text = request.POST.get("text", "")
    try:
        card_comment(actor=Actor.for_user(request.user), card=card, text=text)
    except CardPermissionError as exc:
        raise PermissionDenied(exc.message) from None
    except CardError as exc:
        return _render_request(request, card, comment_error=exc.message, comment_text=text, status=422)
    messages.success(request, _("Your message was sent."))
    return redirect(reverse("portal:request", args=[card.pk]) + "#conversation")


@login_required
@require_GET
def request_file(request, card_id: int, file_id: int):
    """A file of one's own request, always as a download (never shown inline from our origin)."""
    card = requester_card_get(user=request.user, card_id=card_id)
    card_file = requester_file_get(card=card, file_id=file_id)
    try:
        handle = card_file.file.open("rb")
    except FileNotFoundError:
        raise Http404 from None
    response = FileResponse(
        handle, as_attachment=True, filename=card_file.name, content_type=card_file.content_type
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response
