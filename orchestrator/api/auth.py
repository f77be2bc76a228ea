"""Who is calling the API: a token (Authorization: Bearer trl_...) or the browser's session (with CSRF).

Either way the request gets a `Caller` as `request.auth`: the person whose rights apply (a token's
owner), the pipes a token is limited to, and whether it may write. Every endpoint fetches through
`Caller.pipe`/`Caller.card`, which add the token's limits to the same permission getters the
pages use. Whatever else authenticates by token later (an inbound webhook) can reuse
`caller_for_token`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.http import Http404, HttpRequest
from django.utils.translation import gettext as _
from ninja.errors import AuthenticationError, AuthorizationError
from ninja.security import HttpBearer, SessionAuth
from ninja.throttling import BaseThrottle

from orchestrator.models import ApiToken, ApiTokenKind, ApiTokenScope
from pipes.models import Card, Pipe
from pipes.roles import PipeAccess
from pipes.selectors import card_get_for_user, pipe_get_for_user
from pipes.services import Actor

from .tokens import token_authenticate

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass
class Caller:
    """The person an API request acts as, and the limits of the token it came with (if any)."""

    user: AbstractBaseUser
    token: ApiToken | None = None
    pipe_ids: frozenset[int] | None = None  # None: every pipe the person may see (a session)
    can_write: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Whose rate limit and idempotency keys a request counts against."""
        return f"token:{self.token.pk}" if self.token else f"user:{self.user.pk}"

    @property
    def actor(self) -> Actor:
        return Actor.for_user(self.user)

    @property
    def via(self) -> str:
        """The reason recorded on the card's timeline for a service token's writes ("" otherwise)."""
        if self.token and self.token.kind == ApiTokenKind.SERVICE:
            return _("Through the API (service token “%(name)s”)") % {"name": self.token.name}
        return ""

    def reaches(self, pipe_id: int) -> bool:
        return self.pipe_ids is None or pipe_id in self.pipe_ids

    def check_pipe(self, pipe_id: int) -> None:
        """A pipe outside the token's pipes does not exist for it (404)."""
        if not self.reaches(pipe_id):
            raise Http404

    def pipe(self, pk: int, *, write: bool = False) -> tuple[Pipe, PipeAccess]:
        self.check_pipe(pk)
        return pipe_get_for_user(user=self.user, pk=pk, write=write)

    def card(self, pipe_id: int, pk: int, *, write: bool = False) -> tuple[Card, PipeAccess]:
        self.check_pipe(pipe_id)
        return card_get_for_user(user=self.user, pk=pk, pipe_id=pipe_id, write=write)


def caller_for_token(token: ApiToken, pipe_ids: frozenset[int] | None = None) -> Caller:
    """The caller a token makes; `pipe_ids` when already read with it (token_authenticate), else read here."""
    if pipe_ids is None:
        pipe_ids = frozenset(token.pipes.values_list("pk", flat=True))
    return Caller(
        user=token.owner,
        token=token,
        pipe_ids=pipe_ids,
        can_write=token.scope == ApiTokenScope.WRITE,
    )


def _check_scope(request: HttpRequest, caller: Caller) -> Caller:
    if request.method not in SAFE_METHODS and not caller.can_write:
        raise AuthorizationError(
            message=_("This token may only read; make a read-and-write token to change cards.")
        )
    return caller


class TokenAuth(HttpBearer):
    """`Authorization: Bearer trl_...`. A token that is presented but refused is a 401 with the reason."""

    def authenticate(self, request: HttpRequest, token: str) -> Caller | None:
        check = token_authenticate(token.strip())
        if check.token is None:
            raise AuthenticationError(message=check.refusal)
        return _check_scope(request, caller_for_token(check.token, check.pipe_ids))


class BrowserSessionAuth(SessionAuth):
    """The signed-in browser; unsafe methods need the CSRF token (X-CSRFToken header), as the pages do."""

    def __call__(self, request: HttpRequest) -> Caller | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None  # no session: a plain 401, not a CSRF complaint
        return super().__call__(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> Caller | None:
        if not request.user.is_authenticated or not request.user.is_active:
            return None
        return Caller(user=request.user)


class CallerRateThrottle(BaseThrottle):
    """At most settings.TRILHO_API_RATE_PER_MINUTE requests per token (or person) per clock minute.

    Counted in Django's cache (locmem on a laptop, Redis when configured, shared by every worker);
    a refused request gets 429 with Retry-After: the seconds left in the minute."""

    def allow_request(self, request: HttpRequest) -> bool:
        caller = getattr(request, "auth", None)
        if not isinstance(caller, Caller):
            return True
        limit = settings.TRILHO_API_RATE_PER_MINUTE
        if limit <= 0:
            return True
        window = int(time.time() // 60)
        key = f"api-rate:{caller.key}:{window}"
        if cache.add(key, 1, 61):
            return True
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, 61)
            count = 1
        return count <= limit

    def wait(self) -> float:
        return max(1.0, 60 - time.time() % 60)
