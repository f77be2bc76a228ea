"""What the designer's editing views share: the pipe's board fragment, the HTMX answer that swaps it,
and the checker's messages told with names instead of definition paths."""

from __future__ import annotations

import copy
import json
import re
from contextlib import contextmanager

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import gettext as _

from ..choices import FieldType
from ..design import DesignError
from ..design.services import design_delete
from ..models import Field, Phase, Pipe
from .preview import start_form_preview
from .selectors import design_overview

DESIGN_CHANGED = "designChanged"  # the event each save sends (HX-Trigger): the preview listens to it

# The palette: every field type, grouped as a person looks for them.
PALETTE = (
    (
        "text",
        (FieldType.SHORT_TEXT, FieldType.LONG_TEXT, FieldType.EMAIL, FieldType.PHONE),
    ),
    ("numbers", (FieldType.NUMBER, FieldType.CURRENCY, FieldType.PERCENTAGE)),
    ("dates", (FieldType.DATE, FieldType.DATETIME, FieldType.DUE_DATE)),
    (
        "choices",
        (FieldType.SELECT, FieldType.MULTI_SELECT, FieldType.CHECKBOX, FieldType.CHECKLIST),
    ),
    ("other", (FieldType.ATTACHMENT, FieldType.ASSIGNEE, FieldType.LABEL, FieldType.CONNECTION)),
)
TYPE_ICONS = {
    FieldType.SHORT_TEXT: "Aa",
    FieldType.LONG_TEXT: "¶",
    FieldType.EMAIL: "@",
    FieldType.PHONE: "☎",
    FieldType.NUMBER: "#",
    FieldType.CURRENCY: "$",
    FieldType.PERCENTAGE: "%",
    FieldType.DATE: "▦",
    FieldType.DATETIME: "◷",
    FieldType.DUE_DATE: "⚑",
    FieldType.SELECT: "▾",
    FieldType.MULTI_SELECT: "☷",
    FieldType.CHECKBOX: "▣",
    FieldType.CHECKLIST: "✓",
    FieldType.ATTACHMENT: "▤",
    FieldType.ASSIGNEE: "☻",
    FieldType.LABEL: "◆",
    FieldType.CONNECTION: "⇄",
}


def palette() -> list[tuple[str, list[tuple[str, str, str]]]]:
    names = dict(FieldType.choices)
    groups = {
        "text": _("Text"),
        "numbers": _("Numbers"),
        "dates": _("Dates"),
        "choices": _("Choices"),
        "other": _("Files, people and links"),
    }
    return [
        (groups[group], [(t.value, str(names[t]), TYPE_ICONS[t]) for t in types]) for group, types in PALETTE
    ]


def board_html(
    request: HttpRequest,
    pipe: Pipe,
    *,
    oob: bool = False,
    errors: list[str] | None = None,
    rename_errors: dict[int, list[str]] | None = None,
    focus: str = "",
) -> str:
    """The phases board of the designer (templates/designer/_board.html)."""
    overview = design_overview(pipe=pipe)
    rename_errors = rename_errors or {}
    for phase in overview.phases:
        phase.rename_errors = rename_errors.get(phase.pk, [])
        for f in phase.designer_fields:
            f.type_icon = TYPE_ICONS.get(f.type, "")
    for f in overview.start_fields:
        f.type_icon = TYPE_ICONS.get(f.type, "")
    return render_to_string(
        "designer/_board.html",
        {
            "pipe": pipe,
            "overview": overview,
            "oob": oob,
            "board_errors": errors or [],
            "focus": focus,
        },
        request=request,
    )


def answer(
    html: str, *, status: int = 200, changed: bool = True, extra: dict | None = None, board: bool = False
) -> HttpResponse:
    """An HTMX answer; `changed` tells the page (and its preview) that the design changed; `board`
    swaps it in place of the board whatever the request targeted (a refusal of an add)."""
    response = HttpResponse(html, status=status)
    if board:
        response["HX-Retarget"] = "#design-board"
        response["HX-Reswap"] = "outerHTML"
    events = dict(extra or {})
    if changed:
        events[DESIGN_CHANGED] = True
    if events:
        response["HX-Trigger"] = json.dumps(events)
    return response


def design_page(request: HttpRequest, pipe: Pipe, *, board: str = "", editor: str = "", status: int = 200):
    """The whole design page: the board (`board`, or drawn afresh), and in the side pane `editor` or,
    without one, the start form's preview. A form posted without HTMX (its native submit) that was
    refused is answered with this page, its errors in the board or the editor."""
    return render(
        request,
        "designer/pipe.html",
        {
            "board": board or board_html(request, pipe),
            "editor": editor,
            "preview": start_form_preview(pipe=pipe),
            "pipe": pipe,
            "nav_active": "designer",
        },
        status=status,
    )


def board_refusal(request: HttpRequest, pipe: Pipe, errors: list[str]) -> HttpResponse:
    """An addition refused: the board with the reasons above it, swapped in place of the board
    whatever the request targeted (HTMX), or in the whole page (a native submit). Status 422."""
    html = board_html(request, pipe, errors=errors)
    if not request.htmx:
        return design_page(request, pipe, board=html, status=422)
    return answer(html, status=422, changed=False, board=True)


def back_to_design(
    request: HttpRequest, pipe: Pipe, message: str, *, phase: Phase | None = None, field: Field | None = None
) -> HttpResponse:
    """After a form posted without HTMX was saved: the design page (303), with `phase` or `field`
    open in the side pane and `message` shown above it.

    The designer's forms post with HTMX; a native submit happens when Enter is pressed in a form
    htmx has not processed yet (just swapped in) or without JavaScript, and must not lose the change."""
    if message:
        messages.success(request, message)
    url = reverse("designer:pipe", args=[pipe.pk])
    if field is not None:
        url += f"?field={field.pk}"
    elif phase is not None:
        url += f"?phase={phase.pk}"
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response


def definition_path(obj: Phase | Field) -> str:
    """Where `obj` is in the pipe's definition, as the checker names it ("phases[1].fields[0]")."""
    phases = list(
        Phase.objects.filter(pipe_id=obj.pipe_id).order_by("position", "id").values_list("pk", flat=True)
    )
    if isinstance(obj, Phase):
        return f"phases[{phases.index(obj.pk)}]" if obj.pk in phases else "phases"
    siblings = list(
        Field.objects.filter(pipe_id=obj.pipe_id, phase_id=obj.phase_id)
        .order_by("position", "id")
        .values_list("pk", flat=True)
    )
    index = siblings.index(obj.pk) if obj.pk in siblings else len(siblings)
    if obj.phase_id is None:
        return f"start_form[{index}]"
    return f"phases[{phases.index(obj.phase_id)}].fields[{index}]"


_PATH = re.compile(r"^(?:start_form\[(\d+)\]|phases\[(\d+)\](?:\.fields\[(\d+)\])?)(?:\.([\w.\[\]]+))?$")


def describer(pipe: Pipe, *, without: Phase | Field | None = None):
    """A function that tells a checker message ("phases[0].final: ...") with names ("Triage: ...").

    `without`: the object a refused deletion was taking away (the checker's paths are of the pipe
    without it, though the rollback has brought it back)."""
    phases = list(Phase.objects.filter(pipe=pipe).order_by("position", "id"))
    fields = list(Field.objects.filter(pipe=pipe).order_by("position", "id"))
    if isinstance(without, Phase):
        phases = [p for p in phases if p.pk != without.pk]
        fields = [f for f in fields if f.phase_id != without.pk]
    elif isinstance(without, Field):
        fields = [f for f in fields if f.pk != without.pk]

    def field_name(phase: Phase | None, index: int) -> str | None:
        own = [f for f in fields if f.phase_id == (phase.pk if phase else None)]
        return own[index].label if index < len(own) else None

    def describe(message: str) -> str:
        where, sep, reason = message.partition(": ")
        match = _PATH.match(where) if sep else None
        if not match:
            return message
        start, phase_i, field_i, rest = match.groups()
        name = None
        if start is not None:
            name = field_name(None, int(start))
        elif phase_i is not None and int(phase_i) < len(phases):
            phase = phases[int(phase_i)]
            name = phase.name if field_i is None else field_name(phase, int(field_i))
        if name is None:
            return message
        return f"“{name}”" + (f" ({rest})" if rest else "") + f": {reason}"

    return describe


def confirmed_delete(*, actor, obj: Phase | Field) -> None:
    """design_delete once the person has seen how many cards it touches and confirmed it."""
    design_delete(actor=actor, obj=obj, confirm=True)


class Refusal(Exception):
    """A design change refused, its messages already told with names."""

    def __init__(self, messages: list[str]):
        self.messages = messages
        super().__init__("; ".join(messages))


@contextmanager
def described(pipe: Pipe, *, without: Phase | Field | None = None):
    """Inside the transaction of a change to several objects: a DesignError becomes a Refusal whose
    messages name phases and fields as they stand in that transaction (the order being tried, not
    the one the rollback brings back)."""
    kept = copy.copy(without)  # its pk, which delete() sets to None
    try:
        yield
    except DesignError as exc:
        raise Refusal([describer(pipe, without=kept)(m) for m in exc.messages]) from exc
