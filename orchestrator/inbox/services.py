"""Writes of the inbox: open an item for a new review task, decide (with four-eyes), ask the requester
for changes, delegate, approve in bulk, escalate overdue tasks.

Card changes go through pipes.services. inbox_decide is the only public way to decide a review: it
holds the rules every caller must pass (four-eyes: two distinct people approve, whoever drafted the
decision; a requester never decides their own case), then hands the final decision to the rail's
private orchestrator.rail.services._review_decide, which applies it and continues the card. What
the rail has no notion of — the first of two approvals, edits of the agent's draft, delegations,
escalations, a request for changes — is recorded here, on the task, the run's trace and the card's
timeline, in the same transaction as the change it describes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from orchestrator.models import Mechanism, ReviewStatus, ReviewTask, Risk, RunStatus, Step, StepRun, TraceKind
from orchestrator.rail import costs
from orchestrator.rail.services import RailError, RailPermissionError, _review_decide
from orchestrator.rail.trace import Tracer, timeline_payload
from pipes.choices import RailStatus
from pipes.fieldtypes import FieldValueError, ParseContext, is_filled, parse_value
from pipes.models import Card, Field, Notification, Phase
from pipes.roles import PipeAccess, pipe_access, pipe_users_with
from pipes.services import (
    Actor,
    CardError,
    CardPermissionError,
    card_record_step,
    card_request_changes,
    card_set_rail_status,
)

from . import notify
from .models import Decision, InboxItem, ReviewDelegation, ReviewSignoff
from .selectors import (
    draft_personal_labels,
    draft_values,
    move_needs,
    needed_keys,
    reason_fields,
    review_fields,
)

log = logging.getLogger(__name__)

DEFAULT_REVIEW_SLA_HOURS = 24


def person(user: AbstractBaseUser) -> str:
    return user.get_full_name() or user.get_username()


def _trace(run: StepRun, kind: str, summary: str, data: Any = None) -> None:
    """Append one event to the run's trace and write it now (in the caller's transaction)."""
    tracer = Tracer(run)
    tracer.add(kind, summary, data)
    flush = getattr(tracer, "flush", None)  # the rail's Tracer may batch its events
    if flush is not None:
        flush()


# ---------------------------------------------------------------- opening an item


def review_sla_hours(*, step: Step | None, phase: Phase | None) -> int:
    """Hours a person has to decide: the step's review SLA, else its phase's SLA, else the default."""
    # Step has no SLA of its own yet; read one as soon as the rail adds it (see the inbox notes).
    step_hours = getattr(step, "review_sla_hours", None) if step is not None else None
    if step_hours:
        return int(step_hours)
    if phase is not None and phase.sla_hours:
        return int(phase.sla_hours)
    return int(getattr(settings, "TRILHO_REVIEW_SLA_HOURS", DEFAULT_REVIEW_SLA_HOURS))


def inbox_item_open(*, task: ReviewTask) -> InboxItem:
    """The inbox item of `task`, created the first time: its due time and the approvals it needs.

    Creating it also records the agent's proposal, if any, on the run's trace and the card's timeline
    (the rail's own handover event names the reason, not the draft). Idempotent."""
    item = InboxItem.objects.filter(task_id=task.pk).first()
    if item is not None:
        return item
    run = StepRun.objects.select_related("step__agent", "entry__phase").get(pk=task.run_id)
    hours = review_sla_hours(step=run.step, phase=run.entry.phase)
    try:
        with transaction.atomic():
            item = InboxItem.objects.create(
                task=task,
                sla_hours=hours,
                due_at=task.created_at + timedelta(hours=hours),
                approvals_required=2 if run.step is not None and run.step.four_eyes else 1,
            )
            if task.proposal:
                _record_proposal(task, run)
    except IntegrityError:  # opened by someone else meanwhile
        return InboxItem.objects.get(task_id=task.pk)
    return item


def _field_labels(pipe_id: int, keys: Iterable[str]) -> list[str]:
    keys = list(keys)
    labels = dict(Field.objects.filter(pipe_id=pipe_id, key__in=keys).values_list("key", "label"))
    return [labels.get(k, k) for k in keys]


def _record_proposal(task: ReviewTask, run: StepRun) -> None:
    proposal = task.proposal or {}
    values = proposal.get("values") or {}
    agent = run.step.agent if run.step is not None else None
    actor = (
        Actor.agent(
            name=agent.name,
            pipe_id=task.pipe_id,
            writable_fields=agent.writable_fields or [],
            may_see_pii=agent.may_see_pii,
        )
        if agent is not None
        else Actor.system(_("Rail"))
    )
    reason = _("Proposed %(decision)s with confidence %(confidence)s") % {
        "decision": proposal.get("decision", "?"),
        "confidence": proposal.get("confidence", "?"),
    }
    if values:
        reason += " · " + _("draft of %(fields)s") % {
            "fields": ", ".join(_field_labels(task.pipe_id, values))
        }
    _trace(
        run,
        TraceKind.REVIEW,
        f"agent's draft handed to the reviewer: {proposal.get('decision', '?')}",
        {"task": task.pk, "proposal": proposal},
    )
    card_record_step(
        actor=actor,
        card=Card(pk=task.card_id),
        payload={
            "run_id": run.pk,
            "step": run.step_name,
            "task": task.pk,
            "proposal": proposal,
            "reason": task.reason,
        },
        reason=reason[:500],
    )


# ---------------------------------------------------------------- checks


def _lock_task(task_id: int) -> ReviewTask:
    return (
        ReviewTask.objects.select_for_update(of=("self",))
        .select_related(
            "pipe__organization", "card__pipe", "run__step__agent", "run__entry__phase", "assignee"
        )
        .get(pk=task_id)
    )


def _already_closed(task: ReviewTask) -> RailError:
    who = person(task.decided_by) if task.decided_by else _("the rail")
    if task.status == ReviewStatus.CANCELLED:
        return RailError(_("This review was cancelled (the card left its phase); nothing was changed."))
    return RailError(
        _("This review was already decided (%(decision)s) by %(who)s; nothing was changed.")
        % {"decision": task.decision, "who": who}
    )


def check_may_decide(*, task: ReviewTask, user: AbstractBaseUser, access: PipeAccess) -> None:
    """Raise RailPermissionError/RailError unless `user` may decide `task` now. Call holding the task's lock."""
    if not access.can_review:
        raise RailPermissionError(_("You are not a reviewer of %(pipe)s.") % {"pipe": task.pipe.name})
    if task.status != ReviewStatus.OPEN:
        raise _already_closed(task)
    if task.card.created_by_id is not None and task.card.created_by_id == user.pk:
        raise RailPermissionError(
            _("You filed this request, so you cannot decide it: another reviewer will.")
        )
    if ReviewSignoff.objects.filter(task=task, user=user).exists():
        raise RailPermissionError(
            _("You already approved this review; a second, different reviewer must confirm it.")
        )
    if task.assignee_id and task.assignee_id != user.pk and not access.can_administer:
        raise RailPermissionError(_("This review is assigned to %(name)s.") % {"name": person(task.assignee)})


# ---------------------------------------------------------------- deciding


@dataclass
class DecisionOutcome:
    """What a decision did: closed the task, or recorded the first of the approvals it needs."""

    task: ReviewTask
    decision: str
    final: bool
    approvals: int
    approvals_required: int


def parse_review_values(
    fields: Mapping[str, Field], values: Mapping[str, Any], ctx: ParseContext
) -> dict[str, Any]:
    """`values` in their stored form (None for empty), or CardError naming each field that does not parse."""
    errors: dict[str, list[str]] = {}
    parsed: dict[str, Any] = {}
    for key, raw in values.items():
        f = fields.get(key)
        if f is None:
            errors[key] = [_("This review does not set this field.")]
            continue
        try:
            parsed[key] = parse_value(f, raw, ctx)
        except FieldValueError as exc:
            errors[key] = [str(exc)]
    if errors:
        raise CardError(errors, fields={k: f.label for k, f in fields.items() if k in errors})
    return parsed


def _refuse_hidden(values: Mapping[str, Any], *, fields: Mapping[str, Field], access: PipeAccess) -> None:
    """A reviewer who may not see personal data may not set it either (the review shows it masked, or
    not at all): the decision's values are applied as the rail's, past the write path's check of the
    person, so the check is made here, for the screen's, the API's and any other caller's values."""
    hidden = [k for k in values if k in fields and fields[k].pii and not access.can_view_pii]
    if hidden:
        raise CardPermissionError(
            {k: [_("You may not see this personal data, so you may not change it.")] for k in hidden},
            fields={k: fields[k].label for k in hidden},
        )


def _refuse_unseen_draft(*, task: ReviewTask) -> None:
    """Approving applies the agent's draft whole (rail.services._review_decide), personal data included,
    which a reviewer who may not see it was shown masked or not at all: they would vouch for values they
    never saw (one a hostile document steered the agent to write, say). Someone who may see personal
    data approves such a draft; this reviewer may still reject it or ask for changes."""
    hidden = draft_personal_labels(task=task)
    if hidden:
        raise RailPermissionError(
            _(
                "The agent's draft sets personal data you may not see: %(fields)s. Someone who may see "
                "personal data must approve it; you may reject it or ask for changes."
            )
            % {"fields": ", ".join(hidden)}
        )


def _stored(f: Field, value: Any, ctx: ParseContext) -> Any:
    try:
        return parse_value(f, value, ctx)
    except FieldValueError:
        return value


class _DryRun(Exception):
    """Rolls back a decision tried only to see whether the process accepts it."""


def _check_process_accepts(*, task: ReviewTask, user: AbstractBaseUser, values: Mapping[str, Any]) -> None:
    """Raise the CardError the final approval would meet (a required field, a refused move), changing nothing.

    The first approval of a four-eyes task is tried in a savepoint that is always rolled back, so the
    second reviewer confirms something the process will accept."""
    try:
        with transaction.atomic():
            _review_decide(task=task, user=user, decision=Decision.APPROVE, values=values)
            raise _DryRun()
    except _DryRun:
        pass


def _record_edits(
    *, task: ReviewTask, user: AbstractBaseUser, edited: Sequence[str], values: Mapping[str, Any]
) -> None:
    proposed = (task.proposal or {}).get("values") or {}
    changes = {k: {"proposed": proposed.get(k), "reviewer": values.get(k)} for k in edited}
    labels = ", ".join(_field_labels(task.pipe_id, edited))
    _trace(
        task.run,
        TraceKind.REVIEW,
        f"{person(user)} edited the draft: {', '.join(edited)}",
        {"by": user.pk, "edits": changes},
    )
    card_record_step(
        actor=Actor.for_user(user),
        card=task.card,
        payload={"run_id": task.run_id, "step": task.run.step_name, "task": task.pk, "edits": changes},
        reason=f"Edited the agent's draft: {labels}",  # English in the record; orchestrator.rail.reasons translates
    )


def _rejection_values(
    *, task: ReviewTask, card: Card, fields: Mapping[str, Field], parsed: Mapping[str, Any], comment: str
) -> dict[str, Any]:
    """What a rejection's move needs beyond the reviewer's edits, in one pass: the values on screen of
    the required fields the card lacks (the agent's draft included), and the comment as the reason where
    a field asks why (selectors.reason_fields) and is empty, so the reason is typed once."""
    filled = {k: v for k, v in parsed.items() if is_filled(fields[k], v)}
    needed = needed_keys(task=task, card=card, decision=Decision.REJECT)
    extra = {k: v for k, v in filled.items() if k in needed and not is_filled(fields[k], card.values.get(k))}
    merged = {**card.values, **filled}
    reasons = {f.key for f in reason_fields(fields=fields, keys=needed)}
    for f in move_needs(task=task, card=card, decision=Decision.REJECT, values=merged):
        if f.key in reasons and comment:
            extra[f.key] = comment
    return extra


def inbox_decide(
    *,
    task: ReviewTask,
    user: AbstractBaseUser,
    decision: str,
    comment: str = "",
    values: Mapping[str, Any] | None = None,
) -> DecisionOutcome:
    """Record `user`'s decision on `task`.

    `values` are the review's fields as the reviewer left them (raw input). Approving applies them
    all (the agent's draft with the reviewer's edits); any other decision applies only the fields the
    reviewer changed. A four-eyes task records the first approval and waits for a second, different
    reviewer, who confirms the first approver's values; a rejection by either ends it. The card's
    requester never decides their own case. Raises RailPermissionError, RailError or CardError and
    then changes nothing."""
    if decision == Decision.REQUEST_CHANGES:
        raise RailError(_("Name the fields to correct: use the request-changes form."))
    comment = (comment or "").strip()
    values = dict(values or {})
    with transaction.atomic():
        task = _lock_task(task.pk)
        access = pipe_access(user=user, pipe=task.pipe)
        check_may_decide(task=task, user=user, access=access)
        if decision not in task.allowed_decisions:
            raise RailError(_("Choose one of: %(choices)s.") % {"choices": ", ".join(task.allowed_decisions)})
        if decision == Decision.REJECT and not comment:
            raise CardError({"comment": [_("Say why you reject it: the comment is required.")]})
        item = inbox_item_open(task=task)
        card = Card.objects.select_related("pipe__organization", "phase").get(pk=task.card_id)
        fields = review_fields(task=task, card=card)
        _refuse_hidden(values, fields=fields, access=access)
        if decision == Decision.APPROVE and not access.can_view_pii:
            _refuse_unseen_draft(task=task)
        ctx = ParseContext(pipe=card.pipe)
        first = (
            ReviewSignoff.objects.filter(task=task, decision=Decision.APPROVE).select_related("user").first()
        )
        parsed = parse_review_values(fields, values, ctx)
        if first is not None:
            # The second reviewer confirms what the first approved; changing it is a new review.
            confirmed = first.values or {}
            if any(parsed[k] != confirmed.get(k) for k in parsed):
                raise RailError(
                    _(
                        "The second approval confirms the first approver's values; to change them, reject or request changes."
                    )
                )
            edited: list[str] = []
            values = dict(confirmed)
            if (
                decision != Decision.APPROVE
            ):  # a rejection keeps only what the first reviewer typed themselves
                values = {k: v for k, v in values.items() if k in (first.edited_keys or [])}
        else:
            draft = {
                k: _stored(fields[k], v, ctx)
                for k, v in draft_values(task=task, card=card, fields=fields).items()
            }
            edited = [k for k in parsed if parsed[k] != draft.get(k)]
            values = parsed if decision == Decision.APPROVE else {k: parsed[k] for k in edited}
            if decision == Decision.REJECT:
                values.update(
                    _rejection_values(task=task, card=card, fields=fields, parsed=parsed, comment=comment)
                )
        approvals = (1 if first is not None else 0) + (1 if decision == Decision.APPROVE else 0)

        if decision == Decision.APPROVE and approvals < item.approvals_required:
            _check_process_accepts(task=task, user=user, values=values)
            ReviewSignoff.objects.create(
                task=task, user=user, decision=decision, comment=comment, values=values, edited_keys=edited
            )
            if task.assignee_id == user.pk:
                # The assignee gave the first approval: the second is open to the pipe's other reviewers.
                ReviewTask.objects.filter(pk=task.pk).update(assignee=None)
                task.assignee = None
            minutes = _bill_first_reviewer(task)
            if edited and task.proposal:
                _record_edits(task=task, user=user, edited=edited, values=values)
            _trace(
                task.run,
                TraceKind.REVIEW,
                f"{person(user)} approved ({approvals} of {item.approvals_required}); waiting for another reviewer",
                {
                    "by": user.pk,
                    "decision": decision,
                    "comment": comment,
                    "values": values,
                    "stage": approvals,
                    "minutes": str(minutes),
                },
            )
            card_record_step(
                actor=Actor.for_user(user),
                card=card,
                payload=timeline_payload(
                    task.run, task.run.step, comment=comment, approvals=approvals, values=values
                )
                if task.run.step
                else {"run_id": task.run_id},
                # English in the record; orchestrator.rail.reasons translates it for the reader
                reason=f"Approved ({approvals} of {item.approvals_required}): a second reviewer must confirm"
                + (f": {comment[:300]}" if comment else ""),
            )
            card_set_rail_status(
                card_id=card.pk, status=RailStatus.WAITING_REVIEW, note=_("Waiting for a second approval")
            )
            task_id, user_id = task.pk, user.pk
            transaction.on_commit(
                lambda: notify.second_approval_needed(task_id=task_id, first_user_id=user_id)
            )
            return DecisionOutcome(task, decision, False, approvals, item.approvals_required)

        if edited and task.proposal:  # without a draft, the field change itself is the record
            _record_edits(task=task, user=user, edited=edited, values=values)
        task = _review_decide(task=task, user=user, decision=decision, comment=comment, values=values)
        ReviewSignoff.objects.create(
            task=task,
            user=user,
            decision=decision,
            comment=comment,
            values=values or None,
            edited_keys=edited,
            final=True,
        )
        task_id = task.pk
        transaction.on_commit(lambda: notify.decision_to_requester(task_id=task_id))
    return DecisionOutcome(task, decision, True, approvals, item.approvals_required)


def _bill_first_reviewer(task: ReviewTask) -> Decimal:
    """Add the first approver's minutes of a four-eyes task to its run's cost, and restart the clock.

    The final decision bills the minutes from the task's opening (orchestrator.rail.services); clearing
    `opened_at` here makes that opening the second reviewer's (review_open sets it again), so each
    reviewer's own minutes are counted once."""
    now = timezone.now()
    minutes = _review_minutes(task, now)
    run = task.run
    if minutes:
        StepRun.objects.filter(pk=run.pk).update(
            cost=F("cost")
            + costs.human_cost(minutes=minutes).to(run.currency or costs.cost_currency()).amount
        )
    ReviewTask.objects.filter(pk=task.pk).update(opened_at=None)
    task.opened_at = None
    return minutes


# ---------------------------------------------------------------- asking the requester


def _review_minutes(task: ReviewTask, now) -> Decimal:
    # From the task's first opening, bounded; 0 if nobody opened it (costs.review_minutes).
    return costs.review_minutes(opened_at=task.opened_at, now=now)


def card_has_requester(card: Card) -> bool:
    """Whether someone can be asked for corrections: the person who filed the card (they edit in My requests)."""
    return card.created_by_id is not None


def inbox_request_changes(
    *,
    task: ReviewTask,
    user: AbstractBaseUser,
    field_keys: Sequence[str],
    comment: str,
    to_phase: Phase | None = None,
) -> ReviewTask:
    """Close `task` by asking the card's requester to correct `field_keys` (pipes.services.card_request_changes),
    sending the card back to `to_phase` if given. The task is decided "request_changes", its run done; the
    requester sees the fields in My requests and gets an email. Either reviewer of a four-eyes task may do it."""
    comment = (comment or "").strip()
    with transaction.atomic():
        task = _lock_task(task.pk)
        access = pipe_access(user=user, pipe=task.pipe)
        check_may_decide(task=task, user=user, access=access)
        card = task.card
        if not card_has_requester(card):
            raise RailError(_("This card has no requester to ask; reject it or decide it yourself."))
        if to_phase is not None and to_phase.pipe_id != task.pipe_id:
            raise RailError(_("That phase belongs to another pipe."))
        inbox_item_open(task=task)
        run, step = task.run, task.run.step
        if card.phase_id != run.entry.phase_id:
            raise RailError(_("The card has left the phase of this review; nothing was changed."))
        # Reviewers may not move cards on their own; as in _review_decide, the rail acts on their behalf.
        actor = Actor.system(_("Review by %(name)s") % {"name": person(user)})
        card = card_request_changes(
            actor=actor, card=card, field_keys=list(field_keys), comment=comment, to_phase=to_phase
        )
        moved = card.phase_id != run.entry.phase_id
        now = timezone.now()
        minutes = _review_minutes(task, now)
        ReviewTask.objects.filter(pk=task.pk).update(
            status=ReviewStatus.DECIDED,
            decision=Decision.REQUEST_CHANGES,
            comment=comment,
            values=None,
            decided_by=user,
            decided_at=now,
        )
        started = run.started_at or task.created_at
        StepRun.objects.filter(pk=run.pk).update(
            status=RunStatus.DONE,
            mechanism=Mechanism.HUMAN,
            decision=Decision.REQUEST_CHANGES,
            finished_at=now,
            latency_ms=int((now - started).total_seconds() * 1000),
            cost=F("cost")
            + costs.human_cost(minutes=minutes).to(run.currency or costs.cost_currency()).amount,
        )
        run.refresh_from_db()
        keys = sorted(set(field_keys))
        _trace(
            run,
            TraceKind.REVIEW,
            f"{person(user)} requested changes from the requester: {', '.join(keys)}",
            {
                "decision": Decision.REQUEST_CHANGES,
                "comment": comment,
                "fields": keys,
                "by": user.pk,
                "minutes": str(minutes),
                "moved_to": card.phase.key if moved else None,
            },
        )
        card_record_step(
            actor=Actor.for_user(user),
            card=card,
            payload=timeline_payload(run, step, comment=comment, requested_fields=keys)
            if step
            else {"run_id": run.pk, "requested_fields": keys},
            # English in the record; orchestrator.rail.reasons translates it for the reader
            reason="Asked the requester to correct: " + ", ".join(_field_labels(card.pipe_id, keys)),
        )
        card_set_rail_status(
            card_id=card.pk, status=RailStatus.IDLE, note="" if moved else _("Waiting for the requester")
        )
        ReviewSignoff.objects.create(
            task=task, user=user, decision=Decision.REQUEST_CHANGES, comment=comment, final=True
        )
        task.refresh_from_db()
        task_id = task.pk
        transaction.on_commit(lambda: notify.changes_requested(task_id=task_id))
    return task


# ---------------------------------------------------------------- delegation


def inbox_delegate(
    *, task: ReviewTask, user: AbstractBaseUser, to_user: AbstractBaseUser, note: str = ""
) -> ReviewTask:
    """Hand `task` to another reviewer of its pipe (recorded on the task, trace and timeline; they are told)."""
    note = (note or "").strip()[:500]
    with transaction.atomic():
        task = _lock_task(task.pk)
        access = pipe_access(user=user, pipe=task.pipe)
        if not access.can_review:
            raise RailPermissionError(_("You are not a reviewer of %(pipe)s.") % {"pipe": task.pipe.name})
        if task.status != ReviewStatus.OPEN:
            raise _already_closed(task)
        if task.assignee_id and task.assignee_id != user.pk and not access.can_administer:
            raise RailPermissionError(
                _("Only %(name)s or an admin of the pipe may hand this review on.")
                % {"name": person(task.assignee)}
            )
        if to_user.pk == task.assignee_id:
            raise RailError(_("%(name)s already has this review.") % {"name": person(to_user)})
        if not pipe_access(user=to_user, pipe=task.pipe).can_review:
            raise RailError(
                _("%(name)s is not a reviewer of %(pipe)s.")
                % {"name": person(to_user), "pipe": task.pipe.name}
            )
        if to_user.pk == task.card.created_by_id:
            raise RailError(
                _("%(name)s filed this request and cannot review it.") % {"name": person(to_user)}
            )
        if ReviewSignoff.objects.filter(task=task, user=to_user).exists():
            raise RailError(
                _("%(name)s already approved this review; a different reviewer must confirm it.")
                % {"name": person(to_user)}
            )
        previous = task.assignee
        ReviewTask.objects.filter(pk=task.pk).update(assignee=to_user)
        ReviewDelegation.objects.create(task=task, from_user=previous, to_user=to_user, by=user, note=note)
        _trace(
            task.run,
            TraceKind.REVIEW,
            f"{person(user)} delegated the review to {person(to_user)}",
            {"by": user.pk, "from": previous.pk if previous else None, "to": to_user.pk, "note": note},
        )
        card_record_step(
            actor=Actor.for_user(user),
            card=task.card,
            payload={
                "run_id": task.run_id,
                "step": task.run.step_name,
                "task": task.pk,
                "delegated_to": to_user.pk,
            },
            # English in the record; orchestrator.rail.reasons translates it for the reader
            reason=f"Delegated the review to {person(to_user)}" + (f": {note}" if note else ""),
        )
        task.assignee = to_user
        task_id, to_id, by_id = task.pk, to_user.pk, user.pk
        transaction.on_commit(lambda: notify.delegated(task_id=task_id, to_user_id=to_id, by_user_id=by_id))
    return task


# ---------------------------------------------------------------- bulk


@dataclass
class BulkResult:
    """Tasks approved together, and those that were not (each with the reason)."""

    approved: list[ReviewTask] = field(default_factory=list)
    refused: list[tuple[ReviewTask, str]] = field(default_factory=list)


def inbox_bulk_approve(
    *,
    task_ids: Iterable[int],
    user: AbstractBaseUser,
    comment: str = "",
    values: Mapping[str, Any] | None = None,
) -> BulkResult:
    """Approve several open tasks of one low-risk, single-approval step, each in its own transaction and
    recorded individually (as if approved one by one, with the agent's draft as proposed).

    `values` (raw input) are the fields the reviewer filled once for the selection: each task gets those
    its approval still needs (required by the move, empty on the card and in the draft), never more."""
    shared = {k: v for k, v in (values or {}).items() if v not in ("", [], None)}
    ids = sorted({int(i) for i in task_ids})
    if not ids:
        raise RailError(_("Select the tasks to approve."))
    if len(ids) > 100:
        raise RailError(_("Approve at most 100 tasks at once."))
    tasks = list(
        ReviewTask.objects.filter(pk__in=ids).select_related("run__step", "card__pipe", "card__phase", "pipe")
    )
    steps = {t.run.step_id for t in tasks}
    if len(tasks) != len(ids) or len(steps) != 1 or None in steps:
        raise RailError(_("Choose tasks of one and the same step to approve them together."))
    step = tasks[0].run.step
    if step.risk != Risk.LOW:
        raise RailError(_("Only tasks of low-risk steps may be approved together."))
    if step.four_eyes:
        raise RailError(_("Four-eyes steps need two reviewers each; approve them one by one."))
    for task in tasks:
        if not pipe_access(user=user, pipe=task.pipe).can_review:
            raise RailPermissionError(_("You are not a reviewer of %(pipe)s.") % {"pipe": task.pipe.name})
    result = BulkResult()
    for task in tasks:
        card = task.card
        draft = {**card.values, **((task.proposal or {}).get("values") or {})}
        needed = {f.key for f in move_needs(task=task, card=card, decision=Decision.APPROVE, values=draft)}
        try:
            outcome = inbox_decide(
                task=task,
                user=user,
                decision=Decision.APPROVE,
                comment=comment,
                values={k: v for k, v in shared.items() if k in needed},
            )
        except (RailError, CardError) as exc:
            result.refused.append((task, exc.message))
        else:
            result.approved.append(outcome.task)
    return result


# ---------------------------------------------------------------- escalation


def inbox_open_missing(*, limit: int = 200) -> int:
    """Open inbox items for open review tasks that have none (made before the inbox was installed, or
    while opening failed); returns how many were opened."""
    opened = 0
    for task in ReviewTask.objects.filter(status=ReviewStatus.OPEN, inbox__isnull=True).order_by("pk")[
        :limit
    ]:
        try:
            with transaction.atomic():
                inbox_item_open(task=task)
            opened += 1
        except Exception:  # noqa: BLE001 - one broken task must not stop the others
            log.exception("could not open the inbox item of review task %s", task.pk)
    return opened


def inbox_escalate_overdue(*, now=None, limit: int = 200) -> int:
    """Escalate open tasks past their due time to the pipe's admins (once each): flagged in the inbox,
    recorded on the trace and timeline, admins told in the app and by email. Returns how many escalated."""
    now = now or timezone.now()
    due = (
        InboxItem.objects.filter(task__status=ReviewStatus.OPEN, escalated_at__isnull=True, due_at__lt=now)
        .order_by("due_at")
        .values_list("task_id", flat=True)[:limit]
    )
    escalated = 0
    for task_id in list(due):
        with transaction.atomic():
            if not InboxItem.objects.filter(task_id=task_id, escalated_at__isnull=True).update(
                escalated_at=now
            ):
                continue  # another beat run took it
            task = ReviewTask.objects.select_related("pipe", "card", "run", "assignee").get(pk=task_id)
            item = InboxItem.objects.get(task_id=task_id)
            admins = list(pipe_users_with(task.pipe, "administer_pipe")[:50])
            late = now - item.due_at
            _trace(
                task.run,
                TraceKind.REVIEW,
                f"review overdue since {item.due_at:%Y-%m-%d %H:%M} UTC: escalated to the pipe's admins",
                {"due_at": item.due_at.isoformat(), "admins": [u.pk for u in admins]},
            )
            card_record_step(
                actor=Actor.system(_("Rail")),
                card=task.card,
                payload={
                    "run_id": task.run_id,
                    "step": task.run.step_name,
                    "task": task.pk,
                    "escalated": True,
                },
                # English in the record; orchestrator.rail.reasons translates it for the reader
                reason=f"Review overdue (SLA {item.sla_hours} h): escalated to the pipe's admins",
            )
            message = _("Overdue review escalated to you: %(ref)s %(title)s — %(question)s") % {
                "ref": task.card.reference,
                "title": task.card.title,
                "question": task.question,
            }
            url = notify.task_path(task.pk)
            Notification.objects.bulk_create(
                Notification(user=u, card=task.card, message=message[:500], url=url) for u in admins
            )
            hours_late = int(late.total_seconds() // 3600)
            transaction.on_commit(
                lambda task_id=task_id, ids=[u.pk for u in admins], h=hours_late: notify.escalated(
                    task_id=task_id, admin_ids=ids, hours_late=h
                )
            )
            escalated += 1
    return escalated
