"""Cards through the API: list (filters, cursor pages), read, create, and every write the board offers.

Reads go through the caller's getters (Caller.pipe/Caller.card: the pages' pipe_get_for_user and
card_get_for_user, narrowed to a token's pipes); writes through pipes.services with the caller's
actor, so the API meets the same gates as the board: required fields to leave a phase, allowed
transitions, WIP limits, PII and versions. Values a caller may not see are masked as on the board.
"""

import base64
import datetime as dt
import json

from django.contrib.auth import get_user_model
from django.db.models import Q, prefetch_related_objects
from django.http import Http404, HttpRequest, JsonResponse
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from ninja import Field as SchemaField
from ninja import File, Form, Query, Router, Schema, UploadedFile

from pipes import notifications, services
from pipes.board.selectors import BoardFilters, board_filter_q
from pipes.masking import field_text
from pipes.models import Card, CardFile, Label, Phase, Pipe, card_reference
from pipes.roles import pipe_access
from pipes.selectors import BoardSchema, board_people, board_schema

from . import examples
from .errors import ApiInputError
from .idempotency import idempotent
from .schemas import (
    AssignIn,
    CardCreateIn,
    CardDetailOut,
    CardId,
    CardPage,
    CommentIn,
    CommentOut,
    FieldsIn,
    FileOut,
    Id,
    LabelsIn,
    MoveIn,
    PipeId,
)

router = Router(tags=["cards"])

PAGE_SIZE = 25
MAX_PAGE_SIZE = 100


def errors(*codes: int) -> dict:
    from .schemas import Errors

    return dict.fromkeys((400, 401, 404, 429, *codes), Errors)


# ---------------------------------------------------------------- shapes


def _board_value(value):
    """A JSON value as the board's forms post it (checkbox "1"/"0", lists of texts)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return value


def _values_in(values: dict) -> dict:
    return {key: _board_value(value) for key, value in values.items()}


def card_out(card: Card, schema: BoardSchema) -> dict:
    """The card as `schema`'s viewer may see it."""
    by_key = schema.fields_by_key
    values, masked = {}, []
    for key, value in (card.values or {}).items():
        f = by_key.get(key)
        if f is not None and f.pii and not schema.can_view_pii:
            values[key] = field_text(f, value, can_view_pii=False)
            masked.append(key)
        else:
            values[key] = value
    phase = schema.phases_by_id.get(card.phase_id) or card.phase
    return {
        "id": card.pk,
        "reference": card_reference(schema.pipe.code, card.number, card.pk),
        "pipe_id": card.pipe_id,
        "phase": {"id": phase.pk, "key": phase.key, "name": phase.name},
        "title": schema.title_of(card.title),
        "values": values,
        "masked": masked,
        "assignees": sorted(u.pk for u in card.assignees.all()),
        "labels": sorted(label.pk for label in card.labels.all()),
        "due_at": card.due_at,
        "created_at": card.created_at,
        "updated_at": card.updated_at,
        "phase_entered_at": card.phase_entered_at,
        "finished_at": card.finished_at,
        "late_at": card.late_at,
        "expired_at": card.expired_at,
        "rail_status": card.rail_status,
        "version": card.version,
    }


def _files_out(card: Card, schema: BoardSchema) -> list[dict]:
    pii_keys = {f.key for f in schema.fields if f.pii}
    files = CardFile.objects.filter(card=card).order_by("uploaded_at", "id")
    return [
        FileOut.from_orm(cf).dict() for cf in files if schema.can_view_pii or cf.field_key not in pii_keys
    ]


def card_detail_out(card: Card, schema: BoardSchema) -> dict:
    current = schema.phases_by_id[card.phase_id]
    allowed = list(current.allowed_next.all())
    next_phases = [p for p in schema.phases if p.pk != current.pk and (not allowed or p in allowed)]
    return {
        **card_out(card, schema),
        "files": _files_out(card, schema),
        "next_phases": [{"id": p.pk, "key": p.key, "name": p.name} for p in next_phases],
    }


def _json(body: dict | list, status: int = 200) -> JsonResponse:
    # Dates through pydantic's JSON mode, so a stored answer replays byte for byte.
    return JsonResponse(body, status=status, safe=False, json_dumps_params={"default": str})


def _fresh(card: Card, schema: BoardSchema) -> Card:
    card = Card.objects.select_related("phase").prefetch_related("assignees", "labels").get(pk=card.pk)
    card.pipe = schema.pipe
    return card


def _written(card: Card, schema: BoardSchema) -> Card:
    """The card a write returned, with its assignees and labels read now.

    The write path returns the card row it locked and saved (version, values, phase and times as
    stored), so the answer does not read that row again; only its relations, which a write may have
    set, are read (anything cached before the write is dropped)."""
    card.__dict__.pop("_prefetched_objects_cache", None)
    prefetch_related_objects([card], "assignees", "labels")
    card.pipe = schema.pipe
    return card


def _card_answer(card: Card, schema: BoardSchema, status: int = 200) -> JsonResponse:
    body = CardDetailOut.model_validate(card_detail_out(_written(card, schema), schema)).model_dump(
        mode="json"
    )
    return _json(body, status)


# ---------------------------------------------------------------- list and read


class CardFilters(Schema):
    phase: str | None = SchemaField(
        None, max_length=64, description="A phase key or id.", json_schema_extra={"example": "approval"}
    )
    label: Id | None = SchemaField(None, description="A label id.", json_schema_extra={"example": 3})
    assignee: str | None = SchemaField(
        None, max_length=20, description='A user id, or "me".', json_schema_extra={"example": "me"}
    )
    created_from: dt.date | None = SchemaField(
        None,
        description="Created on or after this day (the organization's time zone).",
        json_schema_extra={"example": "2025-03-01"},
    )
    created_to: dt.date | None = SchemaField(
        None, description="Created on or before this day.", json_schema_extra={"example": "2025-03-31"}
    )
    q: str | None = SchemaField(
        None,
        max_length=100,
        description="Text in the title or text fields (never in masked PII).",
        json_schema_extra={"example": "laptop"},
    )
    cursor: str | None = SchemaField(
        None,
        max_length=200,
        description="next_cursor of the previous page.",
        json_schema_extra={"example": examples.CARD_PAGE["next_cursor"]},
    )
    limit: int = SchemaField(
        PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description="Cards a page.", json_schema_extra={"example": 25}
    )


def _cursor_encode(card: Card) -> str:
    raw = json.dumps([card.created_at.isoformat(), card.pk]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_decode(cursor: str) -> Q:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, pk = json.loads(base64.urlsafe_b64decode(padded.encode()))
        moment = parse_datetime(created)
        if moment is None or not isinstance(pk, int) or isinstance(pk, bool) or moment.tzinfo is None:
            raise ValueError
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ApiInputError("cursor", _("This cursor is not one the API gave.")) from None
    return Q(created_at__lt=moment) | Q(created_at=moment, pk__lt=pk)


def _phase_by_ref(schema: BoardSchema, ref: str, *, field: str, status: int = 422) -> Phase:
    ref = ref.strip()
    for phase in schema.phases:
        if phase.key == ref or str(phase.pk) == ref:
            return phase
    raise ApiInputError(field, _("No phase %(ref)s in this pipe.") % {"ref": ref}, status=status)


@router.get(
    "/pipes/{pipe_id}/cards",
    response={200: CardPage, **errors(403)},
    url_name="cards",
    openapi_extra=examples.documented((200, examples.CARD_PAGE)),
    summary="List cards",
    description="Newest first, 25 a page by default (limit up to 100); follow next_cursor for more. "
    "Filters combine (AND). People who may not see a pipe's board (requesters) get 403.",
)
def card_list(request: HttpRequest, pipe_id: PipeId, filters: Query[CardFilters]):
    caller = request.auth
    pipe, access = caller.pipe(pipe_id)
    schema = board_schema(pipe=pipe, access=access)
    board = BoardFilters.from_query(
        {
            "q": filters.q or "",
            "label": str(filters.label or ""),
            "assignee": filters.assignee or "",
            "created_from": filters.created_from.isoformat() if filters.created_from else "",
            "created_to": filters.created_to.isoformat() if filters.created_to else "",
        },
        user=caller.user,
    )
    cards = Card.objects.filter(pipe=pipe)
    fq = board_filter_q(schema, board)
    if fq is not None:
        cards = cards.filter(fq)
    if filters.phase:
        cards = cards.filter(phase=_phase_by_ref(schema, filters.phase, field="phase", status=400))
    if filters.cursor:
        cards = cards.filter(_cursor_decode(filters.cursor))
    page = list(
        cards.order_by("-created_at", "-pk").prefetch_related("assignees", "labels")[: filters.limit + 1]
    )
    more = len(page) > filters.limit
    page = page[: filters.limit]
    for card in page:
        card.pipe = pipe
    return {
        "items": [card_out(card, schema) for card in page],
        "next_cursor": _cursor_encode(page[-1]) if more else None,
    }


@router.get(
    "/pipes/{pipe_id}/cards/{card_id}",
    response={200: CardDetailOut, **errors(403)},
    url_name="card",
    openapi_extra=examples.documented((200, examples.CARD_DETAIL)),
    summary="Read a card",
)
def card_read(request: HttpRequest, pipe_id: PipeId, card_id: CardId):
    card, access = request.auth.card(pipe_id, card_id)
    schema = board_schema(pipe=card.pipe, access=access)
    return card_detail_out(_fresh(card, schema), schema)


# ---------------------------------------------------------------- create


@router.post(
    "/pipes/{pipe_id}/cards",
    response={201: CardDetailOut, **errors(403, 409, 422)},
    url_name="cards_create",
    openapi_extra=examples.documented(
        (201, {**examples.CARD_DETAIL, "phase": {"id": 11, "key": "triage", "name": "Triage"}}),
        request=examples.CREATE_IN,
    ),
    summary="Open a card",
    description="Files a card in the pipe's first phase from its start-form values, as the portal does: "
    "the same required fields, conditions and WIP limit. Send an Idempotency-Key to make retries safe.",
)
@idempotent
def card_create(request: HttpRequest, pipe_id: PipeId, payload: CardCreateIn):
    caller = request.auth
    caller.check_pipe(pipe_id)
    pipe = Pipe.objects.select_related("organization").filter(pk=pipe_id).first()
    access = pipe_access(user=caller.user, pipe=pipe) if pipe else None
    if pipe is None or not access.perms:
        raise Http404
    # The schema first: the write path then finds the pipe's fields already read (board_schema).
    schema = board_schema(pipe=pipe, access=access)
    card = services.card_create(
        actor=caller.actor,
        pipe=pipe,
        values=_values_in(payload.values),
        title=payload.title,
        reason=caller.via,
    )
    return _card_answer(card, schema, status=201)


# ---------------------------------------------------------------- writes on a card


def _write_target(request: HttpRequest, pipe_id: int, card_id: int, *, work: bool = True):
    card, access = request.auth.card(pipe_id, card_id, write=work)
    return card, board_schema(pipe=card.pipe, access=access)


@router.post(
    "/pipes/{pipe_id}/cards/{card_id}/fields",
    response={200: CardDetailOut, **errors(403, 409, 422)},
    url_name="card_fields",
    openapi_extra=examples.documented((200, examples.CARD_DETAIL), request=examples.FIELDS_IN),
    summary="Update fields",
    description="Sets the given values (an empty string clears one). Every value is parsed by its field's type; "
    "one bad value refuses the whole call and names the field.",
)
@idempotent
def card_fields(request: HttpRequest, pipe_id: PipeId, card_id: CardId, payload: FieldsIn):
    card, schema = _write_target(request, pipe_id, card_id)
    card = services.card_update_fields(
        actor=request.auth.actor,
        card=card,
        values=_values_in(payload.values),
        expected_version=payload.expected_version,
        reason=request.auth.via,
    )
    return _card_answer(card, schema)


@router.post(
    "/pipes/{pipe_id}/cards/{card_id}/move",
    response={200: CardDetailOut, **errors(403, 409, 422)},
    url_name="card_move",
    openapi_extra=examples.documented(
        (200, examples.CARD_DETAIL), request=examples.MOVE_IN, errors={422: examples.TRANSITION_422}
    ),
    summary="Move a card",
    description="Moves the card if the process allows it now: an allowed transition, the required fields of the "
    "phase being left, room under a blocking WIP limit. A refusal names the missing fields (code transition, 422).",
)
@idempotent
def card_move(request: HttpRequest, pipe_id: PipeId, card_id: CardId, payload: MoveIn):
    card, schema = _write_target(request, pipe_id, card_id)
    to_phase = _phase_by_ref(schema, payload.to_phase, field="to_phase")
    reason = " ".join(part for part in (payload.reason.strip(), request.auth.via) if part)
    card = services.card_move(
        actor=request.auth.actor,
        card=card,
        to_phase=to_phase,
        expected_version=payload.expected_version,
        reason=reason,
    )
    return _card_answer(card, schema)


@router.post(
    "/pipes/{pipe_id}/cards/{card_id}/assign",
    response={200: CardDetailOut, **errors(403, 409, 422)},
    url_name="card_assign",
    openapi_extra=examples.documented((200, examples.CARD_DETAIL), request=examples.ASSIGN_IN),
    summary="Set the assignees",
)
@idempotent
def card_assign(request: HttpRequest, pipe_id: PipeId, card_id: CardId, payload: AssignIn):
    card, schema = _write_target(request, pipe_id, card_id)
    ids = set(payload.assignees)
    users = list(get_user_model().objects.filter(pk__in=ids))
    if len(users) != len(ids):
        raise services.CardError({"assignees": [_("Choose people who take part in this pipe.")]})
    card = services.card_assign(
        actor=request.auth.actor,
        card=card,
        users=users,
        expected_version=payload.expected_version,
        reason=request.auth.via,
    )
    return _card_answer(card, schema)


@router.post(
    "/pipes/{pipe_id}/cards/{card_id}/labels",
    response={200: CardDetailOut, **errors(403, 409, 422)},
    url_name="card_labels",
    openapi_extra=examples.documented((200, examples.CARD_DETAIL), request=examples.LABELS_IN),
    summary="Set the labels",
)
@idempotent
def card_labels(request: HttpRequest, pipe_id: PipeId, card_id: CardId, payload: LabelsIn):
    card, schema = _write_target(request, pipe_id, card_id)
    ids = set(payload.labels)
    labels = list(Label.objects.filter(pk__in=ids, pipe_id=card.pipe_id))
    if len(labels) != len(ids):
        raise services.CardError({"labels": [_("Choose labels of this pipe.")]})
    card = services.card_set_labels(
        actor=request.auth.actor, card=card, labels=labels, expected_version=payload.expected_version
    )
    return _card_answer(card, schema)


@router.post(
    "/pipes/{pipe_id}/cards/{card_id}/comments",
    response={201: CommentOut, **errors(403, 409, 422)},
    url_name="card_comments",
    openapi_extra=examples.documented((201, examples.COMMENT), request=examples.COMMENT_IN),
    summary="Comment on a card",
    description="Members, admins and reviewers of the pipe may comment. An @username of someone taking part "
    "in the pipe notifies them, in the app and by email, as a comment on the board does.",
)
@idempotent
def card_comment(request: HttpRequest, pipe_id: PipeId, card_id: CardId, payload: CommentIn):
    card, schema = _write_target(request, pipe_id, card_id, work=False)
    if not (schema.access.can_work or schema.access.can_review):
        raise services.CardPermissionError(_("You may not comment on this card."))
    # @username mentions notify those people, as on the board (pipes.board.views.card_comment).
    mentioned = notifications.mentioned_users(text=payload.text, people=board_people(pipe=schema.pipe))
    event = services.card_comment(actor=request.auth.actor, card=card, text=payload.text, mentions=mentioned)
    notifications.notify_mentions(
        card=card,
        author=request.auth.user,
        users=mentioned,
        text=payload.text.strip(),
        path=reverse("card_detail", args=[card.pipe_id, card.pk]),
        base_url=request.build_absolute_uri("/"),
    )
    body = CommentOut(card_id=card.pk, seq=event.seq, created_at=event.created_at).model_dump(mode="json")
    return _json(body, 201)


@router.post(
    "/pipes/{pipe_id}/cards/{card_id}/files",
    response={201: list[FileOut], **errors(403, 409, 422)},
    url_name="card_files",
    openapi_extra=examples.documented(
        (201, [examples.FILE]), request=examples.FILES_IN, content_type="multipart/form-data"
    ),
    summary="Attach files",
    description="multipart/form-data with one or more `files`; with `field_key`, to that attachment field "
    "(its type, size and PII rules apply).",
)
@idempotent
def card_files(
    request: HttpRequest,
    pipe_id: PipeId,
    card_id: CardId,
    files: File[list[UploadedFile]],
    field_key: Form[str] = "",
):
    card, schema = _write_target(request, pipe_id, card_id)
    field_key = field_key.strip()[:64]
    if field_key and field_key not in schema.fields_by_key:
        raise services.CardError({"field_key": [_("No field %(key)s in this pipe.") % {"key": field_key}]})
    stored = services.card_attach_files(
        actor=request.auth.actor, card=card, uploads=files, field_key=field_key
    )
    body = [FileOut.from_orm(cf).model_dump(mode="json") for cf in stored]
    return _json(body, 201)
