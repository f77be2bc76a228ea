"""Pages of the reviewer inbox: the list, the review screen and its posts (decide, request changes,
delegate), bulk approval and the text preview of an attachment."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from agents.documents import cut_notes, document_kind, document_text_stored
from orchestrator.models import ReviewStatus, ReviewTask
from orchestrator.rail.dispatch import dispatch_document_extraction
from orchestrator.rail.services import RailError, RailPermissionError, review_open
from orchestrator.rail.trace import run_url
from pipes.choices import FieldType
from pipes.masking import mask_email
from pipes.models import CardFile, Phase
from pipes.parsing import parse_id
from pipes.portal.forms import INPUT_PREFIX, PortalForm, initial_from_values, org_tz
from pipes.roles import PipeAccess, pipes_for_user
from pipes.selectors import board_schema, card_detail
from pipes.services import NON_FIELD, CardError

from .models import Decision
from .selectors import (
    DUE_SOON,
    VIEWS,
    InboxFilters,
    bulk_field_groups,
    delegation_candidates,
    draft_values,
    fields_by_keys,
    inbox_counts,
    inbox_neighbours,
    inbox_pipes,
    inbox_rows,
    needed_keys,
    reason_fields,
    requestable_fields,
    review_context,
    send_back_phases,
    task_get_for_user,
)
from .services import (
    card_has_requester,
    inbox_bulk_approve,
    inbox_decide,
    inbox_delegate,
    inbox_request_changes,
)

PREVIEW_CHARS = 4000


# ---------------------------------------------------------------- the list


@login_required
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    filters = InboxFilters.from_query(request.GET)
    counts = inbox_counts(user=request.user, pipe_id=filters.pipe_id)
    labels = {
        "waiting": _("Waiting for me"),
        "open": _("All open"),
        "overdue": _("Overdue"),
        "decided": _("Decided by me"),
    }
    rows = inbox_rows(user=request.user, filters=filters)
    context = {
        "nav_active": "inbox",
        "filters": filters,
        "rows": rows,
        "bulk_groups": _bulk_forms(request, rows),
        "bulk_left_out": sum(1 for r in rows if r.bulk_blocked),
        "counts": counts,
        "tabs": [(view, labels[view], counts[view], filters.params(view=view)) for view in VIEWS],
        "pipes": inbox_pipes(user=request.user),
    }
    return render(request, "inbox/index.html", context)


def _reviewer_default(fields, user) -> dict:
    """An empty Approver-like (assignee) field starts as the reviewer deciding: they are the approver."""
    return {f.key: str(user.pk) for f in fields if f.type == FieldType.ASSIGNEE}


def _bulk_forms(request: HttpRequest, rows) -> list[tuple[int, PortalForm]]:
    """Per step, the inputs of the fields its selected tasks need: filled once in the bulk bar."""
    pipes = {row.task.run.step_id: row.task.card.pipe for row in rows}
    return [
        (
            step_id,
            PortalForm(
                pipe=pipes[step_id],
                fields=fields,
                user=request.user,
                initial=_reviewer_default(fields, request.user),
            ),
        )
        for step_id, fields in bulk_field_groups(rows)
    ]


@login_required
@require_POST
def bulk_approve(request: HttpRequest) -> HttpResponse:
    ids = [i for i in map(parse_id, request.POST.getlist("tasks")) if i is not None]
    back = reverse("inbox:index") + InboxFilters.from_query(request.POST).params()
    reviewable = ReviewTask.objects.filter(
        pk__in=ids, pipe_id__in=pipes_for_user(request.user, ("review_pipe",)).values("pk")
    )
    if reviewable.count() != len(set(ids)):
        raise Http404  # a task of a pipe they do not review: its existence is private
    first = reviewable.select_related("pipe").first()
    values = {}
    if first is not None:
        posted = [k.removeprefix(INPUT_PREFIX) for k in request.POST if k.startswith(INPUT_PREFIX)]
        fields = fields_by_keys(pipe_id=first.pipe_id, keys=posted)
        values = PortalForm(pipe=first.pipe, fields=fields, user=request.user, data=request.POST).raw_values()
    try:
        result = inbox_bulk_approve(
            task_ids=ids, user=request.user, comment=request.POST.get("comment", ""), values=values
        )
    except RailError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    if result.approved:
        messages.success(
            request,
            ngettext(
                "Approved %(n)d task.",
                "Approved %(n)d tasks, each recorded on its card.",
                len(result.approved),
            )
            % {"n": len(result.approved)},
        )
    for task, reason in result.refused:
        messages.warning(request, f"{task.card.reference}: {reason}")
    return redirect(back)


# ---------------------------------------------------------------- the review screen


def _editable(fields, access: PipeAccess) -> list:
    return [f for f in fields.values() if not (f.pii and not access.can_view_pii)]


def _draft_form(
    request: HttpRequest, task: ReviewTask, access: PipeAccess, review, *, bound: bool
) -> PortalForm:
    """The review's fields as inputs: the agent's draft (or the first approval of a four-eyes task)."""
    card = task.card
    fields = _editable(review.fields, access)
    if bound and review.first_approval is None:
        return PortalForm(
            pipe=card.pipe, fields=fields, user=request.user, data=request.POST, base_values=card.values
        )
    start = (
        review.first_approval.values
        if review.first_approval
        else draft_values(task=task, card=card, fields=review.fields)
    )
    initial = initial_from_values(fields, start or {}, tz=org_tz(card.pipe))
    if review.first_approval is None:
        empty = [f for f in fields if not initial.get(f.key)]
        initial.update(_reviewer_default(empty, request.user))
    return PortalForm(
        pipe=card.pipe, fields=fields, user=request.user, initial=initial, base_values=card.values
    )


def _render_task(
    request: HttpRequest,
    task: ReviewTask,
    access: PipeAccess,
    *,
    form: PortalForm | None = None,
    error: str = "",
    comment_error: str = "",
    mode: str = "",
    status: int = 200,
) -> HttpResponse:
    card = task.card
    review = review_context(task=task, user=request.user, access=access, card=card)
    detail = card_detail(card=card, schema=board_schema(pipe=card.pipe, access=access, transitions=False))
    if form is None:
        form = _draft_form(request, task, access, review, bound=False)
    previous_id, next_id = inbox_neighbours(user=request.user, task=task)
    asked = set(request.POST.getlist("fields")) if request.method == "POST" else set()
    can_decide = review.blocker is None
    phases = send_back_phases(card=card) if can_decide else []
    default_phase = (
        request.POST.get("to_phase") if request.method == "POST" else (str(phases[-1].pk) if phases else "")
    )
    now = timezone.now()
    due_at = review.item.due_at if review.item else None
    context = {
        "nav_active": "inbox",
        "due_overdue": bool(due_at and due_at < now),
        "due_soon": bool(due_at and now <= due_at < now + DUE_SOON),
        "edited_keys": set(review.first_approval.edited_keys or [])
        if review.first_approval and task.proposal
        else set(),
        "task": task,
        "card": card,
        "run": task.run,
        "run_url": run_url(task.run),
        "step": task.run.step,
        "access": access,
        "review": review,
        "item": review.item,
        "detail": detail,
        "form": form,
        "masked_fields": [f for f in review.fields.values() if f.pii and not access.can_view_pii],
        "filed_by": _filed_by(card, access),
        "draft_locked": review.first_approval is not None,
        "can_decide": can_decide,
        "can_request_changes": can_decide and card_has_requester(card),
        "requestable": requestable_fields(card=card) if can_decide else [],
        "asked": asked,
        "send_back": phases,
        "default_phase": default_phase,
        "can_delegate": task.status == ReviewStatus.OPEN
        and (not task.assignee_id or task.assignee_id == request.user.pk or access.can_administer),
        "delegates": delegation_candidates(task=task, user=request.user)
        if task.status == ReviewStatus.OPEN
        else [],
        "previous_id": previous_id,
        "next_id": next_id,
        "error": error,
        "comment_error": comment_error,
        "comment": request.POST.get("comment", "") if request.method == "POST" else "",
        "mode": mode,
        **_live_context(task, card, review),
    }
    return render(request, "inbox/task.html", context, status=status)


def _filed_by(card, access) -> str:
    """Who filed the card: the account's name, else the address it came from (a public form's), masked
    for a reviewer who may not see personal data, as the card's own email fields are."""
    if card.created_by is not None:
        return card.created_by.get_full_name() or card.created_by.get_username()
    email = card.requester_email or ""
    return email if access.can_view_pii else mask_email(email)


def _live_context(task: ReviewTask, card, review) -> dict:
    """What the draft's rows need to follow the page live: the fields endpoint, what a rejection asks
    (the required fields of the phase it leaves) and which of them the comment fills (the reason)."""
    reject_needs = (
        needed_keys(task=task, card=card, decision=Decision.REJECT)
        if Decision.REJECT in task.allowed_decisions
        else set()
    )
    reasons = reason_fields(fields=review.fields, keys=reject_needs)
    return {
        "fields_url": reverse("inbox:fields", args=[task.pk]),
        "reject_needs": reject_needs,
        "reason_keys": {f.key for f in reasons},
        "reason_fields": reasons,
        "proposed_keys": set(((task.proposal or {}).get("values") or {}).keys())
        if not review.first_approval
        else set(),
    }


@login_required
@require_POST
def task_fields(request: HttpRequest, task_id: int) -> HttpResponse:
    """The draft's conditional rows that appear or disappear given what is now chosen (out-of-band swaps)."""
    task, access = task_get_for_user(user=request.user, task_id=task_id)
    card = task.card
    review = review_context(task=task, user=request.user, access=access, card=card)
    form = _draft_form(request, task, access, review, bound=review.blocker is None)
    context = {"rows": form.changed_rows(), **_live_context(task, card, review)}
    with timezone.override(org_tz(card.pipe)):
        return render(request, "inbox/_changed_rows.html", context)


@login_required
@require_GET
def task_detail(request: HttpRequest, task_id: int) -> HttpResponse:
    task, access = task_get_for_user(user=request.user, task_id=task_id)
    review_open(task=task, user=request.user)
    return _render_task(request, task, access)


def _after_decision(request: HttpRequest, task: ReviewTask) -> HttpResponse:
    _previous, next_id = inbox_neighbours(user=request.user, task=task)
    url = reverse("inbox:task", args=[next_id]) if next_id else reverse("inbox:index")
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Location"] = url
        return response
    return redirect(url)


def _refused(request, task, access, exc: Exception, *, form=None, mode: str = "") -> HttpResponse:
    """Render the review screen again with what went wrong, and a status the front end can tell apart."""
    if isinstance(exc, RailPermissionError):
        return _render_task(request, task, access, form=form, error=exc.message, mode=mode, status=403)
    if isinstance(exc, RailError):
        return _render_task(request, task, access, form=form, error=exc.message, mode=mode, status=409)
    assert isinstance(exc, CardError)
    errors = dict(exc.errors)
    comment_error = " ".join(errors.pop("comment", []))
    general = [r for key in (NON_FIELD, "fields") for r in errors.pop(key, [])]
    if form is not None:
        form.add_errors(errors)
        general += [r for r in form.non_field_errors if r not in general]
        unplaced = {k: v for k, v in errors.items() if k not in form.by_key}
    else:
        unplaced = errors
    labels = exc.field_labels
    general += [f"{labels.get(k, k)}: {' '.join(v)}" for k, v in unplaced.items()]
    return _render_task(
        request,
        task,
        access,
        form=form,
        error=" ".join(general) or (_("Check the fields marked below.") if not comment_error else ""),
        comment_error=comment_error,
        mode=mode,
        status=422,
    )


@login_required
@require_POST
def task_decide(request: HttpRequest, task_id: int) -> HttpResponse:
    task, access = task_get_for_user(user=request.user, task_id=task_id)
    decision = request.POST.get("decision", "")
    comment = request.POST.get("comment", "")
    if decision == Decision.REQUEST_CHANGES:
        return _request_changes(request, task, access, comment)
    review = review_context(task=task, user=request.user, access=access, card=task.card)
    form = _draft_form(request, task, access, review, bound=True)
    values = {} if review.first_approval else form.raw_values(include_empty=True)
    try:
        outcome = inbox_decide(
            task=task, user=request.user, decision=decision, comment=comment, values=values
        )
    except (RailError, CardError) as exc:
        return _refused(request, task, access, exc, form=form, mode=decision)
    ref = task.card.reference
    if not outcome.final:
        messages.success(
            request,
            _("%(ref)s: your approval is recorded (%(n)d of %(m)d). A second reviewer must confirm it.")
            % {"ref": ref, "n": outcome.approvals, "m": outcome.approvals_required},
        )
    elif decision == Decision.APPROVE:
        messages.success(request, _("%(ref)s approved.") % {"ref": ref})
    elif decision == Decision.REJECT:
        messages.success(request, _("%(ref)s rejected.") % {"ref": ref})
    else:
        messages.success(request, _("%(ref)s: decided %(decision)s.") % {"ref": ref, "decision": decision})
    return _after_decision(request, task)


def _request_changes(
    request: HttpRequest, task: ReviewTask, access: PipeAccess, comment: str
) -> HttpResponse:
    to_phase = None
    phase_id = parse_id(request.POST.get("to_phase", ""))
    if phase_id is not None:
        to_phase = Phase.objects.filter(pk=phase_id, pipe_id=task.pipe_id).first()
    try:
        inbox_request_changes(
            task=task,
            user=request.user,
            field_keys=request.POST.getlist("fields"),
            comment=comment,
            to_phase=to_phase,
        )
    except (RailError, CardError) as exc:
        return _refused(request, task, access, exc, mode="changes")
    messages.success(
        request,
        _("%(ref)s: the requester is asked for the changes and told by email.")
        % {"ref": task.card.reference},
    )
    return _after_decision(request, task)


@login_required
@require_POST
def task_delegate(request: HttpRequest, task_id: int) -> HttpResponse:
    task, access = task_get_for_user(user=request.user, task_id=task_id)
    to_id = parse_id(request.POST.get("to_user", ""))
    to_user = get_user_model().objects.filter(pk=to_id, is_active=True).first() if to_id else None
    if to_user is None:
        return _render_task(request, task, access, error=_("Choose who should review it."), status=422)
    try:
        inbox_delegate(task=task, user=request.user, to_user=to_user, note=request.POST.get("note", ""))
    except RailPermissionError as exc:
        return _render_task(request, task, access, error=exc.message, status=403)
    except RailError as exc:
        return _render_task(request, task, access, error=exc.message, status=409)
    name = to_user.get_full_name() or to_user.get_username()
    messages.success(request, _("%(ref)s handed to %(name)s.") % {"ref": task.card.reference, "name": name})
    return redirect("inbox:index")


@login_required
@require_GET
def file_preview(request: HttpRequest, task_id: int, file_id: int) -> HttpResponse:
    """The first characters of a PDF or text attachment, for the review screen's inline preview.

    The text is the one a worker extracted; this request never parses the file. Until it is ready
    the fragment says so (and asks a worker for it), and the page asks again a little later."""
    task, access = task_get_for_user(user=request.user, task_id=task_id)
    card_file = get_object_or_404(CardFile, pk=file_id, card_id=task.card_id)
    if (
        card_file.field_key
        and not access.can_view_pii
        and task.card.pipe.fields.filter(key=card_file.field_key, pii=True).exists()
    ):
        raise PermissionDenied
    if not document_kind(card_file):
        return render(request, "inbox/_preview.html", {"unreadable": True, "card_file": card_file})
    extracted = document_text_stored(card_file)
    if extracted is None:
        dispatch_document_extraction(card_file)
        return render(request, "inbox/_preview.html", {"pending": True, "card_file": card_file})
    context = {
        "card_file": card_file,
        "extracted": extracted,
        "text": extracted.text[:PREVIEW_CHARS],
        "more": len(extracted.text) > PREVIEW_CHARS,
        "cut_notes": cut_notes(extracted),
    }
    return render(request, "inbox/_preview.html", context)
