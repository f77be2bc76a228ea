"""Designer pages: the template gallery and "start from scratch", YAML import and export, and a
pipe's design page (its editing views are in phases.py and fields.py).

Views parse the request, call the design service (pipes.design: design_import, pipe_export) or a
selector and render. Who may do what is decided by the getters (pipe_get_for_designer: 404 when
the pipe is private to the user, 403 for roles below admin) and by the service (only owners of an
organization create pipes in it); a refusal is rendered in the form, listed by definition path.
"""

from __future__ import annotations

import copy

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from ..design import (
    DefinitionError,
    DesignError,
    DesignPermissionError,
    definition_dump,
    definition_load,
    design_import,
    pipe_export,
    process_template_load,
    process_templates,
)
from ..design.services import designable_organizations
from ..parsing import parse_id
from ..selectors import user_areas
from .editing import design_page
from .fields import field_editor_for
from .phases import phase_editor_for
from .selectors import (
    designed_pipes,
    designer_organizations,
    pipe_get_for_designer,
    template_gallery,
)

SCRATCH = "scratch"
MAX_YAML_BYTES = 512 * 1024
FORM_KEYS = ("organization", "name", "slug", "code")


def _require_designer(request: HttpRequest) -> None:
    if not user_areas(user=request.user).designs:
        raise PermissionDenied(_("Only pipe admins and organization owners use the designer."))


def scratch_definition() -> dict:
    """The smallest useful process: one start field and two phases."""
    return {
        "name": _("New process"),
        "slug": "new-process",
        "code": "NEW",
        "title_field": "title",
        "start_form": [{"key": "title", "label": _("Title"), "type": "short_text", "required": True}],
        "phases": [
            {"key": "doing", "name": _("In progress")},
            {"key": "done", "name": _("Done"), "final": True},
        ],
    }


def _base_definition(template: str) -> dict | None:
    if template == SCRATCH:
        return scratch_definition()
    if template in process_templates():
        return process_template_load(template)
    return None


def _errors_by_path(messages: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Split "<path>: <reason>" messages into those about a form field and the rest (kept whole)."""
    fields: dict[str, list[str]] = {}
    rest: list[str] = []
    for message in messages:
        path, sep, reason = message.partition(": ")
        if sep and path in FORM_KEYS:
            fields.setdefault(path, []).append(reason)
        else:
            rest.append(message)
    return fields, rest


def _create_pipe(request: HttpRequest, *, organization_id: str, definition: dict):
    """design_import the definition in the organization the form names; returns (pipe, errors, status)."""
    org_pk = parse_id(organization_id)
    organization = designable_organizations(request.user).filter(pk=org_pk).first() if org_pk else None
    if organization is None:
        return None, ["organization: " + _("choose one of the organizations you own")], 422
    try:
        pipe = design_import(actor=request.user, organization=organization, definition=definition)
    except DesignPermissionError as exc:
        return None, [f"organization: {m}" for m in exc.messages], 403
    except DefinitionError as exc:
        return None, exc.messages, 422
    except DesignError as exc:
        return None, exc.messages, 422
    return pipe, [], 200


def _created(pipe) -> HttpResponse:
    url = reverse("designer:pipe", args=[pipe.pk])
    response = HttpResponseRedirect(url)
    response["HX-Redirect"] = url
    return response


# ---------------------------------------------------------------- pages


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The designer's home: the template gallery, "start from scratch", import, and the pipes one designs."""
    _require_designer(request)
    return render(
        request,
        "designer/index.html",
        {
            "gallery": template_gallery(),
            "organizations": designer_organizations(user=request.user),
            "pipes": designed_pipes(user=request.user),
            "nav_active": "designer",
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def create(request: HttpRequest) -> HttpResponse:
    """Create a pipe from a template (or from scratch) with the name, slug and code the user gives."""
    _require_designer(request)
    data = request.POST if request.method == "POST" else request.GET
    template = data.get("template", "") or SCRATCH
    base = _base_definition(template)
    if base is None:
        template, base = SCRATCH, scratch_definition()
    organizations = designer_organizations(user=request.user)
    values = {
        "organization": data.get("organization", "")
        or (str(organizations[0].pk) if len(organizations) == 1 else ""),
        "name": data.get("name", base["name"]).strip(),
        "slug": data.get("slug", base["slug"]).strip(),
        "code": data.get("code", base["code"]).strip().upper(),
    }
    errors: list[str] = []
    status = 200
    if request.method == "POST":
        definition = copy.deepcopy(base)
        definition.update(
            name=values["name"], slug=values["slug"] or slugify(values["name"]), code=values["code"]
        )
        pipe, errors, status = _create_pipe(
            request, organization_id=values["organization"], definition=definition
        )
        if pipe is not None:
            return _created(pipe)
    field_errors, other_errors = _errors_by_path(errors)
    return render(
        request,
        "designer/create.html",
        {
            "template": template,
            "template_name": base["name"] if template != SCRATCH else _("Start from scratch"),
            "base": base,
            "organizations": organizations,
            "values": values,
            "field_errors": field_errors,
            "errors": other_errors,
            "nav_active": "designer",
        },
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def import_definition(request: HttpRequest) -> HttpResponse:
    """Create a pipe from an uploaded or pasted YAML definition; every problem is listed by path."""
    _require_designer(request)
    organizations = designer_organizations(user=request.user)
    text = request.POST.get("yaml", "")
    organization = request.POST.get("organization", "") or (
        str(organizations[0].pk) if len(organizations) == 1 else ""
    )
    errors: list[str] = []
    status = 200
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is not None:
            if upload.size > MAX_YAML_BYTES:
                errors, status = ["file: " + _("the file is larger than 512 KB")], 422
            else:
                try:
                    text = upload.read().decode("utf-8")
                except UnicodeDecodeError:
                    errors, status = ["file: " + _("the file is not UTF-8 text")], 422
        if not errors and not text.strip():
            errors, status = ["yaml: " + _("upload a file or paste a definition")], 422
        if not errors:
            try:
                definition = definition_load(text)
            except DefinitionError as exc:
                errors, status = exc.messages, 422
            else:
                pipe, errors, status = _create_pipe(
                    request, organization_id=organization, definition=definition
                )
                if pipe is not None:
                    return _created(pipe)
    return render(
        request,
        "designer/import.html",
        {
            "organizations": organizations,
            "organization": organization,
            "yaml": text,
            "errors": errors,
            "nav_active": "designer",
        },
        status=status,
    )


@login_required
@require_GET
def pipe_design(request: HttpRequest, pipe_id: int) -> HttpResponse:
    """A pipe's phases and fields editor: its start form and phases as columns (the board's look),
    each edited in the side pane, beside a live preview of the start form."""
    pipe, _access = pipe_get_for_designer(user=request.user, pk=pipe_id)
    return design_page(request, pipe, editor=opened_editor(request, pipe))


def opened_editor(request: HttpRequest, pipe) -> str:
    """The editor a link opens in the side pane (?field=<id> or ?phase=<id>), or "" for the preview."""
    field_id, phase_id = parse_id(request.GET.get("field", "")), parse_id(request.GET.get("phase", ""))
    if field_id:
        return field_editor_for(request, pipe, field_id)
    if phase_id:
        return phase_editor_for(request, pipe, phase_id)
    return ""


@login_required
@require_GET
def export_definition(request: HttpRequest, pipe_id: int) -> HttpResponse:
    """The pipe's definition as a YAML download."""
    pipe, _access = pipe_get_for_designer(user=request.user, pk=pipe_id)
    response = HttpResponse(
        definition_dump(pipe_export(pipe)), content_type="application/yaml; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{pipe.slug}.yaml"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
