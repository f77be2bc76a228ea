"""Organizations, pipes (phases, fields, labels), the SLA report, review tasks and step runs through the API.

Each read uses the getter of its page: pipe_get_for_user (board), the governance rule for the SLA
report (pipe admins and organization owners), task_get_for_user and inbox_rows (inbox),
run_get_for_user and run_shown (the run page, masked for people without view_pii). Deciding a
review goes through inbox_decide, the only public way to decide one.
"""

import zoneinfo

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from ninja import Field as SchemaField
from ninja import Query, Router, Schema

from orchestrator.inbox.selectors import InboxFilters, inbox_rows, task_get_for_user
from orchestrator.inbox.services import inbox_decide
from orchestrator.models import ReviewTask, StepRun
from orchestrator.rail.selectors import RailForbidden, pipe_get_for_costs, run_get_for_user, run_shown
from pipes.governance.sla_report import MonthError, sla_report
from pipes.masking import title_shown
from pipes.models import Membership, Organization, Pipe
from pipes.portal.selectors import start_fields
from pipes.roles import STAFF_PERMS, organizations_for_user, pipe_access, pipes_for_user
from pipes.selectors import board_schema

from . import examples
from .cards import _json, _values_in, errors
from .errors import ApiInputError
from .idempotency import idempotent
from .schemas import (
    CardId,
    DecideIn,
    DecisionOut,
    FieldOut,
    Id,
    OrganizationOut,
    PipeId,
    PipeOut,
    ReviewOut,
    RunDetailOut,
    RunId,
    RunOut,
    SlaOut,
    TaskId,
)

router = Router()


# ---------------------------------------------------------------- organizations


@router.get(
    "/organizations",
    response={200: list[OrganizationOut], **errors()},
    url_name="organizations",
    openapi_extra=examples.documented((200, [examples.ORGANIZATION])),
    tags=["organizations"],
    summary="The caller's organizations",
    description="A token sees its own organization only.",
)
def organization_list(request: HttpRequest):
    caller = request.auth
    if caller.token is not None:
        orgs = Organization.objects.filter(pk=caller.token.organization_id)
    else:
        orgs = organizations_for_user(caller.user)
    roles = dict(Membership.objects.filter(user=caller.user).values_list("organization_id", "role"))
    return [
        {
            "id": org.pk,
            "name": org.name,
            "slug": org.slug,
            "time_zone": org.time_zone,
            "currency": org.currency,
            "role": roles.get(org.pk, "member"),
        }
        for org in orgs.order_by("name")
    ]


# ---------------------------------------------------------------- pipes


def field_out(f, phase_keys: dict[int, str]) -> dict:
    return {
        "key": f.key,
        "label": f.label,
        "type": f.type,
        "phase": phase_keys.get(f.phase_id),
        "required": f.required,
        "pii": f.pii,
        "help_text": f.help_text,
        "options": f.options or [],
        "condition": f.condition,
    }


def pipe_out(pipe, access) -> dict:
    schema = board_schema(pipe=pipe, access=access)
    phase_keys = {p.pk: p.key for p in schema.phases}
    return {
        "id": pipe.pk,
        "organization_id": pipe.organization_id,
        "name": pipe.name,
        "slug": pipe.slug,
        "code": pipe.code,
        "description": pipe.description,
        "title_field": pipe.title_field,
        "role": access.role,
        "can_work": access.can_work,
        "can_view_pii": access.can_view_pii,
        "phases": [
            {
                "id": p.pk,
                "key": p.key,
                "name": p.name,
                "position": p.position,
                "is_final": p.is_final,
                "sla_hours": p.sla_hours,
                "wip_limit": p.wip_limit,
                "wip_blocks": p.wip_blocks,
                "allowed_next": [n.key for n in p.allowed_next.all()],
            }
            for p in schema.phases
        ],
        "fields": [field_out(f, phase_keys) for f in schema.fields],
        "labels": [{"id": label.pk, "name": label.name, "color": label.color} for label in pipe.labels.all()],
    }


@router.get(
    "/pipes",
    response={200: list[PipeOut], **errors()},
    url_name="pipes",
    openapi_extra=examples.documented((200, [examples.PIPE])),
    tags=["pipes"],
    summary="Pipes the caller sees",
    description="Pipes whose board the caller sees (a token: those of them it names), with phases, fields and labels.",
)
def pipe_list(request: HttpRequest):
    caller = request.auth
    pipes = pipes_for_user(caller.user, STAFF_PERMS).select_related("organization").order_by("name", "pk")
    if caller.pipe_ids is not None:
        pipes = pipes.filter(pk__in=caller.pipe_ids)
    result = []
    for pipe in pipes:
        access = pipe_access(user=caller.user, pipe=pipe)
        if access.can_view_board:
            result.append(pipe_out(pipe, access))
    return result


@router.get(
    "/pipes/{pipe_id}",
    response={200: PipeOut, **errors(403)},
    url_name="pipe",
    openapi_extra=examples.documented((200, examples.PIPE)),
    tags=["pipes"],
    summary="A pipe with its phases, fields and labels",
)
def pipe_read(request: HttpRequest, pipe_id: PipeId):
    pipe, access = request.auth.pipe(pipe_id)
    return pipe_out(pipe, access)


def requester_fields(pipe) -> list:
    """The fields a requester sees of a pipe: its start form's, less those marked not visible to
    requesters (internal ones). A phase's fields belong to the pipe's own people and are never listed."""
    return [f for f in start_fields(pipe) if f.visible_to_requester]


@router.get(
    "/pipes/{pipe_id}/fields",
    response={200: list[FieldOut], **errors(403)},
    url_name="pipe_fields",
    openapi_extra=examples.documented(
        (200, examples.START_FIELDS), errors={403: examples.FORBIDDEN_REQUESTER_403}
    ),
    tags=["pipes"],
    summary="A pipe's fields",
    description="For people who see the pipe's board: every field, the start form's (phase null) and each "
    "phase's. For requesters, who only file requests: the start form's fields shown to requesters, "
    "enough to build a form that opens cards (POST /pipes/{pipe_id}/cards); never a phase's fields, "
    "nor a field kept from requesters. pii marks fields that hold personal data.",
)
def pipe_fields(request: HttpRequest, pipe_id: PipeId):
    caller = request.auth
    caller.check_pipe(pipe_id)
    pipe = Pipe.objects.select_related("organization").filter(pk=pipe_id).first()
    access = pipe_access(user=caller.user, pipe=pipe) if pipe is not None else None
    if access is None or not access.perms:
        raise Http404
    if access.can_view_board:
        schema = board_schema(pipe=pipe, access=access, transitions=False)
        phase_keys = {p.pk: p.key for p in schema.phases}
        return [field_out(f, phase_keys) for f in schema.fields]
    if access.can_request:
        return [field_out(f, {}) for f in requester_fields(pipe)]
    raise PermissionDenied(_("You may not see the fields of %(pipe)s.") % {"pipe": pipe.name})


# ---------------------------------------------------------------- SLA report


class SlaQuery(Schema):
    month: str | None = SchemaField(
        None,
        pattern=r"^\d{4}-\d{2}$",
        description="YYYY-MM in the organization's time zone; default: this month.",
        json_schema_extra={"example": "2025-03"},
    )


@router.get(
    "/pipes/{pipe_id}/sla",
    response={200: SlaOut, **errors(403)},
    url_name="pipe_sla",
    openapi_extra=examples.documented((200, examples.SLA)),
    tags=["pipes"],
    summary="The SLA report of a month",
    description="As the governance page shows it: for the pipe's admins and the organization's owners.",
)
def pipe_sla(request: HttpRequest, pipe_id: PipeId, query: Query[SlaQuery]):
    try:
        pipe, access = request.auth.pipe(pipe_id)
    except PermissionDenied:
        access = None
    if access is None or not access.can_administer:
        raise PermissionDenied(_("Only admins of this pipe may open its governance pages."))
    tz = zoneinfo.ZoneInfo(pipe.organization.time_zone)
    month = query.month or timezone.now().astimezone(tz).strftime("%Y-%m")
    try:
        report = sla_report(pipe=pipe, month=month)
    except MonthError as exc:
        raise ApiInputError("month", str(exc)) from None
    title_of = title_shown(pipe=pipe, can_view_pii=access.can_view_pii)
    e2e = report.end_to_end
    return {
        "pipe_id": pipe.pk,
        "month": report.month_label,
        "as_of": report.as_of,
        "phases": [
            {
                "phase": f.phase.key,
                "name": f.phase.name,
                "sla_hours": f.sla_hours,
                "stays": f.stays,
                "met": f.met,
                "open_over": f.open_over,
                "median_seconds": f.median,
                "p90_seconds": f.p90,
            }
            for f in report.phases
        ],
        "end_to_end": {
            "finished": e2e.finished,
            "within_deadline": e2e.within_deadline,
            "every_phase_met": e2e.every_phase_met,
            "median_seconds": e2e.median,
            "p90_seconds": e2e.p90,
            "deadline_days": e2e.deadline_days,
        },
        "late": [
            {
                "card_id": stay.card_id,
                "reference": stay.reference,
                "title": title_of(stay.title),
                "phase": stay.phase.key,
                "entered_at": stay.entered_at,
                "left_at": stay.left_at,
                "over_seconds": stay.over,
            }
            for stay in report.late
        ],
        "late_total": report.late_total,
    }


# ---------------------------------------------------------------- review tasks


def review_out(task: ReviewTask, title: str) -> dict:
    return {
        "id": task.pk,
        "card_id": task.card_id,
        "pipe_id": task.pipe_id,
        "card_reference": task.card.reference,
        "card_title": title,
        "step": task.run.step_name,
        "question": task.question,
        "status": task.status,
        "allowed_decisions": list(task.allowed_decisions or []),
        "assignee_id": task.assignee_id,
        "created_at": task.created_at,
        "decided_at": task.decided_at,
        "decision": task.decision,
    }


class ReviewQuery(Schema):
    view: str = SchemaField(
        "waiting",
        pattern=r"^(waiting|open|overdue|decided)$",
        description="waiting (for me, the default), open, overdue or decided (by me): the inbox's tabs.",
        json_schema_extra={"example": "waiting"},
    )
    pipe: Id | None = SchemaField(
        None, description="Only this pipe's tasks.", json_schema_extra={"example": 7}
    )


@router.get(
    "/reviews",
    response={200: list[ReviewOut], **errors()},
    url_name="reviews",
    openapi_extra=examples.documented((200, [examples.REVIEW])),
    tags=["reviews"],
    summary="The caller's review tasks",
    description="What the inbox lists for the caller (its first 200, most urgent first).",
)
def review_list(request: HttpRequest, query: Query[ReviewQuery]):
    caller = request.auth
    rows = inbox_rows(user=caller.user, filters=InboxFilters(view=query.view, pipe_id=query.pipe))
    return [review_out(row.task, row.title) for row in rows if caller.reaches(row.task.pipe_id)]


def _task_for(request: HttpRequest, task_id: int):
    task, access = task_get_for_user(user=request.auth.user, task_id=task_id)
    request.auth.check_pipe(task.pipe_id)
    return task, access


def _task_title(task: ReviewTask, access) -> str:
    return title_shown(pipe=task.card.pipe, can_view_pii=access.can_view_pii)(task.card.title)


@router.get(
    "/reviews/{task_id}",
    response={200: ReviewOut, **errors()},
    url_name="review",
    openapi_extra=examples.documented((200, examples.REVIEW)),
    tags=["reviews"],
    summary="A review task",
    description="Only reviewers of the task's pipe know it exists (404 for anyone else).",
)
def review_read(request: HttpRequest, task_id: TaskId):
    task, access = _task_for(request, task_id)
    return review_out(task, _task_title(task, access))


@router.post(
    "/reviews/{task_id}/decide",
    response={200: DecisionOut, **errors(403, 409, 422)},
    url_name="review_decide",
    openapi_extra=examples.documented(
        (200, examples.DECISION), request=examples.DECIDE_IN, errors={409: examples.DECIDE_409}
    ),
    tags=["reviews"],
    summary="Decide a review",
    description="Through the inbox's rules: four-eyes, never one's own request, the task's assignee, "
    "a comment to reject; approving applies the review's fields through the write path.",
)
@idempotent
def review_decide(request: HttpRequest, task_id: TaskId, payload: DecideIn):
    task, access = _task_for(request, task_id)
    outcome = inbox_decide(
        task=task,
        user=request.auth.user,
        decision=payload.decision,
        comment=payload.comment,
        values=_values_in(payload.values),
    )
    task, access = task_get_for_user(user=request.auth.user, task_id=task_id)
    body = DecisionOut.model_validate(
        {
            "task": review_out(task, _task_title(task, access)),
            "final": outcome.final,
            "approvals": outcome.approvals,
            "approvals_required": outcome.approvals_required,
        }
    ).model_dump(mode="json")
    return _json(body)


# ---------------------------------------------------------------- step runs


def run_out(run: StepRun) -> dict:
    return {
        "id": run.pk,
        "card_id": run.card_id,
        "pipe_id": run.pipe_id,
        "step": run.step_name,
        "requested_mechanism": run.requested_mechanism,
        "mechanism": run.mechanism,
        "routing_reason": run.routing_reason,
        "status": run.status,
        "decision": run.decision,
        "attempts": run.attempts,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "latency_ms": run.latency_ms,
        "model": run.model,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "cost": str(run.cost),
        "currency": run.currency,
        "error": run.error,
    }


def _rail(call):
    try:
        return call()
    except RailForbidden:
        raise PermissionDenied(_("Only members and admins of the pipe see its step runs.")) from None


@router.get(
    "/pipes/{pipe_id}/cards/{card_id}/runs",
    response={200: list[RunOut], **errors(403)},
    url_name="card_runs",
    openapi_extra=examples.documented((200, [examples.RUN])),
    tags=["runs"],
    summary="A card's step runs",
    description="For the pipe's members and admins, as the run page; without the trace (read one run for it).",
)
def card_runs(request: HttpRequest, pipe_id: PipeId, card_id: CardId):
    caller = request.auth
    caller.check_pipe(pipe_id)
    pipe = _rail(lambda: pipe_get_for_costs(user=caller.user, pipe_id=pipe_id))
    access = pipe_access(user=caller.user, pipe=pipe)
    runs = (
        StepRun.objects.filter(pipe=pipe, card_id=card_id)
        .select_related("card", "pipe")
        .order_by("created_at", "pk")
    )
    if not runs.exists() and not pipe.cards.filter(pk=card_id).exists():
        raise Http404
    return [run_out(run_shown(run=run, access=access).run) for run in runs]


@router.get(
    "/runs/{run_id}",
    response={200: RunDetailOut, **errors(403)},
    url_name="run",
    openapi_extra=examples.documented((200, examples.RUN_DETAIL)),
    tags=["runs"],
    summary="A step run with its trace",
    description="Inputs, prompts, outputs, tool calls and decisions; personal data masked for people without view_pii.",
)
def run_read(request: HttpRequest, run_id: RunId):
    caller = request.auth
    pipe_id = StepRun.objects.filter(pk=run_id).values_list("pipe_id", flat=True).first()
    if pipe_id is None:
        raise Http404
    caller.check_pipe(pipe_id)  # before the rail's gate: a pipe outside a token's does not exist for it
    run, access = _rail(lambda: run_get_for_user(user=caller.user, run_id=run_id))
    shown = run_shown(run=run, access=access)
    return {
        **run_out(shown.run),
        "trace": [
            {
                "seq": e.seq,
                "attempt": e.attempt,
                "kind": e.kind,
                "summary": e.summary,
                "data": e.data,
                "created_at": e.created_at,
            }
            for e in shown.events
        ],
    }
