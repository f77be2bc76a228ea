"""The one design write path: every change to a process definition goes through here.

Pipes, phases, fields, labels, the rail's steps and settings, agents, allowed hosts and pipe
role grants are all "design objects". Whoever changes one (the Django admin, a designer page,
`import_pipe`, an API) calls `design_save` / `design_delete` / `design_grant`, which, in one
transaction:

1. check that the actor administers the pipe of the object (or owns its organization, for
   objects that belong to an organization rather than to a pipe);
2. check every object the change references (foreign keys and many-to-many values): it must
   belong to the same pipe (or, for organization-level objects, the same organization), and a
   person it names must be a member of that organization;
3. validate the whole pipe afterwards with the checker `import_pipe` uses (its export must pass
   `definition_check`), so what the admin saves always exports and imports again;
4. leave an audit entry (django-auditlog's, or one on the pipe's design trail for models it does
   not track).

A refusal raises DesignError (with messages naming the field or the definition path) and
changes nothing. Other apps register their design models with `register_design_model`
(pipes knows nothing of agents or the rail).
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from auditlog.context import set_actor
from auditlog.models import LogEntry
from auditlog.registry import auditlog
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import Q, QuerySet
from django.forms.models import model_to_dict
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from ..choices import OrgRole, PipeRole
from ..models import Card, Field, Label, Membership, Organization, Phase, PhaseEntry, Pipe, PipePolicy
from ..roles import (
    forget_access,
    pipe_access,
    pipe_role_grant,
    pipe_users_with,
    pipes_for_user,
)
from .checker import definition_check
from .format import DefinitionError
from .importexport import pipe_export, pipe_import

logger = logging.getLogger(__name__)


class _System:
    """The system (a management command, a data migration, the rail): trusted, no person to check.

    A sentinel of its own, never None: a caller that lost its user (None) must be refused, not
    taken for the system."""

    is_authenticated = False
    is_active = False
    is_superuser = False

    def __repr__(self) -> str:
        return "SYSTEM"


SYSTEM = _System()


@dataclass(frozen=True)
class Located:
    """A checker message placed on the object of the pipe it is about (a form shows it beside that
    object's row and field)."""

    model: type[models.Model]  # Pipe, Phase, Field or Label
    key: str  # the phase's or field's key, the label's name; "" for the pipe itself
    attr: str  # the model field the message is about; "" for the object as a whole
    text: str  # the message without the object's path ("bogus: unknown key")
    message: str  # the whole message, path included


class DesignError(Exception):
    """A design change refused: `errors` maps a field name ("" for the whole object) to messages;
    `located` places the checker's messages on the objects they are about, when it could."""

    def __init__(self, errors: dict[str, list[str]] | list[str] | str, located: list[Located] | None = None):
        if isinstance(errors, str):
            errors = [errors]
        if isinstance(errors, list):
            errors = {"": list(errors)}
        self.errors = {k: list(v) for k, v in errors.items() if v}
        self.located = list(located or [])
        super().__init__("; ".join(self.messages))

    @property
    def messages(self) -> list[str]:
        return [f"{k}: {m}" if k else m for k, v in self.errors.items() for m in v]


class DesignPermissionError(DesignError, PermissionDenied):
    """The actor may not design this pipe or organization."""


@dataclass(frozen=True)
class DesignModel:
    """How to find the pipe (or the organization) a design model belongs to."""

    model: type[models.Model]
    pipe_path: str | None = None  # e.g. "phase__pipe"; None for organization-level objects
    org_path: str | None = None  # e.g. "organization"; for objects outside any pipe

    def path(self) -> str:
        return self.pipe_path or self.org_path or ""

    def pipe_of(self, obj: models.Model) -> Pipe | None:
        if isinstance(obj, Pipe):
            return obj
        if not self.pipe_path:
            return None
        return _follow(obj, self.pipe_path)

    def organization_id_of(self, obj: models.Model) -> int | None:
        if isinstance(obj, Organization):
            return obj.pk
        pipe = self.pipe_of(obj)
        if pipe is not None:
            return pipe.organization_id
        org = _follow(obj, self.org_path) if self.org_path else None
        return org.pk if org is not None else None


_REGISTRY: dict[type[models.Model], DesignModel] = {}


def register_design_model(
    model: type[models.Model], *, pipe_path: str | None = None, org_path: str | None = None
):
    """Make `model` a design object reachable from a pipe (`pipe_path`) or an organization (`org_path`)."""
    if pipe_path is None and org_path is None:
        raise ValueError("a design model needs a pipe_path or an org_path")
    _REGISTRY[model] = DesignModel(model=model, pipe_path=pipe_path, org_path=org_path)


def design_models() -> list[DesignModel]:
    return list(_REGISTRY.values())


def design_model(model: type[models.Model]) -> DesignModel:
    try:
        return _REGISTRY[model]
    except KeyError:
        raise DesignError(
            _("%(model)s is not a design object.") % {"model": model._meta.verbose_name}
        ) from None


register_design_model(Pipe, pipe_path="")
register_design_model(Phase, pipe_path="pipe")
register_design_model(Field, pipe_path="pipe")
register_design_model(Label, pipe_path="pipe")
register_design_model(PipePolicy, pipe_path="pipe")
register_design_model(Organization, org_path="")
register_design_model(Membership, org_path="organization")


def _follow(obj: Any, path: str) -> Any:
    for part in path.split("__") if path else []:
        if obj is None:
            return None
        obj = getattr(obj, part, None)  # an unset foreign key reads as None
    return obj


# ---------------------------------------------------------------- who may design what


def administered_pipes(user: AbstractBaseUser | None, *, include_archived: bool = False) -> QuerySet[Pipe]:
    """The pipes `user` may design: those they administer and every pipe of an organization they own.

    Archived pipes are left out of lists unless `include_archived` (the admin shows them, to restore one)."""
    if user is SYSTEM:
        pipes = Pipe.objects.all()
    elif user is None:
        return Pipe.objects.none()
    else:
        pipes = pipes_for_user(user, ("administer_pipe",))
    return pipes if include_archived else pipes.filter(archived_at__isnull=True)


def owned_organizations(user: AbstractBaseUser | None) -> QuerySet[Organization]:
    """Organizations `user` owns (all of them for a superuser)."""
    if user is SYSTEM or (user is not None and user.is_superuser):
        return Organization.objects.all()
    if user is None or not user.is_authenticated or not user.is_active:
        return Organization.objects.none()
    return Organization.objects.filter(memberships__user=user, memberships__role=OrgRole.OWNER)


def designable_organizations(user: AbstractBaseUser | None) -> QuerySet[Organization]:
    """Organizations in which `user` designs something (owners, and admins of one of its pipes)."""
    if user is None:
        return Organization.objects.none()
    if user is SYSTEM or user.is_superuser:
        return Organization.objects.all()
    return Organization.objects.filter(
        models.Q(pk__in=owned_organizations(user).values("pk"))
        | models.Q(pk__in=administered_pipes(user).values("organization_id"))
    ).distinct()


def designable(model: type[models.Model], user: AbstractBaseUser | None) -> QuerySet:
    """Every object of a design model (or a user, or an organization) `user` may name in a design change."""
    if user is SYSTEM:
        return model._default_manager.all()
    if model is get_user_model():
        return people_for_designer(user)
    if model is Organization:
        return designable_organizations(user)
    spec = design_model(model)
    qs = model._default_manager.all()
    pipes = administered_pipes(user, include_archived=True)
    if model is Pipe:
        return qs.filter(pk__in=pipes.values("pk"))
    if spec.pipe_path:
        return qs.filter(**{f"{spec.pipe_path}__in": pipes.values("pk")})
    return qs.filter(**{f"{spec.org_path}__in": owned_organizations(user).values("pk")})


def people_for_designer(user: AbstractBaseUser | None) -> QuerySet:
    """People `user` may name (a reviewer, a grant): members of the organizations they design in."""
    User = get_user_model()
    if user is None:
        return User.objects.none()
    if user is SYSTEM or user.is_superuser:
        return User.objects.all()
    members = Membership.objects.filter(organization__in=designable_organizations(user)).values("user_id")
    return User.objects.filter(pk__in=members, is_active=True)


def _check_actor(actor: AbstractBaseUser | None, obj: models.Model, spec: DesignModel) -> None:
    if actor is SYSTEM:
        return
    if actor is None or not (actor.is_authenticated and actor.is_active):
        raise DesignPermissionError(_("Sign in to design processes."))
    pipe = spec.pipe_of(obj)
    if pipe is not None and pipe.pk is not None:
        if not pipe_access(user=actor, pipe=pipe).can_administer:
            raise DesignPermissionError(_("You do not administer the pipe “%(pipe)s”.") % {"pipe": pipe.name})
        return
    org_id = spec.organization_id_of(obj)
    if org_id is None and isinstance(obj, Organization) and actor.is_superuser:
        return  # a new organization: the site's superuser creates it
    if isinstance(obj, Pipe) and obj.pk is None:
        # A new pipe: owners and the admins of one of the organization's pipes create them.
        if org_id is None or not designable_organizations(actor).filter(pk=org_id).exists():
            raise DesignPermissionError(
                _("Only owners and pipe admins of the organization can create a pipe in it.")
            )
        return
    if org_id is None or not owned_organizations(actor).filter(pk=org_id).exists():
        raise DesignPermissionError(_("Only an owner of the organization can do this."))


def _check_references(
    actor: AbstractBaseUser | None,
    obj: models.Model,
    spec: DesignModel,
    m2m: dict[str, Iterable[models.Model]],
    errors: dict[str, list[str]],
) -> None:
    """Every object `obj` names belongs to its pipe (or organization), and every person to its organization."""
    pipe = spec.pipe_of(obj)
    org_id = spec.organization_id_of(obj)
    User = get_user_model()
    named: list[tuple[str, models.Model]] = []
    for f in obj._meta.concrete_fields:
        if f.is_relation and f.many_to_one or (f.is_relation and f.one_to_one):
            if isinstance(obj, Pipe) and f.name == "organization":
                continue  # the pipe's own organization: checked by _check_actor and _check_pipe_move
            value = getattr(obj, f.name)
            if value is not None:
                named.append((f.name, value))
    for name, values in m2m.items():
        named.extend((name, v) for v in values)
    for name, value in named:
        if isinstance(value, User):
            if isinstance(obj, Membership):
                # Joining an organization: a person the actor already works with, never a stranger's name.
                known = people_for_designer(actor).filter(pk=value.pk).exists()
                if not known:
                    errors.setdefault(name, []).append(_("Choose a person you work with."))
            elif pipe is not None:
                if not pipe_users_with(pipe, ("review_pipe", "administer_pipe")).filter(pk=value.pk).exists():
                    errors.setdefault(name, []).append(_("Choose a reviewer of this pipe."))
            elif not Membership.objects.filter(organization_id=org_id, user=value).exists():
                errors.setdefault(name, []).append(_("Choose a person of this organization."))
            continue
        if isinstance(value, Organization):
            if value.pk != org_id:
                errors.setdefault(name, []).append(_("Choose this organization."))
            continue
        target = _REGISTRY.get(type(value))
        if target is None:
            errors.setdefault(name, []).append(_("This cannot be chosen here."))
            continue
        target_pipe = target.pipe_of(value)
        if pipe is not None and target_pipe is not None:
            if target_pipe.pk != pipe.pk:
                errors.setdefault(name, []).append(_("Choose one of this pipe's own."))
        elif target.organization_id_of(value) != org_id:
            errors.setdefault(name, []).append(_("Choose one of this organization's own."))


def _check_pipe_move(obj: models.Model, spec: DesignModel, errors: dict[str, list[str]]) -> None:
    """A saved object never moves to another pipe or organization (its history and cards stay)."""
    if obj.pk is None:
        return
    before = type(obj)._default_manager.filter(pk=obj.pk).first()
    if before is None:
        return
    if isinstance(obj, Pipe):
        if before.organization_id != obj.organization_id:
            errors.setdefault("organization", []).append(_("A pipe cannot move to another organization."))
        return
    path = spec.pipe_path or spec.org_path or ""
    head = path.split("__")[0]
    old, new = _follow(before, head), _follow(obj, head)
    if old is not None and new is not None and old.pk != new.pk:
        errors.setdefault(head, []).append(_("This cannot move to another pipe or organization."))


def _check_pipe(pipe: Pipe | None) -> None:
    """The pipe as it now stands passes the checker import_pipe uses."""
    if pipe is None or pipe.pk is None:
        return
    pipe = Pipe.objects.get(pk=pipe.pk)
    try:
        definition = pipe_export(pipe)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        # A value of the wrong shape (a rule that is not a mapping, ...) that the export trips on.
        raise DesignError(_("The process can't be read back: %(problem)s") % {"problem": exc}) from None
    try:
        definition_check(definition)
    except DefinitionError as exc:
        messages = list(exc.messages)
        raise DesignError(messages, located=[_locate(definition, m) for m in messages]) from None


_PATH = re.compile(
    r"^(?:phases\[(?P<pi>\d+)\](?:\.fields\[(?P<fi>\d+)\])?|start_form\[(?P<si>\d+)\]|labels\[(?P<li>\d+)\])?"
    r"\.?(?P<attr>[a-z_]+)?(?P<rest>[^:\s]*): (?P<text>.*)$",
    re.S,
)
_MODEL_ATTRS = {"final": "is_final"}  # the definition's names that differ from the model's


def _locate(definition: dict, message: str) -> Located:
    """The object (by its key) and the field a checker message's definition path names."""
    match = _PATH.match(message)
    if match is None:
        return Located(Pipe, "", "", message, message)
    g = match.groupdict()
    try:
        if g["si"] is not None:
            model, key = Field, definition["start_form"][int(g["si"])]["key"]
        elif g["fi"] is not None:
            model, key = Field, definition["phases"][int(g["pi"])]["fields"][int(g["fi"])]["key"]
        elif g["pi"] is not None:
            model, key = Phase, definition["phases"][int(g["pi"])]["key"]
        elif g["li"] is not None:
            model, key = Label, definition["labels"][int(g["li"])]["name"]
        else:
            model, key = Pipe, ""
    except (KeyError, IndexError, TypeError):
        return Located(Pipe, "", "", message, message)
    attr = g["attr"] or ""
    rest = (g["rest"] or "").lstrip(".")
    text = f"{rest}: {g['text']}" if rest else g["text"]
    return Located(model, str(key), _MODEL_ATTRS.get(attr, attr), text, message)


def _own_key(obj: models.Model) -> str:
    if isinstance(obj, Pipe):
        return ""
    if isinstance(obj, Label):
        return obj.name
    return str(getattr(obj, "key", ""))


def located_errors(obj: models.Model, exc: DesignError) -> dict[str, list[str]]:
    """The refusal's messages by field of `obj`: the checker's messages about `obj` itself under the
    field they name, the others (about the rest of the pipe) whole under ""."""
    if not exc.located:
        return exc.errors
    errors = {k: list(v) for k, v in exc.errors.items() if k}
    for loc in exc.located:
        if type(obj) is loc.model and _own_key(obj) == loc.key and loc.attr:
            errors.setdefault(loc.attr, []).append(loc.text)
        else:
            errors.setdefault("", []).append(loc.message)
    return errors


# ---------------------------------------------------------------- audit


def _audit(actor, obj: models.Model, spec: DesignModel, before: dict | None, deleted: bool = False) -> None:
    """Record the change: auditlog records its registered models itself; the others go on the trail
    of their pipe (or organization) as one entry naming the object and what changed."""
    if auditlog.contains(type(obj)):
        return
    anchor = spec.pipe_of(obj) or Organization.objects.filter(pk=spec.organization_id_of(obj)).first()
    if anchor is None or anchor.pk is None:
        return
    label = f"{obj._meta.verbose_name} “{obj}”"
    after = None if deleted else _snapshot(obj)
    if before is None:
        changes = {label: [None, _describe(after)]}
    elif after is None:
        changes = {label: [_describe(before), None]}
    else:
        changed = {k: [str(before.get(k)), str(v)] for k, v in after.items() if before.get(k) != v}
        if not changed:
            return
        changes = {f"{label}: {k}": pair for k, pair in changed.items()}
    LogEntry.objects.log_create(
        anchor,
        force_log=True,
        action=LogEntry.Action.UPDATE,
        changes=changes,
        actor=actor if actor is not SYSTEM else None,
    )


def _snapshot(obj: models.Model) -> dict:
    data = model_to_dict(obj, fields=[f.name for f in obj._meta.concrete_fields])
    return {k: v for k, v in data.items() if k != "id"}


def _describe(data: dict | None) -> str:
    if data is None:
        return ""
    return ", ".join(f"{k}={v}" for k, v in data.items() if k != "id" and v not in (None, "", [], {}))


# ---------------------------------------------------------------- a live process: what a change touches


@dataclass(frozen=True)
class DesignImpact:
    """How many cards a change to a design object touches: what a page shows before it asks to confirm.

    `cards` counts each card once; the other counts say why (a card may be in several)."""

    cards: int = 0
    in_phase: int = 0  # cards in the phase now (they must move before it can go)
    passed: int = 0  # cards that went through the phase (its history)
    with_values: int = 0  # cards holding a value in the field (or in the phase's fields)
    labelled: int = 0  # cards carrying the label

    def __bool__(self) -> bool:
        return self.cards > 0

    def __int__(self) -> int:
        return self.cards

    @property
    def message(self) -> str:
        """One line a person reads before confirming ("3 cards hold a value in this field.")."""
        parts = []
        if self.in_phase:
            parts.append(
                ngettext("%(n)d card is in this phase.", "%(n)d cards are in this phase.", self.in_phase)
                % {"n": self.in_phase}
            )
        if self.passed:
            parts.append(
                ngettext(
                    "%(n)d card went through this phase.", "%(n)d cards went through this phase.", self.passed
                )
                % {"n": self.passed}
            )
        if self.with_values:
            parts.append(
                ngettext(
                    "%(n)d card holds a value in this field.",
                    "%(n)d cards hold a value in this field.",
                    self.with_values,
                )
                % {"n": self.with_values}
            )
        if self.labelled:
            parts.append(
                ngettext("%(n)d card carries this label.", "%(n)d cards carry this label.", self.labelled)
                % {"n": self.labelled}
            )
        if not parts and self.cards:
            parts.append(
                ngettext("%(n)d card is in this pipe.", "%(n)d cards are in this pipe.", self.cards)
                % {"n": self.cards}
            )
        return " ".join(parts)


def _holding(pipe_id: int, keys: list[str]) -> Q:
    """Cards of the pipe holding a value (or a file) in any of `keys`."""
    return Q(pipe_id=pipe_id) & (Q(values__has_any_keys=keys) | Q(files__field_key__in=keys))


def design_impact(obj: models.Model) -> DesignImpact:
    """How many cards deleting `obj` (or changing its key) touches: the cards holding a value in a
    field, the cards in or through a phase, the cards carrying a label, every card of a pipe."""
    if obj.pk is None:
        return DesignImpact()
    if isinstance(obj, Pipe):
        return DesignImpact(cards=Card.objects.filter(pipe=obj).count())
    if isinstance(obj, Field):
        stored = Field.objects.filter(pk=obj.pk).values_list("pipe_id", "key").first()
        if stored is None:
            return DesignImpact()
        n = Card.objects.filter(_holding(stored[0], [stored[1]])).distinct().count()
        return DesignImpact(cards=n, with_values=n)
    if isinstance(obj, Phase):
        keys = list(Field.objects.filter(phase_id=obj.pk).values_list("key", flat=True))
        in_phase = Card.objects.filter(phase_id=obj.pk).count()
        passed = PhaseEntry.objects.filter(phase_id=obj.pk).values("card_id").distinct().count()
        with_values = Card.objects.filter(_holding(obj.pipe_id, keys)).distinct().count() if keys else 0
        touched = Q(phase_id=obj.pk) | Q(phase_entries__phase_id=obj.pk)
        if keys:
            touched |= _holding(obj.pipe_id, keys)
        cards = Card.objects.filter(touched).distinct().count() if (in_phase or passed or with_values) else 0
        return DesignImpact(cards=cards, in_phase=in_phase, passed=passed, with_values=with_values)
    if isinstance(obj, Label):
        n = Card.objects.filter(labels=obj).count()
        return DesignImpact(cards=n, labelled=n)
    return DesignImpact()


class DesignImpactError(DesignError):
    """A deletion that touches cards, refused until the caller confirms it (`confirm=True`)."""

    def __init__(self, impact: DesignImpact, errors):
        self.impact = impact
        super().__init__(errors)


def _check_key_change(obj: models.Model, before: models.Model | None, errors: dict[str, list[str]]) -> None:
    """A phase's or field's key is what cards, their timelines and exports name it by: once cards use
    it, it stays (its label or name can change)."""
    if before is None or not isinstance(obj, Phase | Field) or before.key == obj.key:
        return
    impact = design_impact(before)
    used = impact.with_values if isinstance(obj, Field) else impact.in_phase + impact.passed
    if used:
        errors.setdefault("key", []).append(
            ngettext(
                "%(n)d card already uses the key “%(key)s”: it can't change (the name can).",
                "%(n)d cards already use the key “%(key)s”: it can't change (the name can).",
                used,
            )
            % {"n": used, "key": before.key}
        )


def _check_delete(obj: models.Model, confirm: bool) -> None:
    """A pipe with cards is archived, not deleted; a phase with cards in it is emptied first; anything
    else that touches cards goes only when the caller confirms, having shown how many."""
    impact = design_impact(obj)
    if not impact:
        return
    if isinstance(obj, Pipe):
        raise DesignError(
            ngettext(
                "“%(pipe)s” has %(n)d card: archive it instead, which keeps the card and its timeline.",
                "“%(pipe)s” has %(n)d cards: archive it instead, which keeps the cards and their timelines.",
                impact.cards,
            )
            % {"pipe": obj.name, "n": impact.cards}
        )
    if isinstance(obj, Phase) and impact.in_phase:
        raise DesignError(
            ngettext(
                "%(n)d card is in the phase “%(phase)s”: move it to another phase first.",
                "%(n)d cards are in the phase “%(phase)s”: move them to another phase first.",
                impact.in_phase,
            )
            % {"n": impact.in_phase, "phase": obj.name}
        )
    if not confirm:
        raise DesignImpactError(
            impact,
            _("%(impact)s Confirm to delete “%(name)s” anyway; the cards keep their values and timelines.")
            % {"impact": impact.message, "name": obj},
        )


# ---------------------------------------------------------------- writes


def design_save(
    *,
    actor: AbstractBaseUser | None,
    obj: models.Model,
    m2m: dict[str, Iterable[models.Model]] | None = None,
    validate: bool = True,
) -> models.Model:
    """Create or change a design object (and set its many-to-many values), then check the pipe.

    `validate=False` leaves the whole-pipe check to a later `design_validate` in the same
    transaction (a form that saves an object and its inlines checks the pipe once, at the end)."""
    spec = design_model(type(obj))
    m2m = {k: list(v) for k, v in (m2m or {}).items()}
    with transaction.atomic(), _acting(actor):
        _check_actor(actor, obj, spec)
        errors: dict[str, list[str]] = {}
        _check_pipe_move(obj, spec, errors)
        _check_references(actor, obj, spec, m2m, errors)
        if errors:
            raise DesignError(errors)
        before = old = None
        if obj.pk is not None:
            old = type(obj)._default_manager.filter(pk=obj.pk).first()
            if old is not None:
                _check_actor(actor, old, spec)  # the object as stored, not as the caller says it is
                before = _snapshot(old)
        _check_key_change(obj, old, errors)
        if errors:
            raise DesignError(errors)
        created = obj.pk is None
        obj.save()
        for name, values in m2m.items():
            getattr(obj, name).set(values)
        _audit(actor, obj, spec, before)
        if created and isinstance(obj, Pipe):
            _make_creator_admin(actor, obj)
        if validate:
            _check_pipe(spec.pipe_of(obj))
    return obj


def design_delete(
    *, actor: AbstractBaseUser | None, obj: models.Model, validate: bool = True, confirm: bool = False
) -> None:
    """Delete a design object; the pipe left behind must still pass the checker.

    On a live process: a pipe with cards is refused (archive it: design_archive); a phase with cards
    in it is refused (move them first); a field holding values, a phase cards went through or a label
    cards carry is refused with DesignImpactError (its `impact` says how many cards) unless `confirm`.
    Cards keep their values and timelines either way, and a deleted phase's stays keep their step runs."""
    spec = design_model(type(obj))
    with transaction.atomic(), _acting(actor):
        _check_actor(actor, obj, spec)
        _check_delete(obj, confirm)
        pipe = None if isinstance(obj, Pipe) else spec.pipe_of(obj)
        before = _snapshot(obj)
        _audit(actor, obj, spec, before, deleted=True)
        if isinstance(obj, Phase):
            # Its cards' stays in it are their history: kept, with the step runs and costs hanging from
            # them, their phase left empty (PhaseEntry.phase). None is left for the rail to run.
            PhaseEntry.objects.filter(phase=obj, processed_at__isnull=True).update(
                processed_at=timezone.now()
            )
        obj.delete()
        if validate:
            _check_pipe(pipe)


def design_validate(*, actor: AbstractBaseUser | None, pipe: Pipe) -> None:
    """Check `pipe` as it stands (inside the transaction of the writes that changed it)."""
    _check_actor(actor, pipe, design_model(Pipe))
    _check_pipe(pipe)


class _DryRun(Exception):
    pass


def design_check(
    *,
    actor: AbstractBaseUser | None,
    obj: models.Model,
    m2m: dict[str, Iterable[models.Model]] | None = None,
    validate: bool = True,
) -> dict[str, list[str]]:
    """What `design_save` would refuse, without writing anything (a form shows it beside the fields)."""
    clone = copy.copy(obj)
    clone._state = copy.copy(obj._state)
    try:
        with transaction.atomic():
            design_save(actor=actor, obj=clone, m2m=m2m, validate=validate)
            raise _DryRun
    except _DryRun:
        return {}
    except DesignError as exc:
        return located_errors(clone, exc)


def _make_creator_admin(actor: AbstractBaseUser | None, pipe: Pipe) -> None:
    """Who creates a pipe administers it (an owner already does, through the organization)."""
    if actor is SYSTEM or actor is None or pipe_access(user=actor, pipe=pipe).can_administer:
        return
    pipe_role_grant(pipe=pipe, user=actor, role=PipeRole.ADMIN)


def design_archive(*, actor: AbstractBaseUser | None, pipe: Pipe) -> Pipe:
    """Archive `pipe`: it leaves the home page, the portal and the designer's lists and takes no new
    work (pipe_access grants only reading on it), while its cards and their timelines stay as they
    are, readable and verifiable. On the pipe's audit trail with who did it."""
    with transaction.atomic(), _acting(actor):
        _check_actor(actor, pipe, design_model(Pipe))
        locked = Pipe.objects.select_for_update().get(pk=pipe.pk)
        if locked.archived_at is None:
            locked.archived_at = timezone.now()
            locked.save(update_fields=["archived_at"])
        pipe.archived_at = locked.archived_at
        forget_access()
    return pipe


def design_restore(*, actor: AbstractBaseUser | None, pipe: Pipe) -> Pipe:
    """Bring an archived pipe back: listed again, open to work and requests."""
    with transaction.atomic(), _acting(actor):
        _check_actor(actor, pipe, design_model(Pipe))
        locked = Pipe.objects.select_for_update().get(pk=pipe.pk)
        if locked.archived_at is not None:
            locked.archived_at = None
            locked.save(update_fields=["archived_at"])
        pipe.archived_at = None
        forget_access()
    return pipe


def design_import(*, actor: AbstractBaseUser | None, organization: Organization, definition: dict) -> Pipe:
    """Create a pipe from a definition in `organization`: its owners and the admins of one of its pipes
    (or the system); a pipe admin who creates one administers it."""
    with transaction.atomic(), _acting(actor):
        if actor is not SYSTEM and not designable_organizations(actor).filter(pk=organization.pk).exists():
            raise DesignPermissionError(
                _("Only owners and pipe admins of the organization can create a pipe in it.")
            )
        pipe = pipe_import(organization=organization, definition=definition)
        _make_creator_admin(actor, pipe)
        return pipe


def _acting(actor):
    """auditlog names `actor` on the entries written in the block (the request's user already is,
    in a request; a command or a task has none)."""
    return nullcontext() if actor is SYSTEM else set_actor(actor)
