"""Designer views for a pipe's phases: add, rename inline, reorder, edit the settings, delete.

Each view parses the form, calls the design service (design_save / design_delete, as the signed-in
user) and answers with HTMX fragments: the board of phases (swapped, or out of band beside the
editor), with the service's refusals beside the inputs they name. Cards are moved only through
pipes.services.card_move, as the same person, all of them or none.

A form posted without HTMX (Enter in a form htmx has not processed yet, or no JavaScript) is saved the
same way and answered with the design page: a redirect to it with a message, or, when refused, the
whole page with the refusals in the board or the editor.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from ..design import DesignError
from ..design.services import DesignImpact, design_impact, design_save, design_validate
from ..models import Card, Phase
from ..parsing import parse_id
from ..services import Actor, CardError, card_move
from .editing import (
    Refusal,
    answer,
    back_to_design,
    board_html,
    board_refusal,
    confirmed_delete,
    definition_path,
    described,
    describer,
    design_page,
)
from .forms import PHASE_ALIASES, Errors, PhaseEdit, add_design_errors, key_from
from .selectors import phase_card_count, phase_in_use, pipe_get_for_designer


def _phases(pipe) -> list[Phase]:
    return list(Phase.objects.filter(pipe=pipe).order_by("position", "id").prefetch_related("allowed_next"))


def _editor(request: HttpRequest, form: PhaseEdit, *, saved: bool = False) -> str:
    return render_to_string(
        "designer/_phase_editor.html",
        {
            "pipe": form.obj.pipe,
            "phase": form.obj,
            "form": form,
            "errors": form.errors,
            "saved": saved,
            "card_count": phase_card_count(phase=form.obj),
        },
        request=request,
    )


def _form(phase: Phase, data=None) -> PhaseEdit:
    return PhaseEdit(phase=phase, phases=_phases(phase.pipe), key_locked=phase_in_use(phase=phase), data=data)


@login_required
@require_POST
def phase_add(request: HttpRequest, pipe_id: int) -> HttpResponse:
    """Add a phase named by the user, before the final phases; its key comes from the name."""
    pipe, _access = pipe_get_for_designer(user=request.user, pk=pipe_id)
    name = request.POST.get("name", "").strip()
    errors: list[str] = []
    if not name:
        errors.append(_("Give the new phase a name."))
    elif len(name) > 120:
        errors.append(_("A phase name has at most 120 characters."))
    if errors:
        return board_refusal(request, pipe, errors)
    phases = _phases(pipe)
    finals = [p for p in phases if p.is_final]
    place = phases.index(finals[0]) if finals and phases.index(finals[0]) > 0 else len(phases)
    phase = Phase(pipe=pipe, name=name, key=key_from(name, {p.key for p in phases}, "phase"))
    order = [*phases[:place], phase, *phases[place:]]
    try:
        with transaction.atomic(), described(pipe):
            for position, p in enumerate(order, start=1):
                if p.pk is None or p.position != position:
                    p.position = position
                    design_save(actor=request.user, obj=p, validate=False)
            design_validate(actor=request.user, pipe=pipe)
    except Refusal as exc:
        return board_refusal(request, pipe, exc.messages)
    if not request.htmx:
        return back_to_design(request, pipe, _("Phase “%(name)s” added.") % {"name": phase.name}, phase=phase)
    editor = _editor(request, _form(phase), saved=False)
    return answer(editor + board_html(request, pipe, oob=True, focus=f"phase-{phase.pk}"))


@login_required
@require_http_methods(["GET", "POST"])
def phase_edit(request: HttpRequest, pipe_id: int, phase_id: int) -> HttpResponse:
    """The settings of a phase (GET: the editor; POST: save them)."""
    pipe, _access = pipe_get_for_designer(user=request.user, pk=pipe_id)
    phase = get_object_or_404(Phase, pk=phase_id, pipe=pipe)
    if request.method == "GET":
        return answer(_editor(request, _form(phase)), changed=False)
    form = _form(phase, data=request.POST)
    if not form.errors:
        path = definition_path(phase)
        try:
            design_save(actor=request.user, obj=form.obj, m2m=form.m2m)
        except DesignError as exc:
            add_design_errors(form.errors, exc, path=path, aliases=PHASE_ALIASES, describe=describer(pipe))
    if form.errors:
        if not request.htmx:
            return design_page(request, pipe, editor=_editor(request, form), status=422)
        return answer(_editor(request, form), status=422, changed=False)
    fresh = get_object_or_404(Phase, pk=phase.pk)
    if not request.htmx:
        return back_to_design(request, pipe, _("Phase “%(name)s” saved.") % {"name": fresh.name}, phase=fresh)
    return answer(_editor(request, _form(fresh), saved=True) + board_html(request, pipe, oob=True))


@login_required
@require_POST
def phase_rename(request: HttpRequest, pipe_id: int, phase_id: int) -> HttpResponse:
    """Rename a phase from its column's title (the key stays)."""
    pipe, _access = pipe_get_for_designer(user=request.user, pk=pipe_id)
    phase = get_object_or_404(Phase, pk=phase_id, pipe=pipe)
    name = request.POST.get("name", "").strip()
    problems = []
    if not name:
        problems.append(_("Give the phase a name."))
    elif len(name) > 120:
        problems.append(_("A phase name has at most 120 characters."))
    elif name == phase.name:
        # Enter then leaving the input posts twice; the second has nothing to do and swaps nothing,
        # so it can't bring back a board older than a move made meanwhile.
        return HttpResponse(status=204) if request.htmx else back_to_design(request, pipe, "", phase=phase)
    else:
        phase.name = name
        try:
            design_save(actor=request.user, obj=phase)
        except DesignError as exc:
            problems = exc.messages
    if problems:
        html = board_html(request, pipe, rename_errors={phase.pk: problems}, focus=f"rename-{phase.pk}")
        if not request.htmx:
            return design_page(request, pipe, board=html, status=422)
        return answer(html, status=422, changed=False)
    if not request.htmx:
        return back_to_design(request, pipe, _("Phase renamed to “%(name)s”.") % {"name": name}, phase=phase)
    return answer(board_html(request, pipe))


def _ids(raw: str) -> list[int]:
    return [i for i in (parse_id(part) for part in raw.split(",")) if i]


@login_required
@require_POST
def phases_order(request: HttpRequest, pipe_id: int) -> HttpResponse:
    """Put the phases in the order given ("order": their ids, comma-separated), all at once."""
    pipe, _access = pipe_get_for_designer(user=request.user, pk=pipe_id)
    phases = {p.pk: p for p in _phases(pipe)}
    wanted = _ids(request.POST.get("order", ""))
    focus = request.POST.get("focus", "")
    if sorted(wanted) != sorted(phases):
        html = board_html(
            request, pipe, oob=True, errors=[_("The board changed meanwhile; here it is as it is now.")]
        )
        return answer(html, status=409, changed=False)
    try:
        with transaction.atomic(), described(pipe):
            for position, pk in enumerate(wanted, start=1):
                phase = phases[pk]
                if phase.position != position:
                    phase.position = position
                    design_save(actor=request.user, obj=phase, validate=False)
            design_validate(actor=request.user, pipe=pipe)
    except Refusal as exc:
        html = board_html(request, pipe, oob=True, errors=exc.messages, focus=focus)
        return answer(html, status=422, changed=False)
    return answer(board_html(request, pipe, oob=True, focus=focus))


@login_required
@require_http_methods(["GET", "POST"])
def phase_delete(request: HttpRequest, pipe_id: int, phase_id: int) -> HttpResponse:
    """Delete a phase after a confirmation that says how many cards are in it.

    A phase with cards is deleted only once they are elsewhere: the person may move them all to
    another phase here, each through card_move as themselves (so every gate of the process holds:
    allowed next phases, required fields, WIP limits). If any card is refused, none moves and
    nothing is deleted; the refusals are listed."""
    pipe, _access = pipe_get_for_designer(user=request.user, pk=pipe_id)
    phase = get_object_or_404(Phase, pk=phase_id, pipe=pipe)
    others = [p for p in _phases(pipe) if p.pk != phase.pk]
    errors = Errors()
    status = 200
    if request.method == "POST":
        cards = list(Card.objects.filter(phase=phase).order_by("pk"))
        target = None
        if cards:
            target = next((p for p in others if str(p.pk) == request.POST.get("move_to", "")), None)
            if target is None:
                errors.add("move_to", _("Choose where the cards go."))
        if not errors:
            try:
                with transaction.atomic(), described(pipe, without=phase):
                    refused = _move_all(request, cards, target)
                    if refused:
                        for message in refused:
                            errors.add("move_to", message)
                        raise _Refused
                    confirmed_delete(actor=request.user, obj=phase)
            except _Refused:
                pass
            except Refusal as exc:
                for message in exc.messages:
                    errors.add("", message)
        if errors:
            phase = get_object_or_404(Phase, pk=phase_id, pipe=pipe)  # delete() forgot its pk
        else:
            if not request.htmx:
                return back_to_design(request, pipe, _("“%(name)s” was deleted.") % {"name": phase.name})
            html = render_to_string(
                "designer/_deleted.html", {"pipe": pipe, "what": phase.name}, request=request
            )
            return answer(html + board_html(request, pipe, oob=True))
        status = 422
    html = render_to_string(
        "designer/_phase_delete.html",
        {
            "pipe": pipe,
            "phase": phase,
            "others": others,
            "card_count": phase_card_count(phase=phase),
            "history": _history(phase),
            "errors": errors,
            "move_to": request.POST.get("move_to", ""),
        },
        request=request,
    )
    if request.method == "POST" and not request.htmx:
        return design_page(request, pipe, editor=html, status=status)
    return answer(html, status=status, changed=False)


def _history(phase: Phase) -> str:
    """What deleting the phase touches besides the cards in it: cards that went through it, values
    in its fields (the service's own count, told in its words)."""
    impact = design_impact(phase)
    if not (impact.passed or impact.with_values):
        return ""
    return DesignImpact(passed=impact.passed, with_values=impact.with_values).message


class _Refused(Exception):
    pass


def _move_all(request: HttpRequest, cards: list[Card], target: Phase | None) -> list[str]:
    """Move every card to `target` as the signed-in person; the refusals, one line per card."""
    if target is None:
        return []
    actor = Actor.for_user(request.user)
    refused = []
    for card in cards:
        try:
            card_move(actor=actor, card=card, to_phase=target, reason=_("Its phase is being deleted."))
        except CardError as exc:
            refused.append(f"{card.reference} “{card.title}”: {exc.message}")
    return refused


def phase_editor_for(request: HttpRequest, pipe, phase_id: int) -> str:
    """The settings of one of the pipe's phases (for a link that opens them); "" when there is none."""
    phase = Phase.objects.filter(pk=phase_id, pipe=pipe).first()
    return _editor(request, _form(phase)) if phase is not None else ""
