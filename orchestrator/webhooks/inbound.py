"""Inbound webhooks: another system posts JSON; Trilho opens a card, or updates and moves the one it opened.

`inbound_receive` checks the request (the webhook's signature or token), reads the body through the
webhook's mapping (JSON path → field key) and writes through pipes.services as a system actor naming the
webhook, so a card opened or moved here passes the same gates as on the board (start-form required
fields, required fields of the phase left, transitions, WIP limits). With an external id in the body,
the first post opens a card and later ones update and move it (the id is the card's submission key, so
two posts of the same record at once still open one card).

Every refusal is an `InboundRefusal`: an HTTP status and errors naming the field (and the body's path
mapped to it), in the API's JSON error shape.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from pipes.models import Card, Phase
from pipes.services import (
    NON_FIELD,
    Actor,
    CardAlreadySubmittedError,
    CardError,
    card_create,
    card_move,
    card_update_fields,
)

from ..api.errors import STATUS_FOR_CARD_ERROR
from ..models import InboundAuth, InboundWebhook
from .outbound import card_summary
from .paths import MISSING, PathError, mapping_problems, parse_path, path_read
from .signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_problem

MAX_BODY_BYTES = 256 * 1024


@dataclass
class InboundRefusal(Exception):
    """A refused post: the status and [{field, path, message, code}]."""

    status: int
    errors: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict:
        return {"errors": self.errors}


def _error(message: str, *, code: str, field_key: str | None = None, path: str | None = None) -> dict:
    return {"field": field_key, "path": path, "message": str(message), "code": code}


@dataclass
class InboundResult:
    card: Card
    created: bool
    moved: bool

    def body(self) -> dict:
        return {"created": self.created, "moved": self.moved, "card": card_summary(self.card)}


def _check_auth(hook: InboundWebhook, headers: dict[str, str], body: bytes) -> None:
    if hook.auth == InboundAuth.TOKEN:
        given = headers.get("Authorization", "")
        token = given[7:].strip() if given.lower().startswith("bearer ") else ""
        if not token or not hmac.compare_digest(token.encode(), hook.secret.encode()):
            raise InboundRefusal(
                401,
                [
                    _error(
                        _("Send the webhook's secret: Authorization: Bearer …"),
                        code="unauthorized",
                        field_key="Authorization",
                    )
                ],
            )
        return
    problem = signature_problem(
        secret=hook.secret,
        timestamp=headers.get(TIMESTAMP_HEADER),
        given=headers.get(SIGNATURE_HEADER),
        body=body,
    )
    if problem:
        raise InboundRefusal(401, [_error(problem, code="unauthorized", field_key=SIGNATURE_HEADER)])


def _external_key(hook: InboundWebhook, external_id: str) -> str:
    """The card's submission key for an external id (at most 64 characters, whatever the id's length)."""
    return "wh:" + hashlib.sha256(f"{hook.pk}:{external_id}".encode()).hexdigest()[:48]


def _read(hook: InboundWebhook, data: Any) -> tuple[dict[str, Any], dict[str, str], str | None, str | None]:
    """(values by field key, path by field key, external id, phase key) from the body, by the mapping."""
    problems = mapping_problems(hook.mapping, pipe=hook.pipe)
    if problems:
        # The webhook's configuration is wrong, not the body: say which mapping entry.
        raise InboundRefusal(422, [_error(p, code="mapping", field_key="mapping") for p in problems])
    values: dict[str, Any] = {}
    paths: dict[str, str] = {key: path for path, key in hook.mapping.items()}  # to name in errors
    for path, key in hook.mapping.items():
        value = path_read(data, path)
        if value is not MISSING:
            values[key] = value
    external_id = phase_key = None
    for attr, scalar_types in (("external_id_path", (str, int)), ("phase_path", (str,))):
        path = getattr(hook, attr)
        if not path:
            continue
        try:
            parse_path(path)
        except PathError as exc:
            raise InboundRefusal(422, [_error(str(exc), code="mapping", field_key=attr)]) from None
        value = path_read(data, path)
        if value is MISSING or value in ("", None):
            continue
        if isinstance(value, bool) or not isinstance(value, scalar_types) or len(str(value)) > 200:
            raise InboundRefusal(
                400,
                [
                    _error(
                        _("Expected a short text or number here."), code="invalid", field_key=attr, path=path
                    )
                ],
            )
        if attr == "external_id_path":
            external_id = str(value)
        else:
            phase_key = value
    return values, paths, external_id, phase_key


def _card_refusal(exc: CardError, paths: dict[str, str]) -> InboundRefusal:
    status = STATUS_FOR_CARD_ERROR.get(exc.code, 422)
    errors = [
        _error(reason, code=exc.code, field_key=None if key == NON_FIELD else key, path=paths.get(key))
        for key, reasons in exc.errors.items()
        for reason in reasons
    ]
    return InboundRefusal(status, errors)


def inbound_receive(*, key: str, headers: dict[str, str], body: bytes) -> InboundResult:
    """Open, update or move a card from one post to the inbound webhook `key`; raises InboundRefusal."""
    hook = InboundWebhook.objects.select_related("pipe__organization").filter(key=key, is_active=True).first()
    if hook is None:
        raise InboundRefusal(404, [_error(_("No active webhook at this address."), code="not_found")])
    if len(body) > MAX_BODY_BYTES:
        raise InboundRefusal(413, [_error(_("The body is larger than 256 KB."), code="too_large")])
    _check_auth(hook, headers, body)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InboundRefusal(400, [_error(_("The body is not valid JSON."), code="invalid")]) from None
    if _has_nul(data):  # PostgreSQL keeps no NUL character in text or JSON
        raise InboundRefusal(
            400, [_error(_("The request contains a null character, which is not accepted."), code="invalid")]
        )
    values, paths, external_id, phase_key = _read(hook, data)
    pipe = hook.pipe
    actor = Actor.system(_("Webhook: %(name)s") % {"name": hook.name})
    reason = _("Through the inbound webhook “%(name)s”") % {"name": hook.name}
    target = None
    if phase_key is not None:
        target = Phase.objects.filter(pipe=pipe, key=phase_key).first()
        if target is None:
            message = _("%(key)s is not a phase of %(pipe)s.") % {"key": phase_key, "pipe": pipe.name}
            raise InboundRefusal(
                422, [_error(message, code="invalid", field_key="phase_path", path=hook.phase_path)]
            )
    submission_key = _external_key(hook, external_id) if external_id is not None else ""
    card = None
    if submission_key:
        card = (
            Card.objects.select_related("pipe__organization", "phase")
            .filter(pipe=pipe, submission_key=submission_key)
            .first()
        )
    try:
        with transaction.atomic():  # a refused move takes the card it would have opened with it
            card, created, moved = _write(
                actor=actor,
                pipe=pipe,
                card=card,
                values=values,
                target=target,
                reason=reason,
                key=submission_key,
            )
    except CardError as exc:
        raise _card_refusal(exc, paths) from None
    card = Card.objects.select_related("pipe", "phase").get(pk=card.pk)
    return InboundResult(card=card, created=created, moved=moved)


def _write(*, actor, pipe, card, values, target, reason, key) -> tuple[Card, bool, bool]:
    created = moved = False
    if card is None:
        # The start form's fields open the card; the body's other fields are set on it right after.
        start_keys = set(pipe.fields.filter(phase__isnull=True).values_list("key", flat=True))
        opening = {k: v for k, v in values.items() if k in start_keys}
        values = {k: v for k, v in values.items() if k not in start_keys}
        try:
            card = card_create(actor=actor, pipe=pipe, values=opening, reason=reason, submission_key=key)
            created = True
        except CardAlreadySubmittedError as exc:  # the same record, posted twice at once
            card = Card.objects.select_related("pipe__organization", "phase").get(pk=exc.card.pk)
            values = {**opening, **values}
    if values:
        card = card_update_fields(actor=actor, card=card, values=values, reason=reason)
    if target is not None and target.pk != card.phase_id:
        card = card_move(actor=actor, card=card, to_phase=target, reason=reason)
        moved = True
    return card, created, moved


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False
