"""What one step can come to: the failures that end an attempt, the usage it spent, and the decision
to apply or hand to a person. Shared by the loop (orchestrator.rail.loop), the router and apply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.actions import Effect
from agents.output import AgentAnswer

from . import costs
from .reasons import Reason


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
    reason: Reason
    decision: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    effects: list[Effect] = field(default_factory=list)
    by_agent: bool = False
    proposal: AgentAnswer | None = None  # the agent's answer, handed to a person if the process refuses it


@dataclass
class Handover:
    """A person decides: a review task with the agent's proposal, if any."""

    reason: Reason
    proposal: AgentAnswer | None = None


@dataclass
class EntryOutcome:
    """What the worker should do after running an entry: `retry_in`, run it again after that many
    seconds; `not_quick`, send it to the default queue (it came by the fast lane, but its phase has a
    step now that may take longer than the lane is for: nothing of it ran here)."""

    retry_in: float | None = None
    not_quick: bool = False


@dataclass(frozen=True)
class StepResult:
    """How one step ended, for the loop (orchestrator.rail.loop).

    `goes_on`: the card stayed in the phase and the next step runs. `retry_in`: the step failed
    transiently and runs again after that many seconds. Neither: the entry stops here (the card moved,
    a person decides, the step failed, or another worker took the run over)."""

    goes_on: bool = False
    retry_in: float | None = None


NEXT_STEP = StepResult(goes_on=True)
STOP = StepResult()


def retry_after(seconds: float) -> StepResult:
    return StepResult(retry_in=seconds)


@dataclass(frozen=True)
class Claim:
    """This worker's hold on a run: `token` is what its writes are checked against; `fresh` says this
    worker created the run just now, so its trace is empty (numbered from 0 without a query)."""

    token: str
    fresh: bool = False
