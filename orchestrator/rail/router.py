"""The router: who settles a step. An automation runs its deterministic actions; an `auto` step is settled by
a rule without a model, handed to a person (high risk, no agent, over the agent's authority), or asked of
a local then a foundation model, within the pipe's token budget and the agent's confidence threshold.
Every choice is recorded in the trace with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from agents.actions import EXTERNAL, ActionError, actions_run
from agents.context import agent_input_build, prompt_build
from agents.llm import ModelRefused, ModelUnavailable, model_call
from agents.output import AgentAnswer, InvalidOutput, answer_parse, answer_schema
from pipes.conditions import evaluate
from pipes.fieldtypes import ParseContext
from pipes.models import Card, Field, Pipe
from pipes.services import CardAuthorityError, authority_check

from ..models import Mechanism, PipeRailSettings, Risk, Step, StepRun, TraceKind
from . import costs
from .apply import agent_actor
from .reasons import Part, Reason
from .results import Apply, Handover, StepPermanent, StepTransient, Usage
from .trace import RunLedger, Tracer


def model_timeout() -> float:
    return float(getattr(settings, "TRILHO_MODEL_TIMEOUT_SECONDS", 60))


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


def automation_decide(*, run: StepRun, step: Step, card: Card, tracer: Tracer) -> Apply:
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
        mechanism=Mechanism.AUTOMATION,
        reason=Reason.of("automation", kinds=kinds),
        decision="done",
        effects=result.effects,
    )


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


def authority_reason(exc: CardAuthorityError) -> Reason:
    """Why the write path refused the agent's authority, as the rail's reason: a person decides."""
    return Reason(parts=(Part(exc.rail_code, exc.rail_params),), then=Part("human"))


def _authority_early(*, agent, card: Card, fields: Mapping[str, Field]) -> Reason | None:
    """Why the agent's authority already rules it out (before a model is asked), or None.

    Only when the agent cannot write its authority field: otherwise its answer sets the amount, and the
    write path judges the card as the answer would leave it (pipes.services.authority_check)."""
    actor = agent_actor(agent, card.pipe_id)
    if actor.authority is None or agent.authority_field in (agent.writable_fields or []):
        return None
    try:
        authority_check(actor=actor, pipe=card.pipe, values=card.values, fields=fields)
    except CardAuthorityError as exc:
        return authority_reason(exc)
    return None


def _four_eyes(tracer: Tracer, notes: list[Part], draft: AgentAnswer) -> Handover:
    """Hand a four-eyes step's drafted decision to people: it takes effect only once two distinct reviewers
    approve it (orchestrator.inbox.services.inbox_decide), whoever drafted it."""
    reason = Reason(parts=(*notes, Part("four_eyes")), then=Part("human"))
    _route(tracer, reason, {"proposal": draft.as_proposal()})
    return Handover(reason=reason, proposal=draft)


def _route(tracer: Tracer, reason: Reason, data: dict | None = None) -> None:
    """The routing choice in the trace: its English sentence, and the reason as data."""
    tracer.add(TraceKind.ROUTING, reason.record(), {**(data or {}), "reason": reason.as_data()})


def _to_human(notes: list[Part], *last: Part) -> Reason:
    return Reason(parts=(*notes, *last), then=Part("human"))


def agent_route(*, run: StepRun, step: Step, card: Card, tracer: Tracer, usage: Usage) -> Apply | Handover:
    """Pick who settles the case and ask them; see docs/architecture.md."""
    agent = step.agent
    mechanism = step.mechanism
    fields = _fields(card.pipe)
    if mechanism == Mechanism.AUTO:
        for i, rule in enumerate(step.rules or []):
            if evaluate(rule.get("when"), card.values):
                decision = str(rule.get("decision") or "done")
                why = (
                    Part("rule_says", {"text": str(rule["reason"])})
                    if rule.get("reason")
                    else Part("rule_matched", {"n": i + 1})
                )
                if step.four_eyes:  # a rule drafts the decision; two people still approve it
                    draft = AgentAnswer(
                        decision=decision,
                        values=dict(rule.get("values") or {}),
                        confidence=Decimal(1),
                        reasoning=why.record(),
                    )
                    return _four_eyes(
                        tracer, [why, Part("proposed_without_model", {"decision": decision})], draft
                    )
                reason = Reason(parts=(why,), then=Part("without_model", {"decision": decision}))
                _route(tracer, reason, {"rule": rule})
                return Apply(
                    mechanism=Mechanism.AUTOMATION,
                    reason=reason,
                    decision=decision,
                    values=dict(rule.get("values") or {}),
                )
        if step.risk == Risk.HIGH:
            reason = _to_human([], Part("risk_high"))
            _route(tracer, reason)
            return Handover(reason=reason)
    if agent is None:
        reason = _to_human([], Part("no_agent"))
        _route(tracer, reason)
        return Handover(reason=reason)
    early = _authority_early(agent=agent, card=card, fields=fields)
    if early is not None:
        _route(tracer, early)
        return Handover(reason=early)

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
    notes: list[Part] = []
    proposal: AgentAnswer | None = None
    for position, tier in enumerate(tiers):
        chosen = agent.model_for(tier)
        if chosen is None:
            notes.append(Part("no_model_configured", {"tier": tier}))
            continue
        provider, model = chosen
        if tier == "foundation":
            available, budget = budget_left(card.pipe_id)
            if not available:
                notes.append(Part("budget_spent", {"budget": budget}))
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
            notes.append(Part("model_unreachable", {"tier": tier, "model": model}))
            continue
        except ModelRefused as exc:
            tracer.add(
                TraceKind.MODEL_ERROR,
                f"{provider}/{model} refused: {exc}",
                {"provider": provider, "model": model},
            )
            if explicit:
                raise StepPermanent(f"{provider}/{model} refused the request: {exc}") from exc
            notes.append(Part("model_refused", {"tier": tier, "model": model}))
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
            notes.append(Part("answer_invalid", {"tier": tier, "model": model}))
            continue
        # The draft a person gets is the most confident valid answer, not merely the last one.
        if proposal is None or answer.confidence > proposal.confidence:
            proposal = answer
        if answer.decision == "escalate":
            reason = _to_human(notes, Part("model_escalated", {"tier": tier, "model": model}))
            _route(tracer, reason)
            return Handover(reason=reason, proposal=answer)
        # The agent's authority limit is the write path's to hold: an answer it refuses comes back to a
        # person as a review (step_execute), with the answer as the draft.
        if answer.confidence < threshold:
            note = Part(
                "low_confidence",
                {
                    "tier": tier,
                    "model": model,
                    "confidence": str(answer.confidence),
                    "threshold": str(threshold),
                },
            )
            if position + 1 < len(tiers):
                notes.append(note)
                continue
            reason = _to_human(notes, note)
            _route(tracer, reason, {"proposal": proposal.as_proposal()})
            return Handover(reason=reason, proposal=proposal)
        said = {
            "tier": tier,
            "model": model,
            "decision": answer.decision,
            "confidence": str(answer.confidence),
        }
        if step.four_eyes:  # however confident the model, two people approve before it takes effect
            return _four_eyes(tracer, [*notes, Part("model_proposed", said)], answer)
        used = Mechanism.LOCAL_MODEL if tier == "local" else Mechanism.FOUNDATION_MODEL
        reason = Reason(parts=(*notes, Part("model_decided", said)))
        _route(tracer, reason)
        return Apply(
            mechanism=used,
            reason=reason,
            decision=answer.decision,
            values=dict(answer.values),
            by_agent=True,
            proposal=answer,
        )
    return _exhausted(
        agent=agent, tiers=tiers, explicit=explicit, notes=notes, proposal=proposal, tracer=tracer
    )


def _exhausted(
    *,
    agent,
    tiers: list[str],
    explicit: bool,
    notes: list[Part],
    proposal: AgentAnswer | None,
    tracer: Tracer,
) -> Handover:
    """Every tier was tried and none settled the case: a person decides, with the best answer as the draft.

    A step that names its model fails when that model is not configured (its design is wrong), but not
    when the budget is spent (a person decides until next month)."""
    reason = Reason(parts=tuple(notes))
    if explicit and proposal is None and not reason.has("budget_spent"):
        raise StepPermanent(f"agent {agent.name} has no {tiers[0]} model configured")
    if proposal is None and not reason.has("answer_invalid"):
        reason = Reason(parts=reason.parts, then=Part("no_model"))  # no model could be asked at all
    else:
        reason = reason.to_human()
    _route(tracer, reason)
    return Handover(reason=reason, proposal=proposal)
