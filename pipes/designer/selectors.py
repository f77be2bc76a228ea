"""The designer's reads: the pipe a person may design, the template gallery and a pipe's design overview."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, QuerySet
from django.utils.translation import gettext as _

from ..design import DefinitionError, process_template_load, process_templates
from ..design.services import administered_pipes, designable_organizations
from ..models import Card, Field, Organization, Phase, PhaseEntry, Pipe
from ..roles import PipeAccess
from ..selectors import pipe_get_for_user


def pipe_get_for_designer(*, user: AbstractBaseUser, pk: int) -> tuple[Pipe, PipeAccess]:
    """The pipe, when `user` administers it (or owns its organization).

    Http404 when they take no part in it; PermissionDenied for any other role."""
    refused = _("Only admins of this pipe and owners of its organization may design it.")
    try:
        pipe, access = pipe_get_for_user(user=user, pk=pk)
    except PermissionDenied:
        raise PermissionDenied(refused) from None
    if not access.can_administer:
        raise PermissionDenied(refused)
    return pipe, access


def designer_organizations(*, user: AbstractBaseUser) -> QuerySet[Organization]:
    """Organizations in which `user` may create a pipe: those they own, and those where they administer
    a pipe (the design service's rule: the creator becomes the new pipe's admin)."""
    return designable_organizations(user).order_by("name")


def designed_pipes(*, user: AbstractBaseUser) -> QuerySet[Pipe]:
    """The pipes `user` designs, by organization and name."""
    return administered_pipes(user).select_related("organization").order_by("organization__name", "name")


@dataclass(frozen=True)
class TemplatePhase:
    name: str
    final: bool
    field_count: int


@dataclass(frozen=True)
class GalleryTemplate:
    """A bundled process template as the gallery shows it."""

    key: str
    name: str
    code: str
    slug: str
    description: str
    start_field_count: int
    phases: list[TemplatePhase]


def template_gallery() -> list[GalleryTemplate]:
    """Every bundled template with its description and the outline of its phases."""
    gallery = []
    for key in process_templates():
        try:
            d = process_template_load(key)
        except DefinitionError:  # a broken bundled file is a bug its own tests catch; skip it here
            continue
        gallery.append(
            GalleryTemplate(
                key=key,
                name=d["name"],
                code=d["code"],
                slug=d["slug"],
                description=(d.get("description") or "").strip(),
                start_field_count=len(d.get("start_form") or []),
                phases=[
                    TemplatePhase(
                        name=p["name"], final=bool(p.get("final")), field_count=len(p.get("fields") or [])
                    )
                    for p in d["phases"]
                ],
            )
        )
    return gallery


@dataclass(frozen=True)
class DesignOverview:
    """What the read-only design page of a pipe shows."""

    pipe: Pipe
    start_fields: list[Field]
    phases: list[Phase]  # each with .designer_fields and .allowed_next prefetched


def design_overview(*, pipe: Pipe) -> DesignOverview:
    fields = Field.objects.order_by("position", "pk")
    phases = list(
        Phase.objects.filter(pipe=pipe)
        .order_by("position", "pk")
        .prefetch_related(
            Prefetch("fields", queryset=fields, to_attr="designer_fields"),
            Prefetch("allowed_next", queryset=Phase.objects.order_by("position")),
        )
    )
    start_fields = list(fields.filter(pipe=pipe, phase__isnull=True))
    return DesignOverview(pipe=pipe, start_fields=start_fields, phases=phases)


# ---------------------------------------------------------------- what a design change would touch


def phase_card_count(*, phase: Phase) -> int:
    """Cards resting in `phase` now."""
    return Card.objects.filter(phase=phase).count()


def phase_in_use(*, phase: Phase) -> bool:
    """True once a card has been in `phase`: its key is then part of card histories and stays."""
    return Card.objects.filter(phase=phase).exists() or PhaseEntry.objects.filter(phase=phase).exists()


def field_card_count(*, field: Field) -> int:
    """Cards of the field's pipe that hold a value for it."""
    return Card.objects.filter(pipe_id=field.pipe_id, values__has_key=field.key).count()


def field_in_use(*, field: Field) -> bool:
    """True once a card holds a value for the field: its key then stays as it is."""
    return Card.objects.filter(pipe_id=field.pipe_id, values__has_key=field.key).exists()


def connectable_pipes(*, pipe: Pipe) -> QuerySet[Pipe]:
    """Pipes a connection field of `pipe` may point to: those of its organization."""
    return Pipe.objects.filter(organization_id=pipe.organization_id).order_by("name")
