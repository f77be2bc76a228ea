"""A step's dry run against an existing card: what the router would choose and what the step would change.

Nothing is kept and nothing leaves the building. The router's choice is worked out the way
orchestrator.rail.router decides it (condition, rules, risk, agent, authority, models and budget),
without asking a model. An automation's actions are run without their external calls (an HTTP
request is described, not sent; an email is composed, not written to the outbox), and the card
changes (fields, labels, assignees, comments, the move) are applied through pipes.services inside a
transaction that is always rolled back, so the write path's own gates (required fields to leave a
phase, allowed transitions, an agent's scope and authority) say whether they would pass. No StepRun,
trace, review task, phase entry or timeline event survives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from agents.actions import ActionError, Effect, actions_run
from agents.http import host_allowed
from agents.output import agent_decisions
from pipes.conditions import evaluate
from pipes.fieldtypes import display_value
from pipes.models import Card, Field, Label, Phase, Pipe
from pipes.services import (
    Actor,
    CardAuthorityError,
    CardError,
    CardTransitionError,
    authority_check,
    card_move,
)

from ..models import Mechanism, Risk, Step, Trigger
from ..rail.apply import _apply_effects, agent_actor, review_decisions
from ..rail.reasons import decision_word
from ..rail.router import authority_reason, budget_left
from .summaries import condition_text


@dataclass
class Change:
    label: str
    before: str
    after: str


@dataclass
class Outcome:
    """What one way the step can end would do to the card."""

    title: str
    changes: list[Change] = field(default_factory=list)
    move: tuple[str, str] | None = None  # (from phase name, to phase name)
    notes: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # the write path's refusals
    needs: str = ""  # the fields whoever decides fills in before the move, as a sentence
    filler: str = ""  # who fills them in, as a sentence
    failed: str = ""  # the step itself would fail (an action error)


@dataclass
class DryRun:
    card: Card
    step: Step
    runs: bool
    condition: str
    route: str
    person: bool  # a person decides (a review task)
    outcomes: list[Outcome] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # what to keep in mind reading it


class _Rollback(Exception):
    def __init__(self, outcome: Outcome):
        self.outcome = outcome


class _DryLedger:
    """Every external call counts as already made: the dry run sends nothing."""

    def done(self, index: int) -> dict | None:
        return {"status": None, "mapped": {}}

    def record(self, index: int, outcome: dict, call: dict) -> None:  # pragma: no cover - never called
        raise AssertionError("a dry run records no call")


def _show(f: Field | None, value: Any) -> str:
    if value in (None, "", [], {}):
        return "—"
    if f is None:
        return str(value)
    try:
        return display_value(f, value) or "—"
    except Exception:  # noqa: BLE001 - a raw value an action would write, before parsing
        return str(value)


def _listing(items: list[str]) -> str:
    """["A", "B", "C"] → "A, B and C" in the reader's language."""
    if len(items) < 2:
        return "".join(items)
    return ", ".join(items[:-1]) + _(" and ") + items[-1]


def _needs_text(labels: list[str]) -> str:
    return ngettext(
        "To leave the phase, %(fields)s must be filled in.",
        "To leave the phase, %(fields)s must be filled in.",
        len(labels),
    ) % {"fields": _listing(labels)}


def _sandbox(
    *,
    card: Card,
    step: Step,
    actor: Actor,
    effects: list[Effect],
    target_key: str,
    title: str,
    fillable: set[str] | None = None,
    filler: str = "",
) -> Outcome:
    """Apply `effects` and the move to `target_key` through the write path, and roll it all back.

    `fillable`: fields whoever decides fills in with the decision (a reviewer, an agent); when the only
    thing missing to move is some of them, the outcome says so instead of calling it a refusal."""
    outcome = Outcome(title=title)
    fields = {f.key: f for f in Field.objects.filter(pipe_id=card.pipe_id)}
    try:
        with transaction.atomic():
            current = Card.objects.select_related("pipe", "phase").get(pk=card.pk)
            before_values, before_phase = dict(current.values), current.phase
            after, applied = _apply_effects(card=current, actor=actor, effects=effects, step=step)
            if target_key and applied["moved_to"] is None and after.phase.key != target_key:
                phase = Phase.objects.get(pipe_id=card.pipe_id, key=target_key)
                after = card_move(actor=actor, card=after, to_phase=phase, reason=step.name)
            after.refresh_from_db()
            for key, value in after.values.items():
                if before_values.get(key) != value:
                    f = fields.get(key)
                    outcome.changes.append(
                        Change(
                            label=f.label if f else key,
                            before=_show(f, before_values.get(key)),
                            after=_show(f, value),
                        )
                    )
            if after.phase_id != before_phase.pk:
                outcome.move = (before_phase.name, after.phase.name)
            raise _Rollback(outcome)
    except _Rollback as done:
        return done.outcome
    except CardTransitionError as exc:
        keys = exc.field_keys
        if fillable and keys and set(exc.errors) <= fillable:
            target = Phase.objects.filter(pipe_id=card.pipe_id, key=target_key).first()
            outcome.move = (card.phase.name, target.name if target else target_key)
            outcome.needs = _needs_text([fields[k].label if k in fields else k for k in keys])
            outcome.filler = filler
            return outcome
        outcome.refused = [exc.message]
        return outcome
    except CardError as exc:
        outcome.refused = [exc.message]
        return outcome


def _effect_notes(effects: list[Effect], pipe: Pipe) -> list[str]:
    notes = []
    User = get_user_model()
    for effect in effects:
        if effect.kind == "send_email":
            notes.append(
                _("Would email %(to)s: “%(subject)s” (not sent in a dry run).")
                % {"to": ", ".join(effect.data["to"]), "subject": effect.data["subject"]}
            )
        elif effect.kind == "create_card":
            target = Pipe.objects.filter(pk=effect.data["pipe_id"]).first()
            notes.append(
                _("Would open a connected card in %(pipe)s (not opened in a dry run).")
                % {"pipe": target.name if target else "?"}
            )
        elif effect.kind == "assign":
            names = [
                u.get_full_name() or u.username for u in User.objects.filter(pk__in=effect.data["user_ids"])
            ]
            notes.append(_("Assigns %(people)s.") % {"people": ", ".join(names)})
        elif effect.kind == "add_label":
            label = Label.objects.filter(pk=effect.data["label_id"]).first()
            notes.append(_("Adds the label %(label)s.") % {"label": label.name if label else "?"})
        elif effect.kind == "comment":
            notes.append(_("Comments: “%(text)s”") % {"text": effect.data["text"][:200]})
    return notes


def _automation(card: Card, step: Step) -> Outcome:
    title = _("What the automation would do")
    try:
        result = actions_run(
            actions=step.actions or [],
            card=card,
            fields={f.key: f for f in Field.objects.filter(pipe_id=card.pipe_id)},
            ledger=_DryLedger(),
            idempotency_prefix="trilho-dry-run",
        )
    except ActionError as exc:
        return Outcome(title=title, failed=str(exc))
    kept = [e for e in result.effects if e.kind not in ("send_email", "create_card")]
    outcome = _sandbox(
        card=card,
        step=step,
        actor=Actor.system(f"Automation: {step.name}"),
        effects=kept,
        target_key=step.on_done,
        title=title,
    )
    for index, spec in enumerate(step.actions or []):
        if spec.get("type") == "http":
            hostname = urlsplit(str(spec.get("url", ""))).hostname or ""
            if not host_allowed(organization_id=card.pipe.organization_id, hostname=hostname):
                outcome.failed = _(
                    "The call to %(host)s would be refused: it is not one of the organization's allowed hosts."
                ) % {"host": hostname}
            outcome.notes.append(
                _("Would call %(method)s %(url)s (action %(n)s; not sent in a dry run).")
                % {
                    "method": str(spec.get("method", "POST")).upper(),
                    "url": spec.get("url", ""),
                    "n": index + 1,
                }
            )
            if spec.get("response_map"):
                outcome.notes.append(
                    _("Its answer would fill: %(fields)s.") % {"fields": ", ".join(spec["response_map"])}
                )
    outcome.notes += _effect_notes(result.effects, card.pipe)
    return outcome


def _decision_title(decision: str) -> str:
    if decision == "approve":
        return _("If approved")
    if decision == "reject":
        return _("If rejected")
    return _("If decided %(decision)s") % {"decision": decision_word(decision)}


def _decisions(card: Card, step: Step, decisions: list[str], *, by_agent: bool) -> list[Outcome]:
    if by_agent and step.agent is not None:
        actor = agent_actor(step.agent, card.pipe_id)
        fillable = set(step.agent.writable_fields or [])
        filler = _("%(agent)s fills them in with its answer.") % {"agent": step.agent.name}
    else:
        actor = Actor.system(f"Step: {step.name}")
        fillable = set(Field.objects.filter(phase_id=card.phase_id).values_list("key", flat=True))
        filler = _("The reviewer fills them in when deciding.")
    outcomes = []
    for decision in decisions:
        if decision == "escalate":
            continue
        outcomes.append(
            _sandbox(
                card=card,
                step=step,
                actor=actor,
                effects=[],
                target_key=step.next_phase_key(decision),
                title=_decision_title(decision),
                fillable=fillable,
                filler=filler,
            )
        )
    return outcomes


def _models_route(card: Card, step: Step) -> tuple[str, bool]:
    """(what the router would do with the agent's models, whether a person decides right away)."""
    agent = step.agent
    if agent is None:
        return _("The step has no agent, so a person decides."), True
    actor = agent_actor(agent, card.pipe_id)
    if actor.authority is not None and agent.authority_field not in (agent.writable_fields or []):
        try:
            authority_check(actor=actor, pipe=card.pipe, values=card.values)
        except CardAuthorityError as exc:
            return authority_reason(exc).text(), True
    tiers = {
        Mechanism.AUTO: ["local", "foundation"],
        Mechanism.LOCAL_MODEL: ["local"],
        Mechanism.FOUNDATION_MODEL: ["foundation"],
    }[step.mechanism]
    asked = []
    for tier in tiers:
        chosen = agent.model_for(tier)
        if chosen is None:
            continue
        if tier == "foundation" and not budget_left(card.pipe_id)[0]:
            asked.append(_("the foundation model is skipped: this month's token budget is spent"))
            continue
        kind = _("the local model") if tier == "local" else _("the foundation model")
        asked.append(f"{kind} {chosen[0]}/{chosen[1]}")
    if not any(agent.model_for(t) for t in tiers):
        return _("%(agent)s has no model for this step: the step would fail.") % {"agent": agent.name}, False
    threshold = f"{agent.confidence_threshold * 100:.0f}%"
    return (
        _(
            "%(agent)s asks %(models)s; an answer below %(threshold)s confidence, or one that asks for a "
            "person, goes to a reviewer."
        )
        % {"agent": agent.name, "models": _(", then ").join(asked), "threshold": threshold}
    ), False


def dry_run(*, step: Step, card: Card) -> DryRun:
    """What running `step` on `card` now would do; the card, its timeline and the rail's records are left
    as they are."""
    fields = {f.key: f for f in Field.objects.filter(pipe_id=card.pipe_id)}
    runs = evaluate(step.condition, card.values) if step.condition else True
    condition = condition_text(step.condition, fields) if step.condition else ""
    result = DryRun(card=card, step=step, runs=runs, condition=condition, route="", person=False)
    if card.phase_id != step.phase_id:
        result.notices.append(
            _(
                "%(card)s is in %(phase)s, not in %(step_phase)s: this is what the step would do if it ran "
                "on the card as it is now."
            )
            % {"card": card.reference, "phase": card.phase.name, "step_phase": step.phase.name}
        )
    if step.trigger == Trigger.LATE:
        result.notices.append(_("This step runs when a card becomes late in its phase."))
    elif step.trigger == Trigger.EXPIRED:
        result.notices.append(_("This step runs when a card passes the pipe's deadline in its phase."))
    if not runs:
        result.route = _("The condition is not met for this card, so the step would be skipped.")
        return result
    if step.mechanism == Mechanism.AUTOMATION:
        count = len(step.actions or [])
        result.route = ngettext(
            "Automation: its action runs without a model.",
            "Automation: its %(n)s actions run in order, without a model.",
            count,
        ) % {"n": count}
        result.outcomes = [_automation(card, step)]
        return result
    if step.mechanism == Mechanism.HUMAN:
        if step.reviewer is not None:
            who = step.reviewer.get_full_name() or step.reviewer.username
            result.route = _("A person decides: a review task opens in %(who)s's inbox.") % {"who": who}
        else:
            result.route = _("A person decides: a review task opens in the inbox of the pipe's reviewers.")
        if step.four_eyes:
            result.route += " " + _("Two people must approve it (four eyes).")
        result.person = True
        result.outcomes = _decisions(card, step, review_decisions(step), by_agent=False)
        return result
    if step.mechanism == Mechanism.AUTO:
        for i, rule in enumerate(step.rules or []):
            if evaluate(rule.get("when"), card.values):
                decision = str(rule.get("decision") or "done")
                result.route = _("Rule %(n)s matches (%(when)s): decided %(decision)s without a model.") % {
                    "n": i + 1,
                    "when": condition_text(rule.get("when"), fields),
                    "decision": decision_word(decision),
                }
                if step.four_eyes:
                    result.route += " " + _("Two people must approve it (four eyes).")
                    result.person = True
                values = dict(rule.get("values") or {})
                effects = [Effect("set_fields", {"values": values})] if values else []
                result.outcomes = [
                    _sandbox(
                        card=card,
                        step=step,
                        actor=Actor.system(f"Automation: {step.name}"),
                        effects=effects,
                        target_key=step.next_phase_key(decision),
                        title=_decision_title(decision),
                    )
                ]
                return result
        if step.risk == Risk.HIGH:
            result.route = _("No rule matches and the step is high risk, so a person decides.")
            result.person = True
            result.outcomes = _decisions(card, step, review_decisions(step), by_agent=False)
            return result
    route, person = _models_route(card, step)
    result.route, result.person = route, person
    decisions = review_decisions(step) if person else agent_decisions(step.agent) if step.agent else []
    result.outcomes = _decisions(card, step, decisions, by_agent=not person)
    if step.four_eyes and not person:
        result.route += " " + _("Two people must approve its decision (four eyes).")
    return result
