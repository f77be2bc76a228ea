"""Every refusal of the API as one JSON shape: {"errors": [{"field": ..., "message": ..., "code": ...}]}.

The write path's CardError names each field and reason; the status is the one the board gives for
the same error (pipes' board views: forbidden 403, conflict 409, anything else 422). The rail's
errors follow the inbox (RailPermissionError 403, RailError 409). A request the API cannot read
(wrong types, a missing body) is a 400; a missing or private object a 404.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from django.utils.translation import gettext as _
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError

from orchestrator.rail.services import RailError, RailPermissionError
from pipes.services import NON_FIELD, CardError

# The board's statuses for the write path's error codes (pipes.board.views.STATUS_FOR_ERROR).
STATUS_FOR_CARD_ERROR = {"forbidden": 403, "authority": 403, "conflict": 409, "duplicate": 409}


class ApiInputError(Exception):
    """Input the API refuses before the write path sees it (400), naming the field."""

    def __init__(self, field: str | None, message: str, *, status: int = 400):
        self.field, self.message, self.status = field, message, status
        super().__init__(message)


def error_body(items: Iterable[tuple[str | None, str]], *, code: str) -> dict:
    return {"errors": [{"field": f, "message": str(m), "code": code} for f, m in items]}


def error_response(body: dict, status: int) -> JsonResponse:
    return JsonResponse(body, status=status)


def card_error_response(exc: CardError) -> JsonResponse:
    status = STATUS_FOR_CARD_ERROR.get(exc.code, 422)
    items = [
        (None if key == NON_FIELD else key, reason)
        for key, reasons in exc.errors.items()
        for reason in reasons
    ]
    return error_response(error_body(items, code=exc.code), status)


def response_for(exc: Exception) -> JsonResponse | None:
    """The JSON answer to an exception an endpoint may raise, or None for a bug (left to be a 500)."""
    if isinstance(exc, CardError):
        return card_error_response(exc)
    if isinstance(exc, RailPermissionError):
        return error_response(error_body([(None, exc.message)], code="forbidden"), 403)
    if isinstance(exc, RailError):
        return error_response(error_body([(None, exc.message)], code="conflict"), 409)
    if isinstance(exc, ApiInputError):
        return error_response(error_body([(exc.field, exc.message)], code="invalid"), exc.status)
    if isinstance(exc, Http404):
        return error_response(error_body([(None, _("Not found."))], code="not_found"), 404)
    if isinstance(exc, PermissionDenied):
        message = str(exc) or _("You may not do this.")
        return error_response(error_body([(None, message)], code="forbidden"), 403)
    if isinstance(exc, Throttled):
        response = error_response(
            error_body([(None, _("Too many requests: wait a moment and try again."))], code="rate_limited"),
            429,
        )
        return response
    if isinstance(exc, AuthenticationError):
        message = (
            exc.message
            if exc.message != "Unauthorized"
            else _("Sign in or send a token: Authorization: Bearer trl_…")
        )
        response = error_response(error_body([(None, message)], code="unauthorized"), 401)
        response["WWW-Authenticate"] = 'Bearer realm="trilho"'
        return response
    if isinstance(exc, ValidationError):
        items = []
        for error in exc.errors:
            loc = [str(part) for part in error.get("loc", ())]
            # ("body", "payload", "values") -> "values"; ("query", "q") -> "q"
            names = [p for p in loc[1:] if p not in ("payload", "filters")] or loc
            items.append((".".join(names) or None, error.get("msg", _("Invalid value."))))
        return error_response(error_body(items, code="invalid"), 400)
    if isinstance(exc, HttpError):
        code = {403: "forbidden", 404: "not_found", 405: "not_allowed"}.get(exc.status_code, "invalid")
        return error_response(error_body([(None, str(exc.message))], code=code), exc.status_code)
    return None


def install_handlers(api) -> None:
    """Register response_for with a ninja API for every exception it answers."""

    def handler(request: HttpRequest, exc: Exception):
        response = response_for(exc)
        if response is None:
            raise exc
        return response

    for kind in (
        CardError,
        RailError,
        ApiInputError,
        Http404,
        PermissionDenied,
        HttpError,
        ValidationError,
    ):
        api.add_exception_handler(kind, handler)
