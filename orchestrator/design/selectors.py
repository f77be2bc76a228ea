"""Reads of the rail's designer pages: the pipe a person designs, its steps, agents, cards and hosts."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db.models import F, Prefetch, QuerySet
from django.http import Http404
from django.utils.translation import gettext as _

from agents.models import Agent, AllowedHost
from pipes.design.services import owned_organizations
from pipes.models import Card, Field, Phase, Pipe
from pipes.roles import PipeAccess, pipe_users_with
from pipes.selectors import pipe_get_for_user

from ..models import Step

RECENT_CARDS = 40


def pipe_get_for_rail_designer(*, user: AbstractBaseUser, pk: int) -> tuple[Pipe, PipeAccess]:
    """The pipe, when `user` administers it or owns its organization.

    Http404 when they take no part in it; PermissionDenied for any other role."""
    refused = _("Only admins of this pipe and owners of its organization may design it.")
    try:
        pipe, access = pipe_get_for_user(user=user, pk=pk)
    except PermissionDenied:
        raise PermissionDenied(refused) from None
    if not access.can_administer:
        raise PermissionDenied(refused)
    return pipe, access


def step_get(*, pipe: Pipe, pk: int) -> Step:
    step = Step.objects.select_related("phase", "agent", "reviewer").filter(pk=pk, phase__pipe=pipe).first()
    if step is None:
        raise Http404
    return step


def phase_get(*, pipe: Pipe, pk: int | None) -> Phase:
    phase = Phase.objects.filter(pk=pk, pipe=pipe).first() if pk else None
    if phase is None:
        raise Http404
    return phase


def first_phase(*, pipe: Pipe) -> Phase:
    phase = Phase.objects.filter(pipe=pipe).order_by("position", "pk").first()
    if phase is None:
        raise Http404
    return phase


def agent_get(*, pipe: Pipe, pk: int) -> Agent:
    agent = Agent.objects.filter(pk=pk, pipe=pipe).first()
    if agent is None:
        raise Http404
    return agent


def host_get(*, pipe: Pipe, pk: int) -> AllowedHost:
    host = AllowedHost.objects.filter(pk=pk, organization_id=pipe.organization_id).first()
    if host is None:
        raise Http404
    return host


def phases_with_steps(*, pipe: Pipe) -> list[Phase]:
    """The pipe's phases in order, each with `.designer_steps` (their agents too)."""
    steps = Step.objects.select_related("agent").order_by("position", "pk")
    return list(
        Phase.objects.filter(pipe=pipe)
        .order_by("position", "pk")
        .prefetch_related(Prefetch("steps", queryset=steps, to_attr="designer_steps"))
    )


def pipe_fields(*, pipe: Pipe) -> list[Field]:
    """Start-form fields first, then each phase's, in the order the requester and the team meet them."""
    return list(
        Field.objects.filter(pipe=pipe)
        .select_related("phase")
        .order_by(F("phase__position").asc(nulls_first=True), "position", "pk")
    )


def pipe_agents(*, pipe: Pipe) -> list[Agent]:
    return list(Agent.objects.filter(pipe=pipe).order_by("name", "pk"))


def pipe_workers(*, pipe: Pipe) -> QuerySet:
    """People an automation may assign a card to: those who work the pipe."""
    return pipe_users_with(pipe, ("work_pipe", "administer_pipe")).order_by("first_name", "username")


def pipe_reviewers(*, pipe: Pipe) -> QuerySet:
    return pipe_users_with(pipe, ("review_pipe", "administer_pipe")).order_by("first_name", "username")


def organization_pipes(*, pipe: Pipe) -> list[Pipe]:
    return list(Pipe.objects.filter(organization_id=pipe.organization_id).order_by("name"))


def allowed_hosts(*, pipe: Pipe) -> list[AllowedHost]:
    return list(AllowedHost.objects.filter(organization_id=pipe.organization_id).order_by("host"))


def owns_organization(*, user: AbstractBaseUser, pipe: Pipe) -> bool:
    return owned_organizations(user).filter(pk=pipe.organization_id).exists()


def cards_for_dry_run(*, pipe: Pipe, phase: Phase | None = None) -> list[Card]:
    """Recent cards of the pipe (those in `phase` first): an administrator sees every card of it."""
    cards = Card.objects.filter(pipe=pipe).select_related("phase").order_by("-updated_at", "-pk")
    first = list(cards.filter(phase=phase)[:RECENT_CARDS]) if phase is not None else []
    rest = list(cards.exclude(pk__in=[c.pk for c in first])[: max(0, RECENT_CARDS - len(first))])
    return first + rest


def card_for_dry_run(*, pipe: Pipe, pk: int | None) -> Card | None:
    if not pk:
        return None
    return Card.objects.select_related("pipe__organization", "phase").filter(pk=pk, pipe=pipe).first()


@dataclass(frozen=True)
class StepsPage:
    pipe: Pipe
    phases: list[Phase]
    fields: list[Field]
    agents: list[Agent]
