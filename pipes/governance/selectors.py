"""Who may govern: the pipes whose governance pages a person may open and the organizations they own."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from ..choices import OrgRole
from ..models import (
    Organization,
    Pipe,
)
from ..roles import pipes_for_user

# ---------------------------------------------------------------- who may govern


def governed_pipes(*, user: AbstractBaseUser) -> QuerySet[Pipe]:
    """Pipes whose governance pages `user` may open: those they administer (owners: all of their orgs)."""
    return (
        pipes_for_user(user, ("administer_pipe",))
        .select_related("organization")
        .prefetch_related("phases")
        .order_by("organization__name", "name")
    )


def owned_organizations(*, user: AbstractBaseUser) -> QuerySet[Organization]:
    if user.is_superuser:
        return Organization.objects.all()
    return Organization.objects.filter(memberships__user=user, memberships__role=OrgRole.OWNER).distinct()
