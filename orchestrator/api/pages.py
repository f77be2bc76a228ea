"""The API tokens page: make a token (its secret shown once), see and revoke tokens.

Everyone sees and revokes their own tokens; organization owners also see and revoke every token of
their organizations. HTMX posts get the page's `tokens-body` region back; plain posts the whole page.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from orchestrator.models import ApiTokenKind, ApiTokenScope
from pipes.models import Pipe
from pipes.parsing import parse_id
from pipes.roles import is_org_owner

from .tokens import (
    TokenError,
    token_create,
    token_get_for_user,
    token_organizations,
    token_pipe_choices,
    token_revoke,
    tokens_for_user,
)


def _context(request: HttpRequest, **extra) -> dict:
    user = request.user
    organizations = list(token_organizations(user=user))
    groups = [(org, token_pipe_choices(user=user, organization=org)) for org in organizations]
    tokens = list(tokens_for_user(user=user).order_by("revoked_at", "-created_at", "-pk"))
    owned = {org.pk for org in organizations if is_org_owner(user, org.pk)}
    return {
        "nav_active": "api_tokens",
        "pipe_groups": [(org, pipes) for org, pipes in groups if pipes],
        "my_tokens": [t for t in tokens if t.owner_id == user.pk],
        "org_tokens": [t for t in tokens if t.owner_id != user.pk],
        "owns_an_organization": bool(owned),
        "kinds": ApiTokenKind.choices,
        "scopes": ApiTokenScope.choices,
        "posted": {},
        "errors": {},
        **extra,
    }


def _render(request: HttpRequest, context: dict, *, status: int = 200) -> HttpResponse:
    template = "api/tokens.html#tokens-body" if request.htmx else "api/tokens.html"
    response = render(request, template, context, status=status)
    response["Cache-Control"] = "no-store, private"  # a new token's secret must not stay in any cache
    return response


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    """GET: the page. POST: make a token and show its secret, this once."""
    if request.method == "GET":
        return _render(request, _context(request))
    pipe_ids = [i for i in (parse_id(v) for v in request.POST.getlist("pipes")) if i]
    pipes = list(Pipe.objects.select_related("organization").filter(pk__in=pipe_ids))
    organization = pipes[0].organization if pipes else token_organizations(user=request.user).first()
    posted = {
        "name": request.POST.get("name", ""),
        "kind": request.POST.get("kind", ApiTokenKind.PERSONAL),
        "scope": request.POST.get("scope", ApiTokenScope.READ),
        "pipes": {p.pk for p in pipes},
    }
    if organization is None:  # a member of no organization: nothing to make a token for
        errors = {"pipes": [_("Choose at least one pipe: a token reaches only the pipes it names.")]}
        return _render(request, _context(request, posted=posted, errors=errors), status=422)
    try:
        new = token_create(
            user=request.user,
            organization=organization,
            name=posted["name"],
            kind=posted["kind"],
            scope=posted["scope"],
            pipes=pipes,
        )
    except TokenError as exc:
        return _render(request, _context(request, posted=posted, errors=exc.errors), status=422)
    return _render(request, _context(request, new_token=new), status=201 if request.htmx else 200)


@login_required
@require_POST
def token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    token = token_get_for_user(user=request.user, pk=token_id)
    try:
        token_revoke(user=request.user, token=token)
    except TokenError as exc:
        raise PermissionDenied(str(exc)) from exc
    if request.htmx:
        return _render(request, _context(request, revoked=token))
    return redirect(reverse("api_tokens:index"))
