"""An agent's answer: the JSON schema it must follow, and the strict check of what it returned.

The schema is built from the agent's writable fields (their types and options) and its
allowed decisions. `answer_parse` accepts all of an answer or none of it: any unknown key,
field outside the agent's scope, unparseable value or unknown decision makes the whole
answer invalid (a failed attempt), so nothing is ever half-applied.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from pipes.choices import FieldType
from pipes.fieldtypes import FieldValueError, ParseContext, parse_value
from pipes.models import Field

from .models import Agent

DEFAULT_DECISIONS = ["done"]
NOT_WRITABLE_BY_AGENTS = {FieldType.ATTACHMENT}
ANSWER_KEYS = {"decision", "values", "confidence", "reasoning"}


class InvalidOutput(Exception):
    """The model's answer does not satisfy the schema or the agent's scope."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class AgentAnswer:
    """A validated answer: values are already in their stored form."""

    decision: str
    values: dict[str, Any] = field(default_factory=dict)
    confidence: Decimal = Decimal("0")
    reasoning: str = ""

    def as_proposal(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "values": self.values,
            "confidence": str(self.confidence),
            "reasoning": self.reasoning,
        }


def agent_decisions(agent: Agent) -> list[str]:
    return [str(d) for d in (agent.decisions or [])] or list(DEFAULT_DECISIONS)


def _field_schema(f: Field) -> dict[str, Any]:
    t = f.type
    if t in (FieldType.NUMBER, FieldType.PERCENTAGE, FieldType.CURRENCY):
        return {"type": ["number", "string"], "description": f.label}
    if t == FieldType.CHECKBOX:
        return {"type": "boolean", "description": f.label}
    if t == FieldType.SELECT:
        return {"type": "string", "enum": list(f.options or []), "description": f.label}
    if t in (FieldType.MULTI_SELECT, FieldType.CHECKLIST):
        return {
            "type": "array",
            "items": {"type": "string", "enum": list(f.options or [])},
            "description": f.label,
        }
    if t in (FieldType.ASSIGNEE, FieldType.LABEL, FieldType.CONNECTION):
        return {"type": "array", "items": {"type": "integer"}, "description": f.label}
    if t == FieldType.DATE:
        return {"type": "string", "format": "date", "description": f.label}
    if t in (FieldType.DATETIME, FieldType.DUE_DATE):
        return {"type": "string", "format": "date-time", "description": f.label}
    return {"type": "string", "description": f.label}


def writable_fields(agent: Agent, fields: Mapping[str, Field]) -> list[Field]:
    return [
        fields[k]
        for k in agent.writable_fields or []
        if k in fields and fields[k].type not in NOT_WRITABLE_BY_AGENTS
    ]


def answer_schema(agent: Agent, fields: Mapping[str, Field]) -> dict[str, Any]:
    """The JSON schema of a valid answer of `agent` (given the pipe's fields by key)."""
    return {
        "type": "object",
        "properties": {
            "decision": {"type": "string", "enum": agent_decisions(agent)},
            "values": {
                "type": "object",
                "properties": {f.key: _field_schema(f) for f in writable_fields(agent, fields)},
                "additionalProperties": False,
            },
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "reasoning": {"type": "string"},
        },
        "required": ["decision", "confidence", "reasoning"],
        "additionalProperties": False,
    }


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def _load_json(text: str) -> Any:
    match = _FENCE.match(text or "")
    if match:
        text = match.group(1)
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise InvalidOutput(
            [f"the answer is not valid JSON ({exc.__class__.__name__}: {str(exc)[:120]})"]
        ) from None


def answer_parse(*, text: str, agent: Agent, fields: Mapping[str, Field], ctx: ParseContext) -> AgentAnswer:
    """The validated answer in `text`, or InvalidOutput listing every problem found."""
    data = _load_json(text)
    if not isinstance(data, dict):
        raise InvalidOutput(["the answer must be a JSON object"])
    errors: list[str] = []
    for key in sorted(set(data) - ANSWER_KEYS):
        errors.append(f"unexpected key '{key}' (only decision, values, confidence, reasoning)")
    decisions = agent_decisions(agent)
    decision = data.get("decision")
    if decision not in decisions:
        errors.append(f"decision {decision!r} is not one of {', '.join(decisions)}")
    try:
        confidence = Decimal(str(data.get("confidence")))
        if isinstance(data.get("confidence"), bool) or not (Decimal(0) <= confidence <= Decimal(1)):
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        errors.append("confidence must be a number between 0 and 1")
        confidence = Decimal(0)
    reasoning = data.get("reasoning", "")
    if not isinstance(reasoning, str):
        errors.append("reasoning must be text")
        reasoning = ""
    raw_values = data.get("values") or {}
    values: dict[str, Any] = {}
    if not isinstance(raw_values, dict):
        errors.append("values must be an object of field keys")
        raw_values = {}
    allowed = {f.key for f in writable_fields(agent, fields)}
    for key, raw in raw_values.items():
        if key not in allowed:
            errors.append(f"field '{key}' is outside the agent's scope")
            continue
        try:
            values[key] = parse_value(fields[key], raw, ctx)
        except FieldValueError as exc:
            errors.append(f"field '{key}': {exc}")
    if errors:
        raise InvalidOutput(errors)
    return AgentAnswer(
        decision=str(decision),
        values=values,
        confidence=confidence.quantize(Decimal("0.01")),
        reasoning=reasoning.strip()[:4000],
    )


def unknown_keys(keys: Iterable[str], fields: Mapping[str, Field]) -> list[str]:
    return [k for k in keys if k not in fields]
