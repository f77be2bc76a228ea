"""Pipe roles as django-guardian object permissions, and the access checks built on them.

A role is a named set of permissions on one pipe. Organization owners hold every
permission on every pipe of their organization. `pipe_access` is computed once per
request and answers the questions views and services ask.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast
from guardian.models import UserObjectPermission
from guardian.shortcuts import assign_perm, get_perms, remove_perm

from .choices import OrgRole, PipeRole
from .models import Membership, Organization, Pipe

ALL_PERMS = ("administer_pipe", "work_pipe", "review_pipe", "request_pipe", "view_pipe", "view_pii")

ROLE_PERMS: dict[str, tuple[str, ...]] = {
    PipeRole.ADMIN: ALL_PERMS,
    PipeRole.MEMBER: ("work_pipe", "request_pipe", "view_pipe", "view_pii"),
    PipeRole.REVIEWER: ("review_pipe", "view_pipe"),
    PipeRole.REQUESTER: ("request_pipe",),
    PipeRole.VIEWER: ("view_pipe",),
}
STAFF_PERMS = ("administer_pipe", "work_pipe", "review_pipe", "view_pipe")  # everyone who sees the board
ROLE_ORDER = [PipeRole.ADMIN, PipeRole.MEMBER, PipeRole.REVIEWER, PipeRole.VIEWER, PipeRole.REQUESTER]


@dataclass(frozen=True)
class PipeAccess:
    """What one user may do on one pipe."""

    perms: frozenset[str]
    is_owner: bool = False

    @property
    def can_administer(self) -> bool:
        return "administer_pipe" in self.perms

    @property
    def can_work(self) -> bool:
        return "work_pipe" in self.perms

    @property
    def can_review(self) -> bool:
        return "review_pipe" in self.perms

    @property
    def can_request(self) -> bool:
        return "request_pipe" in self.perms

    @property
    def can_view_board(self) -> bool:
        return bool(self.perms & {"view_pipe", "work_pipe", "review_pipe", "administer_pipe"})

    @property
    def can_view_pii(self) -> bool:
        return "view_pii" in self.perms

    @property
    def role(self) -> str | None:
        for role in ROLE_ORDER:
            if set(ROLE_PERMS[role]) <= self.perms:
                return role
        return None


NO_ACCESS = PipeAccess(perms=frozenset())


def is_org_owner(user: AbstractBaseUser, organization_id: int) -> bool:
    return Membership.objects.filter(organization_id=organization_id, user=user, role=OrgRole.OWNER).exists()


def pipe_access(*, user: AbstractBaseUser | None, pipe: Pipe) -> PipeAccess:
    """The permissions `user` holds on `pipe` (none for anonymous or inactive users)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return NO_ACCESS
    if user.is_superuser or is_org_owner(user, pipe.organization_id):
        return PipeAccess(perms=frozenset(ALL_PERMS), is_owner=True)
    return PipeAccess(perms=frozenset(get_perms(user, pipe)) & frozenset(ALL_PERMS))


def pipes_for_user(user: AbstractBaseUser, perms: tuple[str, ...] = ALL_PERMS) -> QuerySet[Pipe]:
    """Pipes where `user` holds any of `perms` (all pipes of organizations they own)."""
    if not user.is_authenticated or not user.is_active:
        return Pipe.objects.none()
    if user.is_superuser:
        return Pipe.objects.all()
    granted = UserObjectPermission.objects.filter(
        user=user, permission__codename__in=perms, content_type__app_label="pipes", content_type__model="pipe"
    ).values("object_pk")
    owned = Membership.objects.filter(user=user, role=OrgRole.OWNER).values("organization_id")
    return Pipe.objects.filter(Q(pk__in=_cast_pks(granted)) | Q(organization_id__in=owned))


def _cast_pks(queryset):
    # guardian stores object_pk as text; compare as text on every database.
    return Pipe.objects.annotate(pk_text=Cast("pk", CharField())).filter(pk_text__in=queryset).values("pk")


def organizations_for_user(user: AbstractBaseUser) -> QuerySet[Organization]:
    if user.is_superuser:
        return Organization.objects.all()
    return Organization.objects.filter(memberships__user=user).distinct()


@transaction.atomic
def pipe_role_grant(*, pipe: Pipe, user: AbstractBaseUser, role: str) -> None:
    """Give `user` exactly `role` on `pipe` (replacing any other role), and membership of its organization."""
    if role not in ROLE_PERMS:
        raise ValueError(f"unknown role {role!r}")
    Membership.objects.get_or_create(organization_id=pipe.organization_id, user=user)
    for perm in ALL_PERMS:
        if perm not in ROLE_PERMS[role]:
            remove_perm(perm, user, pipe)
    for perm in ROLE_PERMS[role]:
        assign_perm(perm, user, pipe)
    if role == PipeRole.ADMIN and not user.is_staff:
        # Pipe admins design their process in the Django admin, which needs staff status;
        # what they see there is still limited to the pipes they administer.
        user.is_staff = True
        user.save(update_fields=["is_staff"])


@transaction.atomic
def pipe_role_revoke(*, pipe: Pipe, user: AbstractBaseUser) -> None:
    for perm in ALL_PERMS:
        remove_perm(perm, user, pipe)


def pipe_users_with(pipe: Pipe, perms: str | tuple[str, ...]) -> QuerySet:
    """Active users holding any of `perms` on `pipe`, plus the organization's owners."""
    User = get_user_model()
    perms = (perms,) if isinstance(perms, str) else perms
    granted = UserObjectPermission.objects.filter(
        permission__codename__in=perms,
        content_type__app_label="pipes",
        content_type__model="pipe",
        object_pk=str(pipe.pk),
    ).values("user_id")
    owners = Membership.objects.filter(organization_id=pipe.organization_id, role=OrgRole.OWNER).values(
        "user_id"
    )
    return User.objects.filter(Q(pk__in=granted) | Q(pk__in=owners), is_active=True).order_by(
        "first_name", "username"
    )
