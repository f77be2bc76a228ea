"""Card writes: create, update fields, move, assign, labels, due date, comment, request changes, and the
rail's step records and status badge."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from functools import partial
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from ..choices import ActorKind, EventKind, FieldType, RailStatus
from ..designcache import design_of
from ..fieldtypes import FieldValueError, is_filled
from ..files import inspect_upload
from ..models import Card, CardEvent, Label, Phase, Pipe
from ..roles import STAFF_PERMS, pipe_users_with
from .actors import Actor, _access, _check_agent_pipe, _deny, _is_own_request, _refuse_public, authority_check
from .common import (
    _announce_change,
    _audit_update,
    _batch_of,
    _check_room,
    _check_update,
    _check_work,
    _enter_phase,
    _event,
    _event_recorded,
    _held,
    _hidden_now,
    _lock,
    _parse_values,
    _PipeSchema,
    _required_missing,
    _store_files,
    _sync_due,
    _title_for,
    _touch,
    _touch_audited,
    _touch_unaudited,
    _write_columns,
    _Writes,
)
from .errors import CardAlreadySubmittedError, CardError, CardTransitionError

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


def _next_card_number(pipe: Pipe) -> int:
    """The pipe's next card number. Call inside the card's transaction: the counter row stays locked
    until it commits, so two cards filed at once get consecutive numbers, and a card that is not
    saved after all gives its number back."""
    if connection.vendor in ("postgresql", "sqlite"):
        # UPDATE ... RETURNING (PostgreSQL, SQLite 3.35+): counted and read in one statement.
        table = Pipe._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET last_card_number = last_card_number + 1 WHERE id = %s "
                "RETURNING last_card_number",
                [pipe.pk],
            )
            return cursor.fetchone()[0]
    Pipe.objects.filter(pk=pipe.pk).update(last_card_number=F("last_card_number") + 1)
    return Pipe.objects.filter(pk=pipe.pk).values_list("last_card_number", flat=True).get()


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
    if pipe.archived_at is not None:  # whoever files it: a person, a webhook, an automation
        raise CardError(_("This process is archived: it takes no new cards."))
    if submission_key:
        _check_first_submission(actor=actor, pipe=pipe, submission_key=submission_key)
    schema, parsed = _check_start(actor=actor, pipe=pipe, values=values, uploads=uploads, inspect_files=False)
    errors: dict[str, list[str]] = {}

    first_phase = schema.design.phases[0] if schema.design.phases else None
    if first_phase is None:
        raise CardError(_("This pipe has no phases yet."))
    saved_files: list[str] = []
    try:
        with transaction.atomic():
            _check_room(first_phase)
            now = timezone.now()
            try:
                # A savepoint only where a duplicate submission can fail the insert: the transaction
                # must still answer the query that names the first card.
                with transaction.atomic() if submission_key else nullcontext():
                    card = Card.objects.create(
                        pipe=pipe,
                        number=_next_card_number(pipe),
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
            inserted = copy.copy(card)  # as inserted, and as its creation's audit entry recorded it
            inserted.values = dict(card.values)
            stored = _store_files(card=card, schema=schema, actor=actor, uploads=uploads, errors=errors)
            if errors:
                raise CardError(errors, fields=schema.labels(errors))
            for key, card_files in stored.items():
                saved_files += [cf.file.name for cf in card_files]
                card.values[key] = [cf.pk for cf in card_files]
            _sync_due(schema, card)
            card.design_stamp = schema.stamp  # what _enter_phase's checks read the design at
            # On PostgreSQL the event, the card's update and its phase entry are written by one statement.
            writes = _Writes() if connection.vendor == "postgresql" else None
            event = _event(
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
                writes=writes,
            )
            # The audit log recorded the card as inserted: an entry for what changed since (its files,
            # its due date), written from that copy rather than by reading the row again.
            _write_columns(card, ["values", "due_at", "event_count", "last_event_hash"], writes=writes)
            _enter_phase(card, first_phase, writes=writes)
            if writes is not None:
                writes.run()
                _event_recorded(event, card)
            _audit_update(inserted, card, ["values", "due_at"])
            _announce_change(card, EventKind.CREATED, card.values.keys(), files=bool(stored))
    except BaseException:
        from django.core.files.storage import default_storage

        for name in saved_files:
            default_storage.delete(name)
        raise
    return card


# ---------------------------------------------------------------- update


def card_update_fields(
    *,
    actor: Actor,
    card: Card,
    values: Mapping[str, Any],
    expected_version: int | None = None,
    reason: str = "",
) -> Card:
    """Set field values of `card`. Values the actor may not write, or cannot be parsed, reject the whole call.

    Given the card a lock of this transaction returned (the rail's, a previous write's), nothing is
    read again and no savepoint is needed: a refusal comes before any write, and a database error in
    the writes rolls the caller's transaction back."""
    batch = _batch_of(card)  # card_writes_together: the writes join those of the block
    with nullcontext() if _held(card) else transaction.atomic():
        card = _lock(card, expected_version, batching=batch is not None)
        schema = _PipeSchema(card.pipe, card.design_stamp)
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
        with transaction.atomic(savepoint=False):
            stored = copy.copy(card)  # the row as locked: the audit entry's "before"
            card.values = merged
            card.title = _title_for(schema, merged, card.title)
            _sync_due(schema, card)
            event = _event(
                card,
                actor,
                EventKind.FIELDS_CHANGED,
                {"changes": changes},
                reason=reason,
                field_keys=changes,
                writes=batch,
            )
            _touch_audited(card, stored, "values", "title", "due_at", writes=batch)
            if batch is not None:
                batch.after(partial(_event_recorded, event, card))
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
    """Move `card` to `to_phase`, if the process allows it now.

    Given a card this transaction locked already (the board's move reads it locked:
    card_get_for_user's `for_update`), no savepoint is opened: every refusal comes before any write,
    and a database error in the writes rolls the caller's transaction back."""
    with nullcontext() if _held(card) else transaction.atomic():
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
        # The pipe's transitions and fields from the design cache, at the stamp the lock read.
        design = design_of(pipe, card.design_stamp)
        known = design.phases_by_id.get(source.pk)
        allowed = list(known.allowed_next.all()) if known is not None else []  # in position order
        if allowed and to_phase.pk not in {p.pk for p in allowed}:
            names = ", ".join(p.name for p in allowed)
            raise CardTransitionError(
                _("From %(source)s a card may only move to: %(names)s.")
                % {"source": source.name, "names": names}
            )
        if to_phase.position > source.position:
            # The fields of the phase being left must be filled (those their conditions show).
            leaving = [f for f in design.fields if f.phase_id == source.pk]
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
        # On PostgreSQL the event, the card and the phase entries are written by one statement.
        writes = _Writes() if connection.vendor == "postgresql" else None
        event = _event(
            card,
            actor,
            EventKind.MOVED,
            {"from": source.key, "to": to_phase.key},
            reason=reason,
            writes=writes,
        )
        # The move is on the hash-chained timeline: no django-auditlog row (a read of the old row
        # and an insert) for it. Writes that bypass this module still get one.
        _touch_unaudited(
            card,
            "phase",
            "phase_entered_at",
            "finished_at",
            "requested_fields",
            "late_at",
            "expired_at",
            writes=writes,
        )
        _enter_phase(card, to_phase, writes=writes)
        if writes is not None:
            writes.run()
            _event_recorded(event, card)
        _announce_change(card, EventKind.MOVED)
    return card


# ---------------------------------------------------------------- people, labels, due date


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
        schema = _PipeSchema(card.pipe, card.design_stamp)
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
    """Record a step run of the rail on the card's timeline (no field change). Given the card a lock of
    this transaction returned, as card_update_fields: no read, no savepoint."""
    batch = _batch_of(card)  # card_writes_together: the event and the card's columns join the block's
    with nullcontext() if _held(card) else transaction.atomic():
        card = _lock(card, None, batching=batch is not None)
        with transaction.atomic(savepoint=False):
            event = _event(card, actor, EventKind.STEP, dict(payload), reason=reason, writes=batch)
            # Only columns the audit log leaves out change: no audit entry, no model signal.
            _write_columns(card, ["event_count", "last_event_hash"], writes=batch)
            if batch is not None:
                batch.after(partial(_event_recorded, event, card))
    return event


def card_set_rail_status(*, card_id: int, status: str, note: str = "") -> None:
    """Record what the rail is doing with a card (a badge, not a field: no timeline event, no version bump).

    Touches updated_at so open boards pick the change up."""
    if status not in RailStatus.values:
        raise ValueError(f"unknown rail status {status!r}")
    Card.objects.filter(pk=card_id).update(
        rail_status=status, rail_note=note[:300], updated_at=timezone.now()
    )
