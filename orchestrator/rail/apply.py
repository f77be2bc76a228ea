"""Applying a step's result: through pipes.services, as the agent or the system actor, in one transaction
that also finishes the run, checked against this worker's claim. Or handing the case to a person (a
review task), or retrying and failing the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agents.actions import Effect
from agents.output import agent_decisions
from pipes.choices import RailStatus
from pipes.models import Card, Label, Notification, Phase, PhaseEntry, Pipe
from pipes.roles import pipe_users_with
from pipes.services import (
    Actor,
    Authority,
    card_assign,
    card_comment,
    card_create,
    card_lock,
    card_move,
    card_record_step,
    card_set_labels,
    card_set_rail_status,
    card_update_fields,
    card_writes_together,
)

from ..models import Mechanism, ReviewTask, RunStatus, Step, StepRun, TraceKind
from . import costs, statements
from .outbox import emails_send, emails_write
from .reasons import Reason
from .results import STOP, Apply, Handover, LeaseLost, StepResult, Usage, retry_after
from .trace import Tracer, run_url, timeline_payload


def retry_delay(attempt: int) -> float:
    """Backoff before attempt `attempt + 1`: base · 2^(attempt-1), capped."""
    base = float(getattr(settings, "TRILHO_RAIL_RETRY_BASE_SECONDS", 5))
    return min(
        base * (2 ** max(attempt - 1, 0)), float(getattr(settings, "TRILHO_RAIL_RETRY_MAX_SECONDS", 300))
    )


def _lock_claim(run: StepRun, token: str) -> StepRun:
    """The run re-read under a row lock; LeaseLost unless this worker still holds it."""
    if statements.fast():  # these locks open every step's transaction: spared the ORM's compiling
        locked = statements.row_locked(StepRun, run.pk)
    else:  # SQLite locks the database for the transaction's writes
        locked = StepRun.objects.select_for_update().get(pk=run.pk)
    if locked.claim_token != token or locked.status != RunStatus.RUNNING:
        raise LeaseLost()
    return locked


def agent_actor(agent, pipe_id: int) -> Actor:
    """The agent as the write path knows it: its scope and its authority limit."""
    authority = None
    if agent.authority_field and agent.authority_limit is not None:
        authority = Authority(
            field=agent.authority_field,
            limit=agent.authority_limit,
            currency=agent.authority_currency,
        )
    return Actor.agent(
        name=agent.name,
        pipe_id=pipe_id,
        writable_fields=agent.writable_fields or [],
        allowed_phases=agent.allowed_phases or [],
        authority=authority,
        may_see_pii=agent.may_see_pii,
    )


def reason_fields(reason: Reason) -> dict[str, Any]:
    """A run's reason as stored: the English sentence of the record and the reason as data."""
    return {"routing_reason": reason.record()[:500], "reason_data": reason.as_data()}


def _set_reason(run: StepRun, reason: Reason) -> list[str]:
    for name, value in reason_fields(reason).items():
        setattr(run, name, value)
    return ["routing_reason", "reason_data"]


# The English names of the mechanisms on the timeline's actor ("Local model: Classify"); pages show the
# mechanism's name in the reader's language from the step event's payload (orchestrator.rail.timeline).
MECHANISM_ACTOR = {
    Mechanism.AUTOMATION: "Automation",
    Mechanism.LOCAL_MODEL: "Local model",
    Mechanism.FOUNDATION_MODEL: "Foundation model",
    Mechanism.HUMAN: "Person",
}


def failed_mechanism(run: StepRun, step: Step, usage: Usage) -> str:
    """The mechanism that failed: the run's, the step's, or the model last asked for an `auto` step."""
    if run.mechanism:
        return run.mechanism
    if step.mechanism != Mechanism.AUTO:
        return step.mechanism
    if usage.provider:
        return Mechanism.LOCAL_MODEL if usage.provider == "ollama" else Mechanism.FOUNDATION_MODEL
    return ""


def _actor_for(step: Step, by_agent: bool, pipe_id: int) -> Actor:
    agent = step.agent
    if by_agent and agent is not None:
        return agent_actor(agent, pipe_id)
    return Actor.system(f"Automation: {step.name}")


def _finish(
    run: StepRun, usage: Usage, now, *, card_values: Mapping[str, Any], finished: bool = True
) -> list[str]:
    """Add this attempt's usage to `run` (locked by the caller) and stamp its end; returns the fields to save."""
    run.input_tokens += usage.input_tokens
    run.output_tokens += usage.output_tokens
    run.foundation_tokens += usage.foundation_tokens
    currency = run.currency or costs.cost_currency()
    run.cost += usage.cost.to(currency).amount
    baseline_tokens = usage.baseline_input_tokens or costs.estimate_tokens(dict(card_values))
    run.baseline_cost = costs.baseline_cost(input_tokens=baseline_tokens).to(currency).amount
    if usage.provider:
        run.provider, run.model = usage.provider, usage.model
    run.lease_until = None
    fields = [
        "input_tokens",
        "output_tokens",
        "foundation_tokens",
        "cost",
        "baseline_cost",
        "provider",
        "model",
    ]
    fields.append("lease_until")
    if finished:
        run.finished_at = now
        run.latency_ms = int((now - (run.started_at or now)).total_seconds() * 1000)
        fields += ["finished_at", "latency_ms"]
    return fields


def _apply_effects(*, card: Card, actor: Actor, effects: list[Effect], step: Step) -> tuple[Card, dict]:
    """Apply automation effects through the services; returns the card and what changed."""
    applied: dict[str, Any] = {"fields": {}, "moved_to": None, "other": []}
    for effect in effects:
        if effect.kind == "set_fields":
            card = card_update_fields(actor=actor, card=card, values=effect.data["values"], reason=step.name)
            applied["fields"].update({k: card.values.get(k) for k in effect.data["values"]})
        elif effect.kind == "move":
            phase = Phase.objects.get(pipe_id=card.pipe_id, key=effect.data["to"])
            card = card_move(actor=actor, card=card, to_phase=phase, reason=step.name)
            applied["moved_to"] = phase.key
        elif effect.kind == "assign":
            from django.contrib.auth import get_user_model

            users = list(get_user_model().objects.filter(pk__in=effect.data["user_ids"]))
            card = card_assign(actor=actor, card=card, users=users, reason=step.name)
            applied["other"].append({"assigned": effect.data["user_ids"]})
        elif effect.kind == "add_label":
            labels = list(card.labels.all()) + list(Label.objects.filter(pk=effect.data["label_id"]))
            card = card_set_labels(actor=actor, card=card, labels=labels)
            applied["other"].append({"label": effect.data["label_id"]})
        elif effect.kind == "comment":
            card_comment(actor=actor, card=card, text=effect.data["text"])
            applied["other"].append({"comment": effect.data["text"][:200]})
        elif effect.kind == "create_card":
            target = Pipe.objects.get(pk=effect.data["pipe_id"])
            created = card_create(
                actor=Actor.system(f"Automation: {step.name}"),
                pipe=target,
                values=effect.data["values"],
                reason=f"connected to {card.reference}",
            )
            applied["other"].append({"created_card": created.pk, "pipe": target.slug})
            if effect.data.get("link_field"):
                card = card_update_fields(
                    actor=actor, card=card, values={effect.data["link_field"]: [created.pk]}, reason=step.name
                )
                applied["fields"][effect.data["link_field"]] = [created.pk]
    return card, applied


def apply_result(
    *,
    run: StepRun,
    step: Step,
    entry: PhaseEntry,
    token: str,
    outcome: Apply,
    usage: Usage,
    tracer: Tracer,
    close_entry: bool = False,
    claimed_here: bool = False,
) -> bool:
    """Apply `outcome` and finish the run in one transaction; True when the card moved on.

    `close_entry`: no step follows, so the entry is marked processed in the same transaction.
    `claimed_here`: the run was created in the caller's transaction (loop._run_at_once), which holds
    it and rolls back whole on any error: no lock of the claim, no savepoint."""
    with transaction.atomic(savepoint=not claimed_here):
        locked = run if claimed_here else _lock_claim(run, token)
        # Locked through the write path, with the pipe and phases the entry was read with: the writes
        # below are given this instance and neither read nor lock the card again.
        card = card_lock(card=entry.card)
        now = timezone.now()
        if card.phase_id != entry.phase_id:
            locked.status = RunStatus.SKIPPED
            reason_names = _set_reason(locked, Reason.of("left_while_running"))
            locked.save(update_fields=["status", *reason_names, *_finish(locked, usage, now, card_values={})])
            tracer.flush()
            PhaseEntry.objects.filter(pk=entry.pk).update(processed_at=now)
            entry.processed_at = now
            return True
        actor = _actor_for(step, outcome.by_agent, card.pipe_id)
        emails = [e for e in outcome.effects if e.kind == "send_email"]
        effects = [e for e in outcome.effects if e.kind != "send_email"]
        if outcome.values:
            effects.insert(0, Effect("set_fields", {"values": outcome.values}))
        # The field changes and the step's record on the timeline: one statement on PostgreSQL (their
        # events, the card's row once, the audit entry), not one per event, row update and entry.
        with card_writes_together(card):
            card, applied = _apply_effects(card=card, actor=actor, effects=effects, step=step)
            target_key = step.next_phase_key(outcome.decision) if applied["moved_to"] is None else ""
            if target_key and card.phase.key != target_key:
                phase = Phase.objects.get(pipe_id=card.pipe_id, key=target_key)
                card = card_move(
                    actor=actor, card=card, to_phase=phase, reason=f"{step.name}: {outcome.decision}"
                )
                applied["moved_to"] = target_key
            now = timezone.now()
            locked.status = RunStatus.DONE
            locked.mechanism = outcome.mechanism
            reason_names = _set_reason(locked, outcome.reason)
            locked.decision = outcome.decision
            locked.error = ""
            finished = _finish(locked, usage, now, card_values=card.values)
            if emails:  # written with the result, sent once it is committed (at most once: rail/outbox.py)
                applied["other"] += [{"email": e.data["index"], "to": e.data["to"]} for e in emails]
                emails_write(run=locked, emails=emails)
                transaction.on_commit(partial(emails_send, run_id=locked.pk, worker=locked.claimed_by))
            tracer.add(TraceKind.CHANGES, _changes_summary(applied), applied)
            card_record_step(
                actor=actor, card=card, payload=timeline_payload(locked, step), reason=locked.routing_reason
            )
            moved = applied["moved_to"] is not None
            closes = moved or close_entry
            # The run finished, its trace and the entry processed: sent with the card's writes
            _run_done(
                locked,
                ["status", "mechanism", *reason_names, "decision", "error", *finished],
                tracer,
                entry_id=entry.pk if closes else None,
                now=now,
                card=card,
            )
        if closes:
            entry.processed_at = now
            if card.rail_status != RailStatus.IDLE:
                card_set_rail_status(card_id=card.pk, status=RailStatus.IDLE)
            entry.card.rail_status = RailStatus.IDLE
    return moved


def _run_done(
    run: StepRun, fields: list[str], tracer: Tracer, *, entry_id: int | None, now, card: Card | None = None
) -> None:
    """Store the finished run's `fields`, write its trace and, with `entry_id`, mark the entry processed:
    one statement on PostgreSQL for a run this worker created (statements.run_finished), joined to
    `card`'s gathered writes when given; else three."""
    if statements.fast() and tracer.fresh:
        statements.run_finished(
            run=run,
            fields=fields,
            events=tracer.take_numbered(),
            entry_id=entry_id,
            processed_at=now,
            card=card,
        )
        return
    run.save(update_fields=fields)
    tracer.flush(claim_locked=True)
    if entry_id is not None:
        PhaseEntry.objects.filter(pk=entry_id).update(processed_at=now)


def _changes_summary(applied: Mapping[str, Any]) -> str:
    parts = []
    if applied["fields"]:
        parts.append("set " + ", ".join(sorted(applied["fields"])))
    if applied["other"]:
        parts.append(f"{len(applied['other'])} other change(s)")
    if applied["moved_to"]:
        parts.append(f"moved to {applied['moved_to']}")
    return "; ".join(parts) or "no changes"


def finish_simple(run: StepRun, token: str, status: str, reason: Reason) -> None:
    StepRun.objects.filter(pk=run.pk, claim_token=token).update(
        status=status, **reason_fields(reason), finished_at=timezone.now(), lease_until=None, mechanism=""
    )


# ---------------------------------------------------------------- reviews


def review_decisions(step: Step) -> list[str]:
    if step.agent is not None:
        decisions = [d for d in agent_decisions(step.agent) if d != "escalate"]
        if decisions and decisions != ["done"]:
            return decisions
    return ["approve", "reject"]


def wait_for_review(
    *,
    run: StepRun,
    step: Step,
    entry: PhaseEntry,
    token: str,
    handover: Handover,
    usage: Usage,
    tracer: Tracer,
) -> None:
    """Hand the case to a person: a review task, the card waiting, the entry at rest until the decision."""
    question = step.question or step.name
    with transaction.atomic():
        locked = _lock_claim(run, token)
        card = card_lock(card=entry.card)  # card_record_step below neither reads nor locks it again
        tracer.flush()  # what led here comes first in the trace, before anything the new task sets off
        proposal = handover.proposal
        task = ReviewTask.objects.create(
            run=locked,
            card=card,
            pipe_id=card.pipe_id,
            assignee=step.reviewer,
            question=question,
            proposal=proposal.as_proposal() if proposal else None,
            reasoning=proposal.reasoning if proposal else "",
            confidence=proposal.confidence if proposal else None,
            allowed_decisions=review_decisions(step),
            reason=handover.reason.record()[:500],
        )
        locked.status = RunStatus.WAITING_REVIEW
        locked.mechanism = Mechanism.HUMAN
        reason_names = _set_reason(locked, handover.reason)
        locked.error = ""
        finished = _finish(locked, usage, timezone.now(), card_values=card.values, finished=False)
        locked.save(update_fields=["status", "mechanism", *reason_names, "error", *finished])
        tracer.add(
            TraceKind.REVIEW,
            f"review task #{task.pk}: {question}",
            {"task": task.pk, "reason": locked.routing_reason, "reason_data": locked.reason_data},
        )
        tracer.flush()
        card_record_step(
            actor=Actor.system("Rail"),
            card=card,
            payload=timeline_payload(locked, step, question=question),
            reason=locked.routing_reason,
        )
        card_set_rail_status(card_id=card.pk, status=RailStatus.WAITING_REVIEW, note=question)
        entry.card.rail_status = RailStatus.WAITING_REVIEW
        PhaseEntry.objects.filter(pk=entry.pk).update(processed_at=timezone.now())
        reviewers = [step.reviewer] if step.reviewer else list(pipe_users_with(card.pipe, "review_pipe")[:50])
        Notification.objects.bulk_create(
            Notification(
                user=user, card=card, message=f"{card.reference}: {question}"[:500], url=run_url(run)
            )
            for user in reviewers
            if user is not None
        )


# ---------------------------------------------------------------- failures


def retry_or_fail(
    *, run: StepRun, step: Step, entry: PhaseEntry, token: str, error: str, usage: Usage, tracer: Tracer
) -> StepResult:
    """Put the run back to be retried after a backoff, or fail it when its attempts are spent."""
    if run.attempts >= step.max_attempts:
        fail(run=run, step=step, entry=entry, token=token, error=error, usage=usage, tracer=tracer)
        return STOP
    delay = retry_delay(run.attempts)
    updated = StepRun.objects.filter(pk=run.pk, claim_token=token, status=RunStatus.RUNNING).update(
        status=RunStatus.PENDING,
        claim_token="",
        lease_until=None,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        error=error[:2000],
        input_tokens=F("input_tokens") + usage.input_tokens,
        output_tokens=F("output_tokens") + usage.output_tokens,
        foundation_tokens=F("foundation_tokens") + usage.foundation_tokens,
        cost=F("cost") + usage.cost.to(run.currency or costs.cost_currency()).amount,
    )
    if not updated:
        return STOP
    tracer.record(
        TraceKind.RETRY,
        f"attempt {run.attempts} failed: {error[:200]}; retrying in {delay:g} s",
        {"delay": delay},
    )
    card_set_rail_status(card_id=run.card_id, status=RailStatus.RUNNING, note=f"{step.name}: retrying")
    entry.card.rail_status = RailStatus.RUNNING
    return retry_after(delay)


def fail(
    *, run: StepRun, step: Step, entry: PhaseEntry, token: str, error: str, usage: Usage, tracer: Tracer
) -> None:
    now = timezone.now()
    with transaction.atomic():
        try:
            locked = _lock_claim(run, token)
        except LeaseLost:
            return
        card = card_lock(card=entry.card)  # card_record_step below neither reads nor locks it again
        locked.status = RunStatus.FAILED
        locked.error = error[:2000]
        if not locked.mechanism and step.mechanism != Mechanism.AUTO:
            locked.mechanism = step.mechanism
        finished = _finish(locked, usage, now, card_values=card.values)
        locked.save(update_fields=["status", "error", "mechanism", *finished])
        run = locked
        tracer.add(
            TraceKind.ERROR, f"failed after {run.attempts} attempt(s): {error[:300]}", {"error": error}
        )
        tracer.flush()
        # The timeline names the mechanism that failed (a model step is not an automation).
        mechanism = failed_mechanism(locked, step, usage)
        failed = Reason.of("step_failed", error=error[:400])
        card_record_step(
            actor=Actor.system(f"{MECHANISM_ACTOR.get(mechanism, 'Rail')}: {step.name}"),
            card=card,
            payload=timeline_payload(
                run, step, error=error[:500], mechanism=mechanism, reason_data=failed.as_data()
            ),
            reason=failed.record(),
        )
        card_set_rail_status(card_id=card.pk, status=RailStatus.FAILED, note=f"{step.name}: {error}"[:300])
        entry.card.rail_status = RailStatus.FAILED
        PhaseEntry.objects.filter(pk=entry.pk).update(processed_at=now)
