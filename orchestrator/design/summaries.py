"""A step, its condition and its actions in one line each, as the steps list and the dry run show them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.translation import gettext as _

from pipes.models import Field

from ..models import Mechanism, Step
from .steps_form import ACTION_LABELS, NO_VALUE_OPS, OPERATOR_LABELS


def _value_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    return str(value)


def condition_text(condition: Any, fields: Mapping[str, Field]) -> str:
    """{"all": [{"field": "amount", "op": "gt", "value": 5000}, ...]} → "Amount is more than 5000 and …"."""
    if not isinstance(condition, Mapping) or not condition:
        return ""
    for group, joiner in (("all", _(" and ")), ("any", _(" or "))):
        if group in condition and isinstance(condition[group], list):
            parts = [
                f"({condition_text(c, fields)})"
                if isinstance(c, Mapping) and {"all", "any"} & set(c)
                else condition_text(c, fields)
                for c in condition[group]
            ]
            return joiner.join(parts)
    if "not" in condition:
        return _("not (%(condition)s)") % {"condition": condition_text(condition["not"], fields)}
    key = str(condition.get("field", ""))
    f = fields.get(key)
    op = str(condition.get("op", "eq"))
    label = f.label if f is not None else key
    words = str(OPERATOR_LABELS.get(op, op))
    if op in NO_VALUE_OPS:
        return f"{label} {words}"
    return f"{label} {words} {_value_text(condition.get('value'))}"


def action_text(spec: Any, fields: Mapping[str, Field], phases: Mapping[str, str]) -> str:
    """One action as a line: "Set Category to Hardware", "POST https://erp.example.com/orders"."""
    if not isinstance(spec, Mapping):
        return "?"
    kind = spec.get("type")
    if kind == "set_field":
        f = fields.get(str(spec.get("field")))
        value = spec.get("value")
        if isinstance(value, Mapping) and "$field" in value:
            source = fields.get(str(value["$field"]))
            shown = _("the value of %(field)s") % {"field": source.label if source else value["$field"]}
        elif isinstance(value, Mapping) and "$now" in value:
            shown = _("today") if value["$now"] == "date" else _("now")
        elif isinstance(value, Mapping) and "$text" in value:
            shown = f"“{value['$text']}”"
        elif isinstance(value, Mapping):
            shown = "…"
        elif value is None:
            shown = _("empty")
        else:
            shown = f"“{_value_text(value)}”"
        return _("Set %(field)s to %(value)s") % {
            "field": f.label if f else spec.get("field"),
            "value": shown,
        }
    if kind == "move":
        return _("Move to %(phase)s") % {"phase": phases.get(str(spec.get("to")), spec.get("to"))}
    if kind == "assign":
        return _("Assign %(people)s") % {"people": ", ".join(str(u) for u in spec.get("users") or [])}
    if kind == "add_label":
        return _("Add the label %(label)s") % {"label": spec.get("label")}
    if kind == "comment":
        return _("Comment “%(text)s”") % {"text": str(spec.get("text", ""))[:60]}
    if kind == "create_card":
        return _("Open a card in %(pipe)s") % {"pipe": spec.get("pipe")}
    if kind == "send_email":
        return _("Email %(to)s") % {"to": spec.get("to")}
    if kind == "http":
        return f"{str(spec.get('method', 'POST')).upper()} {spec.get('url', '')}"
    return str(ACTION_LABELS.get(str(kind), kind))


def step_summary(step: Step, fields: Mapping[str, Field], phases: Mapping[str, str]) -> dict[str, Any]:
    """What a step's tile shows: its condition, what runs and where each decision leads."""
    lines: list[str] = []
    if step.mechanism == Mechanism.AUTOMATION:
        lines = [action_text(a, fields, phases) for a in step.actions or []]
    elif step.agent is not None:
        lines = [_("Agent: %(agent)s") % {"agent": step.agent.name}]
    leads = []
    for decision, target in (
        ("approve", step.on_approve),
        ("reject", step.on_reject),
        ("done", step.on_done),
    ):
        if target:
            leads.append((decision, phases.get(target, target)))
    return {
        "condition": condition_text(step.condition, fields) if step.condition else "",
        "lines": lines,
        "leads": leads,
        "rules": len(step.rules or []),
    }
