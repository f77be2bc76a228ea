"""Board pages: home, the kanban board, the card side panel and the HTMX endpoints behind them.

Every view fetches through the permission-checking getters of pipes.selectors (404 when the
pipe is private to the user, 403 when their role does not allow the action) and writes only
through pipes.services; a CardError is rendered at the card or at the field it names.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .. import notifications, services
from ..choices import FieldType
from ..models import Card, CardFile, Label
from ..parsing import FIRST_DAY, LAST_DAY, parse_id, parse_int, parse_moment
from ..selectors import (
    BoardSchema,
    board_people,
    board_schema,
    card_detail,
    card_get_for_user,
    pipe_get_for_user,
    read_for_write,
    step_run_retry_for_card,
    user_areas,
)
from .selectors import (
    BoardFilters,
    Column,
    ColumnCounts,
    board_columns,
    board_counts,
    card_ids_changed_since,
    card_list_for_board,
    card_tiles,
    cards_changed_since,
    home_pipes,
    tile_from_card,
)

PORTAL_PATH = "/portal/"
INLINE_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
MAX_OFFSET = 10_000_000  # far past any column; a bigger offset is read as the first page
STATUS_FOR_ERROR = {"forbidden": 403, "conflict": 409}


# ---------------------------------------------------------------- helpers


def _filters(request: HttpRequest) -> BoardFilters:
    return BoardFilters.from_query(request.GET, user=request.user)


def _card_url(card: Card, filters: BoardFilters | None = None, **extra: str) -> str:
    url = reverse("card_detail", args=[card.pipe_id, card.pk])
    params = {**(filters.as_params() if filters else {}), **{k: v for k, v in extra.items() if v}}
    return f"{url}?{urlencode(params)}" if params else url


def _tile_html(
    request: HttpRequest, *, schema: BoardSchema, card, filters: BoardFilters, oob: bool = False, **extra
) -> str:
    return render_to_string(
        "pipes/board.html#card",
        {
            "card": card,
            "schema": schema,
            "oob": oob,
            "filters": filters,
            **_tile_context(schema, filters),
            **extra,
        },
        request=request,
    )


def _panel_response(
    request: HttpRequest, *, card: Card, schema: BoardSchema, status: int = 200, focus: str = ""
) -> HttpResponse:
    """The side panel of `card` plus its board tile out of band."""
    card = Card.objects.select_related("phase").get(pk=card.pk)
    card.pipe = schema.pipe
    detail = card_detail(card=card, schema=schema)
    filters = _filters(request)
    html = render_to_string(
        "pipes/card_panel.html",
        {"detail": detail, "schema": schema, "filters": filters, "focus_keys": _focus_keys(focus)},
        request=request,
    )
    tile = card_tiles(schema=schema, ids=[card.pk])
    if tile:
        html += _tile_html(request, schema=schema, card=tile[0], filters=filters, oob=True)
    return HttpResponse(html, status=status)


def _tile_context(schema: BoardSchema, filters: BoardFilters) -> dict:
    """What every tile of a render shares, and the part of its cache key that comes from the viewer and
    the design: a tile shows the key fields' labels and the labels' names and colours, so a change of
    the design (its stamp, which label edits move too) or of the pipe's key fields draws tiles anew."""
    can_move = schema.access.can_work
    pipe = schema.pipe
    key = (
        f"{can_move:d}:{schema.can_view_pii:d}:{get_language()}:{timezone.get_current_timezone_name()}:"
        f"{schema.design_stamp}:{pipe.title_field}:{','.join(pipe.key_fields or [])}:{filters.qs}"
    )
    return {"can_move": can_move, "qs": filters.qs, "move_label": _("Move to…"), "tile_key": key}


def _focus_keys(focus: str) -> list[str]:
    return [k for k in focus.split(",") if k][:20]


def _board_data(schema: BoardSchema) -> dict:
    """What board.js needs to build the "Move to…" menus and messages (rendered with json_script)."""
    return {
        "phases": [
            {
                "id": p.pk,
                "name": p.name,
                "final": p.is_final,
                "allowed": [n.pk for n in p.allowed_next.all()],
            }
            for p in schema.phases
        ],
        "text": {
            "moveTo": _("Move to"),
            "notAllowed": _("Not allowed from this phase"),
            "current": _("Current phase"),
            "failed": _("The move could not be saved. Check your connection and try again."),
            "dismiss": _("Dismiss"),
        },
    }


def _actor(request: HttpRequest) -> services.Actor:
    return services.Actor.for_user(request.user)


def _ids(values: list[str]) -> list[int] | None:
    """The ids a form posted (blanks skipped), or None when one of them can't be an id."""
    ids = [parse_id(v) for v in values if v.strip()]
    return None if None in ids else ids


def _since(raw: str) -> dt.datetime | None:
    """The moment an open board last polled (its "+" may arrive as a space), or None."""
    return parse_moment(raw.replace(" ", "+"), tz=dt.UTC) if raw else None


def _version(request: HttpRequest) -> int | None:
    return parse_int(request.POST.get("expected_version", ""))


# ---------------------------------------------------------------- pages


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if not user_areas(user=request.user).boards:  # someone who only files requests: the portal is home
        return HttpResponseRedirect(reverse("portal:home"))
    groups = home_pipes(user=request.user)
    return render(
        request,
        "pipes/home.html",
        {
            "groups": groups,
            "notifications": notifications.notifications_unread(user=request.user),
            "nav_active": "home",
        },
    )


def _board_page(request: HttpRequest, pipe_id: int, *, card_id: int | None = None) -> HttpResponse:
    try:
        pipe, access = pipe_get_for_user(user=request.user, pk=pipe_id)
    except PermissionDenied:
        if request.htmx:
            raise
        return HttpResponseRedirect(PORTAL_PATH)
    schema = board_schema(pipe=pipe, access=access)
    filters = _filters(request)
    detail = None
    if card_id is not None:
        card = Card.objects.select_related("phase").filter(pk=card_id, pipe=pipe).first()
        if card is None:
            raise Http404
        card.pipe = pipe
        detail = card_detail(card=card, schema=schema)
        notifications.notifications_mark_read(user=request.user, card=card)
        if request.htmx and not request.htmx.boosted:
            return render(
                request,
                "pipes/card_panel.html",
                {
                    "detail": detail,
                    "schema": schema,
                    "filters": filters,
                    "focus_keys": _focus_keys(request.GET.get("focus", "")),
                },
            )
    columns = board_columns(schema=schema, filters=filters)
    return render(
        request,
        "pipes/board.html",
        {
            "pipe": pipe,
            "schema": schema,
            "access": access,
            "columns": columns,
            "filters": filters,
            "people": board_people(pipe=pipe),
            "labels": list(pipe.labels.all()),
            "detail": detail,
            "focus_keys": _focus_keys(request.GET.get("focus", "")),
            "now": schema.now,
            "board_data": _board_data(schema),
            **_tile_context(schema, filters),
            "total_cards": sum(c.counts.total for c in columns),
            "nav_active": "home",
        },
    )


@login_required
@require_GET
def board(request: HttpRequest, pipe_id: int) -> HttpResponse:
    return _board_page(request, pipe_id)


@login_required
@require_GET
def card_detail_view(request: HttpRequest, pipe_id: int, card_id: int) -> HttpResponse:
    """The board with the card's side panel open; an HTMX request gets the panel alone."""
    return _board_page(request, pipe_id, card_id=card_id)


@login_required
@require_GET
def column_more(request: HttpRequest, pipe_id: int, phase_id: int) -> HttpResponse:
    pipe, access = pipe_get_for_user(user=request.user, pk=pipe_id)
    schema = board_schema(pipe=pipe, access=access)
    phase = next((p for p in schema.phases if p.pk == phase_id), None)
    if phase is None:
        raise Http404
    filters = _filters(request)
    offset = parse_int(request.GET.get("offset", ""), high=MAX_OFFSET) or 0
    cards, next_offset = card_list_for_board(schema=schema, phase=phase, filters=filters, offset=offset)
    return render(
        request,
        "pipes/board.html#cards_page",
        {
            "cards": cards,
            "phase": phase,
            "next_offset": next_offset,
            "filters": filters,
            "schema": schema,
            "pipe": pipe,
            **_tile_context(schema, filters),
        },
    )


@login_required
@require_GET
def board_changes(request: HttpRequest, pipe_id: int) -> HttpResponse:
    """Cards changed since `since` (ISO time) and fresh column heads: what open boards poll."""
    pipe, access = pipe_get_for_user(user=request.user, pk=pipe_id)
    since = _since(request.GET.get("since", ""))
    if since is None:
        since = timezone.now() - dt.timedelta(seconds=10)
    until = timezone.now()
    changed = card_ids_changed_since(pipe=pipe, since=since)
    if not changed:  # the usual answer, kept cheap: nothing else is loaded
        html = (
            f'<div class="board-changes" data-until="{(until - dt.timedelta(seconds=2)).isoformat()}"></div>'
        )
        return HttpResponse(html)
    schema = board_schema(pipe=pipe, access=access)
    filters = _filters(request)
    changes = cards_changed_since(schema=schema, filters=filters, since=since, changed=changed)
    return render(
        request,
        "pipes/board_changes.html",
        {
            "changes": changes,
            "schema": schema,
            "filters": filters,
            **_tile_context(schema, filters),
            # Overlap the next window a little: a transaction that was still open may commit late.
            "next_since": (changes.until - dt.timedelta(seconds=2)).isoformat(),
            "columns": [
                Column(phase=p, counts=changes.counts.get(p.pk, ColumnCounts()), cards=[])
                for p in schema.phases
                if changes.counts
            ],
        },
    )


# ---------------------------------------------------------------- moves


@login_required
@require_POST
def card_move(request: HttpRequest, pipe_id: int, card_id: int) -> HttpResponse:
    """Move the card to `to_phase`; the tile in its new column and both column heads, or the tile with the reason."""
    filters = _filters(request)
    error = None
    status = 200
    try:
        # The card read and locked in one statement, then moved in the same transaction.
        with read_for_write():
            card, access = card_get_for_user(
                user=request.user, pk=card_id, pipe_id=pipe_id, write=True, for_update=True
            )
            schema = board_schema(pipe=card.pipe, access=access, transitions=False)
            wanted = request.POST.get("to_phase", "")
            to_phase = next((p for p in schema.phases if str(p.pk) == wanted), None)
            if to_phase is None:
                raise Http404
            source_id = card.phase_id
            card = services.card_move(
                actor=_actor(request), card=card, to_phase=to_phase, expected_version=_version(request)
            )
        tile = [tile_from_card(card, schema=schema)]
    except services.CardError as exc:
        error = exc
        status = STATUS_FOR_ERROR.get(exc.code, 422)
        tile = card_tiles(schema=schema, ids=[card.pk])  # as it is now (a conflict means it changed)
    if not tile:
        raise Http404
    extra = {}
    if error is not None:
        fields_by_key = schema.fields_by_key
        extra = {
            "move_error": error,
            "move_target": to_phase,
            "missing": [(k, fields_by_key[k].label) for k in error.field_keys if k in fields_by_key],
            "focus_url": _card_url(tile[0], filters, focus=",".join(error.field_keys)),
        }
    heads = []
    if error is None:  # both columns' counts change
        counts = board_counts(schema=schema, filters=filters, phase_ids={source_id, to_phase.pk})
        heads = [
            Column(phase=p, counts=counts.get(p.pk, ColumnCounts()), cards=[])
            for p in schema.phases
            if p.pk in (source_id, to_phase.pk)
        ]
    return render(
        request,
        "pipes/board.html#move_result",
        {
            "card": tile[0],
            "schema": schema,
            "filters": filters,
            "heads": heads,
            **_tile_context(schema, filters),
            **extra,
        },
        status=status,
    )


# ---------------------------------------------------------------- card panel writes


def _parse_field_input(request: HttpRequest, f) -> object:
    """What the field form posted, in the shape parse_value expects."""
    if f.type in (FieldType.MULTI_SELECT, FieldType.CHECKLIST, FieldType.ASSIGNEE, FieldType.LABEL):
        return [v for v in request.POST.getlist("value") if v != ""]
    if f.type == FieldType.CHECKBOX:
        return "1" if request.POST.get("value") else "0"
    if f.type == FieldType.CURRENCY:
        return request.POST.get("value", "")
    if f.type == FieldType.CONNECTION:
        return [v.strip().lstrip("#") for v in request.POST.get("value", "").split(",") if v.strip()]
    return request.POST.get("value", "")


@login_required
@require_http_methods(["GET", "POST"])
def card_field(request: HttpRequest, pipe_id: int, card_id: int, key: str) -> HttpResponse:
    """GET: the field's edit form (or its display with ?cancel=1). POST: save it through the write path."""
    write = request.method == "POST" or request.GET.get("cancel") != "1"
    card, access = card_get_for_user(user=request.user, pk=card_id, pipe_id=pipe_id, write=write)
    schema = board_schema(pipe=card.pipe, access=access)
    f = schema.fields_by_key.get(key)
    if f is None:
        raise Http404
    if f.pii and not access.can_view_pii:
        raise PermissionDenied
    if request.method == "GET":
        detail = card_detail(card=card, schema=schema)
        view = next((v for g in detail.groups for v in g.fields if v.field.key == key), None)
        if view is None:
            raise Http404
        template = (
            "pipes/card_panel.html#field"
            if request.GET.get("cancel") == "1"
            else "pipes/card_panel.html#field_form"
        )
        return render(
            request, template, {"fv": view, "detail": detail, "schema": schema, "filters": _filters(request)}
        )
    try:
        if f.type == FieldType.ATTACHMENT:
            uploads = request.FILES.getlist("files")
            if not uploads:
                raise services.CardError({key: [_("Choose a file to attach.")]})
            services.card_attach_files(
                actor=_actor(request),
                card=card,
                uploads=uploads,
                field_key=key,
                expected_version=_version(request),
            )
        else:
            services.card_update_fields(
                actor=_actor(request),
                card=card,
                values={key: _parse_field_input(request, f)},
                expected_version=_version(request),
            )
    except services.CardError as exc:
        if exc.code == "forbidden":
            raise PermissionDenied(exc.message) from exc
        card = Card.objects.select_related("phase").get(pk=card.pk)
        card.pipe = schema.pipe
        detail = card_detail(card=card, schema=schema)
        view = next((v for g in detail.groups for v in g.fields if v.field.key == key), None)
        if view is None:
            raise Http404 from exc
        errors = exc.errors.get(key) or list(exc.errors.get(services.NON_FIELD, [])) or [exc.message]
        response = render(
            request,
            "pipes/card_panel.html#field_form",
            {
                "fv": view,
                "detail": detail,
                "schema": schema,
                "errors": errors,
                "posted": request.POST.getlist("value"),
                "filters": _filters(request),
            },
            status=STATUS_FOR_ERROR.get(exc.code, 422),
        )
        response["HX-Retarget"] = f"#field-{key}"
        response["HX-Reswap"] = "outerHTML"
        return response
    return _panel_response(request, card=card, schema=schema)


def _panel_write(
    request: HttpRequest, pipe_id: int, card_id: int, write, *, work: bool = True
) -> HttpResponse:
    """Run `write(card)` on the card and answer with the refreshed panel, or the panel with the error."""
    card, access = card_get_for_user(user=request.user, pk=card_id, pipe_id=pipe_id, write=work)
    schema = board_schema(pipe=card.pipe, access=access)
    try:
        write(card, schema)
    except services.CardError as exc:
        if exc.code == "forbidden":
            raise PermissionDenied(exc.message) from exc
        response = _panel_response(
            request, card=card, schema=schema, status=STATUS_FOR_ERROR.get(exc.code, 422)
        )
        response["HX-Retarget"] = "#panel"
        response["HX-Reswap"] = "innerHTML"
        response["HX-Trigger"] = _toast(exc.message)
        return response
    return _panel_response(request, card=card, schema=schema)


def _toast(message: str, level: str = "error") -> str:
    import json

    return json.dumps({"toast": {"message": message, "level": level}})


@login_required
@require_POST
def card_assign(request: HttpRequest, pipe_id: int, card_id: int) -> HttpResponse:
    def write(card, schema):
        ids = _ids(request.POST.getlist("assignees"))
        users = get_user_model().objects.filter(pk__in=ids or [])
        if ids is None or len(users) != len(set(ids)):
            raise services.CardError({"assignees": [_("Choose people who take part in this pipe.")]})
        services.card_assign(
            actor=_actor(request), card=card, users=users, expected_version=_version(request)
        )

    return _panel_write(request, pipe_id, card_id, write)


@login_required
@require_POST
def card_labels(request: HttpRequest, pipe_id: int, card_id: int) -> HttpResponse:
    def write(card, schema):
        ids = _ids(request.POST.getlist("labels"))
        labels = list(Label.objects.filter(pk__in=ids or [], pipe_id=pipe_id))
        if ids is None or len(labels) != len(set(ids)):
            raise services.CardError({"labels": [_("Choose labels of this pipe.")]})
        services.card_set_labels(
            actor=_actor(request), card=card, labels=labels, expected_version=_version(request)
        )

    return _panel_write(request, pipe_id, card_id, write)


@login_required
@require_POST
def card_due(request: HttpRequest, pipe_id: int, card_id: int) -> HttpResponse:
    def write(card, schema):
        raw = request.POST.get("due_at", "").strip()
        due_at = None
        if raw:
            due_at = parse_moment(raw, tz=zoneinfo.ZoneInfo(schema.pipe.organization.time_zone))
            if due_at is None:
                message = _("Enter a real date and time between %(first)s and %(last)s as YYYY-MM-DD HH:MM.")
                bounds = {"first": FIRST_DAY.isoformat(), "last": LAST_DAY.isoformat()}
                raise services.CardError({"due_at": [message % bounds]})
        services.card_set_due(
            actor=_actor(request), card=card, due_at=due_at, expected_version=_version(request)
        )

    return _panel_write(request, pipe_id, card_id, write)


@login_required
@require_POST
def card_comment(request: HttpRequest, pipe_id: int, card_id: int) -> HttpResponse:
    """Comment on the card; @username mentions notify those people (in the app and by email)."""
    card, access = card_get_for_user(user=request.user, pk=card_id, pipe_id=pipe_id)
    if not (access.can_work or access.can_review):
        raise PermissionDenied

    def write(card, schema):
        text = request.POST.get("text", "")
        mentioned = notifications.mentioned_users(text=text, people=board_people(pipe=schema.pipe))
        services.card_comment(actor=_actor(request), card=card, text=text, mentions=mentioned)
        notifications.notify_mentions(
            card=card,
            author=request.user,
            users=mentioned,
            text=text.strip(),
            path=reverse("card_detail", args=[card.pipe_id, card.pk]),
            base_url=request.build_absolute_uri("/"),
        )

    return _panel_write(request, pipe_id, card_id, write, work=False)


@login_required
@require_POST
def card_retry(request: HttpRequest, pipe_id: int, card_id: int) -> HttpResponse:
    """Run the card's failed step again (the rail's retry, with its checks); the refreshed panel."""

    def write(card, schema):
        step_run_retry_for_card(card=card, user=request.user)

    response = _panel_write(request, pipe_id, card_id, write)
    if response.status_code == 200:
        response["HX-Trigger"] = _toast(_("The step will run again in a moment."), level="success")
    return response


@login_required
@require_POST
def card_attach(request: HttpRequest, pipe_id: int, card_id: int) -> HttpResponse:
    def write(card, schema):
        uploads = request.FILES.getlist("files")
        if not uploads:
            raise services.CardError({"files": [_("Choose a file to attach.")]})
        services.card_attach_files(actor=_actor(request), card=card, uploads=uploads)

    return _panel_write(request, pipe_id, card_id, write)


@login_required
@require_GET
def card_file(request: HttpRequest, pipe_id: int, card_id: int, file_id: int) -> FileResponse:
    """A card's file, always as a download; images of safe types may be shown inline with ?inline=1."""
    card, access = card_get_for_user(user=request.user, pk=card_id, pipe_id=pipe_id)
    card_file = get_object_or_404(CardFile, pk=file_id, card=card)
    if (
        card_file.field_key
        and not access.can_view_pii
        and card.pipe.fields.filter(key=card_file.field_key, pii=True).exists()
    ):
        raise PermissionDenied
    inline = request.GET.get("inline") == "1" and card_file.content_type in INLINE_IMAGE_TYPES
    content_type = card_file.content_type or "application/octet-stream"
    response = FileResponse(
        card_file.file.open("rb"),
        as_attachment=not inline,
        filename=card_file.name,
        content_type=content_type,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    return response
