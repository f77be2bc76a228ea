"""Trilho's REST API, version 1 (django-ninja), mounted at /api/v1/.

The OpenAPI document is at /api/v1/openapi.json and its browsable page at /api/v1/docs (Swagger UI
from ninja's own static files: no CDN, no inline script, within the site's Content-Security-Policy).
"""

import datetime as dt
import json
from typing import Any

from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from ninja import NinjaAPI, Swagger
from ninja.parser import Parser
from ninja.renderers import JSONRenderer
from ninja.responses import NinjaJSONEncoder

from .auth import BrowserSessionAuth, CallerRateThrottle, TokenAuth
from .cards import router as cards_router
from .errors import ApiInputError, install_handlers
from .examples import document_errors
from .process import router as process_router

DESCRIPTION = """
The same process, permissions and gates as Trilho's pages, for programs.

**Authentication.** Send a token made on the *API tokens* page: `Authorization: Bearer trl_…`.
A token acts as its owner, only on the pipes it names, and only reads unless its scope is write.
A signed-in browser may call the API with its session; POSTs then need the `X-CSRFToken` header.

**Errors** are `{"errors": [{"field": …, "message": …, "code": …}]}` with the status the page would
give: 400 unreadable input, 401 no or bad token, 403 not allowed, 404 not found (or private),
409 a conflict (the card changed: send `expected_version`), 422 refused by the process (required
fields, transitions, WIP limits), 429 too many requests (see `Retry-After`).

**Idempotency.** Every POST accepts an `Idempotency-Key` header: a repeat with the same key returns
the first answer and changes nothing; the same key with another body is a 422.

**Rate limit.** Per token (or signed-in person), per minute; 429 with `Retry-After` beyond it.
"""


def _refuse_nul(value: Any) -> None:
    """PostgreSQL keeps no NUL character in text or JSON: refuse it here (400), as pages do for forms."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ApiInputError(None, str(_("The request contains a null character, which is not accepted.")))
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key)
            _refuse_nul(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_nul(item)


class TrilhoParser(Parser):
    """JSON bodies, refused when unreadable or carrying a NUL character."""

    def parse_body(self, request: HttpRequest):
        try:
            data = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            raise ApiInputError(None, str(_("The body is not valid JSON."))) from None
        _refuse_nul(data)
        return data


class TrilhoJSONEncoder(NinjaJSONEncoder):
    """Times to the microsecond, as pydantic's JSON mode writes them (the answers of writes, and the
    answers an Idempotency-Key replays): a card read and the same card written read alike."""

    def default(self, o: Any) -> Any:
        if isinstance(o, dt.datetime):
            text = o.isoformat()
            return text[:-6] + "Z" if text.endswith("+00:00") else text
        return super().default(o)


class TrilhoRenderer(JSONRenderer):
    encoder_class = TrilhoJSONEncoder


class TrilhoAPI(NinjaAPI):
    """ninja's API, whose OpenAPI document describes every error answer (examples.document_errors)."""

    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        return document_errors(super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params))


api = TrilhoAPI(
    title="Trilho API",
    version="1",
    description=DESCRIPTION,
    urls_namespace="api",
    auth=[TokenAuth(), BrowserSessionAuth()],
    throttle=[CallerRateThrottle()],
    parser=TrilhoParser(),
    renderer=TrilhoRenderer(),
    docs=Swagger(settings={"persistAuthorization": False, "tryItOutEnabled": False}),
)
install_handlers(api)
api.add_router("/", process_router)
api.add_router("/", cards_router)
