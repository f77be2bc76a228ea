"""The designer's members page: who takes part in a pipe and with which role, given by its name.

A pipe admin (or an owner of its organization) picks a person of the organization or invites one by
email, and gives, changes or takes back a role. Every change goes through the design service
(design_grant, design_invite, design_revoke), which decides who may do it and refuses a person from
outside the organization or the removal of the pipe's last admin. HTMX posts get the members region
back (422 with the refusal beside the form); without HTMX the page is rendered whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST
from guardian.models import UserObjectPermission

from ..choices import OrgRole, PipeRole
from ..design.people import design_grant, design_invite, design_revoke, invitation_pending
from ..design.services import DesignError
from ..models import Membership, Pipe
from ..parsing import parse_id
from ..roles import ROLE_ORDER, ROLE_PERMS
from .selectors import pipe_get_for_designer

# One line on what each role allows, in the order the page offers them.
ROLE_HELP = {
    PipeRole.ADMIN: gettext_lazy("Designs the process, manages its members and works every card."),
    PipeRole.MEMBER: gettext_lazy(
        "Works every card: fills fields, moves cards, comments; sees personal data."
    ),
    PipeRole.REVIEWER: gettext_lazy(
        "Decides the reviews given to them; sees the board without personal data."
    ),
    PipeRole.REQUESTER: gettext_lazy("Files requests through the portal and follows their own."),
    PipeRole.VIEWER: gettext_lazy("Sees the board and its cards, read-only, without personal data."),
}
ROLE_CHOICES = [PipeRole.ADMIN, PipeRole.MEMBER, PipeRole.REVIEWER, PipeRole.REQUESTER, PipeRole.VIEWER]


@dataclass(frozen=True)
class MemberRow:
    """A person with a role on the pipe (or an owner of its organization, who holds them all)."""

    user: object
    role: str  # a PipeRole value; "" for an owner without a role of their own
    is_owner: bool
    invited: bool  # invited, and no password chosen yet

    @property
    def name(self) -> str:
        return self.user.get_full_name() or self.user.get_username()

    @property
    def help(self) -> str:
        return ROLE_HELP.get(self.role, "")


def pipe_members(*, pipe: Pipe) -> tuple[list[MemberRow], list]:
    """The people with a role on `pipe` (owners of its organization first), and the organization's
    other active members, whom the page offers to add: 3 queries."""
    User = get_user_model()
    perms: dict[int, set[str]] = {}
    for user_id, codename in UserObjectPermission.objects.filter(
        content_type__app_label="pipes", content_type__model="pipe", object_pk=str(pipe.pk)
    ).values_list("user_id", "permission__codename"):
        perms.setdefault(user_id, set()).add(codename)
    memberships = {
        m.user_id: m.role
        for m in Membership.objects.filter(organization_id=pipe.organization_id).only("user_id", "role")
    }
    owners = {pk for pk, role in memberships.items() if role == OrgRole.OWNER}
    people = User.objects.filter(Q(pk__in=perms) | Q(pk__in=memberships)).order_by("first_name", "username")
    rows, others = [], []
    for person in people:
        held = perms.get(person.pk, set())
        role = next((r for r in ROLE_ORDER if held and set(ROLE_PERMS[r]) <= held), "")
        if role or person.pk in owners:
            rows.append(MemberRow(person, role, person.pk in owners, invitation_pending(person)))
        elif person.is_active and person.pk in memberships:
            others.append(person)
    rows.sort(key=lambda r: (not r.is_owner, ROLE_ORDER.index(r.role) if r.role else 0, r.name.lower()))
    return rows, others


def _render(request: HttpRequest, pipe: Pipe, *, status: int = 200, **extra) -> HttpResponse:
    rows, others = pipe_members(pipe=pipe)
    context = {
        "pipe": pipe,
        "rows": rows,
        "others": others,
        "roles": [(r, PipeRole(r).label, ROLE_HELP[r]) for r in ROLE_CHOICES],
        "nav_active": "designer",
        "form": {"user": "", "email": "", "name": "", "role": PipeRole.MEMBER},
        "errors": {},
        **extra,
    }
    template = "designer/members.html#members" if request.htmx else "designer/members.html"
    return render(request, template, context, status=status)


def _errors(exc: DesignError) -> dict[str, list[str]]:
    return {key or "user": messages for key, messages in exc.errors.items()}


@login_required
@require_http_methods(["GET", "POST"])
def members(request: HttpRequest, pipe_id: int) -> HttpResponse:
    """The pipe's people and roles; a POST adds someone: a member of the organization or an email."""
    pipe, _access = pipe_get_for_designer(user=request.user, pk=pipe_id)
    if request.method == "GET":
        return _render(request, pipe)
    form = {
        "user": request.POST.get("user", ""),
        "email": request.POST.get("email", "").strip(),
        "name": request.POST.get("name", "").strip(),
        "role": request.POST.get("role", ""),
    }
    try:
        if form["email"]:
            person, created = design_invite(
                actor=request.user, pipe=pipe, email=form["email"], role=form["role"], name=form["name"]
            )
            done = (
                _("Invitation sent to %(email)s.") if created else _("%(email)s was added and told by email.")
            ) % {"email": form["email"]}
        else:
            person = _person(form["user"])
            design_grant(actor=request.user, pipe=pipe, user=person, role=form["role"])
            done = _("%(person)s is now %(role)s.") % {
                "person": person.get_full_name() or person.get_username(),
                "role": PipeRole(form["role"]).label.lower(),
            }
    except DesignError as exc:
        return _render(request, pipe, status=422, form=form, errors=_errors(exc))
    return _render(request, pipe, done=done, done_where="add", changed=person.pk)


def _person(value: str):
    """The person the form names; a missing or unknown id is refused as the service would refuse it."""
    pk = parse_id(value)
    person = get_user_model().objects.filter(pk=pk, is_active=True).first() if pk else None
    if person is None:
        raise DesignError({"user": [_("Choose a person, or enter an email address to invite someone.")]})
    return person


@login_required
@require_POST
def member(request: HttpRequest, pipe_id: int, user_id: int) -> HttpResponse:
    """Change a person's role on the pipe (`role`), or take it back (`role` empty)."""
    pipe, _access = pipe_get_for_designer(user=request.user, pk=pipe_id)
    person = get_user_model().objects.filter(pk=user_id).first()
    if person is None:
        raise Http404
    role = request.POST.get("role", "")
    name = person.get_full_name() or person.get_username()
    try:
        if role:
            design_grant(actor=request.user, pipe=pipe, user=person, role=role)
            done = _("%(person)s is now %(role)s.") % {"person": name, "role": PipeRole(role).label.lower()}
        else:
            design_revoke(actor=request.user, pipe=pipe, user=person)
            done = _("%(person)s no longer has a role on this pipe.") % {"person": name}
    except DesignError as exc:
        messages = [m for v in exc.errors.values() for m in v]
        return _render(request, pipe, status=422, error_for=person.pk, row_errors=messages)
    return _render(request, pipe, done=done, changed=person.pk)
