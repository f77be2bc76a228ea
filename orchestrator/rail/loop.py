"""The rail: run the steps of a phase entry, in order, each by the right mechanism.

A worker claims a step run (one per entry and step) with a lease, executes it outside any
transaction (actions, model calls), and applies the result in one transaction that also
marks the run done, checked against its claim: a run whose worker died is claimed again
when its lease expires, and its effects are applied exactly once. Every hop leaves trace
events; every result goes through pipes.services as the agent or the system actor.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import uuid
from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import F, JSONField, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.models import Agent
from pipes import designcache
from pipes.choices import RailStatus
from pipes.conditions import evaluate
from pipes.models import Card, PhaseEntry, Pipe
from pipes.services import CardAuthorityError, CardError, card_set_rail_status

from ..models import Mechanism, ReviewStatus, ReviewTask, RunStatus, Step, StepRun, TraceKind, Trigger
from . import costs, statements
from .apply import apply_result, fail, finish_simple, reason_fields, retry_or_fail, wait_for_review
from .dispatch import step_is_quick
from .entryload import entry_load
from .leases import INFRASTRUCTURE_ERRORS, lease_held, lease_seconds
from .reasons import Reason
from .results import (
    NEXT_STEP,
    STOP,
    Claim,
    EntryOutcome,
    Handover,
    LeaseLost,
    StepPermanent,
    StepResult,
    StepTransient,
    Usage,
)
from .router import agent_route, authority_reason, automation_decide
from .trace import Tracer

log = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def _overdue_triggers(entry: PhaseEntry) -> list[str]:
    """The overdue triggers that hold for the card in this stay: late (marked in this phase), expired."""
    card, triggers = entry.card, []
    if card.late_at is not None and card.late_at >= entry.entered_at:
        triggers.append(Trigger.LATE)
    if card.expired_at is not None:
        triggers.append(Trigger.EXPIRED)
    return triggers


def entry_run(*, entry_id: int, quick_only: bool = False) -> EntryOutcome:
    """Run the steps of a phase entry that are still to run; stop at a move, a review, a failure or a retry.

    Steps triggered by the card becoming late or expired run first, once the mark holds (the SLA mark
    re-opens the entry and dispatches it again, see dispatch.on_card_changed); a review or a failure
    among the entry steps does not hold them back. Then the entry steps run, in order.

    `quick_only` (an entry that came by the fast lane, settings.TRILHO_FAST_QUEUE): if a step of the
    phase is no longer quick (a designer added one after the entry was sent), nothing runs here and the
    outcome says so (`not_quick`): a lane worker, one process with messages prefetched, must not wait
    minutes on a model or a person's system while quick steps queue behind it."""
    entry = entry_load(entry_id)
    if entry is None or entry.processed_at is not None:
        return EntryOutcome()
    if entry.card.rail_status == RailStatus.WAITING_REVIEW:  # a person may have moved it away from a review
        _cancel_stale_reviews(entry)
    if entry.left_at is not None:
        _entry_close(entry, skip_reason=Reason.of("left_before_steps"))
        return EntryOutcome()
    steps = phase_steps(entry.card.pipe, entry.phase_id, entry.design_stamp)
    if quick_only and not all(step_is_quick(s.mechanism, s.actions) for s in steps):
        return EntryOutcome(not_quick=True)
    # An entry nothing ran for yet (the common case) has no runs to read.
    runs = {run.step_id: run for run in StepRun.objects.filter(entry=entry)} if entry.has_runs else {}
    card: Card | None = entry.card  # fresh for the first step; re-read after a step that kept the card
    triggers = _overdue_triggers(entry)
    overdue = [s for s in steps if s.trigger in triggers]
    for step in overdue:
        run, claim, stop = _take(entry, step, runs.get(step.pk))
        if stop is not None:
            return stop
        if claim is None:
            continue  # settled, or waiting for a review
        result = _run_claimed(run=run, step=step, entry=entry, claim=claim, card=card)
        card = None
        if result.retry_in is not None:
            return EntryOutcome(retry_in=result.retry_in)
        if not result.goes_on:
            if PhaseEntry.objects.filter(pk=entry.pk, left_at__isnull=False).exists():
                return EntryOutcome()  # it moved the card: this stay is over
            break  # waiting for a review or failed: the entry steps still go on
    if overdue:
        runs = {run.step_id: run for run in StepRun.objects.filter(entry=entry)}
    steps = [s for s in steps if s.trigger == Trigger.ENTERED]
    for index, step in enumerate(steps):
        if step.pk not in runs and card is not None:
            result = _run_at_once(entry=entry, step=step, card=card, last=index == len(steps) - 1)
            if result is not None:
                card = None
                if result.goes_on:
                    continue
                return EntryOutcome(retry_in=result.retry_in)
        run, claim, stop = _take(entry, step, runs.get(step.pk))
        if stop is not None:
            return stop
        if claim is None:
            if run.status in (RunStatus.WAITING_REVIEW, RunStatus.FAILED):
                _entry_close(entry)  # the phase's steps wait for a person or a retry
                return EntryOutcome()
            continue
        result = _run_claimed(
            run=run, step=step, entry=entry, claim=claim, last=index == len(steps) - 1, card=card
        )
        card = None
        if result.goes_on:
            continue
        return EntryOutcome(retry_in=result.retry_in)
    if entry.processed_at is None:
        _entry_close(entry)
    if entry.card.rail_status != RailStatus.IDLE and not _holding(entry):
        card_set_rail_status(card_id=entry.card_id, status=RailStatus.IDLE)
    return EntryOutcome()


_STEP_COLUMNS = tuple(f.attname for f in Step._meta.concrete_fields)
_STEP_JSON = frozenset(i for i, f in enumerate(Step._meta.concrete_fields) if isinstance(f, JSONField))


def _steps_rows(pipe: Pipe) -> dict[int, tuple[tuple, ...]]:
    """The pipe's steps as rows (column values), by phase, in the order they run."""
    rows: dict[int, list[tuple]] = {}
    for row in (
        Step.objects.filter(phase__pipe_id=pipe.pk)
        .order_by("phase_id", "position", "id")
        .values_list(*_STEP_COLUMNS)
    ):
        rows.setdefault(row[_STEP_COLUMNS.index("phase_id")], []).append(row)
    return {phase_id: tuple(phase_rows) for phase_id, phase_rows in rows.items()}


def phase_steps(pipe: Pipe, phase_id: int, stamp: int | None = None) -> list[Step]:
    """The steps of a phase in the order they run, each a fresh instance with its agent.

    From the design cache at the pipe's stamp (`stamp`, read with the entry), which a step written
    changes (orchestrator migration 0008): no query once the pipe's steps are known to this process.
    Agents are read fresh, in one query, when a step has one."""
    rows = designcache.cached(pipe, "rail.steps", _steps_rows, stamp).get(phase_id, ())
    steps = [
        Step.from_db(
            "default",
            _STEP_COLUMNS,
            [copy.deepcopy(v) if i in _STEP_JSON and v is not None else v for i, v in enumerate(row)],
        )
        for row in rows
    ]
    agent_ids = {s.agent_id for s in steps if s.agent_id is not None}
    if agent_ids:
        agents = Agent.objects.in_bulk(agent_ids)
        for s in steps:
            if s.agent_id is not None:
                s.agent = agents[s.agent_id]
    return steps


def _take(
    entry: PhaseEntry, step: Step, run: StepRun | None
) -> tuple[StepRun, Claim | None, EntryOutcome | None]:
    """The entry's run of `step`, claimed by this worker (its claim) when it is to run now.

    No claim and no outcome: the run is settled (done, skipped) or waits (for a review, a retry by a
    person). An outcome: the entry stops here (a retry later, or another worker holds the run)."""
    run, token = _start(entry, step, run)
    if token is not None:
        return run, Claim(token, fresh=True), None
    if run.status in (RunStatus.DONE, RunStatus.SKIPPED, RunStatus.WAITING_REVIEW, RunStatus.FAILED):
        return run, None, None
    now = timezone.now()
    if run.status == RunStatus.PENDING and run.next_attempt_at and run.next_attempt_at > now:
        return run, None, EntryOutcome(retry_in=(run.next_attempt_at - now).total_seconds())
    token = _claim(run)
    if token is None:
        return run, None, EntryOutcome()  # another worker holds it; it continues the entry
    return run, Claim(token), None


def _holding(entry: PhaseEntry) -> bool:
    """An overdue step of this stay still waits for a review or failed: the card's badge says so."""
    return StepRun.objects.filter(
        entry=entry, status__in=(RunStatus.WAITING_REVIEW, RunStatus.FAILED)
    ).exists()


def _entry_close(entry: PhaseEntry, *, skip_reason: Reason | None = None) -> None:
    if skip_reason is not None:
        StepRun.objects.filter(entry=entry, status=RunStatus.PENDING).update(
            status=RunStatus.SKIPPED, **reason_fields(skip_reason), finished_at=timezone.now()
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
            **reason_fields(Reason.of("left_before_review")),
            finished_at=timezone.now(),
        )


def _new_run(entry: PhaseEntry, step: Step) -> StepRun:
    """The entry's run of `step`, claimed by this worker (not yet written)."""
    now = timezone.now()
    return StepRun(
        entry=entry,
        step=step,
        card_id=entry.card_id,
        pipe_id=entry.card.pipe_id,
        step_name=step.name,
        requested_mechanism=step.mechanism,
        currency=costs.cost_currency(),
        status=RunStatus.RUNNING,
        claim_token=uuid.uuid4().hex,
        claimed_by=WORKER_ID[:200],
        lease_until=now + timedelta(seconds=lease_seconds()),
        attempts=1,
        started_at=now,
    )


def _insert(run: StepRun) -> None:
    if statements.fast():
        statements.run_insert(run)  # every step's first write: spared the ORM's compiling
    else:
        run.save(force_insert=True)


def _start(entry: PhaseEntry, step: Step, run: StepRun | None) -> tuple[StepRun, str | None]:
    """The entry's run of `step`, created already claimed by this worker when it is new (with its token)."""
    if run is not None:
        return run, None
    run = _new_run(entry, step)
    try:
        with _savepoint():
            _insert(run)
    except IntegrityError:  # another worker created it first: it holds it
        return StepRun.objects.get(entry=entry, step=step), None
    return run, run.claim_token


class _Claimed(Exception):
    """The one-transaction path gives way to the claimed one (its transaction rolled back)."""


def _run_at_once(*, entry: PhaseEntry, step: Step, card: Card, last: bool) -> StepResult | None:
    """Run a new run of an automation step whose actions call no other system in ONE transaction: the
    run created (claimed: the unique entry-and-step row, invisible to others until commit, needs no
    lease), its actions decided, the result applied through the write path and the run finished.
    Nothing outside the database happens before the commit, so a crash or an error leaves nothing
    behind: the message comes back, or the claimed path (_take, step_execute) runs the step again and
    records what went wrong. None when the step is not for this path or it gave way.

    Saves the claimed path's separate transaction (the run's insert and its commit) and the run's
    lock, for the commonest step of all. On PostgreSQL the run is not even inserted first: it takes
    the id its entry's load reserved and is inserted finished, by the statement that finishes it; a
    second worker on the same entry waits for the card's lock, and its insert of the same entry and
    step fails once the first commits, rolling all it did back."""
    # An automation whose actions call no other system (an email is written to the outbox and sent
    # after commit) runs in one transaction.
    if not step_is_quick(step.mechanism, step.actions) or card.rail_status != RailStatus.IDLE:
        return None
    if step.condition and not evaluate(step.condition, card.values):
        return None  # skipped on the claimed path, which records why
    try:
        with transaction.atomic():
            run = _new_run(entry, step)
            reserved, entry.reserved_run_id = getattr(entry, "reserved_run_id", None), None
            if reserved is not None and statements.fast():
                # Inserted finished, by the statement that finishes it (apply._run_done): one statement
                # and one version of its row less. Another worker's run of the same entry and step
                # makes that INSERT fail (waiting for the other's commit) and this transaction roll back.
                run.pk = reserved
            else:
                _insert(run)  # another worker's run of the same entry and step: IntegrityError
            tracer = Tracer(run, fresh=True)
            decision = automation_decide(run=run, step=step, card=card, tracer=tracer)
            if isinstance(decision, Handover):
                raise _Claimed
            moved = apply_result(
                run=run,
                step=step,
                entry=entry,
                token=run.claim_token,
                outcome=decision,
                usage=Usage(),
                tracer=tracer,
                close_entry=last,
                claimed_here=True,
            )
    except INFRASTRUCTURE_ERRORS:
        raise  # the task is retried with the connection reset (tasks.run_phase_entry)
    except Exception:  # noqa: BLE001 - refused, failed or taken by another worker: the claimed path decides
        return None
    return STOP if moved else NEXT_STEP


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


def _run_claimed(*, run: StepRun, claim: Claim, **kwargs) -> StepResult:
    """step_execute with the run's lease renewed while it runs (leases.lease_held): a step longer than
    the lease is never claimed twice, and a lost database connection gives the run back uncounted."""
    with lease_held(run.pk, claim.token):
        return step_execute(run=run, claim=claim, **kwargs)


def step_execute(
    *, run: StepRun, step: Step, entry: PhaseEntry, claim: Claim, last: bool = False, card: Card | None = None
) -> StepResult:
    """Execute one claimed run: the next step runs, a retry is due, or the entry stops here (StepResult).

    `last`: no step follows in this phase, so a run that keeps the card also closes the entry.
    `card`: the card as just read, if it was (with its pipe, organization and phase)."""
    token = claim.token
    tracer = Tracer(run, fresh=claim.fresh)
    if card is None:
        card = Card.objects.select_related("pipe__organization", "phase").get(pk=entry.card_id)
    if run.attempts > 1:
        tracer.add(TraceKind.RETRY, f"attempt {run.attempts} of {step.max_attempts}", {"worker": WORKER_ID})
    if step.condition and not evaluate(step.condition, card.values):
        skipped = Reason.of("condition_not_met")
        tracer.add(
            TraceKind.ROUTING, skipped.record(), {"condition": step.condition, "reason": skipped.as_data()}
        )
        tracer.flush()
        finish_simple(run, token, RunStatus.SKIPPED, skipped)
        return NEXT_STEP
    if step.mechanism not in (Mechanism.AUTOMATION, Mechanism.HUMAN):
        # automations take milliseconds: the board shows a badge only while an agent works
        card_set_rail_status(card_id=card.pk, status=RailStatus.RUNNING, note=f"{step.name} (agent)")
        entry.card.rail_status = RailStatus.RUNNING
    elif card.rail_status != RailStatus.IDLE:
        entry.card.rail_status = card.rail_status
    usage = Usage()
    try:
        if step.mechanism == Mechanism.AUTOMATION:
            decision = automation_decide(run=run, step=step, card=card, tracer=tracer)
        elif step.mechanism == Mechanism.HUMAN:
            decision = Handover(reason=Reason.of("by_person"))
        else:
            decision = agent_route(run=run, step=step, card=card, tracer=tracer, usage=usage)
        if isinstance(decision, Handover):
            wait_for_review(
                run=run, step=step, entry=entry, token=token, handover=decision, usage=usage, tracer=tracer
            )
            return STOP
        try:
            moved = apply_result(
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
                handover = Handover(reason=authority_reason(exc), proposal=decision.proposal)
                tracer.add(TraceKind.ROUTING, handover.reason.record(), {"reason": handover.reason.as_data()})
                wait_for_review(
                    run=run,
                    step=step,
                    entry=entry,
                    token=token,
                    handover=handover,
                    usage=usage,
                    tracer=tracer,
                )
                return STOP
            if decision.by_agent:
                # The refused answer stays the reviewer's draft: they correct it rather than start over.
                handover = Handover(
                    reason=Reason.of("answer_not_applied", why=exc.message[:300]).to_human(),
                    proposal=decision.proposal,
                )
                wait_for_review(
                    run=run,
                    step=step,
                    entry=entry,
                    token=token,
                    handover=handover,
                    usage=usage,
                    tracer=tracer,
                )
                return STOP
            raise StepPermanent(exc.message) from exc
        return STOP if moved else NEXT_STEP
    except LeaseLost:
        tracer.record(TraceKind.ERROR, "another worker took this run over; nothing applied here")
        return STOP
    except StepTransient as exc:
        return retry_or_fail(
            run=run, step=step, entry=entry, token=token, error=str(exc), usage=usage, tracer=tracer
        )
    except StepPermanent as exc:
        fail(run=run, step=step, entry=entry, token=token, error=str(exc), usage=usage, tracer=tracer)
        return STOP
    except INFRASTRUCTURE_ERRORS:
        raise  # not the step's failure: the run is given back and the task retried (leases.lease_held)
    except Exception as exc:  # noqa: BLE001 - an unexpected bug must still mark the card, not vanish
        log.exception("step run %s crashed", run.pk)
        fail(
            run=run,
            step=step,
            entry=entry,
            token=token,
            error=f"{exc.__class__.__name__}: {exc}",
            usage=usage,
            tracer=tracer,
        )
        return STOP
