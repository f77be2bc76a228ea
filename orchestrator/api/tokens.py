"""API tokens: made, listed, revoked and recognised.

A token is `trl_` and 43 URL-safe characters (32 random bytes). Only its SHA-256 digest is stored,
so the secret is shown once, when it is made. A token acts as its owner and never beyond: every
request still passes the owner's own permission getters and the write path, and the token narrows
that further to its pipes (any other pipe is a 404) and to reading unless its scope is write.

Personal tokens are for a person's own scripts; service tokens are for integrations (an ERP, a
webhook receiver) and need the owner to administer each of their pipes. Anyone may revoke their own
tokens; organization owners see and revoke every token of their organization.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from orchestrator.models import ApiToken, ApiTokenKind, ApiTokenScope
from pipes.choices import OrgRole
from pipes.models import Membership, Organization, Pipe
from pipes.roles import is_org_owner, pipe_access

TOKEN_PREFIX = "trl_"
SHOWN_PREFIX_CHARS = 12  # "trl_" and 8 characters of the secret, enough to tell tokens apart
LAST_USED_EVERY = dt.timedelta(minutes=1)  # last_used_at is written at most this often per token


class TokenError(Exception):
    """A token could not be made or revoked. `errors` maps form fields (or "general") to reasons."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__(" ".join(r for reasons in errors.values() for r in reasons))


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class NewToken:
    """A token just made, with its secret: the only moment the secret exists outside the caller's hands."""

    token: ApiToken
    secret: str


def token_organizations(*, user: AbstractBaseUser) -> QuerySet[Organization]:
    """Organizations `user` may make tokens in: those they belong to."""
    return Organization.objects.filter(memberships__user=user).distinct().order_by("name")


def token_pipe_choices(*, user: AbstractBaseUser, organization: Organization) -> list[Pipe]:
    """The pipes of `organization` a token of `user` could name: those they take part in."""
    pipes = Pipe.objects.filter(organization=organization).select_related("organization").order_by("name")
    return [p for p in pipes if pipe_access(user=user, pipe=p).perms]


def token_create(
    *,
    user: AbstractBaseUser,
    organization: Organization,
    name: str,
    kind: str,
    scope: str,
    pipes: Iterable[Pipe],
) -> NewToken:
    """A new token of `user` in `organization` for `pipes`; raises TokenError naming each problem."""
    name = (name or "").strip()
    pipes = list(pipes)
    errors: dict[str, list[str]] = {}
    if not name:
        errors["name"] = [_("Name the token after what will use it, e.g. “ERP sync”.")]
    elif len(name) > 120:
        errors["name"] = [_("Keep the name under 120 characters.")]
    if kind not in ApiTokenKind.values:
        errors["kind"] = [_("Choose personal or service.")]
    if scope not in ApiTokenScope.values:
        errors["scope"] = [_("Choose read or read and write.")]
    if not Membership.objects.filter(organization=organization, user=user).exists():
        errors["organization"] = [_("You are not a member of this organization.")]
    if not pipes:
        errors["pipes"] = [_("Choose at least one pipe: a token reaches only the pipes it names.")]
    for pipe in pipes:
        access = pipe_access(user=user, pipe=pipe)
        if pipe.organization_id != organization.pk or not access.perms:
            errors.setdefault("pipes", []).append(_("You take no part in %(pipe)s.") % {"pipe": pipe.name})
        elif kind == ApiTokenKind.SERVICE and not access.can_administer:
            errors.setdefault("pipes", []).append(
                _("A service token needs you to administer %(pipe)s.") % {"pipe": pipe.name}
            )
    if errors:
        raise TokenError(errors)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            organization=organization,
            owner=user,
            name=name,
            kind=kind,
            scope=scope,
            prefix=secret[:SHOWN_PREFIX_CHARS],
            secret_hash=token_digest(secret),
        )
        token.pipes.set(pipes)
    return NewToken(token=token, secret=secret)


def tokens_for_user(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """The tokens `user` may see: their own, and every token of the organizations they own."""
    owned = Membership.objects.filter(user=user, role=OrgRole.OWNER).values("organization_id")
    return (
        ApiToken.objects.filter(Q(owner=user) | Q(organization_id__in=owned))
        .select_related("organization", "owner", "revoked_by")
        .prefetch_related("pipes")
    )


def token_get_for_user(*, user: AbstractBaseUser, pk: int) -> ApiToken:
    """The token, if `user` may see it (Http404 otherwise: other people's tokens are private)."""
    from django.http import Http404

    token = tokens_for_user(user=user).filter(pk=pk).first()
    if token is None:
        raise Http404
    return token


def token_revoke(*, user: AbstractBaseUser, token: ApiToken) -> ApiToken:
    """Revoke `token` (its owner, or an owner of its organization); revoking twice changes nothing."""
    if token.owner_id != user.pk and not is_org_owner(user, token.organization_id):
        raise TokenError({"general": [_("Only the token's owner or an organization owner may revoke it.")]})
    if token.revoked_at is None:
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=user
        )
        token.refresh_from_db()
    return token


@dataclass(frozen=True)
class TokenCheck:
    """What a presented secret turned out to be: a usable token (and the ids of its pipes), or the
    reason it is refused."""

    token: ApiToken | None
    refusal: str = ""
    pipe_ids: frozenset[int] = frozenset()


def _token_with_pipes(digest: str) -> tuple[ApiToken | None, frozenset[int]]:
    """The token of `digest` with its owner, organization and pipe ids, in one query.

    Read through the token-pipe rows (one per pipe, each joined to the token): a token names at least
    one pipe when made, so this is one query on every request; a token whose pipes were all deleted
    since is read on its own."""
    rows = list(
        ApiToken.pipes.through.objects.filter(apitoken__secret_hash=digest).select_related(
            "apitoken__owner", "apitoken__organization"
        )
    )
    if rows:
        return rows[0].apitoken, frozenset(row.pipe_id for row in rows)
    token = ApiToken.objects.select_related("owner", "organization").filter(secret_hash=digest).first()
    return token, frozenset()


def token_authenticate(secret: str) -> TokenCheck:
    """The token `secret` names, if it is live and its owner active; notes when it was last used
    (at most once every LAST_USED_EVERY, so a busy integration does not write on every request)."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return TokenCheck(None, _("This is not a Trilho API token."))
    token, pipe_ids = _token_with_pipes(token_digest(secret))
    if token is None:
        return TokenCheck(None, _("Unknown token."))
    if token.revoked_at is not None:
        return TokenCheck(None, _("This token was revoked."))
    if not token.owner.is_active:
        return TokenCheck(None, _("The owner of this token can no longer sign in."))
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return TokenCheck(token, pipe_ids=pipe_ids)
