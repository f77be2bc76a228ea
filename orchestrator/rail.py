"""The rail: run the steps of a phase entry, in order, each by the right mechanism.

A worker claims a step run (one per entry and step) with a lease, executes it outside any
transaction (actions, model calls), and applies the result in one transaction that also
marks the run done, checked against its claim: a run whose worker died is claimed again
when its lease expires, and its effects are applied exactly once. Every hop leaves trace
events; every result goes through pipes.services as the agent or the system actor.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Max, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from agents.actions import EXTERNAL, ActionError, Effect, actions_run
from agents.context import agent_input_build, prompt_build
from agents.llm import ModelRefused, ModelUnavailable, model_call
from agents.output import (
    AgentAnswer,
    InvalidOutput,
    agent_decisions,
    answer_parse,
    answer_schema,
)
from pipes.choices import RailStatus
from pipes.conditions import evaluate
from pipes.fieldtypes import ParseContext
from pipes.models import Card, Field, Label, Notification, Phase, PhaseEntry, Pipe
from pipes.roles import pipe_users_with
from pipes.services import (
    Actor,
    Authority,
    CardAuthorityError,
    CardError,
    authority_check,
    card_assign,
    card_comment,
    card_create,
    card_move,
    card_record_step,
    card_set_labels,
    card_set_rail_status,
    card_update_fields,
)

from . import costs
from .models import (
    Mechanism,
    PipeRailSettings,
    ReviewStatus,
    ReviewTask,
    Risk,
    RunStatus,
    Step,
    StepRun,
    TraceEvent,
    TraceKind,
    Trigger,
)

log = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def lease_seconds() -> int:
    return int(getattr(settings, "TRILHO_RAIL_LEASE_SECONDS", 300))


def retry_delay(attempt: int) -> float:
    """Backoff before attempt `attempt + 1`: base · 2^(attempt-1), capped."""
    base = float(getattr(settings, "TRILHO_RAIL_RETRY_BASE_SECONDS", 5))
    return min(
        base * (2 ** max(attempt - 1, 0)), float(getattr(settings, "TRILHO_RAIL_RETRY_MAX_SECONDS", 300))
    )


def model_timeout() -> float:
    return float(getattr(settings, "TRILHO_MODEL_TIMEOUT_SECONDS", 60))


# ---------------------------------------------------------------- results of one step


class StepTransient(Exception):
    """A failure a later attempt may not have (timeouts, 5xx, unreachable model, invalid answer)."""


class StepPermanent(Exception):
    """A failure no retry fixes (a refused request, a missing secret, a card the process rejects)."""


class LeaseLost(Exception):
    """Another worker took this run over; this worker must not apply anything."""


@dataclass
class Usage:
    """Tokens and money a run spent so far."""

    input_tokens: int = 0
    output_tokens: int = 0
    foundation_tokens: int = 0
    # in the cost currency; each call's price is converted at the operator's rate (costs.Money.to)
    cost: costs.Money = field(default_factory=lambda: costs.Money.zero(costs.cost_currency()))
    baseline_input_tokens: int = 0
    provider: str = ""
    model: str = ""

    def add(self, *, provider: str, model: str, input_tokens: int, output_tokens: int) -> costs.Money:
        """Count one model call; returns its cost as priced (in the price's own currency)."""
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        if provider != "ollama":
            self.foundation_tokens += input_tokens + output_tokens
        priced = costs.model_cost(
            provider=provider, model=model, input_tokens=input_tokens, output_tokens=output_tokens
        )
        self.cost = self.cost + priced.to(self.cost.currency)
        self.baseline_input_tokens = max(self.baseline_input_tokens, input_tokens)
        self.provider, self.model = provider, model
        return priced


@dataclass
class Apply:
    """Apply a decision: values, effects and the move the decision leads to."""

    mechanism: str
    reason: str
    decision: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    effects: list[Effect] = field(default_factory=list)
    by_agent: bool = False
    proposal: AgentAnswer | None = None  # the agent's answer, handed to a person if the process refuses it


@dataclass
class Handover:
    """A person decides: a review task with the agent's proposal, if any."""

    reason: str
    proposal: AgentAnswer | None = None


@dataclass
class EntryOutcome:
    """What the worker should do after running an entry."""

    retry_in: float | None = None


# ---------------------------------------------------------------- trace


class Tracer:
    """Collects a run's trace events in order and writes them in batches.

    Events are flushed before anything that may not come back (a model or HTTP call, an
    email) and inside the transaction that finishes the run, so a crash loses nothing that
    happened before the call, and a quick automation costs one INSERT for its whole trace."""

    def __init__(self, run: StepRun, *, fresh: bool = False):
        self.run = run
        self.seq: int | None = 0 if fresh else None
        self.pending: list[TraceEvent] = []

    def add(self, kind: str, summary: str = "", data: Any = None) -> None:
        self.pending.append(
            TraceEvent(
                run=self.run,
                attempt=self.run.attempts,
                kind=kind,
                summary=str(summary)[:500],
                data=data,
                created_at=timezone.now(),
            )
        )

    def record(self, kind: str, summary: str = "", data: Any = None) -> None:
        """Add an event and write it now."""
        self.add(kind, summary, data)
        self.flush()

    def _last_seq(self) -> int:
        return TraceEvent.objects.filter(run=self.run).aggregate(m=Max("seq"))["m"] or 0

    def flush(self) -> None:
        if not self.pending:
            return
        for _try in range(3):
            if self.seq is None:
                self.seq = self._last_seq()
            for offset, event in enumerate(self.pending, start=1):
                event.seq = self.seq + offset
            try:
                with transaction.atomic(savepoint=connection.in_atomic_block):
                    TraceEvent.objects.bulk_create(self.pending)
            except IntegrityError:  # numbers taken by a worker that held this run before
                self.seq = None
                for event in self.pending:
                    event.pk = None
                continue
            self.seq += len(self.pending)
            self.pending = []
            return
        raise RuntimeError("could not append trace events")


class RunLedger:
    """External actions already performed by this run (kept as trace events, committed at once)."""

    def __init__(self, tracer: Tracer):
        self.tracer = tracer

    def done(self, index: int) -> dict | None:
        event = (
            TraceEvent.objects.filter(
                run=self.tracer.run, kind__in=[TraceKind.HTTP_CALL, TraceKind.TOOL_CALL]
            )
            .filter(data__ledger_index=index)
            .order_by("seq")
            .first()
        )
        return event.data.get("outcome") if event else None

    def record(self, index: int, outcome: dict, call: dict) -> None:
        kind = TraceKind.HTTP_CALL if call.get("type") == "http" else TraceKind.TOOL_CALL
        summary = (
            f"{call.get('method')} {call.get('url')} → {call.get('status')}"
            if kind == TraceKind.HTTP_CALL
            else f"{call.get('type')} sent"
        )
        self.tracer.record(kind, summary, {**call, "ledger_index": index, "outcome": outcome})


# ---------------------------------------------------------------- entry loop


def _overdue_triggers(entry: PhaseEntry) -> list[str]:
    """The overdue triggers that hold for the card in this stay: late (marked in this phase), expired."""
    card, triggers = entry.card, []
    if card.late_at is not None and card.late_at >= entry.entered_at:
        triggers.append(Trigger.LATE)
    if card.expired_at is not None:
        triggers.append(Trigger.EXPIRED)
    return triggers


def entry_run(*, entry_id: int) -> EntryOutcome:
    """Run the steps of a phase entry that are still to run; stop at a move, a review, a failure or a retry.

    Steps triggered by the card becoming late or expired run first, once the mark holds (the SLA mark
    re-opens the entry and dispatches it again, see dispatch.on_card_changed); a review or a failure
    among the entry steps does not hold them back. Then the entry steps run, in order."""
    entry = (
        PhaseEntry.objects.select_related("card__pipe__organization", "card__phase", "phase")
        .filter(pk=entry_id)
        .first()
    )
    if entry is None or entry.processed_at is not None:
        return EntryOutcome()
    if entry.card.rail_status == RailStatus.WAITING_REVIEW:  # a person may have moved it away from a review
        _cancel_stale_reviews(entry)
    if entry.left_at is not None:
        _entry_close(entry, skip_reason="the card left the phase before its steps ran")
        return EntryOutcome()
    steps = list(
        Step.objects.filter(phase_id=entry.phase_id).select_related("agent").order_by("position", "id")
    )
    runs = {run.step_id: run for run in StepRun.objects.filter(entry=entry)}
    card: Card | None = entry.card  # fresh for the first step; re-read after a step that kept the card
    triggers = _overdue_triggers(entry)
    overdue = [s for s in steps if s.trigger in triggers]
    for step in overdue:
        run, token, stop = _take(entry, step, runs.get(step.pk))
        if stop is not None:
            return stop
        if token is None:
            continue  # settled, or waiting for a review
        result = step_execute(run=run, step=step, entry=entry, token=token, card=card)
        card = None
        if isinstance(result, float):
            return EntryOutcome(retry_in=result)
        if result != "continue":
            if PhaseEntry.objects.filter(pk=entry.pk, left_at__isnull=False).exists():
                return EntryOutcome()  # it moved the card: this stay is over
            break  # waiting for a review or failed: the entry steps still go on
    if overdue:
        runs = {run.step_id: run for run in StepRun.objects.filter(entry=entry)}
    steps = [s for s in steps if s.trigger == Trigger.ENTERED]
    for index, step in enumerate(steps):
        run, token, stop = _take(entry, step, runs.get(step.pk))
        if stop is not None:
            return stop
        if token is None:
            if run.status in (RunStatus.WAITING_REVIEW, RunStatus.FAILED):
                _entry_close(entry)  # the phase's steps wait for a person or a retry
                return EntryOutcome()
            continue
        result = step_execute(
            run=run, step=step, entry=entry, token=token, last=index == len(steps) - 1, card=card
        )
        card = None
        if result == "continue":
            continue
        if isinstance(result, float):
            return EntryOutcome(retry_in=result)
        return EntryOutcome()
    if entry.processed_at is None:
        _entry_close(entry)
    if entry.card.rail_status != RailStatus.IDLE and not _holding(entry):
        card_set_rail_status(card_id=entry.card_id, status=RailStatus.IDLE)
    return EntryOutcome()


def _take(
    entry: PhaseEntry, step: Step, run: StepRun | None
) -> tuple[StepRun, str | None, EntryOutcome | None]:
    """The entry's run of `step`, claimed by this worker (with its token) when it is to run now.

    No token and no outcome: the run is settled (done, skipped) or waits (for a review, a retry by a
    person). An outcome: the entry stops here (a retry later, or another worker holds the run)."""
    run, token = _start(entry, step, run)
    if token is not None:
        return run, token, None
    if run.status in (RunStatus.DONE, RunStatus.SKIPPED, RunStatus.WAITING_REVIEW, RunStatus.FAILED):
        return run, None, None
    now = timezone.now()
    if run.status == RunStatus.PENDING and run.next_attempt_at and run.next_attempt_at > now:
        return run, None, EntryOutcome(retry_in=(run.next_attempt_at - now).total_seconds())
    token = _claim(run)
    if token is None:
        return run, None, EntryOutcome()  # another worker holds it; it continues the entry
    return run, token, None


def _holding(entry: PhaseEntry) -> bool:
    """An overdue step of this stay still waits for a review or failed: the card's badge says so."""
    return StepRun.objects.filter(
        entry=entry, status__in=(RunStatus.WAITING_REVIEW, RunStatus.FAILED)
    ).exists()


def _entry_close(entry: PhaseEntry, *, skip_reason: str = "") -> None:
    if skip_reason:
        StepRun.objects.filter(entry=entry, status=RunStatus.PENDING).update(
            status=RunStatus.SKIPPED, routing_reason=skip_reason, finished_at=timezone.now()
        )
    PhaseEntry.objects.filter(pk=entry.pk, processed_at__isnull=True).update(processed_at=timezone.now())


def _cancel_stale_reviews(entry: PhaseEntry) -> None:
    """Reviews of phases the card has left (a person moved it) are cancelled."""
    stale = ReviewTask.objects.filter(
        card_id=entry.card_id, status=ReviewStatus.OPEN, run__entry__left_at__isnull=False
    )
    run_ids = list(stale.values_list("run_id", flat=True))
    if run_ids:
        stale.update(status=ReviewStatus.CANCELLED, decided_at=timezone.now())
        StepRun.objects.filter(pk__in=run_ids).update(
            status=RunStatus.SKIPPED,
            routing_reason="the card left the phase before the review",
            finished_at=timezone.now(),
        )


def _start(entry: PhaseEntry, step: Step, run: StepRun | None) -> tuple[StepRun, str | None]:
    """The entry's run of `step`, created already claimed by this worker when it is new (with its token)."""
    if run is not None:
        return run, None
    token, now = uuid.uuid4().hex, timezone.now()
    try:
        with _savepoint():
            run = StepRun.objects.create(
                entry=entry,
                step=step,
                card_id=entry.card_id,
                pipe_id=entry.card.pipe_id,
                step_name=step.name,
                requested_mechanism=step.mechanism,
                currency=costs.cost_currency(),
                status=RunStatus.RUNNING,
                claim_token=token,
                claimed_by=WORKER_ID[:200],
                lease_until=now + timedelta(seconds=lease_seconds()),
                attempts=1,
                started_at=now,
            )
    except IntegrityError:  # another worker created it first: it holds it
        return StepRun.objects.get(entry=entry, step=step), None
    run.fresh = True
    return run, token


def _savepoint():
    """A savepoint inside a transaction; nothing (plain autocommit, one round trip) outside one."""
    from contextlib import nullcontext

    return transaction.atomic() if connection.in_atomic_block else nullcontext()


def _claim(run: StepRun) -> str | None:
    """Take the run (pending, or running with an expired lease). None when someone else holds it."""
    token = uuid.uuid4().hex
    now = timezone.now()
    claimed = (
        StepRun.objects.filter(pk=run.pk)
        .filter(Q(status=RunStatus.PENDING) | Q(status=RunStatus.RUNNING, lease_until__lt=now))
        .update(
            status=RunStatus.RUNNING,
            claim_token=token,
            claimed_by=WORKER_ID[:200],
            lease_until=now + timedelta(seconds=lease_seconds()),
            attempts=F("attempts") + 1,
            next_attempt_at=None,
            started_at=Coalesce("started_at", Value(now)),
        )
    )
    if not claimed:
        return None
    run.refresh_from_db()
    return token


# ---------------------------------------------------------------- one step


def _fields(pipe: Pipe) -> dict[str, Field]:
    return {f.key: f for f in pipe.fields.all()}


class _LazyFields(Mapping):
    """A pipe's fields by key, read on first use (most automations never need them)."""

    def __init__(self, pipe: Pipe):
        self.pipe = pipe
        self._fields: dict[str, Field] | None = None

    def _load(self) -> dict[str, Field]:
        if self._fields is None:
            self._fields = _fields(self.pipe)
        return self._fields

    def __getitem__(self, key: str) -> Field:
        return self._load()[key]

    def __iter__(self):
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


def step_execute(
    *, run: StepRun, step: Step, entry: PhaseEntry, token: str, last: bool = False, card: Card | None = None
) -> str | float | None:
    """Execute one claimed run. Returns "continue" (card stayed, run the next step), a retry delay, or None.

    `last`: no step follows in this phase, so a run that keeps the card also closes the entry.
    `card`: the card as just read, if it was (with its pipe, organization and phase)."""
    tracer = Tracer(run, fresh=getattr(run, "fresh", False))
    if card is None:
        card = Card.objects.select_related("pipe__organization", "phase").get(pk=entry.card_id)
    if run.attempts > 1:
        tracer.add(TraceKind.RETRY, f"attempt {run.attempts} of {step.max_attempts}", {"worker": WORKER_ID})
    if step.condition and not evaluate(step.condition, card.values):
        tracer.add(TraceKind.ROUTING, "condition not met: step skipped", {"condition": step.condition})
        tracer.flush()
        _finish_simple(run, token, RunStatus.SKIPPED, "condition not met: step skipped")
        return "continue"
    if step.mechanism not in (Mechanism.AUTOMATION, Mechanism.HUMAN):
        # automations take milliseconds: the board shows a badge only while an agent works
        card_set_rail_status(card_id=card.pk, status=RailStatus.RUNNING, note=f"{step.name} (agent)")
        entry.card.rail_status = RailStatus.RUNNING
    elif card.rail_status != RailStatus.IDLE:
        entry.card.rail_status = card.rail_status
    usage = Usage()
    try:
        if step.mechanism == Mechanism.AUTOMATION:
            decision = _automation(run=run, step=step, card=card, tracer=tracer)
        elif step.mechanism == Mechanism.HUMAN:
            decision = Handover(reason="the step is decided by a person")
        else:
            decision = _agent_route(run=run, step=step, card=card, tracer=tracer, usage=usage)
        if isinstance(decision, Handover):
            _wait_for_review(
                run=run, step=step, entry=entry, token=token, handover=decision, usage=usage, tracer=tracer
            )
            return None
        try:
            moved = _apply(
                run=run,
                step=step,
                entry=entry,
                token=token,
                outcome=decision,
                usage=usage,
                tracer=tracer,
                close_entry=last,
            )
        except CardError as exc:
            tracer.pending = [e for e in tracer.pending if e.kind != TraceKind.CHANGES]  # rolled back
            tracer.add(
                TraceKind.ERROR, f"the process refused the result: {exc.message}", {"errors": exc.errors}
            )
            if isinstance(exc, CardAuthorityError) and decision.by_agent:
                # Above the agent's authority, unreadable or in another currency: a person decides.
                handover = Handover(reason=f"{exc.rail_reason} → human", proposal=decision.proposal)
                tracer.add(TraceKind.ROUTING, handover.reason)
                _wait_for_review(
                    run=run,
                    step=step,
                    entry=entry,
                    token=token,
                    handover=handover,
                    usage=usage,
                    tracer=tracer,
                )
                return None
            if decision.by_agent:
                handover = Handover(reason=f"the agent's answer could not be applied ({exc.message}) → human")
                _wait_for_review(
                    run=run,
                    step=step,
                    entry=entry,
                    token=token,
                    handover=handover,
                    usage=usage,
                    tracer=tracer,
                )
                return None
            raise StepPermanent(exc.message) from exc
        return None if moved else "continue"
    except LeaseLost:
        tracer.record(TraceKind.ERROR, "another worker took this run over; nothing applied here")
        return None
    except StepTransient as exc:
        return _retry_or_fail(
            run=run, step=step, entry=entry, token=token, error=str(exc), usage=usage, tracer=tracer
        )
    except StepPermanent as exc:
        _fail(run=run, step=step, entry=entry, token=token, error=str(exc), usage=usage, tracer=tracer)
        return None
    except Exception as exc:  # noqa: BLE001 - an unexpected bug must still mark the card, not vanish
        log.exception("step run %s crashed", run.pk)
        _fail(
            run=run,
            step=step,
            entry=entry,
            token=token,
            error=f"{exc.__class__.__name__}: {exc}",
            usage=usage,
            tracer=tracer,
        )
        return None


def _automation(*, run: StepRun, step: Step, card: Card, tracer: Tracer) -> Apply:
    tracer.add(TraceKind.ROUTING, "automation: deterministic actions", {"actions": len(step.actions or [])})
    fields = _LazyFields(card.pipe)

    def on_call(call: dict) -> None:
        kind = TraceKind.HTTP_CALL if call.get("type") == "http" else TraceKind.TOOL_CALL
        tracer.add(
            kind, call.get("error") or ("reused the recorded result" if call.get("reused") else ""), call
        )

    if any(action.get("type") in EXTERNAL for action in step.actions or []):
        tracer.flush()  # what happened so far is written before another system is called
    try:
        result = actions_run(
            actions=step.actions or [],
            card=card,
            fields=fields,
            ledger=RunLedger(tracer),
            idempotency_prefix=f"trilho-run-{run.pk}",
            on_call=on_call,
        )
    except ActionError as exc:
        if exc.transient:
            raise StepTransient(str(exc)) from exc
        raise StepPermanent(str(exc)) from exc
    kinds = ", ".join(dict.fromkeys(str(a.get("type")) for a in step.actions or [])) or "no actions"
    return Apply(
        mechanism=Mechanism.AUTOMATION, reason=f"automation: {kinds}", decision="done", effects=result.effects
    )


# ---------------------------------------------------------------- the router


def budget_left(pipe_id: int) -> tuple[bool, int | None]:
    """(budget still available, the monthly budget) for foundation-model tokens of a pipe."""
    budget = (
        PipeRailSettings.objects.filter(pipe_id=pipe_id)
        .values_list("monthly_token_budget", flat=True)
        .first()
    )
    if budget is None:
        return True, None
    start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    spent = StepRun.objects.filter(pipe_id=pipe_id, created_at__gte=start).aggregate(
        s=Sum("foundation_tokens")
    )["s"]
    return (spent or 0) < budget, budget


def _authority_early(*, agent, card: Card, fields: Mapping[str, Field]) -> str | None:
    """Why the agent's authority already rules it out (before a model is asked), or None.

    Only when the agent cannot write its authority field: otherwise its answer sets the amount, and the
    write path judges the card as the answer would leave it (pipes.services.authority_check)."""
    actor = _agent_actor(agent, card.pipe_id)
    if actor.authority is None or agent.authority_field in (agent.writable_fields or []):
        return None
    try:
        authority_check(actor=actor, pipe=card.pipe, values=card.values, fields=fields)
    except CardAuthorityError as exc:
        return f"{exc.rail_reason} → human"
    return None


FOUR_EYES = "four eyes: two people approve"


def _four_eyes(tracer: Tracer, notes: list[str], draft: AgentAnswer) -> Handover:
    """Hand a four-eyes step's drafted decision to people: it takes effect only once two distinct reviewers
    approve it (orchestrator.inbox.services.inbox_decide), whoever drafted it."""
    reason = "; ".join([*notes, FOUR_EYES]) + " → human"
    tracer.add(TraceKind.ROUTING, reason, {"proposal": draft.as_proposal()})
    return Handover(reason=reason, proposal=draft)


def _agent_route(*, run: StepRun, step: Step, card: Card, tracer: Tracer, usage: Usage) -> Apply | Handover:
    """Pick who settles the case and ask them; see DESIGN.md "Mechanisms"."""
    agent = step.agent
    mechanism = step.mechanism
    fields = _fields(card.pipe)
    if mechanism == Mechanism.AUTO:
        for i, rule in enumerate(step.rules or []):
            if evaluate(rule.get("when"), card.values):
                decision = str(rule.get("decision") or "done")
                why = rule.get("reason") or f"rule {i + 1} matched"
                if step.four_eyes:  # a rule drafts the decision; two people still approve it
                    draft = AgentAnswer(
                        decision=decision,
                        values=dict(rule.get("values") or {}),
                        confidence=Decimal(1),
                        reasoning=str(why),
                    )
                    return _four_eyes(tracer, [str(why), f"{decision} proposed without a model"], draft)
                reason = f"{why} → {decision} without a model"
                tracer.add(TraceKind.ROUTING, reason, {"rule": rule})
                return Apply(
                    mechanism=Mechanism.AUTOMATION,
                    reason=reason,
                    decision=decision,
                    values=dict(rule.get("values") or {}),
                )
        if step.risk == Risk.HIGH:
            tracer.add(TraceKind.ROUTING, "risk high → human")
            return Handover(reason="risk high → human")
    if agent is None:
        reason = "the step has no agent → human"
        tracer.add(TraceKind.ROUTING, reason)
        return Handover(reason=reason)
    reason = _authority_early(agent=agent, card=card, fields=fields)
    if reason:
        tracer.add(TraceKind.ROUTING, reason)
        return Handover(reason=reason)

    tiers = {
        Mechanism.AUTO: ["local", "foundation"],
        Mechanism.LOCAL_MODEL: ["local"],
        Mechanism.FOUNDATION_MODEL: ["foundation"],
    }[mechanism]
    explicit = mechanism != Mechanism.AUTO
    view = agent_input_build(agent=agent, card=card, fields=fields)
    tracer.add(
        TraceKind.INPUTS,
        f"{len(view.fields)} fields, {len(view.masked)} masked"
        if view.masked
        else f"{len(view.fields)} fields",
        view.trace_inputs(),
    )
    if view.documents:
        tracer.add(TraceKind.FILES, ", ".join(d.name for d in view.documents), view.trace_files())
    schema = answer_schema(agent, fields)
    system, user = prompt_build(agent=agent, view=view, schema=schema, question=step.question)
    tracer.add(TraceKind.PROMPT, f"{len(system) + len(user)} characters", {"system": system, "user": user})
    ctx = ParseContext(pipe=card.pipe)
    threshold = agent.confidence_threshold
    notes: list[str] = []
    proposal: AgentAnswer | None = None
    for position, tier in enumerate(tiers):
        chosen = agent.model_for(tier)
        if chosen is None:
            notes.append(f"no {tier} model configured")
            continue
        provider, model = chosen
        if tier == "foundation":
            available, budget = budget_left(card.pipe_id)
            if not available:
                notes.append(f"monthly token budget {budget:,} spent")
                continue
        tracer.flush()  # inputs and prompt are on record before the model is asked
        try:
            reply = model_call(
                provider=provider,
                model=model,
                system=system,
                user=user,
                schema=schema,
                timeout=model_timeout(),
            )
        except ModelUnavailable as exc:
            tracer.add(
                TraceKind.MODEL_ERROR,
                f"{provider}/{model} unavailable: {exc}",
                {"provider": provider, "model": model},
            )
            if explicit:
                raise StepTransient(f"{provider}/{model} unavailable: {exc}") from exc
            notes.append(f"{tier} model {model} unreachable")
            continue
        except ModelRefused as exc:
            tracer.add(
                TraceKind.MODEL_ERROR,
                f"{provider}/{model} refused: {exc}",
                {"provider": provider, "model": model},
            )
            if explicit:
                raise StepPermanent(f"{provider}/{model} refused the request: {exc}") from exc
            notes.append(f"{tier} model {model} refused the request")
            continue
        priced = usage.add(
            provider=provider, model=model, input_tokens=reply.input_tokens, output_tokens=reply.output_tokens
        )
        tracer.add(
            TraceKind.RAW_OUTPUT,
            f"{provider}/{model}: {reply.input_tokens} in, {reply.output_tokens} out, {reply.latency_ms} ms",
            {
                "provider": provider,
                "model": model,
                "text": reply.text[:20000],
                "input_tokens": reply.input_tokens,
                "output_tokens": reply.output_tokens,
                "latency_ms": reply.latency_ms,
                "cost": costs.cost_trace(priced, usage.cost.currency),
            },
        )
        try:
            answer = answer_parse(text=reply.text, agent=agent, fields=fields, ctx=ctx)
        except InvalidOutput as exc:
            tracer.add(
                TraceKind.VALIDATION, f"{len(exc.errors)} problem(s): {exc.errors[0]}", {"errors": exc.errors}
            )
            if explicit:
                raise StepTransient(f"invalid answer from {model}: {exc.errors[0]}") from exc
            notes.append(f"{tier} answer invalid")
            continue
        proposal = answer
        if answer.decision == "escalate":
            reason = "; ".join([*notes, f"{tier} model {model} escalated"]) + " → human"
            tracer.add(TraceKind.ROUTING, reason)
            return Handover(reason=reason, proposal=answer)
        # The agent's authority limit is the write path's to hold: an answer it refuses comes back to a
        # person as a review (step_execute), with the answer as the draft.
        if answer.confidence < threshold:
            note = f"{tier} confidence {answer.confidence} below {threshold}"
            if position + 1 < len(tiers):
                notes.append(note)
                continue
            reason = "; ".join([*notes, note]) + " → human"
            tracer.add(TraceKind.ROUTING, reason, {"proposal": answer.as_proposal()})
            return Handover(reason=reason, proposal=answer)
        if step.four_eyes:  # however confident the model, two people approve before it takes effect
            said = f"{tier} model {model} proposed {answer.decision} with confidence {answer.confidence}"
            return _four_eyes(tracer, [*notes, said], answer)
        used = Mechanism.LOCAL_MODEL if tier == "local" else Mechanism.FOUNDATION_MODEL
        reason = "; ".join(
            [*notes, f"{tier} model {model} decided {answer.decision} with confidence {answer.confidence}"]
        )
        tracer.add(TraceKind.ROUTING, reason)
        return Apply(
            mechanism=used,
            reason=reason,
            decision=answer.decision,
            values=dict(answer.values),
            by_agent=True,
            proposal=answer,
        )
    if explicit and proposal is None and not any("budget" in n for n in notes):
        raise StepPermanent(f"agent {agent.name} has no {tiers[0]} model configured")
    if proposal is None and not any("invalid" in n for n in notes):
        reason = "no model reachable (" + "; ".join(notes) + ") → human"
    else:
        reason = "; ".join(notes) + " → human"
    tracer.add(TraceKind.ROUTING, reason)
    return Handover(reason=reason, proposal=proposal)


# ---------------------------------------------------------------- applying a result


def _lock_claim(run: StepRun, token: str) -> StepRun:
    """The run re-read under a row lock; LeaseLost unless this worker still holds it."""
    locked = StepRun.objects.select_for_update().get(pk=run.pk)
    if locked.claim_token != token or locked.status != RunStatus.RUNNING:
        raise LeaseLost()
    return locked


def _agent_actor(agent, pipe_id: int) -> Actor:
    """The agent as the write path knows it: its scope and its authority limit."""
    authority = None
    if agent.authority_field and agent.authority_limit is not None:
        authority = Authority(field=agent.authority_field, limit=agent.authority_limit)
    return Actor.agent(
        name=agent.name,
        pipe_id=pipe_id,
        writable_fields=agent.writable_fields or [],
        allowed_phases=agent.allowed_phases or [],
        authority=authority,
    )


def _actor_for(step: Step, by_agent: bool, pipe_id: int) -> Actor:
    agent = step.agent
    if by_agent and agent is not None:
        return _agent_actor(agent, pipe_id)
    return Actor.system(f"Automation: {step.name}")


def run_url(run: StepRun) -> str:
    """The run page, linked from the card's timeline."""
    return reverse("rail:run", kwargs={"run_id": run.pk})


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


def _apply(
    *,
    run: StepRun,
    step: Step,
    entry: PhaseEntry,
    token: str,
    outcome: Apply,
    usage: Usage,
    tracer: Tracer,
    close_entry: bool = False,
) -> bool:
    """Apply `outcome` and finish the run in one transaction; True when the card moved on.

    `close_entry`: no step follows, so the entry is marked processed in the same transaction."""
    with transaction.atomic():
        locked = _lock_claim(run, token)
        card = (
            Card.objects.select_for_update(of=("self",)).select_related("pipe", "phase").get(pk=entry.card_id)
        )
        now = timezone.now()
        if card.phase_id != entry.phase_id:
            locked.status = RunStatus.SKIPPED
            locked.routing_reason = "the card left the phase while the step ran"
            locked.save(
                update_fields=["status", "routing_reason", *_finish(locked, usage, now, card_values={})]
            )
            tracer.flush()
            PhaseEntry.objects.filter(pk=entry.pk).update(processed_at=now)
            entry.processed_at = now
            return True
        actor = _actor_for(step, outcome.by_agent, card.pipe_id)
        effects = list(outcome.effects)
        if outcome.values:
            effects.insert(0, Effect("set_fields", {"values": outcome.values}))
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
        locked.routing_reason = outcome.reason[:500]
        locked.decision = outcome.decision
        locked.error = ""
        finished = _finish(locked, usage, now, card_values=card.values)
        locked.save(update_fields=["status", "mechanism", "routing_reason", "decision", "error", *finished])
        tracer.add(TraceKind.CHANGES, _changes_summary(applied), applied)
        tracer.flush()
        card_record_step(
            actor=actor, card=card, payload=timeline_payload(locked, step), reason=outcome.reason[:500]
        )
        moved = applied["moved_to"] is not None
        if moved or close_entry:
            PhaseEntry.objects.filter(pk=entry.pk).update(processed_at=now)
            entry.processed_at = now
            if card.rail_status != RailStatus.IDLE:
                card_set_rail_status(card_id=card.pk, status=RailStatus.IDLE)
            entry.card.rail_status = RailStatus.IDLE
    return moved


def _changes_summary(applied: Mapping[str, Any]) -> str:
    parts = []
    if applied["fields"]:
        parts.append("set " + ", ".join(sorted(applied["fields"])))
    if applied["other"]:
        parts.append(f"{len(applied['other'])} other change(s)")
    if applied["moved_to"]:
        parts.append(f"moved to {applied['moved_to']}")
    return "; ".join(parts) or "no changes"


def timeline_payload(run: StepRun, step: Step, **extra: Any) -> dict[str, Any]:
    return {
        "run_id": run.pk,
        "step": run.step_name,
        "mechanism": run.mechanism or step.mechanism,
        "status": run.status,
        "decision": run.decision,
        "reason": run.routing_reason,
        "cost": str(run.cost),
        "currency": run.currency,
        "url": run_url(run),
        **extra,
    }


def _finish_simple(run: StepRun, token: str, status: str, reason: str) -> None:
    StepRun.objects.filter(pk=run.pk, claim_token=token).update(
        status=status, routing_reason=reason, finished_at=timezone.now(), lease_until=None, mechanism=""
    )


# ---------------------------------------------------------------- reviews


def review_decisions(step: Step) -> list[str]:
    if step.agent is not None:
        decisions = [d for d in agent_decisions(step.agent) if d != "escalate"]
        if decisions and decisions != ["done"]:
            return decisions
    return ["approve", "reject"]


def _wait_for_review(
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
        card = Card.objects.select_for_update(of=("self",)).select_related("pipe").get(pk=entry.card_id)
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
            reason=handover.reason[:500],
        )
        locked.status = RunStatus.WAITING_REVIEW
        locked.mechanism = Mechanism.HUMAN
        locked.routing_reason = handover.reason[:500]
        locked.error = ""
        finished = _finish(locked, usage, timezone.now(), card_values=card.values, finished=False)
        locked.save(update_fields=["status", "mechanism", "routing_reason", "error", *finished])
        tracer.add(
            TraceKind.REVIEW,
            f"review task #{task.pk}: {question}",
            {"task": task.pk, "reason": handover.reason},
        )
        tracer.flush()
        card_record_step(
            actor=Actor.system("Rail"),
            card=card,
            payload=timeline_payload(locked, step, question=question),
            reason=handover.reason[:500],
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


def _retry_or_fail(
    *, run: StepRun, step: Step, entry: PhaseEntry, token: str, error: str, usage: Usage, tracer: Tracer
) -> float | None:
    if run.attempts >= step.max_attempts:
        _fail(run=run, step=step, entry=entry, token=token, error=error, usage=usage, tracer=tracer)
        return None
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
        return None
    tracer.record(
        TraceKind.RETRY,
        f"attempt {run.attempts} failed: {error[:200]}; retrying in {delay:g} s",
        {"delay": delay},
    )
    card_set_rail_status(card_id=run.card_id, status=RailStatus.RUNNING, note=f"{step.name}: retrying")
    entry.card.rail_status = RailStatus.RUNNING
    return delay


def _fail(
    *, run: StepRun, step: Step, entry: PhaseEntry, token: str, error: str, usage: Usage, tracer: Tracer
) -> None:
    now = timezone.now()
    with transaction.atomic():
        try:
            locked = _lock_claim(run, token)
        except LeaseLost:
            return
        card = Card.objects.get(pk=entry.card_id)
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
        card_record_step(
            actor=Actor.system(f"Automation: {step.name}"),
            card=card,
            payload=timeline_payload(run, step, error=error[:500]),
            reason=f"failed: {error[:400]}",
        )
        card_set_rail_status(card_id=card.pk, status=RailStatus.FAILED, note=f"{step.name}: {error}"[:300])
        entry.card.rail_status = RailStatus.FAILED
        PhaseEntry.objects.filter(pk=entry.pk).update(processed_at=now)
