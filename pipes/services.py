"""The one write path: every change to a card goes through these functions.

Each public function runs in one transaction and, for every kind of actor (a person, an
agent acting within its scope, or the system):

1. checks the actor may do it;
2. parses and validates values by field type;
3. enforces the process (start-form required fields, required fields of the phase being
   left, allowed transitions, conditional fields, WIP limits);
4. locks the card row and checks its version, so no update is lost;
5. appends a hash-chained event to the card's timeline;
6. records phase entries, announced to the rail after commit (pipes.hooks).

A rejected call raises CardError (or a subclass) naming each offending field and changes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from auditlog.context import disable_auditlog
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from . import hooks
from .choices import ActorKind, EventKind, FieldType, RailStatus
from .conditions import evaluate
from .fieldtypes import FieldValueError, ParseContext, display_value, is_filled, parse_value
from .files import inspect_upload
from .models import Card, CardEvent, CardFile, Field, Label, Phase, PhaseEntry, Pipe
from .roles import STAFF_PERMS, PipeAccess, pipe_access, pipe_users_with
from .timeline import event_build

NON_FIELD = "__all__"


# ---------------------------------------------------------------- errors


class CardError(Exception):
    """A rejected change. `errors` maps field keys (or "__all__") to plain-language reasons."""

    code = "invalid"

    def __init__(
        self, errors: Mapping[str, Sequence[str] | str] | str, *, fields: Mapping[str, str] | None = None
    ):
        if isinstance(errors, str):
            errors = {NON_FIELD: [errors]}
        self.errors: dict[str, list[str]] = {
            k: [v] if isinstance(v, str) else list(v) for k, v in errors.items()
        }
        self.field_labels: dict[str, str] = dict(fields or {})
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = []
        for key, reasons in self.errors.items():
            label = self.field_labels.get(key)
            text = " ".join(reasons)
            parts.append(f"{label}: {text}" if label and key != NON_FIELD else text)
        return " ".join(parts)

    @property
    def field_keys(self) -> list[str]:
        return [k for k in self.errors if k != NON_FIELD]


class CardPermissionError(CardError):
    """The actor may not do this."""

    code = "forbidden"


class CardConflictError(CardError):
    """Someone else changed the card since the actor loaded it."""

    code = "conflict"


class CardTransitionError(CardError):
    """The card may not move there (yet): missing required fields, a disallowed transition or a full phase."""

    code = "transition"


class CardAlreadySubmittedError(CardError):
    """The same form submission already filed a card (a double click, a retried post): `card` is that one."""

    code = "duplicate"

    def __init__(self, card: Card):
        super().__init__(_("This form was already sent as %(ref)s.") % {"ref": card.reference})
        self.card = card


class CardAuthorityError(CardPermissionError):
    """An agent may not change a card whose amount is above its authority limit, unreadable or in another
    currency: a person decides. `rail_reason` says why in the rail's English words (orchestrator.reasons)."""

    code = "authority"

    def __init__(self, errors, *, fields=None, rail_reason: str = ""):
        super().__init__(errors, fields=fields)
        self.rail_reason = rail_reason


# ---------------------------------------------------------------- actors


@dataclass(frozen=True)
class Authority:
    """An agent's authority limit: it may change a card only while `field` holds at most `limit`.

    The limit is in `currency`, or in the pipe's organization's currency when that is empty; a number
    field has no currency and is read in the limit's."""

    field: str
    limit: Decimal
    currency: str = ""


@dataclass(frozen=True)
class Actor:
    """Who is changing a card: a person, an agent within its scope, or the system.

    `public`: an anonymous requester filing through a pipe's public start form (a system actor that may
    only create cards, and only where the start form is public)."""

    kind: str
    user: AbstractBaseUser | None = None
    name: str = ""
    pipe_id: int | None = None  # agents act on one pipe
    writable_fields: frozenset[str] = field(default_factory=frozenset)
    allowed_phases: frozenset[str] = field(default_factory=frozenset)  # phase keys an agent may move to
    authority: Authority | None = None  # an agent's authority limit, if it has one
    public: bool = False

    @classmethod
    def for_user(cls, user: AbstractBaseUser) -> Actor:
        return cls(kind=ActorKind.USER, user=user)

    @classmethod
    def system(cls, name: str = "Trilho") -> Actor:
        return cls(kind=ActorKind.SYSTEM, name=name)

    @classmethod
    def anonymous(cls, name: str) -> Actor:
        """Someone without an account, through a pipe's public start form."""
        return cls(kind=ActorKind.SYSTEM, name=name, public=True)

    @classmethod
    def agent(
        cls,
        *,
        name: str,
        pipe_id: int,
        writable_fields: Iterable[str] = (),
        allowed_phases: Iterable[str] = (),
        authority: Authority | None = None,
    ) -> Actor:
        return cls(
            kind=ActorKind.AGENT,
            name=name,
            pipe_id=pipe_id,
            writable_fields=frozenset(writable_fields),
            allowed_phases=frozenset(allowed_phases),
            authority=authority,
        )

    @property
    def label(self) -> str:
        if self.kind == ActorKind.USER and self.user is not None:
            return self.user.get_full_name() or self.user.get_username()
        return self.name or str(self.kind)

    @property
    def user_id(self) -> int | None:
        return self.user.pk if self.user is not None else None


def _access(actor: Actor, pipe: Pipe) -> PipeAccess:
    return pipe_access(user=actor.user, pipe=pipe)


def _deny(message: str) -> CardPermissionError:
    return CardPermissionError(message)


def _check_agent_pipe(actor: Actor, pipe: Pipe) -> None:
    if actor.pipe_id != pipe.pk:
        raise _deny(
            _("Agent %(name)s does not act on the pipe %(pipe)s.") % {"name": actor.name, "pipe": pipe.name}
        )


def _is_own_request(actor: Actor, card: Card) -> bool:
    return actor.user is not None and card.created_by_id == actor.user.pk


def _refuse_public(actor: Actor) -> None:
    """Someone without an account only files requests; every other change needs a person, agent or system."""
    if actor.public:
        raise _deny(_("Without an account you may only file a request through a public form."))


_AMOUNT_TYPES = (FieldType.NUMBER, FieldType.CURRENCY, FieldType.PERCENTAGE)


def _plain_amount(value: Decimal) -> str:
    """52000 → "52,000"; 10000.50 → "10,000.50" (for the rail's one-line reasons)."""
    return f"{value:,.0f}" if value == value.to_integral() else f"{value:,.2f}"


def _read_amount(f: Field | None, value: Any) -> tuple[Decimal, str] | None:
    """(amount, currency) of a stored number, percentage or currency value ("" when it has no currency);
    None when it cannot be read as one."""
    if f is None or f.type not in _AMOUNT_TYPES:
        return None
    currency = ""
    if f.type == FieldType.CURRENCY:
        if not isinstance(value, dict) or not isinstance(value.get("currency"), str):
            return None
        value, currency = value.get("amount"), value["currency"]
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return (amount, currency) if amount.is_finite() else None


def authority_check(
    *, actor: Actor, pipe: Pipe, values: Mapping[str, Any], fields: Mapping[str, Field] | None = None
) -> None:
    """Raise CardAuthorityError unless `values` hold, in the agent's authority field, a readable amount
    in the limit's currency and at most the limit: an empty, unreadable or foreign amount is not the
    agent's to decide. Nothing to check for other actors, or an agent without a limit.

    The write path calls it on what the card would hold after an agent's change; the rail may call it
    earlier, to spare a model call whose answer could not be applied. `fields`: the pipe's fields by
    key, if the caller has them."""
    authority = actor.authority
    if actor.kind != ActorKind.AGENT or authority is None:
        return
    if fields is None:
        fields = {f.key: f for f in pipe.fields.all()}
    key, limit = authority.field, authority.limit
    f = fields.get(key)
    limit_currency = authority.currency or pipe.organization.currency
    limit_text = _plain_amount(limit)
    shown_limit = (
        f"{limit_currency} {limit_text}" if f is not None and f.type == FieldType.CURRENCY else limit_text
    )
    names = {"agent": actor.name, "limit": shown_limit}
    value = values.get(key)
    read = _read_amount(f, value)
    if value in (None, "", {}):
        message = _(
            "This is empty, and %(agent)s may act only on an amount within its authority of %(limit)s."
        )
        reason = f"{key} empty, authority {limit_text} needs an amount"
    elif read is None:
        message = _("%(agent)s cannot read this as an amount within its authority of %(limit)s.")
        reason = f"{key} unreadable, authority {limit_text} needs an amount"
    elif read[1] and read[1] != limit_currency:
        names |= {"currency": read[1], "limit_currency": limit_currency}
        message = _(
            "This amount is in %(currency)s, but the authority of %(agent)s (%(limit)s) is in %(limit_currency)s."
        )
        reason = f"{key} in {read[1]}, authority {limit_text} is in {limit_currency}"
    elif read[0] > limit:
        names |= {"amount": display_value(f, value)}
        message = _("%(amount)s is above the authority of %(agent)s (%(limit)s).")
        reason = f"{key} {_plain_amount(read[0])} exceeds authority {limit_text}"
    else:
        return
    raise CardAuthorityError(
        {key: [message % names, _("A person decides.")]},
        fields={key: f.label if f is not None else key},
        rail_reason=reason,
    )


# ---------------------------------------------------------------- helpers


class _PipeSchema:
    """The fields of a pipe, loaded once per call."""

    def __init__(self, pipe: Pipe):
        self.pipe = pipe
        self.fields: dict[str, Field] = {f.key: f for f in pipe.fields.select_related("phase").all()}
        self.ctx = ParseContext(pipe=pipe)

    def labels(self, keys: Iterable[str]) -> dict[str, str]:
        return {k: self.fields[k].label for k in keys if k in self.fields}

    def visible(self, f: Field, values: Mapping[str, Any]) -> bool:
        return evaluate(f.condition, values)

    def start_fields(self) -> list[Field]:
        return [f for f in self.fields.values() if f.phase_id is None]

    def phase_fields(self, phase: Phase) -> list[Field]:
        return [f for f in self.fields.values() if f.phase_id == phase.pk]


def _lock(card: Card, expected_version: int | None) -> Card:
    """The card re-read under a row lock; raises CardConflictError when its version moved on.

    The pipe and phase come along: from `card` when it holds them already (the same rows: a card
    never changes pipe, and its phase is reused only while the locked row still names it), else
    from the database."""
    # Lock and read the card row alone, in one query: a join would lock the pipe and phase rows too
    # and serialise every move into a phase. Under READ COMMITTED, FOR UPDATE returns the row as the
    # previous lock holder committed it.
    locked = Card.objects.select_for_update().get(pk=card.pk)
    if expected_version is not None and locked.version != expected_version:
        raise CardConflictError(
            _("Someone else changed this card a moment ago. Reload it to see their change, then try again.")
        )
    pipe = card.pipe if _holds(card, "pipe") and _holds(card.pipe, "organization") else None
    phase = card.phase if _holds(card, "phase") and card.phase_id == locked.phase_id else None
    if phase is None:  # one query for what is missing
        phase = Phase.objects.select_related("pipe__organization").get(pk=locked.phase_id)
        pipe = pipe or phase.pipe
    elif pipe is None:
        pipe = Pipe.objects.select_related("organization").get(pk=locked.pipe_id)
    locked.pipe, locked.phase = pipe, phase
    return locked


def _holds(instance, relation: str) -> bool:
    """Whether `instance` has its `relation` loaded already (reading it then costs no query)."""
    return type(instance)._meta.get_field(relation).is_cached(instance)


def _touch(card: Card, *extra: str) -> None:
    card.version += 1
    card.updated_at = timezone.now()
    card.save(update_fields=["version", "updated_at", "event_count", "last_event_hash", *extra])


def _event(
    card: Card, actor: Actor, kind: str, payload: Any, *, reason: str = "", field_keys=()
) -> CardEvent:
    return event_build(
        card=card,
        kind=kind,
        actor_kind=actor.kind,
        actor_user_id=actor.user_id,
        actor_label=actor.label,
        reason=reason,
        payload=payload,
        field_keys=field_keys,
    )


def _announce_change(card: Card, kind: str, field_keys: Iterable[str] = ()) -> None:
    card_id, keys = card.pk, list(field_keys)
    transaction.on_commit(
        lambda: hooks.card_changed.send(sender=Card, card_id=card_id, kind=kind, field_keys=keys)
    )


def _enter_phase(card: Card, phase: Phase) -> PhaseEntry:
    now = timezone.now()
    PhaseEntry.objects.filter(card=card, left_at__isnull=True).update(left_at=now)
    entry = PhaseEntry.objects.create(card=card, phase=phase, entered_at=now)
    transaction.on_commit(lambda: hooks.phase_entered.send(sender=PhaseEntry, entry_id=entry.pk))
    return entry


def _check_room(phase: Phase) -> None:
    """Refuse a card entering `phase` when its blocking WIP limit is reached.

    Locks the phase row before counting, so two cards entering at once cannot both count the same
    cards and both pass: the second waits for the first to commit and then counts it. Only phases with
    a blocking limit are locked (entries into others never wait on each other). Call it inside the
    transaction that moves or creates the card."""
    if not (phase.wip_limit and phase.wip_blocks):
        return
    locked = Phase.objects.select_for_update().only("wip_limit", "wip_blocks").get(pk=phase.pk)
    if not (locked.wip_limit and locked.wip_blocks):
        return
    if Card.objects.filter(phase_id=phase.pk).count() >= locked.wip_limit:
        raise CardTransitionError(
            _("%(phase)s is at its limit of %(n)d cards. Finish one there first.")
            % {"phase": phase.name, "n": locked.wip_limit}
        )


def _check_references(schema: _PipeSchema, f: Field, value: list[int], card: Card | None) -> None:
    """Referenced users, labels, cards and files must exist where the field says."""
    if f.type == FieldType.ASSIGNEE:
        users = set(
            pipe_users_with(schema.pipe, STAFF_PERMS).filter(pk__in=value).values_list("pk", flat=True)
        )
        if set(value) - users:
            raise FieldValueError(_("Choose people who take part in this pipe."))
    elif f.type == FieldType.LABEL:
        if Label.objects.filter(pipe=schema.pipe, pk__in=value).count() != len(value):
            raise FieldValueError(_("Choose labels of this pipe."))
    elif f.type == FieldType.CONNECTION:
        slug = (f.config or {}).get("pipe")
        cards = Card.objects.filter(pk__in=value, pipe__organization_id=schema.pipe.organization_id)
        if slug:
            cards = cards.filter(pipe__slug=slug)
        if cards.count() != len(value):
            raise FieldValueError(_("Choose cards of the connected pipe."))
    elif f.type == FieldType.ATTACHMENT:
        files = (
            CardFile.objects.filter(pk__in=value, card=card, field_key=f.key)
            if card
            else CardFile.objects.none()
        )
        if files.count() != len(value):
            raise FieldValueError(_("Attach files to this card through the upload."))


def _parse_values(
    schema: _PipeSchema, raw: Mapping[str, Any], card: Card | None, errors: dict[str, list[str]]
) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for key, raw_value in raw.items():
        f = schema.fields.get(key)
        if f is None:
            errors[key] = [_("There is no field “%(key)s” in this pipe.") % {"key": key}]
            continue
        try:
            value = parse_value(f, raw_value, schema.ctx)
            if value is not None and f.type in (
                FieldType.ASSIGNEE,
                FieldType.LABEL,
                FieldType.CONNECTION,
                FieldType.ATTACHMENT,
            ):
                _check_references(schema, f, value, card)
        except FieldValueError as exc:
            errors[key] = [str(exc)]
            continue
        parsed[key] = value
    return parsed


def _required_missing(fields: Iterable[Field], values: Mapping[str, Any]) -> dict[str, list[str]]:
    """Required fields among `fields` that their conditions show and `values` leaves empty."""
    return {
        f.key: [_("This field is required.")]
        for f in fields
        if f.required and evaluate(f.condition, values) and not is_filled(f, values.get(f.key))
    }


def _hidden_now(schema: _PipeSchema, values: Mapping[str, Any]) -> list[str]:
    """Keys of fields holding a value although their condition now hides them."""
    return [
        k for k, f in schema.fields.items() if k in values and f.condition and not schema.visible(f, values)
    ]


def _title_for(schema: _PipeSchema, values: Mapping[str, Any], fallback: str) -> str:
    key = schema.pipe.title_field
    if key and key in schema.fields and values.get(key) not in (None, ""):
        return display_value(schema.fields[key], values[key])[:255]
    return fallback[:255]


def _sync_due(schema: _PipeSchema, card: Card) -> None:
    for f in schema.fields.values():
        if f.type == FieldType.DUE_DATE:
            value = card.values.get(f.key)
            card.due_at = parse_datetime(value) if value else None
            return


def _store_files(
    *,
    card: Card,
    schema: _PipeSchema,
    actor: Actor,
    uploads: Mapping[str, Sequence[UploadedFile]],
    errors: dict[str, list[str]],
) -> dict[str, list[CardFile]]:
    """Check every upload first; save them only when all pass."""
    checked = []
    for key, files in uploads.items():
        f = schema.fields.get(key)
        if f is None or f.type != FieldType.ATTACHMENT:
            errors[key] = [_("There is no attachment field “%(key)s” in this pipe.") % {"key": key}]
            continue
        if len(files) > 1 and not (f.config or {}).get("multiple"):
            errors[key] = [_("Attach only one file here.")]
            continue
        max_files = int((f.config or {}).get("max_files", 10))
        if len(files) > max_files:
            errors[key] = [_("Attach at most %(n)d files here.") % {"n": max_files}]
            continue
        for upload in files:
            try:
                checked.append((key, upload, inspect_upload(upload, config=f.config)))
            except FieldValueError as exc:
                errors.setdefault(key, []).append(str(exc))
    if errors:
        return {}
    stored: dict[str, list[CardFile]] = {}
    for key, upload, info in checked:
        card_file = CardFile(
            card=card,
            field_key=key,
            name=info.name,
            size=info.size,
            content_type=info.content_type,
            sha256=info.sha256,
            uploaded_by=actor.user,
        )
        card_file.file.save(info.name, upload, save=False)
        card_file.save()
        stored.setdefault(key, []).append(card_file)
    return stored


# ---------------------------------------------------------------- create


def _check_start(
    *,
    actor: Actor,
    pipe: Pipe,
    values: Mapping[str, Any],
    uploads: Mapping[str, Sequence[UploadedFile]],
    inspect_files: bool,
) -> tuple[_PipeSchema, dict[str, Any]]:
    """The actor's right to file, and the start-form values parsed; raises CardError naming every problem."""
    if actor.kind == ActorKind.USER:
        access = _access(actor, pipe)
        if not (access.can_request or access.can_work):
            raise _deny(_("You may not file requests in %(pipe)s.") % {"pipe": pipe.name})
    elif actor.kind == ActorKind.AGENT:
        raise _deny(_("Agents may not open cards; use an automation step."))
    elif actor.public and not pipe.public_form:
        raise _deny(_("%(pipe)s takes requests only from people with an account.") % {"pipe": pipe.name})
    # Anonymous submissions come through the public form as a system actor (Actor.anonymous).

    schema = _PipeSchema(pipe)
    errors: dict[str, list[str]] = {}
    start_keys = {f.key for f in schema.start_fields()}
    for key in values:
        if key in schema.fields and key not in start_keys:
            errors[key] = [_("This field is filled later in the process, not on the start form.")]
    parsed = _parse_values(schema, {k: v for k, v in values.items() if k not in errors}, None, errors)
    parsed = {k: v for k, v in parsed.items() if v is not None}
    for key, items in uploads.items():
        if items and key in schema.fields:
            parsed[key] = ["pending"]  # stands in for the files while checking required fields
            if inspect_files and schema.fields[key].type == FieldType.ATTACHMENT:
                for upload in items:
                    try:
                        inspect_upload(upload, config=schema.fields[key].config)
                    except FieldValueError as exc:
                        errors.setdefault(key, []).append(str(exc))
    for key in _hidden_now(schema, parsed):
        errors.setdefault(key, []).append(_("This field does not apply to what you answered above."))
    errors.update(
        {k: v for k, v in _required_missing(schema.start_fields(), parsed).items() if k not in errors}
    )
    if errors:
        raise CardError(errors, fields=schema.labels(errors))
    return schema, parsed


def card_check_start(
    *,
    actor: Actor,
    pipe: Pipe,
    values: Mapping[str, Any],
    files: Mapping[str, Sequence[UploadedFile]] | None = None,
) -> None:
    """Run every check card_create would run on a start form, uploads included, and write nothing.

    Raises CardError naming each problem; lets a form show all its errors at once."""
    _check_start(actor=actor, pipe=pipe, values=values, uploads=files or {}, inspect_files=True)


def _check_first_submission(*, actor: Actor, pipe: Pipe, submission_key: str) -> None:
    """Raise CardAlreadySubmittedError if this submission already filed a card in `pipe`.

    Only its own submitter learns of the first card; anyone else holding the key is simply refused."""
    first = Card.objects.select_related("pipe").filter(pipe=pipe, submission_key=submission_key).first()
    if first is None:
        return
    if first.created_by_id != actor.user_id:
        raise CardError(_("This form was already sent."))
    raise CardAlreadySubmittedError(first)


def card_create(
    *,
    actor: Actor,
    pipe: Pipe,
    values: Mapping[str, Any],
    files: Mapping[str, Sequence[UploadedFile]] | None = None,
    title: str = "",
    requester_email: str = "",
    reason: str = "",
    submission_key: str = "",
) -> Card:
    """A new card in the pipe's first phase, from start-form values (and uploads of its attachment fields).

    `submission_key` names one submission of a form (the portal's staging token, or a caller's idempotency
    key): a pipe holds at most one card per key, by a unique constraint, so a second post of the same
    form -- even at the same instant -- raises CardAlreadySubmittedError naming the first card."""
    uploads = files or {}
    if submission_key:
        _check_first_submission(actor=actor, pipe=pipe, submission_key=submission_key)
    schema, parsed = _check_start(actor=actor, pipe=pipe, values=values, uploads=uploads, inspect_files=False)
    errors: dict[str, list[str]] = {}

    first_phase = pipe.phases.order_by("position", "id").first()
    if first_phase is None:
        raise CardError(_("This pipe has no phases yet."))
    saved_files: list[str] = []
    try:
        with transaction.atomic():
            _check_room(first_phase)
            now = timezone.now()
            try:
                with transaction.atomic():
                    card = Card.objects.create(
                        pipe=pipe,
                        phase=first_phase,
                        title=_title_for(schema, parsed, title or pipe.name),
                        values={k: v for k, v in parsed.items() if k not in uploads},
                        created_by=actor.user,
                        requester_email=requester_email or (getattr(actor.user, "email", "") or ""),
                        tracking_token=secrets.token_urlsafe(24),
                        submission_key=submission_key,
                        created_at=now,
                        updated_at=now,
                        phase_entered_at=now,
                        finished_at=now if first_phase.is_final else None,
                    )
            except IntegrityError:
                # A simultaneous post of the same submission got its card in first (the insert waited
                # for it to commit): name that card.
                if submission_key:
                    _check_first_submission(actor=actor, pipe=pipe, submission_key=submission_key)
                raise
            stored = _store_files(card=card, schema=schema, actor=actor, uploads=uploads, errors=errors)
            if errors:
                raise CardError(errors, fields=schema.labels(errors))
            for key, card_files in stored.items():
                saved_files += [cf.file.name for cf in card_files]
                card.values[key] = [cf.pk for cf in card_files]
            _sync_due(schema, card)
            _event(
                card,
                actor,
                EventKind.CREATED,
                {
                    "phase": first_phase.key,
                    "values": card.values,
                    "files": [
                        {"id": cf.pk, "name": cf.name, "sha256": cf.sha256}
                        for cfs in stored.values()
                        for cf in cfs
                    ],
                },
                reason=reason,
                field_keys=card.values.keys(),
            )
            card.save(update_fields=["values", "due_at", "event_count", "last_event_hash"])
            _enter_phase(card, first_phase)
            _announce_change(card, EventKind.CREATED, card.values.keys())
    except BaseException:
        from django.core.files.storage import default_storage

        for name in saved_files:
            default_storage.delete(name)
        raise
    return card


# ---------------------------------------------------------------- update


def _check_update(actor: Actor, card: Card, schema: _PipeSchema, keys: Iterable[str]) -> None:
    keys = list(keys)
    _refuse_public(actor)
    if actor.kind == ActorKind.USER:
        access = _access(actor, card.pipe)
        editable: set[str] = set()  # what a requester may fill on their own card (their data: PII too)
        if _is_own_request(actor, card) and access.can_request:
            editable = {f.key for f in schema.phase_fields(card.phase) if f.requester_editable}
            editable |= set(card.requested_fields or [])
        if access.can_work:
            # A value one may not see is not one's to overwrite (its masked form is all one was shown).
            hidden = [
                k
                for k in keys
                if k in schema.fields
                and schema.fields[k].pii
                and not access.can_view_pii
                and k not in editable
            ]
            if hidden:
                raise CardPermissionError(
                    {k: [_("You may not see this personal data, so you may not change it.")] for k in hidden},
                    fields=schema.labels(hidden),
                )
            return
        if _is_own_request(actor, card) and access.can_request:
            refused = [k for k in keys if k not in editable]
            if not refused:
                return
            raise CardPermissionError(
                {k: [_("You may not change this field now.")] for k in refused}, fields=schema.labels(refused)
            )
        raise _deny(_("You may not change cards of %(pipe)s.") % {"pipe": card.pipe.name})
    if actor.kind == ActorKind.AGENT:
        _check_agent_pipe(actor, card.pipe)
        refused = [k for k in keys if k not in actor.writable_fields]
        if refused:
            raise CardPermissionError(
                {k: [_("Agent %(name)s may not write this field.") % {"name": actor.name}] for k in refused},
                fields=schema.labels(refused),
            )


def card_update_fields(
    *,
    actor: Actor,
    card: Card,
    values: Mapping[str, Any],
    expected_version: int | None = None,
    reason: str = "",
) -> Card:
    """Set field values of `card`. Values the actor may not write, or cannot be parsed, reject the whole call."""
    with transaction.atomic():
        card = _lock(card, expected_version)
        schema = _PipeSchema(card.pipe)
        _check_update(actor, card, schema, values.keys())
        errors: dict[str, list[str]] = {}
        parsed = _parse_values(schema, values, card, errors)
        merged = {**card.values, **parsed}
        merged = {k: v for k, v in merged.items() if v is not None}
        for key in parsed:
            f = schema.fields[key]
            if key in merged and f.condition and not schema.visible(f, merged):
                errors.setdefault(key, []).append(_("This field does not apply to the card's other answers."))
            if (
                f.required
                and f.phase_id is None
                and not is_filled(f, merged.get(key))
                and schema.visible(f, merged)
            ):
                errors.setdefault(key, []).append(_("This field is required."))
        if errors:
            raise CardError(errors, fields=schema.labels(errors))
        cleared = _hidden_now(schema, merged)  # answers that no longer apply are removed, and recorded
        for key in cleared:
            merged.pop(key)
        authority_check(actor=actor, pipe=card.pipe, values=merged, fields=schema.fields)
        changes = {
            key: {"before": card.values.get(key), "after": merged.get(key)}
            for key in set(parsed) | set(cleared)
            if card.values.get(key) != merged.get(key)
        }
        if not changes:
            return card
        card.values = merged
        card.title = _title_for(schema, merged, card.title)
        _sync_due(schema, card)
        _event(card, actor, EventKind.FIELDS_CHANGED, {"changes": changes}, reason=reason, field_keys=changes)
        _touch(card, "values", "title", "due_at")
        _announce_change(card, EventKind.FIELDS_CHANGED, changes)
    return card


# ---------------------------------------------------------------- move


def card_move(
    *,
    actor: Actor,
    card: Card,
    to_phase: Phase,
    expected_version: int | None = None,
    reason: str = "",
) -> Card:
    """Move `card` to `to_phase`, if the process allows it now."""
    with transaction.atomic():
        card = _lock(card, expected_version)
        pipe, source = card.pipe, card.phase
        if to_phase.pipe_id != pipe.pk:
            raise CardTransitionError(_("That phase belongs to another pipe."))
        _refuse_public(actor)
        if actor.kind == ActorKind.USER:
            if not _access(actor, pipe).can_work:
                raise _deny(_("You may not move cards of %(pipe)s.") % {"pipe": pipe.name})
        elif actor.kind == ActorKind.AGENT:
            _check_agent_pipe(actor, pipe)
            if to_phase.key not in actor.allowed_phases:
                raise _deny(
                    _("Agent %(name)s may not move cards to %(phase)s.")
                    % {"name": actor.name, "phase": to_phase.name}
                )
            authority_check(actor=actor, pipe=pipe, values=card.values)
        if to_phase.pk == source.pk:
            raise CardTransitionError(_("The card is already in %(phase)s.") % {"phase": source.name})
        allowed = list(source.allowed_next.order_by("position", "id"))  # (one pipe: no need to sort by it)
        if allowed and to_phase not in allowed:
            names = ", ".join(p.name for p in allowed)
            raise CardTransitionError(
                _("From %(source)s a card may only move to: %(names)s.")
                % {"source": source.name, "names": names}
            )
        if to_phase.position > source.position:
            # The fields of the phase being left must be filled (those their conditions show).
            # pipe.fields.all(): no query when the caller prefetched them (selectors.board_schema).
            leaving = [f for f in pipe.fields.all() if f.phase_id == source.pk]
            missing = _required_missing(leaving, card.values)
            if missing:
                raise CardTransitionError(
                    missing, fields={f.key: f.label for f in leaving if f.key in missing}
                )
        _check_room(to_phase)
        now = timezone.now()
        card.phase = to_phase
        card.phase_entered_at = now
        card.finished_at = now if to_phase.is_final else None
        card.requested_fields = []  # what was asked of the requester was asked for the phase left behind
        card.late_at = None  # late is per phase: the SLA clock of the new phase starts now
        if to_phase.is_final:
            card.expired_at = None  # a finished card is not overdue
        _event(card, actor, EventKind.MOVED, {"from": source.key, "to": to_phase.key}, reason=reason)
        # The move is on the hash-chained timeline: no django-auditlog row (a read of the old row
        # and an insert) for it. Writes that bypass this module still get one.
        with disable_auditlog():
            _touch(
                card, "phase", "phase_entered_at", "finished_at", "requested_fields", "late_at", "expired_at"
            )
        _enter_phase(card, to_phase)
        _announce_change(card, EventKind.MOVED)
    return card


# ---------------------------------------------------------------- people, labels, due date


def _check_work(actor: Actor, card: Card, what: str) -> None:
    _refuse_public(actor)
    if actor.kind == ActorKind.USER and not _access(actor, card.pipe).can_work:
        raise _deny(_("You may not %(what)s on cards of %(pipe)s.") % {"what": what, "pipe": card.pipe.name})
    if actor.kind == ActorKind.AGENT:
        _check_agent_pipe(actor, card.pipe)


def card_assign(
    *,
    actor: Actor,
    card: Card,
    users: Iterable[AbstractBaseUser],
    expected_version: int | None = None,
    reason: str = "",
) -> Card:
    """Make `users` the card's assignees (people who take part in the pipe)."""
    with transaction.atomic():
        card = _lock(card, expected_version)
        _check_work(actor, card, _("assign people"))
        wanted = {u.pk for u in users}
        eligible = set(
            pipe_users_with(card.pipe, STAFF_PERMS).filter(pk__in=wanted).values_list("pk", flat=True)
        )
        if wanted - eligible:
            raise CardError({"assignees": [_("Choose people who take part in this pipe.")]})
        before = sorted(card.assignees.values_list("pk", flat=True))
        if before == sorted(wanted):
            return card
        card.assignees.set(wanted)
        _event(card, actor, EventKind.ASSIGNED, {"before": before, "after": sorted(wanted)}, reason=reason)
        _touch(card)
        _announce_change(card, EventKind.ASSIGNED)
    return card


def card_set_labels(
    *, actor: Actor, card: Card, labels: Iterable[Label], expected_version: int | None = None
) -> Card:
    with transaction.atomic():
        card = _lock(card, expected_version)
        _check_work(actor, card, _("label cards"))
        labels = list(labels)
        if any(label.pipe_id != card.pipe_id for label in labels):
            raise CardError({"labels": [_("Choose labels of this pipe.")]})
        before = sorted(card.labels.values_list("name", flat=True))
        after = sorted(label.name for label in labels)
        if before == after:
            return card
        card.labels.set(labels)
        _event(card, actor, EventKind.LABELED, {"before": before, "after": after})
        _touch(card)
        _announce_change(card, EventKind.LABELED)
    return card


def card_set_due(*, actor: Actor, card: Card, due_at, expected_version: int | None = None) -> Card:
    """Set or clear the card's due date (an aware datetime)."""
    with transaction.atomic():
        card = _lock(card, expected_version)
        _check_work(actor, card, _("set due dates"))
        if due_at is not None and timezone.is_naive(due_at):
            raise CardError({"due_at": [_("Give the due date with its time zone.")]})
        if card.due_at == due_at:
            return card
        payload = {
            "before": card.due_at.isoformat() if card.due_at else None,
            "after": due_at.isoformat() if due_at else None,
        }
        card.due_at = due_at
        _event(card, actor, EventKind.DUE_CHANGED, payload)
        _touch(card, "due_at")
        _announce_change(card, EventKind.DUE_CHANGED)
    return card


# ---------------------------------------------------------------- comments and files


def card_comment(
    *,
    actor: Actor,
    card: Card,
    text: str,
    mentions: Iterable[AbstractBaseUser] = (),
    to_requester: bool = False,
) -> CardEvent:
    """Add a comment to the card's timeline. Requesters may comment on their own cards."""
    text = (text or "").strip()
    with transaction.atomic():
        card = _lock(card, None)
        _refuse_public(actor)
        if actor.kind == ActorKind.USER:
            access = _access(actor, card.pipe)
            if not (
                access.can_work or access.can_review or (_is_own_request(actor, card) and access.can_request)
            ):
                raise _deny(_("You may not comment on this card."))
        elif actor.kind == ActorKind.AGENT:
            _check_agent_pipe(actor, card.pipe)
        if not text:
            raise CardError({"text": [_("Write something to comment.")]})
        if len(text) > 5000:
            raise CardError({"text": [_("Keep comments under 5,000 characters.")]})
        payload = {"text": text, "mentions": sorted(u.pk for u in mentions), "to_requester": to_requester}
        event = _event(card, actor, EventKind.COMMENTED, payload)
        _touch(card)
        _announce_change(card, EventKind.COMMENTED)
    return event


def card_attach_files(
    *,
    actor: Actor,
    card: Card,
    uploads: Sequence[UploadedFile],
    field_key: str = "",
    expected_version: int | None = None,
) -> list[CardFile]:
    """Attach files to the card, to an attachment field when `field_key` is given."""
    saved: list[str] = []
    try:
        with transaction.atomic():
            card = _lock(card, expected_version)
            schema = _PipeSchema(card.pipe)
            if field_key:
                _check_update(actor, card, schema, [field_key])
            else:
                _check_work(actor, card, _("attach files"))
            errors: dict[str, list[str]] = {}
            if field_key:
                existing = list(card.values.get(field_key) or [])
                f = schema.fields.get(field_key)
                if f is not None and existing and not (f.config or {}).get("multiple"):
                    existing = []  # a single-file field: the new file replaces the old one
                stored = _store_files(
                    card=card, schema=schema, actor=actor, uploads={field_key: uploads}, errors=errors
                )
            else:
                stored = {}
                for upload in uploads:
                    try:
                        info = inspect_upload(upload)
                    except Exception as exc:  # noqa: BLE001 - FieldValueError
                        errors.setdefault("files", []).append(str(exc))
                        continue
                    card_file = CardFile(
                        card=card,
                        name=info.name,
                        size=info.size,
                        content_type=info.content_type,
                        sha256=info.sha256,
                        uploaded_by=actor.user,
                    )
                    card_file.file.save(info.name, upload, save=False)
                    card_file.save()
                    stored.setdefault("", []).append(card_file)
            if errors:
                raise CardError(errors, fields=schema.labels(errors))
            new_files = [cf for cfs in stored.values() for cf in cfs]
            saved += [cf.file.name for cf in new_files]
            changes = {}
            if field_key:
                after = existing + [cf.pk for cf in new_files]
                changes[field_key] = {"before": card.values.get(field_key), "after": after}
                card.values[field_key] = after
            _event(
                card,
                actor,
                EventKind.FILE_ADDED,
                {
                    "files": [
                        {"id": cf.pk, "name": cf.name, "sha256": cf.sha256, "size": cf.size}
                        for cf in new_files
                    ],
                    "changes": changes,
                },
                field_keys=changes,
            )
            _touch(card, "values")
            _announce_change(card, EventKind.FILE_ADDED, changes)
    except BaseException:
        from django.core.files.storage import default_storage

        for name in saved:
            default_storage.delete(name)
        raise
    return new_files


def card_request_changes(
    *,
    actor: Actor,
    card: Card,
    field_keys: Sequence[str],
    comment: str,
    to_phase: Phase | None = None,
) -> Card:
    """Send `card` back (to `to_phase`, if given) and ask its requester to correct `field_keys`.

    The requester may then edit exactly those fields from My requests until the card moves on;
    the comment reaches them as a comment addressed to the requester."""
    comment = (comment or "").strip()
    with transaction.atomic():
        card = _lock(card, None)
        _refuse_public(actor)
        if actor.kind == ActorKind.USER:
            access = _access(actor, card.pipe)
            if not (access.can_work or access.can_review):
                raise _deny(_("You may not ask for changes on cards of %(pipe)s.") % {"pipe": card.pipe.name})
        elif actor.kind == ActorKind.AGENT:
            _check_agent_pipe(actor, card.pipe)
        schema = _PipeSchema(card.pipe)
        errors: dict[str, list[str]] = {}
        if not field_keys:
            errors["fields"] = [_("Name at least one field the requester should correct.")]
        for key in field_keys:
            f = schema.fields.get(key)
            if f is None:
                errors[key] = [_("There is no field “%(key)s” in this pipe.") % {"key": key}]
            elif not f.visible_to_requester:
                errors[key] = [_("The requester cannot see this field.")]
        if not comment:
            errors["comment"] = [_("Tell the requester what to change.")]
        if errors:
            raise CardError(errors, fields=schema.labels(errors))
        if to_phase is not None and to_phase.pk != card.phase_id:
            card = card_move(actor=actor, card=card, to_phase=to_phase, reason=comment[:500])
        card.requested_fields = sorted(set(field_keys))
        _event(
            card,
            actor,
            EventKind.COMMENTED,
            {
                "text": comment,
                "mentions": [],
                "to_requester": True,
                "requested_fields": card.requested_fields,
            },
            reason=_("Changes requested"),
            field_keys=card.requested_fields,
        )
        _touch(card, "requested_fields")
        _announce_change(card, "changes_requested", card.requested_fields)
    return card


def card_record_step(*, actor: Actor, card: Card, payload: Mapping[str, Any], reason: str = "") -> CardEvent:
    """Record a step run of the rail on the card's timeline (no field change)."""
    with transaction.atomic():
        card = _lock(card, None)
        event = _event(card, actor, EventKind.STEP, dict(payload), reason=reason)
        card.save(update_fields=["event_count", "last_event_hash"])
    return event


def card_set_rail_status(*, card_id: int, status: str, note: str = "") -> None:
    """Record what the rail is doing with a card (a badge, not a field: no timeline event, no version bump).

    Touches updated_at so open boards pick the change up."""
    if status not in RailStatus.values:
        raise ValueError(f"unknown rail status {status!r}")
    Card.objects.filter(pk=card_id).update(
        rail_status=status, rail_note=note[:300], updated_at=timezone.now()
    )


# ---------------------------------------------------------------- governance: SLA marks and erasure

ERASED = "[erased]"  # what an erased value reads as
OVERDUE_KINDS = (
    EventKind.LATE.value,
    EventKind.EXPIRED.value,
)  # timeline event kinds of SLA marks (see pipes.governance)
_ERASED_AS_TEXT = {FieldType.SHORT_TEXT, FieldType.LONG_TEXT, FieldType.EMAIL, FieldType.PHONE}


def card_mark_overdue(
    *,
    card_id: int,
    kind: str,
    since,
    phase_id: int | None = None,
    payload: Mapping[str, Any] | None = None,
    actor: Actor | None = None,
    reason: str = "",
) -> Card | None:
    """Mark a card late (over its phase's SLA, `phase_id`) or expired (over its pipe's deadline) since `since`.

    Records the mark on the timeline and announces it (hooks.card_changed with kind "late"/"expired").
    Returns None and changes nothing when the card is finished, has left `phase_id`, or already carries
    the mark (for "late": a mark set in its current phase). Not a field change: the version stays, so a
    person editing the card meanwhile is not refused."""
    if kind not in OVERDUE_KINDS:
        raise ValueError(f"unknown overdue kind {kind!r}")
    if timezone.is_naive(since):
        raise ValueError("since must be an aware datetime")
    actor = actor or Actor.system()
    with transaction.atomic():
        try:
            card = _lock(Card(pk=card_id), None)
        except Card.DoesNotExist:
            return None
        if card.finished_at is not None:
            return None
        if kind == "late":
            if phase_id is not None and card.phase_id != phase_id:
                return None
            if card.late_at is not None and card.late_at >= card.phase_entered_at:
                return None
            card.late_at = since
        else:
            if card.expired_at is not None:
                return None
            card.expired_at = since
        _event(card, actor, kind, dict(payload or {}), reason=reason)
        card.updated_at = timezone.now()
        card.save(update_fields=[f"{kind}_at", "updated_at", "event_count", "last_event_hash"])
        _announce_change(card, kind)
    return card


def cards_clear_overdue(*, card_ids: Iterable[int], kind: str) -> int:
    """Clear the late or expired mark of cards that are no longer overdue (moved on, finished, SLA changed).

    A derived badge, not a fact: no timeline event (the move or the design change is the fact)."""
    if kind not in OVERDUE_KINDS:
        raise ValueError(f"unknown overdue kind {kind!r}")
    ids = list(card_ids)
    if not ids:
        return 0
    return Card.objects.filter(pk__in=ids).update(**{f"{kind}_at": None}, updated_at=timezone.now())


@dataclass
class CardErasureResult:
    """What card_erase_personal_data removed from one card."""

    card: Card
    field_keys: list[str]
    file_names: list[str]
    event_seqs: list[int]
    event: CardEvent
    identifiers: list[str]  # the values scrubbed, for redacting copies elsewhere (audit log, traces)


def scrub_personal_data(value: Any, patterns: list) -> Any:
    """`value` with every occurrence of the patterns in its strings replaced by the erasure marker."""
    if isinstance(value, str):
        for pattern in patterns:
            value = pattern.sub(ERASED, value)
        return value
    if isinstance(value, list):
        return [scrub_personal_data(v, patterns) for v in value]
    if isinstance(value, dict):
        return {k: scrub_personal_data(v, patterns) for k, v in value.items()}
    return value


def card_erase_personal_data(
    *,
    actor: Actor,
    card: Card,
    identifiers: Iterable[str] = (),
    field_keys: Iterable[str] = (),
    reason: str = "",
) -> CardErasureResult:
    """Erase personal data from `card`, in one transaction (LGPD/GDPR erasure or retention anonymisation).

    - the values of its PII fields and of `field_keys` become "[erased]" (text fields) or are removed
      (typed fields), and their files are deleted from storage after commit;
    - every occurrence of those values and of `identifiers` in other values, the title, the requester
      email and the card's notifications is replaced by the marker;
    - the payloads of timeline events that held any of it are erased (digests stay, so the chain
      verifies), and an "erased" event lists what was removed — never the values themselves.
    Only pipe admins (and organization owners) or the system may do this."""
    import re

    from django.core.files.storage import default_storage

    from .models import Notification
    from .timeline import canonical, event_payload_erase

    if actor.kind == ActorKind.AGENT:
        raise _deny(_("Agents may not erase personal data."))
    with transaction.atomic():
        card = _lock(card, None)
        if actor.kind == ActorKind.USER and not _access(actor, card.pipe).can_administer:
            raise _deny(_("Only admins of %(pipe)s may erase personal data.") % {"pipe": card.pipe.name})
        schema = _PipeSchema(card.pipe)
        # A card's PII fields describe its subject: erasing only the field that matched would leave
        # their phone, address or documents behind.
        erase_keys = {k for k, f in schema.fields.items() if f.pii} | set(field_keys)
        events = list(card.events.order_by("seq"))
        # The values to scrub everywhere: the identifiers given, and every value the erased fields hold
        # or held (earlier values live on in the timeline and the audit log).
        held: list[Any] = []
        for key in erase_keys:
            f = schema.fields.get(key)
            if f is not None and f.type == FieldType.ATTACHMENT:
                continue  # file ids, not personal data; the files themselves go below
            held.append(card.values.get(key))
            for event in events:
                payload = event.payload if isinstance(event.payload, dict) else {}
                held.append((payload.get("values") or {}).get(key))
                change = (payload.get("changes") or {}).get(key)
                if isinstance(change, dict):
                    held += [change.get("before"), change.get("after")]
        wanted = {str(i).strip() for i in identifiers if i is not None and str(i).strip()}
        for value in held:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str | int) and not isinstance(item, bool) and str(item).strip() != ERASED:
                    wanted.add(str(item).strip())
        wanted = {w for w in wanted if len(w) >= 3}  # shorter strings would scrub unrelated text
        patterns = [re.compile(re.escape(w), re.IGNORECASE) for w in sorted(wanted, key=len, reverse=True)]

        files = [
            cf
            for cf in card.files.all()
            if cf.field_key in erase_keys or any(p.search(cf.name) for p in patterns)
        ]
        file_ids = {cf.pk for cf in files}
        values: dict[str, Any] = {}
        erased_keys: list[str] = []
        for key, value in card.values.items():
            f = schema.fields.get(key)
            if key in erase_keys:
                if f is not None and f.type == FieldType.ATTACHMENT:
                    kept = [i for i in (value or []) if i not in file_ids]
                    if kept:
                        values[key] = kept
                elif f is None or f.type in _ERASED_AS_TEXT:
                    values[key] = ERASED
                erased_keys.append(key)
                continue
            if f is not None and f.type == FieldType.ATTACHMENT and isinstance(value, list):
                value = [i for i in value if i not in file_ids] or None
                if value is None:
                    erased_keys.append(key)
                    continue
            scrubbed = scrub_personal_data(value, patterns)
            if scrubbed != value:
                erased_keys.append(key)
            values[key] = scrubbed
        card.values = values
        card.title = scrub_personal_data(card.title, patterns)[:255]
        if card.pipe.title_field in erase_keys:
            card.title = ERASED
        if card.requester_email and (
            card.requester_email.strip().lower() in {w.lower() for w in wanted}
            or any(p.search(card.requester_email) for p in patterns)
        ):
            card.requester_email = ""

        erased_seqs: list[int] = []
        for event in events:
            if event.payload is None:
                continue
            touches = bool(set(event.field_keys or []) & erase_keys) or any(
                p.search(canonical(event.payload).decode()) for p in patterns
            )
            if event.kind == EventKind.FILE_ADDED and any(
                item.get("id") in file_ids for item in (event.payload or {}).get("files", [])
            ):
                touches = True
            if touches and event_payload_erase(event):
                erased_seqs.append(event.seq)

        file_names = [cf.file.name for cf in files]
        for cf in files:
            cf.delete()
        transaction.on_commit(lambda: [default_storage.delete(name) for name in file_names])
        for note in Notification.objects.filter(card=card):
            message = scrub_personal_data(note.message, patterns)
            if message != note.message:
                Notification.objects.filter(pk=note.pk).update(message=message)

        event = _event(
            card,
            actor,
            EventKind.ERASED,
            {"fields": sorted(set(erased_keys)), "files": len(files), "events": erased_seqs},
            reason=reason,
            field_keys=sorted(set(erased_keys)),
        )
        _touch(card, "values", "title", "requester_email")
        _announce_change(card, EventKind.ERASED, erased_keys)
    return CardErasureResult(
        card=card,
        field_keys=sorted(set(erased_keys)),
        file_names=file_names,
        event_seqs=erased_seqs,
        event=event,
        identifiers=sorted(wanted),
    )
