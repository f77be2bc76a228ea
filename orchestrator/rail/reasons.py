"""Why the rail did what it did, as data: a code and its parameters, rendered in the reader's language.

A `Reason` is a chain of parts ("the local model was unreachable; no foundation model is configured")
and what followed from them (`then`: a person decides, or a decision taken without a model). The rail
stores it twice: as data (`StepRun.reason_data`, `ReviewTask.reason_data`, a step event's
`payload["reason_data"]`: `{"parts": [{"code": "model_unreachable", "params": {...}}], "then": ...}`) for
pages to render in the reader's language, and as the English sentence it always wrote
(`routing_reason`, the review task's and the timeline's `reason`), the same for every reader and in every
export. The router decides on codes (`Reason.has`), never on the words.

Reasons stored before they were data are shown through orchestrator.rail.reasons_prose.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils import formats
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from .reasons_prose import prose_display


@dataclass(frozen=True)
class Part:
    """One thing the rail noted: a code from `CODES` and its parameters (JSON values)."""

    code: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.code not in CODES:
            raise ValueError(f"unknown reason code {self.code!r}")

    def as_data(self) -> dict[str, Any]:
        return {"code": self.code, "params": dict(self.params)}

    def record(self) -> str:
        return CODES[self.code].record(self.params)

    def text(self) -> str:
        return CODES[self.code].text(self.params)


@dataclass(frozen=True)
class Reason:
    """Why a step went as it did: `parts` in the order they happened, and `then` what followed from them
    (`human`, `no_model`: a person decides; `without_model`: a rule decided), or None."""

    parts: tuple[Part, ...] = ()
    then: Part | None = None

    @classmethod
    def of(cls, code: str, **params: Any) -> Reason:
        return cls(parts=(Part(code, params),))

    def has(self, code: str) -> bool:
        return any(p.code == code for p in self.parts)

    def to_human(self) -> Reason:
        return Reason(parts=self.parts, then=Part("human"))

    def as_data(self) -> dict[str, Any]:
        return {
            "parts": [p.as_data() for p in self.parts],
            "then": self.then.as_data() if self.then else None,
        }

    @classmethod
    def from_data(cls, data: Any) -> Reason | None:
        """The reason stored as `data`, or None when it is missing or names a code this version lacks."""
        if not isinstance(data, Mapping):
            return None
        try:
            parts = tuple(Part(str(p["code"]), dict(p.get("params") or {})) for p in data.get("parts") or [])
            then = data.get("then")
            return cls(
                parts=parts, then=Part(str(then["code"]), dict(then.get("params") or {})) if then else None
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def record(self) -> str:
        """The English sentence kept in the record (what the rail wrote before reasons were data)."""
        why = "; ".join(p.record() for p in self.parts)
        if self.then is None:
            return why
        if self.then.code == "no_model":
            return f"no model reachable ({why}) → human"
        if self.then.code == "without_model":
            return f"{why} → {self.then.params.get('decision', '')} without a model"
        return f"{why} → human" if why else "human"

    def text(self) -> str:
        """The reason as a person would say it, in the active language."""
        why = "; ".join(p.text() for p in self.parts)
        then = self.then
        if then is None:
            if len(self.parts) == 1 and CODES[self.parts[0].code].predicate:
                return why  # follows the name of who acted: "Rita Reviewer approved"
            return capfirst(why)
        if then.code == "no_model":
            text = _("No model could be reached, so this needs a person (%(why)s)") % {"why": why}
        elif then.code == "without_model":
            decision = str(then.params.get("decision", ""))
            if decision == "approve":
                so = _("so it was approved without a model")
            elif decision == "reject":
                so = _("so it was rejected without a model")
            else:
                so = _("so it was decided without a model: %(decision)s") % {
                    "decision": decision_word(decision)
                }
            text = f"{why}, {so}" if why else capfirst(so)
        else:
            text = _("%(why)s, so this needs a person") % {"why": why} if why else _("This needs a person")
        return capfirst(text)


# ---------------------------------------------------------------- rendering helpers


def decision_word(decision: str) -> str:
    """A decision's name in the reader's language where the rail knows it; a process's own as written."""
    known = {
        "approve": pgettext("decision", "approve"),
        "reject": pgettext("decision", "reject"),
        "done": pgettext("decision", "done"),
        "request_changes": pgettext("decision", "request changes"),
    }
    return f"“{known.get(decision, decision)}”"


def model_kind(tier: str) -> str:
    return {"local": _("local model"), "foundation": _("foundation model")}.get(tier, tier)


def percent(value: Any) -> str:
    """0.62 → 62% (a confidence as people read it)."""
    try:
        number = Decimal(str(value)) * 100
    except (InvalidOperation, ValueError):
        return str(value)
    places = 0 if number == number.to_integral_value() else 1
    return formats.number_format(number, decimal_pos=places, use_l10n=True) + "%"


def number(value: Any) -> str:
    try:
        return formats.number_format(int(value), use_l10n=True, force_grouping=True)
    except (TypeError, ValueError):
        return str(value)


def _named(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters a message names, with the model's kind in the reader's language."""
    return {**params, "kind": model_kind(str(params.get("tier", "")))}


def _field(params: Mapping[str, Any]) -> str:
    return str(params.get("label") or params.get("field") or "")


@dataclass(frozen=True)
class Code:
    """How one reason code reads: in the record (English, as the rail always wrote it) and to a person."""

    record: Callable[[Mapping[str, Any]], str]
    text: Callable[[Mapping[str, Any]], str]
    predicate: bool = False  # it follows the actor's name on the timeline ("… approved")


CODES: dict[str, Code] = {
    # why a run was skipped
    "left_before_steps": Code(
        lambda p: "the card left the phase before its steps ran",
        lambda p: _("the card left the phase before its steps ran"),
    ),
    "left_before_review": Code(
        lambda p: "the card left the phase before the review",
        lambda p: _("the card left the phase before the review"),
    ),
    "left_while_running": Code(
        lambda p: "the card left the phase while the step ran",
        lambda p: _("the card left the phase while the step ran"),
    ),
    "condition_not_met": Code(
        lambda p: "condition not met: step skipped",
        lambda p: _("the step's condition was not met, so it was skipped"),
    ),
    # who settles a step
    "by_person": Code(
        lambda p: "the step is decided by a person", lambda p: _("this step is decided by a person")
    ),
    "automation": Code(
        lambda p: f"automation: {p.get('kinds', '')}",
        lambda p: _("the automation ran: %(kinds)s") % {"kinds": p.get("kinds", "")},
    ),
    "rule_matched": Code(
        lambda p: f"rule {p.get('n')} matched", lambda p: _("rule %(n)s matched") % {"n": p.get("n")}
    ),
    "rule_says": Code(lambda p: str(p.get("text", "")), lambda p: str(p.get("text", ""))),  # the rule's words
    "risk_high": Code(lambda p: "risk high", lambda p: _("the step is high risk")),
    "no_agent": Code(lambda p: "the step has no agent", lambda p: _("the step has no agent")),
    "no_model_configured": Code(
        lambda p: f"no {p.get('tier')} model configured",
        lambda p: _("no %(kind)s is configured") % _named(p),
    ),
    "budget_spent": Code(
        lambda p: f"monthly token budget {int(p.get('budget') or 0):,} spent",
        lambda p: _("the monthly budget of %(budget)s tokens is spent") % {"budget": number(p.get("budget"))},
    ),
    "model_unreachable": Code(
        lambda p: f"{p.get('tier')} model {p.get('model')} unreachable",
        lambda p: _("the %(kind)s %(model)s could not be reached") % _named(p),
    ),
    "model_refused": Code(
        lambda p: f"{p.get('tier')} model {p.get('model')} refused the request",
        lambda p: _("the %(kind)s %(model)s refused the request") % _named(p),
    ),
    "answer_invalid": Code(
        lambda p: f"{p.get('tier')} answer invalid",
        lambda p: _("the %(kind)s %(model)s gave an answer that does not fit the form") % _named(p),
    ),
    "model_escalated": Code(
        lambda p: f"{p.get('tier')} model {p.get('model')} escalated",
        lambda p: _("the %(kind)s %(model)s asked for a person") % _named(p),
    ),
    "low_confidence": Code(
        lambda p: f"{p.get('tier')} confidence {p.get('confidence')} below {p.get('threshold')}",
        lambda p: (
            _("the %(kind)s %(model)s was %(confidence)s sure, below the %(threshold)s required")
            % {
                **_named(p),
                "confidence": percent(p.get("confidence")),
                "threshold": percent(p.get("threshold")),
            }
        ),
    ),
    "model_decided": Code(
        lambda p: (
            f"{p.get('tier')} model {p.get('model')} decided {p.get('decision')} "
            f"with confidence {p.get('confidence')}"
        ),
        lambda p: (
            _("the %(kind)s %(model)s decided %(decision)s, %(confidence)s sure")
            % {
                **_named(p),
                "decision": decision_word(str(p.get("decision", ""))),
                "confidence": percent(p.get("confidence")),
            }
        ),
    ),
    "model_proposed": Code(
        lambda p: (
            f"{p.get('tier')} model {p.get('model')} proposed {p.get('decision')} "
            f"with confidence {p.get('confidence')}"
        ),
        lambda p: (
            _("the %(kind)s %(model)s proposed %(decision)s, %(confidence)s sure")
            % {
                **_named(p),
                "decision": decision_word(str(p.get("decision", ""))),
                "confidence": percent(p.get("confidence")),
            }
        ),
    ),
    "proposed_without_model": Code(
        lambda p: f"{p.get('decision')} proposed without a model",
        lambda p: (
            _("a rule proposed %(decision)s without a model")
            % {"decision": decision_word(str(p.get("decision", "")))}
        ),
    ),
    "four_eyes": Code(
        lambda p: "four eyes: two people approve", lambda p: _("two people must approve it (four eyes)")
    ),
    "authority_exceeded": Code(
        lambda p: f"{p.get('field')} {p.get('amount')} exceeds authority {p.get('limit')}",
        lambda p: (
            _("%(field)s of %(amount)s is above the agent's authority of %(limit)s")
            % {"field": _field(p), "amount": p.get("amount"), "limit": p.get("limit")}
        ),
    ),
    "authority_empty": Code(
        lambda p: f"{p.get('field')} empty, authority {p.get('limit')} needs an amount",
        lambda p: (
            _("%(field)s is empty, and the agent's authority of %(limit)s needs an amount")
            % {"field": _field(p), "limit": p.get("limit")}
        ),
    ),
    "authority_unreadable": Code(
        lambda p: f"{p.get('field')} unreadable, authority {p.get('limit')} needs an amount",
        lambda p: (
            _("%(field)s could not be read as an amount, and the agent's authority of %(limit)s needs one")
            % {"field": _field(p), "limit": p.get("limit")}
        ),
    ),
    "authority_currency": Code(
        lambda p: (
            f"{p.get('field')} in {p.get('currency')}, authority {p.get('limit')} is in {p.get('limit_currency')}"
        ),
        lambda p: (
            _("%(field)s is in %(currency)s, but the agent's authority of %(limit)s is in %(limit_currency)s")
            % {**p, "field": _field(p)}
        ),
    ),
    "answer_not_applied": Code(
        lambda p: f"the agent's answer could not be applied ({p.get('why', '')})",
        lambda p: _("the process refused the agent's answer (%(why)s)") % {"why": p.get("why", "")},
    ),
    # what followed from the parts
    "human": Code(lambda p: "human", lambda p: _("this needs a person")),
    "no_model": Code(lambda p: "no model reachable", lambda p: _("no model could be reached")),
    "without_model": Code(
        lambda p: f"{p.get('decision')} without a model",
        lambda p: (
            _("decided without a model: %(decision)s")
            % {"decision": decision_word(str(p.get("decision", "")))}
        ),
    ),
    # what people did, on the card's timeline (after their name)
    "review_decided": Code(
        lambda p: f"Decided {p.get('decision')}" + (f": {p['comment']}" if p.get("comment") else ""),
        lambda p: _decided(str(p.get("decision", ""))),
        predicate=True,
    ),
    "retry_requested": Code(
        lambda p: f"Retry of {p.get('step')}",
        lambda p: _("asked to run %(step)s again") % {"step": p.get("step", "")},
        predicate=True,
    ),
    "step_failed": Code(
        lambda p: f"failed: {p.get('error', '')}",
        lambda p: _("failed: %(error)s") % {"error": p.get("error", "")},
        predicate=True,
    ),
}


def _decided(decision: str) -> str:
    if decision == "approve":
        return pgettext("someone", "approved")
    if decision == "reject":
        return pgettext("someone", "rejected")
    if decision == "request_changes":
        return pgettext("someone", "asked for changes")
    return pgettext("someone", "decided %(decision)s") % {"decision": decision_word(decision)}


# ---------------------------------------------------------------- reading a stored reason


def reason_display(reason: str | None, data: Any = None) -> str:
    """A stored reason in the active language: from its data when it has some, else from its prose."""
    parsed = Reason.from_data(data)
    if parsed is not None:
        return parsed.text()
    return prose_display(reason)
