"""The designer's pages for the rail: a pipe's steps (with a dry run against a card), its agents and its
organization's allowed hosts.

Views parse the request, call the design service (pipes.design: design_save / design_delete) and
render; the service decides who may change what (pipe admins and organization owners; owners only
for allowed hosts) and checks the whole pipe. Edits are HTMX posts answered with the editor and,
out of band, the list beside it; a refusal comes back as the form with each message beside its
input and a 422.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Max
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents.models import Agent, AllowedHost, Provider
from pipes.choices import FieldType
from pipes.design import DesignError, DesignPermissionError
from pipes.design.services import design_delete, design_save, design_validate
from pipes.models import Field, Label, Pipe
from pipes.parsing import parse_id

from ..models import Mechanism, Risk, Step, Trigger
from . import selectors as sel
from .agents_form import KNOWN_DECISIONS, AgentForm, HostForm
from .dryrun import dry_run
from .steps_build import (
    LITERAL_MODES,
    Context,
    Errors,
    draft_apply,
    errors_from_design,
    mark_hosts,
    step_path,
)
from .steps_form import (
    ACTION_LABELS,
    CARD_ATTR_LABELS,
    DECISIONS,
    HTTP_METHODS,
    OPERATOR_LABELS,
    VALUE_MODES,
    draft_edit,
    draft_from_post,
    draft_from_step,
    draft_new,
)
from .summaries import step_summary

# ---------------------------------------------------------------- steps


def _form_context(pipe: Pipe) -> Context:
    org_pipes = sel.organization_pipes(pipe=pipe)
    return Context(
        pipe=pipe,
        fields={f.key: f for f in sel.pipe_fields(pipe=pipe)},
        phases={p.key: p for p in pipe.phases.order_by("position", "pk")},
        agents={a.pk: a for a in sel.pipe_agents(pipe=pipe)},
        workers={u.username: u for u in sel.pipe_workers(pipe=pipe)},
        reviewers={u.pk: u for u in sel.pipe_reviewers(pipe=pipe)},
        labels=list(Label.objects.filter(pipe=pipe).order_by("name").values_list("name", flat=True)),
        hosts=sel.allowed_hosts(pipe=pipe),
        pipes={p.slug: p for p in org_pipes},
    )


def _list_context(pipe: Pipe, ctx: Context) -> dict:
    phases = sel.phases_with_steps(pipe=pipe)
    names = {p.key: p.name for p in phases}
    summaries = {s.pk: step_summary(s, ctx.fields, names) for p in phases for s in p.designer_steps}
    return {"phases": phases, "summaries": summaries}


def _editor_context(
    request: HttpRequest,
    *,
    pipe: Pipe,
    ctx: Context,
    draft,
    phase,
    step: Step | None,
    errors: Errors | None = None,
    saved: bool = False,
    card_id: int | None = None,
) -> dict:
    target_fields: dict[str, list[Field]] = {}
    for f in Field.objects.filter(pipe__in=ctx.pipes.values()).select_related("pipe").order_by("position"):
        target_fields.setdefault(f.pipe.slug, []).append(f)
    result = None
    cards = []
    if step is not None and step.pk:
        cards = sel.cards_for_dry_run(pipe=pipe, phase=step.phase)
        card = sel.card_for_dry_run(pipe=pipe, pk=card_id)
        if card is not None:
            result = dry_run(step=step, card=card)
    mark_hosts(draft, ctx)
    if step is not None and step.pk:
        form_url = reverse("rail_design:step_edit", args=[pipe.pk, step.pk])
    else:
        form_url = reverse("rail_design:step_new", args=[pipe.pk])
    return {
        "pipe": pipe,
        "ctx": ctx,
        "form_url": form_url,
        "decision_targets": [
            ("on_approve", _("If approved, move to")),
            ("on_reject", _("If rejected, move to")),
            ("on_done", _("When done, move to")),
        ],
        "draft": draft,
        "phase": phase,
        "step": step,
        "errors": errors or {},
        "saved": saved,
        "fields": list(ctx.fields.values()),
        "connection_fields": [f for f in ctx.fields.values() if f.type == FieldType.CONNECTION],
        "settable_fields": [f for f in ctx.fields.values() if f.type != FieldType.ATTACHMENT],
        "phases_list": list(ctx.phases.values()),
        "agents": list(ctx.agents.values()),
        "workers": list(ctx.workers.values()),
        "reviewers": list(ctx.reviewers.values()),
        "target_fields": target_fields,
        "mechanisms": Mechanism.choices,
        "triggers": Trigger.choices,
        "risks": Risk.choices,
        "operators": list(OPERATOR_LABELS.items()),
        "action_types": list(ACTION_LABELS.items()),
        "value_modes": list(VALUE_MODES.items()),
        "literal_modes": LITERAL_MODES,
        "card_attrs": list(CARD_ATTR_LABELS.items()),
        "http_methods": HTTP_METHODS,
        "decision_words": DECISIONS,
        "owner": sel.owns_organization(user=request.user, pipe=pipe),
        "cards": cards,
        "card_id": card_id,
        "result": result,
    }


def _steps_page(request: HttpRequest, pipe: Pipe, *, editor: dict | None, status: int = 200) -> HttpResponse:
    ctx = editor["ctx"] if editor else _form_context(pipe)
    context = {
        "pipe": pipe,
        "nav_active": "designer",
        "editor": editor,
        **_list_context(pipe, ctx),
        **(editor or {}),
    }
    return render(request, "rail_design/steps.html", context, status=status)


def _editor_response(
    request: HttpRequest, pipe: Pipe, editor: dict, *, status: int = 200, oob_list: bool = False
):
    """The editor (HTMX) with, after a save or a delete, the steps list out of band; else the whole page."""
    if not request.htmx:
        return _steps_page(request, pipe, editor=editor, status=status)
    response = render(request, "rail_design/steps.html#editor", editor, status=status)
    if oob_list:
        listing = render(
            request,
            "rail_design/steps.html#step-list",
            {"pipe": pipe, "oob": True, "current": editor.get("step"), **_list_context(pipe, editor["ctx"])},
        )
        response.content += listing.content
    return response


@login_required
@require_GET
def steps(request: HttpRequest, pipe_id: int) -> HttpResponse:
    """The pipe's phases with their steps; `?step=` opens one in the editor, `&card=` dry-runs it."""
    pipe, _access = sel.pipe_get_for_rail_designer(user=request.user, pk=pipe_id)
    editor = None
    step_id = parse_id(request.GET.get("step"))
    new_phase = parse_id(request.GET.get("new"))
    if step_id:
        step = sel.step_get(pipe=pipe, pk=step_id)
        editor = _editor_context(
            request,
            pipe=pipe,
            ctx=_form_context(pipe),
            draft=draft_from_step(step),
            phase=step.phase,
            step=step,
            card_id=parse_id(request.GET.get("card")),
        )
    elif new_phase:
        phase = sel.phase_get(pipe=pipe, pk=new_phase)
        editor = _editor_context(
            request, pipe=pipe, ctx=_form_context(pipe), draft=draft_new(phase), phase=phase, step=None
        )
    return _steps_page(request, pipe, editor=editor)


def _step_post(request: HttpRequest, pipe: Pipe, *, step: Step, phase) -> HttpResponse:
    ctx = _form_context(pipe)
    stored = Step.objects.filter(pk=step.pk).first() if step.pk else None
    draft = draft_from_post(request.POST, stored=stored)
    op = request.POST.get("_op", "save")
    shown = stored or None

    def editor(errors=None, saved=False):
        return _editor_context(
            request, pipe=pipe, ctx=ctx, draft=draft, phase=phase, step=shown, errors=errors, saved=saved
        )

    if op != "save" and draft_edit(draft, op):
        return _editor_response(request, pipe, editor())
    errors = draft_apply(draft, step, ctx)
    if errors:
        return _editor_response(request, pipe, editor(errors), status=422)
    creating = step.pk is None
    if creating:
        top = Step.objects.filter(phase=phase).aggregate(m=Max("position"))["m"] or 0
        step.position = top + 1
    try:
        design_save(actor=request.user, obj=step)
    except DesignPermissionError:
        raise
    except DesignError as exc:
        if creating:  # the refused save left an id on the object that no row has
            step.pk, step._state.adding = None, True
        errors = errors_from_design(exc.errors, step_path=step_path(step))
        return _editor_response(request, pipe, editor(errors), status=422)
    step = sel.step_get(pipe=pipe, pk=step.pk)
    shown = step
    draft = draft_from_step(step)
    response = _editor_response(request, pipe, editor(saved=True), oob_list=True)
    if creating and request.htmx:
        response["HX-Push-Url"] = reverse("rail_design:steps", args=[pipe.pk]) + f"?step={step.pk}"
    if not request.htmx:
        return HttpResponseRedirect(reverse("rail_design:steps", args=[pipe.pk]) + f"?step={step.pk}")
    return response


@login_required
@require_http_methods(["GET", "POST"])
def step_new(request: HttpRequest, pipe_id: int) -> HttpResponse:
    """A new step for a phase (`phase`): the empty editor, its editing buttons and its save."""
    pipe, _access = sel.pipe_get_for_rail_designer(user=request.user, pk=pipe_id)
    data = request.POST if request.method == "POST" else request.GET
    phase_id = parse_id(data.get("phase"))
    phase = sel.phase_get(pipe=pipe, pk=phase_id) if phase_id else sel.first_phase(pipe=pipe)
    if request.method == "GET":
        ctx = _form_context(pipe)
        editor = _editor_context(request, pipe=pipe, ctx=ctx, draft=draft_new(phase), phase=phase, step=None)
        return _editor_response(request, pipe, editor)
    return _step_post(request, pipe, step=Step(phase=phase), phase=phase)


@login_required
@require_http_methods(["GET", "POST"])
def step_edit(request: HttpRequest, pipe_id: int, step_id: int) -> HttpResponse:
    pipe, _access = sel.pipe_get_for_rail_designer(user=request.user, pk=pipe_id)
    step = sel.step_get(pipe=pipe, pk=step_id)
    if request.method == "GET":
        ctx = _form_context(pipe)
        editor = _editor_context(
            request, pipe=pipe, ctx=ctx, draft=draft_from_step(step), phase=step.phase, step=step
        )
        return _editor_response(request, pipe, editor)
    return _step_post(request, pipe, step=step, phase=step.phase)


@login_required
@require_POST
def step_delete(request: HttpRequest, pipe_id: int, step_id: int) -> HttpResponse:
    pipe, _access = sel.pipe_get_for_rail_designer(user=request.user, pk=pipe_id)
    step = sel.step_get(pipe=pipe, pk=step_id)
    try:
        design_delete(actor=request.user, obj=step)
    except DesignPermissionError:
        raise
    except DesignError as exc:
        ctx = _form_context(pipe)
        editor = _editor_context(
            request,
            pipe=pipe,
            ctx=ctx,
            draft=draft_from_step(step),
            phase=step.phase,
            step=step,
            errors=Errors({"": exc.messages}),
        )
        return _editor_response(request, pipe, editor, status=422)
    url = reverse("rail_design:steps", args=[pipe.pk])
    if not request.htmx:
        return HttpResponseRedirect(url)
    ctx = _form_context(pipe)
    response = render(
        request,
        "rail_design/steps.html#step-list",
        {"pipe": pipe, "oob": True, "deleted": step.name, **_list_context(pipe, ctx)},
    )
    response.content = (
        render(request, "rail_design/steps.html#editor", {"pipe": pipe, "deleted": step.name}).content
        + response.content
    )
    response["HX-Push-Url"] = url
    return response


@login_required
@require_POST
def step_move(request: HttpRequest, pipe_id: int, step_id: int) -> HttpResponse:
    """Run the step earlier or later in its phase (`direction`: up or down): it trades places with its neighbour."""
    pipe, _access = sel.pipe_get_for_rail_designer(user=request.user, pk=pipe_id)
    step = sel.step_get(pipe=pipe, pk=step_id)
    siblings = list(Step.objects.filter(phase=step.phase).order_by("position", "pk"))
    index = next(i for i, s in enumerate(siblings) if s.pk == step.pk)
    other = index - 1 if request.POST.get("direction") == "up" else index + 1
    if 0 <= other < len(siblings):
        siblings[index], siblings[other] = siblings[other], siblings[index]
        with transaction.atomic():
            for position, sibling in enumerate(siblings, start=1):
                if sibling.position != position:
                    sibling.position = position
                    design_save(actor=request.user, obj=sibling, validate=False)
            design_validate(actor=request.user, pipe=pipe)
    if not request.htmx:
        return HttpResponseRedirect(reverse("rail_design:steps", args=[pipe.pk]) + f"?step={step.pk}")
    step = sel.step_get(pipe=pipe, pk=step.pk)
    ctx = _form_context(pipe)
    editor = _editor_context(
        request, pipe=pipe, ctx=ctx, draft=draft_from_step(step), phase=step.phase, step=step
    )
    return _editor_response(request, pipe, editor, oob_list=True)


@login_required
@require_GET
def step_dry_run(request: HttpRequest, pipe_id: int, step_id: int) -> HttpResponse:
    """What the step would do to the chosen card, worked out without changing it."""
    pipe, _access = sel.pipe_get_for_rail_designer(user=request.user, pk=pipe_id)
    step = sel.step_get(pipe=pipe, pk=step_id)
    card_id = parse_id(request.GET.get("card"))
    if not request.htmx:
        url = reverse("rail_design:steps", args=[pipe.pk]) + f"?step={step.pk}"
        return HttpResponseRedirect(url + (f"&card={card_id}" if card_id else ""))
    card = sel.card_for_dry_run(pipe=pipe, pk=card_id)
    if card is None:
        return render(
            request,
            "rail_design/steps.html#dry-run-result",
            {"dry_error": _("Choose a card of this pipe."), "step": step, "pipe": pipe},
            status=422,
        )
    with transaction.atomic():  # one snapshot for the whole dry run
        result = dry_run(step=step, card=card)
    return render(
        request, "rail_design/steps.html#dry-run-result", {"result": result, "step": step, "pipe": pipe}
    )


# ---------------------------------------------------------------- agents


def _agents_page(
    request, pipe: Pipe, *, form: AgentForm | None, agent: Agent | None, status=200, saved=False, refusal=()
):
    context = {
        "refusal": list(refusal),
        "pipe": pipe,
        "nav_active": "designer",
        "agents": sel.pipe_agents(pipe=pipe),
        "form": form,
        "agent": agent,
        "saved": saved,
        "org_currency": pipe.organization.currency,
        "known_decisions": KNOWN_DECISIONS,
        "providers": Provider,
    }
    if request.htmx and form is not None:
        response = render(request, "rail_design/agents.html#agent-editor", context, status=status)
        if saved:
            response.content += render(
                request, "rail_design/agents.html#agent-list", {**context, "oob": True}
            ).content
        return response
    return render(request, "rail_design/agents.html", context, status=status)


@login_required
@require_GET
def agents(request: HttpRequest, pipe_id: int) -> HttpResponse:
    """The pipe's agents; `?agent=` opens one in the editor, `?new=1` a new one."""
    pipe, _access = sel.pipe_get_for_rail_designer(user=request.user, pk=pipe_id)
    agent_id = parse_id(request.GET.get("agent"))
    agent = sel.agent_get(pipe=pipe, pk=agent_id) if agent_id else None
    if agent is None and request.GET.get("new"):
        agent = Agent(pipe=pipe)
    form = AgentForm(pipe=pipe, agent=agent) if agent is not None else None
    return _agents_page(request, pipe, form=form, agent=agent)


def _agent_post(request: HttpRequest, pipe: Pipe, agent: Agent) -> HttpResponse:
    form = AgentForm(request.POST, pipe=pipe, agent=agent)
    if not form.is_valid():
        return _agents_page(request, pipe, form=form, agent=agent if agent.pk else None, status=422)
    creating = agent.pk is None
    try:
        design_save(actor=request.user, obj=form.apply())
    except DesignPermissionError:
        raise
    except DesignError as exc:
        if creating:
            agent.pk, agent._state.adding = None, True
        form.add_design_errors(exc.errors)
        return _agents_page(request, pipe, form=form, agent=agent if not creating else None, status=422)
    agent = sel.agent_get(pipe=pipe, pk=agent.pk)
    if not request.htmx:
        return HttpResponseRedirect(reverse("rail_design:agents", args=[pipe.pk]) + f"?agent={agent.pk}")
    response = _agents_page(request, pipe, form=AgentForm(pipe=pipe, agent=agent), agent=agent, saved=True)
    if creating:
        response["HX-Push-Url"] = reverse("rail_design:agents", args=[pipe.pk]) + f"?agent={agent.pk}"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def agent_new(request: HttpRequest, pipe_id: int) -> HttpResponse:
    pipe, _access = sel.pipe_get_for_rail_designer(user=request.user, pk=pipe_id)
    agent = Agent(pipe=pipe, provider=Provider.OLLAMA)
    if request.method == "GET":
        return _agents_page(request, pipe, form=AgentForm(pipe=pipe, agent=agent), agent=None)
    return _agent_post(request, pipe, agent)


@login_required
@require_http_methods(["GET", "POST"])
def agent_edit(request: HttpRequest, pipe_id: int, agent_id: int) -> HttpResponse:
    pipe, _access = sel.pipe_get_for_rail_designer(user=request.user, pk=pipe_id)
    agent = sel.agent_get(pipe=pipe, pk=agent_id)
    if request.method == "GET":
        return _agents_page(request, pipe, form=AgentForm(pipe=pipe, agent=agent), agent=agent)
    return _agent_post(request, pipe, agent)


@login_required
@require_POST
def agent_delete(request: HttpRequest, pipe_id: int, agent_id: int) -> HttpResponse:
    pipe, _access = sel.pipe_get_for_rail_designer(user=request.user, pk=pipe_id)
    agent = sel.agent_get(pipe=pipe, pk=agent_id)
    used = list(Step.objects.filter(agent=agent).select_related("phase").order_by("phase__position"))
    if used:
        names = ", ".join(f"{s.phase.name}: {s.name}" for s in used)
        refusal = [_("Steps use this agent (%(steps)s): change them first.") % {"steps": names}]
        form = AgentForm(pipe=pipe, agent=agent)
        return _agents_page(request, pipe, form=form, agent=agent, status=409, refusal=refusal)
    try:
        design_delete(actor=request.user, obj=agent)
    except DesignPermissionError:
        raise
    except DesignError as exc:
        form = AgentForm(pipe=pipe, agent=agent)
        return _agents_page(request, pipe, form=form, agent=agent, status=422, refusal=exc.messages)
    url = reverse("rail_design:agents", args=[pipe.pk])
    if request.htmx:
        response = HttpResponse()
        response["HX-Location"] = url
        return response
    return HttpResponseRedirect(url)


# ---------------------------------------------------------------- allowed hosts


def _hosts_page(request, pipe: Pipe, *, form: HostForm, status: int = 200, notice: str = "") -> HttpResponse:
    context = {
        "pipe": pipe,
        "nav_active": "designer",
        "hosts": sel.allowed_hosts(pipe=pipe),
        "form": form,
        "owner": sel.owns_organization(user=request.user, pipe=pipe),
        "notice": notice,
    }
    template = "rail_design/hosts.html#hosts-body" if request.htmx else "rail_design/hosts.html"
    return render(request, template, context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def hosts(request: HttpRequest, pipe_id: int) -> HttpResponse:
    """The hosts the organization's HTTP steps may call: everyone who designs the pipe sees them, its
    owners add them (the design service refuses anyone else)."""
    pipe, _access = sel.pipe_get_for_rail_designer(user=request.user, pk=pipe_id)
    if request.method == "GET":
        return _hosts_page(request, pipe, form=HostForm())
    form = HostForm(request.POST)
    if not form.is_valid():
        return _hosts_page(request, pipe, form=form, status=422)
    host = form.cleaned_data["host"]
    if AllowedHost.objects.filter(organization_id=pipe.organization_id, host=host).exists():
        form.add_error("host", _("%(host)s is allowed already.") % {"host": host})
        return _hosts_page(request, pipe, form=form, status=422)
    try:
        design_save(
            actor=request.user,
            obj=AllowedHost(
                organization=pipe.organization, host=host, note=form.cleaned_data["note"].strip()
            ),
        )
    except DesignPermissionError as exc:
        raise PermissionDenied(str(exc)) from None
    except DesignError as exc:
        for message in exc.messages:
            form.add_error(None, message)
        return _hosts_page(request, pipe, form=form, status=422)
    if not request.htmx:
        return HttpResponseRedirect(reverse("rail_design:hosts", args=[pipe.pk]))
    return _hosts_page(request, pipe, form=HostForm(), notice=_("%(host)s is allowed now.") % {"host": host})


@login_required
@require_POST
def host_delete(request: HttpRequest, pipe_id: int, host_id: int) -> HttpResponse:
    pipe, _access = sel.pipe_get_for_rail_designer(user=request.user, pk=pipe_id)
    host = sel.host_get(pipe=pipe, pk=host_id)
    try:
        design_delete(actor=request.user, obj=host)
    except DesignPermissionError as exc:
        raise PermissionDenied(str(exc)) from None
    if not request.htmx:
        return HttpResponseRedirect(reverse("rail_design:hosts", args=[pipe.pk]))
    return _hosts_page(
        request, pipe, form=HostForm(), notice=_("%(host)s is no longer allowed.") % {"host": host.host}
    )
