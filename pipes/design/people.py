"""People of a pipe, through the design service: roles given and taken by name, invitations by email,
and the rule that a pipe keeps at least one admin of its own. Same gates as every design change
(pipes.design.services): only the pipe's admins and the organization's owners, only people of its
organization, audited."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import QuerySet
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext as _
from guardian.models import UserObjectPermission

from ..choices import PipeRole
from ..mailbox import mail_queue
from ..models import Membership, Pipe
from ..roles import ROLE_PERMS, pipe_role_grant, pipe_role_revoke
from ..siteaddress import absolute
from .services import SYSTEM, DesignError, _acting, _check_actor, design_model


def design_grant(*, actor: AbstractBaseUser | None, pipe: Pipe, user: AbstractBaseUser, role: str) -> None:
    """Give `user` a role on `pipe`: only its administrators do it, only to people of its organization."""
    if role not in ROLE_PERMS:
        raise DesignError({"role": [_("Choose a role.")]})
    with transaction.atomic(), _acting(actor):
        _check_actor(actor, pipe, design_model(Pipe))
        if (
            actor is not SYSTEM
            and not Membership.objects.filter(organization_id=pipe.organization_id, user=user).exists()
        ):
            raise DesignError({"user": [_("Choose a person of this organization.")]})
        if role != PipeRole.ADMIN:
            _check_not_last_admin(pipe, user)
        pipe_role_grant(pipe=pipe, user=user, role=role)


def design_revoke(*, actor: AbstractBaseUser | None, pipe: Pipe, user: AbstractBaseUser) -> None:
    """Take every role on `pipe` away from `user` (never from its last admin)."""
    with transaction.atomic(), _acting(actor):
        _check_actor(actor, pipe, design_model(Pipe))
        _check_not_last_admin(pipe, user)
        pipe_role_revoke(pipe=pipe, user=user)


def design_invite(
    *, actor: AbstractBaseUser | None, pipe: Pipe, email: str, role: str, name: str = ""
) -> tuple[AbstractBaseUser, bool]:
    """Give `role` on `pipe` to the person at `email`, inviting them when they have no account yet.

    A new person gets an account with no password (nobody can sign in to it) and an email with a
    one-time link to choose one (Django's password-reset tokens: the link dies once a password is
    set, and after PASSWORD_RESET_TIMEOUT). Someone with an account is told of the new role. Either
    way they join the pipe's organization as a member. Returns the person and whether the account
    is new. Who may invite is who may grant: the pipe's admins and the organization's owners."""
    email = (email or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise DesignError({"email": [_("Enter an email address such as ana@example.com.")]}) from None
    if role not in ROLE_PERMS:
        raise DesignError({"role": [_("Choose a role.")]})
    User = get_user_model()
    with transaction.atomic(), _acting(actor):
        _check_actor(actor, pipe, design_model(Pipe))
        found = list(User.objects.filter(email__iexact=email)[:2])
        if len(found) > 1:
            raise DesignError(
                {"email": [_("Several accounts use this address: pick the person from the list.")]}
            )
        user = found[0] if found else None
        if user is not None and not user.is_active:
            raise DesignError({"email": [_("This person's account is deactivated: ask an administrator.")]})
        created = user is None
        if created:
            user = User(username=_free_username(email), email=email.lower(), first_name=name.strip()[:150])
            user.set_unusable_password()
            user.save()
        Membership.objects.get_or_create(organization_id=pipe.organization_id, user=user)
        design_grant(actor=actor, pipe=pipe, user=user, role=role)
        inviter = _name_of(actor)
        transaction.on_commit(lambda: _send_invitation(user=user, pipe=pipe, role=role, inviter=inviter))
    return user, created


def _free_username(email: str) -> str:
    User = get_user_model()
    base = "".join(c for c in email.split("@")[0].lower() if c.isalnum() or c in "._-")[:140] or "user"
    name, n = base, 1
    while User.objects.filter(username__iexact=name).exists():
        n += 1
        name = f"{base}{n}"
    return name


def _name_of(actor) -> str:
    if actor is SYSTEM or actor is None:
        return "Trilho"
    return actor.get_full_name() or actor.get_username()


def invitation_pending(user: AbstractBaseUser) -> bool:
    """The person was invited and has not chosen a password yet."""
    return not user.has_usable_password() and user.last_login is None


def _send_invitation(*, user: AbstractBaseUser, pipe: Pipe, role: str, inviter: str) -> None:
    """The email telling `user` of their role: with a link to choose a password when they have none."""
    context = {
        "inviter": inviter,
        "role": PipeRole(role).label,
        "pipe": pipe.name,
        "organization": pipe.organization.name,
        "username": user.get_username(),
    }
    if invitation_pending(user):
        uid = urlsafe_base64_encode(force_bytes(user.pk))
        token = default_token_generator.make_token(user)
        context["link"] = absolute(reverse("set_password", args=[uid, token]))
        subject = _("%(inviter)s invited you to %(pipe)s on Trilho") % context
        body = (
            _(
                "Hello,\n\n%(inviter)s gave you the role “%(role)s” on the process “%(pipe)s” of %(organization)s.\n\n"
                "Choose your password to sign in (the link works once, for a few days):\n%(link)s\n\n"
                "Your user name is %(username)s.\n"
            )
            % context
        )
    else:
        context["link"] = absolute("/")
        subject = _("You now have a role on %(pipe)s") % context
        body = (
            _(
                "Hello,\n\n%(inviter)s gave you the role “%(role)s” on the process “%(pipe)s” of %(organization)s.\n\n"
                "Sign in as %(username)s to start:\n%(link)s\n"
            )
            % context
        )
    mail_queue(
        organization_id=pipe.organization_id, to=[user.email], subject=subject, body=body
    )  # sent by a worker once the grant commits


def pipe_admins(pipe: Pipe) -> QuerySet:
    """People holding the admin role on `pipe` itself (the organization's owners not counted)."""
    granted = UserObjectPermission.objects.filter(
        permission__codename="administer_pipe",
        content_type__app_label="pipes",
        content_type__model="pipe",
        object_pk=str(pipe.pk),
    ).values("user_id")
    return get_user_model().objects.filter(pk__in=granted, is_active=True)


def _check_not_last_admin(pipe: Pipe, user: AbstractBaseUser) -> None:
    """A pipe that has admins of its own keeps at least one: the people who run it day to day must
    not vanish by a slip (owners administer every pipe, but are not the pipe's own people)."""
    Pipe.objects.select_for_update().filter(pk=pipe.pk).first()  # two admins removing each other wait
    ids = set(pipe_admins(pipe).values_list("pk", flat=True))
    if user.pk in ids and len(ids) == 1:
        raise DesignError(
            {
                "user": [
                    _("%(person)s is the last admin of this pipe: make someone else admin first.")
                    % {"person": user.get_full_name() or user.get_username()}
                ]
            }
        )
