"""Designer views for fields, on the start form and on each phase: add one from the palette, edit it
(label, help, options as a list, validation, settings, flags and a condition built from dropdowns),
reorder, delete; and the start form's live preview.

Each view parses the form (forms.FieldEdit), calls design_save / design_delete as the signed-in
user and answers with HTMX fragments; a save also sends `designChanged`, which refreshes the preview.
A form posted without HTMX (a native submit) is saved the same way and answered with the design page:
a redirect to it with a message, or, when refused, the whole page with the refusals.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ..choices import FieldType
from ..design import DesignError
from ..design.services import design_save, design_validate
from ..fieldtypes import TYPES_WITH_OPTIONS
from ..models import Field, Phase, Pipe
from ..parsing import parse_id
from .editing import (
    TYPE_ICONS,
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
    palette,
)
from .forms import FIELD_ALIASES, Errors, FieldEdit, add_design_errors, key_from, row_for
from .preview import start_form_preview
from .selectors import connectable_pipes, field_card_count, field_in_use, pipe_get_for_designer


def condition_sources(f: Field) -> dict[str, Field]:
    """Fields a condition of `f` may read: the start form's, and those of its phase or earlier ones."""
    fields = Field.objects.filter(pipe_id=f.pipe_id).exclude(pk=f.pk).select_related("phase")
    if f.phase_id is None:
        fields = fields.filter(phase__isnull=True)
    else:
        position = Phase.objects.filter(pk=f.phase_id).values_list("position", flat=True).first() or 0
        fields = fields.filter(Q(phase__isnull=True) | Q(phase__position__lte=position))
    ordered = sorted(fields, key=lambda x: (x.phase.position if x.phase else -1, x.position, x.pk))
    return {x.key: x for x in ordered}


def _form(f: Field, data=None) -> FieldEdit:
    taken = set(Field.objects.filter(pipe_id=f.pipe_id).exclude(pk=f.pk).values_list("key", flat=True))
    return FieldEdit(
        f=f, sources=condition_sources(f), taken_keys=taken, key_locked=field_in_use(field=f), data=data
    )


def _editor(request: HttpRequest, form: FieldEdit, *, saved: bool = False) -> str:
    f = form.obj
    preview = None
    if f.phase_id is None:
        preview = next((pf for pf in start_form_preview(pipe=f.pipe) if pf.field.pk == f.pk), None)
    return render_to_string(
        "designer/_field_editor.html",
        {
            "pipe": f.pipe,
            "f": f,
            "form": form,
            "errors": form.errors,
            "saved": saved,
            "type_label": dict(FieldType.choices).get(f.type, f.type),
            "type_icon": TYPE_ICONS.get(f.type, ""),
            "sources": list(form.sources.values()),
            "connectable": connectable_pipes(pipe=f.pipe) if f.type == FieldType.CONNECTION else [],
            "preview_field": preview,
            "card_count": field_card_count(field=f),
        },
        request=request,
    )


def _field_of(pipe: Pipe, field_id: int) -> Field:
    return get_object_or_404(
        Field.objects.select_related("pipe__organization", "phase"), pk=field_id, pipe=pipe
    )


def _where(pipe: Pipe, raw: str) -> Phase | None:
    """The phase a form names ("start" or empty: the start form); 404 for another pipe's."""
    if raw in ("", "start"):
        return None
    phase = Phase.objects.filter(pk=parse_id(raw) or 0, pipe=pipe).first()
    if phase is None:
        raise Http404(_("No such phase in this pipe."))
    return phase


@login_required
@require_GET
def field_palette(request: HttpRequest, pipe_id: int) -> HttpResponse:
    """The field types to add to the start form or to a phase (?phase=<id> or "start")."""
    pipe, _access = pipe_get_for_designer(user=request.user, pk=pipe_id)
    phase = _where(pipe, request.GET.get("phase", ""))
    html = render_to_string(
        "designer/_palette_pane.html", {"pipe": pipe, "phase": phase, "palette": palette()}, request=request
    )
    return answer(html, changed=False)


@login_required
@require_POST
def field_add(request: HttpRequest, pipe_id: int) -> HttpResponse:
    """Add a field of the chosen type at the end of the start form or of a phase, and open its editor."""
    pipe, _access = pipe_get_for_designer(user=request.user, pk=pipe_id)
    phase = _where(pipe, request.POST.get("phase", ""))
    field_type = request.POST.get("type", "")
    names = dict(FieldType.choices)
    if field_type not in names:
        return board_refusal(request, pipe, [_("Choose a field type from the list.")])
    label = str(names[field_type])
    siblings = Field.objects.filter(pipe=pipe, phase=phase)
    taken = set(Field.objects.filter(pipe=pipe).values_list("key", flat=True))
    f = Field(
        pipe=pipe,
        phase=phase,
        type=field_type,
        label=label,
        key=key_from(label, taken, "field"),
        position=max([x.position for x in siblings] or [0]) + 1,
        options=[_("Option 1"), _("Option 2")] if field_type in TYPES_WITH_OPTIONS else [],
    )
    try:
        design_save(actor=request.user, obj=f)
    except DesignError as exc:
        describe = describer(pipe)
        return board_refusal(request, pipe, [describe(m) for m in exc.messages])
    f = _field_of(pipe, f.pk)
    if not request.htmx:
        return back_to_design(request, pipe, _("Field “%(label)s” added.") % {"label": f.label}, field=f)
    return answer(_editor(request, _form(f)) + board_html(request, pipe, oob=True))


@login_required
@require_http_methods(["GET", "POST"])
def field_edit(request: HttpRequest, pipe_id: int, field_id: int) -> HttpResponse:
    """A field's editor (GET) and its save (POST)."""
    pipe, _access = pipe_get_for_designer(user=request.user, pk=pipe_id)
    f = _field_of(pipe, field_id)
    if request.method == "GET":
        return answer(_editor(request, _form(f)), changed=False)
    form = _form(f, data=request.POST)
    if not form.errors:
        path = definition_path(f)
        try:
            design_save(actor=request.user, obj=form.obj)
        except DesignError as exc:
            add_design_errors(form.errors, exc, path=path, aliases=FIELD_ALIASES, describe=describer(pipe))
    if form.errors:
        if not request.htmx:
            return design_page(request, pipe, editor=_editor(request, form), status=422)
        return answer(_editor(request, form), status=422, changed=False)
    fresh = _field_of(pipe, f.pk)
    if not request.htmx:
        return back_to_design(
            request, pipe, _("Field “%(label)s” saved.") % {"label": fresh.label}, field=fresh
        )
    return answer(_editor(request, _form(fresh), saved=True) + board_html(request, pipe, oob=True))


@login_required
@require_GET
def condition_row(request: HttpRequest, pipe_id: int, field_id: int) -> HttpResponse:
    """One rule of a field's condition, drawn for the field it reads (its operators and value input)."""
    pipe, _access = pipe_get_for_designer(user=request.user, pk=pipe_id)
    f = _field_of(pipe, field_id)
    index = parse_id(request.GET.get("index", "")) or 0
    sources = condition_sources(f)
    key = request.GET.get(f"cond-{index}-field", "") or next(iter(sources), "")
    row = row_for(index, key, request.GET.get(f"cond-{index}-op", ""), sources)
    row.value = request.GET.get(f"cond-{index}-value", "")
    row.values = request.GET.getlist(f"cond-{index}-values")
    html = render_to_string(
        "designer/_condition_row.html",
        {"pipe": pipe, "f": f, "row": row, "sources": list(sources.values())},
        request=request,
    )
    return answer(html, changed=False)


@login_required
@require_POST
def fields_order(request: HttpRequest, pipe_id: int) -> HttpResponse:
    """Put the fields of the start form or of a phase in the order given (their ids, comma-separated)."""
    pipe, _access = pipe_get_for_designer(user=request.user, pk=pipe_id)
    phase = _where(pipe, request.POST.get("phase", ""))
    fields = {f.pk: f for f in Field.objects.filter(pipe=pipe, phase=phase)}
    wanted = [i for i in (parse_id(p) for p in request.POST.get("order", "").split(",")) if i]
    focus = request.POST.get("focus", "")
    if sorted(wanted) != sorted(fields):
        html = board_html(
            request, pipe, oob=True, errors=[_("The board changed meanwhile; here it is as it is now.")]
        )
        return answer(html, status=409, changed=False)
    try:
        with transaction.atomic(), described(pipe):
            for position, pk in enumerate(wanted, start=1):
                if fields[pk].position != position:
                    fields[pk].position = position
                    design_save(actor=request.user, obj=fields[pk], validate=False)
            design_validate(actor=request.user, pipe=pipe)
    except Refusal as exc:
        html = board_html(request, pipe, oob=True, errors=exc.messages, focus=focus)
        return answer(html, status=422, changed=False)
    return answer(board_html(request, pipe, oob=True, focus=focus))


@login_required
@require_http_methods(["GET", "POST"])
def field_delete(request: HttpRequest, pipe_id: int, field_id: int) -> HttpResponse:
    """Delete a field after a confirmation that says how many cards hold a value in it.

    The cards keep their values and timelines (nothing is rewritten); the field only stops being
    asked and shown. The checker refuses a deletion that leaves the process broken (a condition or
    the title reading it), and says which."""
    pipe, _access = pipe_get_for_designer(user=request.user, pk=pipe_id)
    f = _field_of(pipe, field_id)
    errors = Errors()
    status = 200
    if request.method == "POST":
        try:
            with transaction.atomic(), described(pipe, without=f):
                confirmed_delete(actor=request.user, obj=f)
        except Refusal as exc:
            f = _field_of(pipe, field_id)  # delete() forgot its pk; the rollback kept the row
            for message in exc.messages:
                errors.add("", message)
            status = 422
        else:
            if not request.htmx:
                return back_to_design(request, pipe, _("“%(name)s” was deleted.") % {"name": f.label})
            html = render_to_string(
                "designer/_deleted.html", {"pipe": pipe, "what": f.label}, request=request
            )
            return answer(html + board_html(request, pipe, oob=True))
    html = render_to_string(
        "designer/_field_delete.html",
        {"pipe": pipe, "f": f, "card_count": field_card_count(field=f), "errors": errors},
        request=request,
    )
    if request.method == "POST" and not request.htmx:
        return design_page(request, pipe, editor=html, status=status)
    return answer(html, status=status, changed=False)


@login_required
@require_GET
def preview(request: HttpRequest, pipe_id: int) -> HttpResponse:
    """The start form as the requester will see it."""
    pipe, _access = pipe_get_for_designer(user=request.user, pk=pipe_id)
    html = render_to_string(
        "designer/_preview.html", {"pipe": pipe, "preview": start_form_preview(pipe=pipe)}, request=request
    )
    return answer(html, changed=False)


def field_editor_for(request: HttpRequest, pipe: Pipe, field_id: int) -> str:
    """The editor of one of the pipe's fields (for a link that opens it); "" when there is no such field."""
    f = Field.objects.select_related("pipe__organization", "phase").filter(pk=field_id, pipe=pipe).first()
    return _editor(request, _form(f)) if f is not None else ""
