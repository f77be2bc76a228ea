"""The rail's own writes that people trigger: deciding a review, retrying a failed step.

Card changes still go through pipes.services; these functions add the rail's gates (who
may decide or retry) and continue the card's steps afterwards. A review is decided only through
orchestrator.inbox.services.inbox_decide, which holds the four-eyes and requester rules; the rail's
part of it, `_review_decide`, is private to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from pipes.choices import RailStatus
from pipes.models import Card, Field, Phase, PhaseEntry
from pipes.roles import pipe_access
from pipes.services import (
    Actor,
    CardError,
    card_lock,
    card_move,
    card_record_step,
    card_set_rail_status,
    card_update_fields,
)

from ..models import Mechanism, ReviewStatus, ReviewTask, RunStatus, StepRun, TraceKind
from . import costs
from .dispatch import dispatch_entry
from .reasons import Reason
from .trace import Tracer, timeline_payload


class RailError(Exception):
    """A refused rail action, with a message for the person who tried it."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class RailPermissionError(RailError):
    """The person may not do this."""


def _actor_label(user: AbstractBaseUser) -> str:
    return user.get_full_name() or user.get_username()


def _reopen_entry(entry_id: int) -> None:
    """Put the entry back in the outbox and send it to a worker after commit."""
    PhaseEntry.objects.filter(pk=entry_id).update(processed_at=None, dispatched_at=None)
    transaction.on_commit(lambda: dispatch_entry(entry_id))


def review_open(*, task: ReviewTask, user: AbstractBaseUser) -> None:
    """Note when a reviewer first opened the task (review minutes are counted from here)."""
    if pipe_access(user=user, pipe=task.pipe).can_review:
        ReviewTask.objects.filter(pk=task.pk, opened_at__isnull=True).update(opened_at=timezone.now())


def _review_minutes(task: ReviewTask, now) -> Decimal:
    # From the task's first opening, bounded; 0 if nobody opened it (costs.review_minutes).
    return costs.review_minutes(opened_at=task.opened_at, now=now)


def _review_fields(task: ReviewTask, step, card: Card) -> dict[str, Field]:
    """Fields a reviewer may set with the decision: the agent's writable fields, or the phase's fields."""
    fields = {f.key: f for f in card.pipe.fields.all()}
    if step is not None and step.agent is not None and step.agent.writable_fields:
        keys = set(step.agent.writable_fields)
    else:
        keys = {f.key for f in fields.values() if f.phase_id == card.phase_id}
    return {k: f for k, f in fields.items() if k in keys}


def _review_decide(
    *,
    task: ReviewTask,
    user: AbstractBaseUser,
    decision: str,
    comment: str = "",
    values: Mapping[str, Any] | None = None,
) -> ReviewTask:
    """Record `user`'s decision on `task`, apply it to the card and continue the rail.

    Private to orchestrator.inbox.services.inbox_decide, the one public way to decide a review: it
    checks four-eyes (two distinct approvers) and that the requester does not decide their own case
    before calling this for the final decision. Approving applies the agent's proposed values
    (overridden by `values`); any decision may set the review's fields. Raises RailPermissionError or
    RailError; changes nothing then."""
    values = dict(values or {})
    with transaction.atomic():
        task = (
            ReviewTask.objects.select_for_update(of=("self",))
            .select_related("pipe", "run__step__agent", "run__entry")
            .get(pk=task.pk)
        )
        access = pipe_access(user=user, pipe=task.pipe)
        if not access.can_review:
            raise RailPermissionError(_("You are not a reviewer of %(pipe)s.") % {"pipe": task.pipe.name})
        if task.assignee_id and task.assignee_id != user.pk and not access.can_administer:
            raise RailPermissionError(_("This review is assigned to someone else."))
        if task.status != ReviewStatus.OPEN:
            who = _actor_label(task.decided_by) if task.decided_by else _("the rail")
            raise RailError(
                _("This review was already %(status)s by %(who)s; nothing was changed.")
                % {"status": task.get_status_display().lower(), "who": who}
            )
        if decision not in task.allowed_decisions:
            raise RailError(_("Choose one of: %(choices)s.") % {"choices": ", ".join(task.allowed_decisions)})
        comment = (comment or "").strip()
        if len(comment) > 5000:
            raise RailError(_("Keep the comment under 5,000 characters."))
        run = task.run
        step = run.step
        # Locked through the write path: the writes below neither read nor lock it again.
        card = card_lock(card=Card.objects.select_related("pipe__organization", "phase").get(pk=task.card_id))
        if card.phase_id != run.entry.phase_id:
            raise RailError(_("The card has left the phase of this review; nothing was changed."))
        allowed = _review_fields(task, step, card)
        outside = [k for k in values if k not in allowed]
        if outside:
            raise CardError(
                {k: [_("This review does not set this field.")] for k in outside},
            )
        to_apply: dict[str, Any] = {}
        if decision == "approve" and task.proposal:
            to_apply.update(task.proposal.get("values") or {})
        to_apply.update(values)

        now = timezone.now()
        reviewer = Actor.for_user(user)
        # Reviewers may not edit cards on their own; their decision is applied by the rail.
        actor = Actor.system(_("Review by %(name)s") % {"name": _actor_label(user)})
        if to_apply:
            card = card_update_fields(actor=actor, card=card, values=to_apply, reason=comment[:500])
        target_key = step.next_phase_key(decision) if step is not None else ""
        moved = False
        if target_key and target_key != card.phase.key:
            target = Phase.objects.get(pipe_id=card.pipe_id, key=target_key)
            card = card_move(actor=actor, card=card, to_phase=target, reason=f"{run.step_name}: {decision}")
            moved = True

        minutes = _review_minutes(task, now)
        task.status = ReviewStatus.DECIDED
        task.decision = decision
        task.comment = comment
        task.values = to_apply or None
        task.decided_by = user
        task.decided_at = now
        task.save(update_fields=["status", "decision", "comment", "values", "decided_by", "decided_at"])
        started = run.started_at or task.created_at
        StepRun.objects.filter(pk=run.pk).update(
            status=RunStatus.DONE,
            mechanism=Mechanism.HUMAN,
            decision=decision,
            finished_at=now,
            latency_ms=int((now - started).total_seconds() * 1000),
            cost=F("cost")
            + costs.human_cost(minutes=minutes).to(run.currency or costs.cost_currency()).amount,
        )
        run.refresh_from_db()
        Tracer(run).record(
            TraceKind.REVIEW,
            f"{_actor_label(user)} decided {decision}",
            {
                "decision": decision,
                "comment": comment,
                "values": to_apply,
                "by": user.pk,
                "minutes": str(minutes),
                "moved_to": target_key if moved else None,
            },
        )
        # The record keeps the English sentence; pages say it from the data (orchestrator.rail.reasons).
        decided = Reason.of("review_decided", decision=decision, comment=comment[:400])
        card_record_step(
            actor=reviewer,
            card=card,
            payload=(
                timeline_payload(run, step, comment=comment, reason_data=decided.as_data())
                if step
                else {"run_id": run.pk, "comment": comment, "reason_data": decided.as_data()}
            ),
            reason=decided.record()[:500],
        )
        if moved:
            card_set_rail_status(card_id=card.pk, status=RailStatus.IDLE)
        else:
            card_set_rail_status(
                card_id=card.pk, status=RailStatus.RUNNING, note=_("Continuing after review")
            )
            _reopen_entry(run.entry_id)
    return task


def step_run_retry(*, run: StepRun, user: AbstractBaseUser) -> StepRun:
    """Run a failed step again (a person fixed the cause); the card continues from it."""
    with transaction.atomic():
        run = StepRun.objects.select_for_update(of=("self",)).select_related("pipe", "entry").get(pk=run.pk)
        if not pipe_access(user=user, pipe=run.pipe).can_work:
            raise RailPermissionError(_("You may not retry steps in %(pipe)s.") % {"pipe": run.pipe.name})
        if run.status != RunStatus.FAILED:
            raise RailError(
                _("Only a failed step can be retried; this one is %(s)s.") % {"s": run.get_status_display()}
            )
        if run.entry.left_at is not None:
            raise RailError(_("The card has left the phase of this step; it cannot run again there."))
        StepRun.objects.filter(pk=run.pk).update(
            status=RunStatus.PENDING, attempts=0, next_attempt_at=None, claim_token="", finished_at=None
        )
        run.refresh_from_db()
        Tracer(run).record(TraceKind.RETRY, f"retry requested by {_actor_label(user)}", {"by": user.pk})
        card = Card.objects.get(pk=run.card_id)
        retry = Reason.of("retry_requested", step=run.step_name)
        card_record_step(
            actor=Actor.for_user(user),
            card=card,
            payload={
                "run_id": run.pk,
                "step": run.step_name,
                "status": "retry requested",
                "reason_data": retry.as_data(),
            },
            reason=retry.record(),
        )
        card_set_rail_status(
            card_id=card.pk,
            status=RailStatus.RUNNING,
            note=_("%(step)s: retry queued") % {"step": run.step_name},
        )
        _reopen_entry(run.entry_id)
    return run
