"""The step editor's form: a step as rows of dropdowns and inputs, and back.

Nobody types JSON here. A step's condition, rules and actions are shown as rows ("when <field> <op>
<value>", "set <field> to <value>", "POST https://<allowed host>/<path>"), posted as flat names
(`cond-0-field`, `act-1-host`, `act-1-body-0-key` ...), read back into a `StepDraft` (the raw
strings, so a form with a mistake is shown again as typed), and built into the Step's JSON in
pipes.conditions' and agents.actions' formats. A part of a stored step the rows cannot show (a
nested condition, a list in a request body) is kept as it is and said so.

`draft_from_post` (here) → `draft_apply` (steps_build.py: errors by input name) → the design service saves the step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.http import QueryDict
from django.utils.translation import gettext_lazy

from agents.actions import ACTION_TYPES, CARD_ATTRS
from pipes.choices import FieldType
from pipes.conditions import OPERATORS
from pipes.models import Phase
from pipes.parsing import parse_int

from ..models import Mechanism, Risk, Step, Trigger

MAX_ROWS = 30
NUMERIC = {FieldType.NUMBER, FieldType.CURRENCY, FieldType.PERCENTAGE}
NO_VALUE_OPS = {"empty", "not_empty", "true", "false"}
LIST_OPS = {"in", "not_in"}
ORDER_OPS = {"gt", "gte", "lt", "lte"}
HTTP_METHODS = ("POST", "GET", "PUT", "PATCH", "DELETE")

OPERATOR_LABELS = {
    "eq": gettext_lazy("is"),
    "ne": gettext_lazy("is not"),
    "gt": gettext_lazy("is more than"),
    "gte": gettext_lazy("is at least"),
    "lt": gettext_lazy("is less than"),
    "lte": gettext_lazy("is at most"),
    "in": gettext_lazy("is one of"),
    "not_in": gettext_lazy("is none of"),
    "contains": gettext_lazy("contains"),
    "empty": gettext_lazy("is empty"),
    "not_empty": gettext_lazy("is filled in"),
    "true": gettext_lazy("is checked"),
    "false": gettext_lazy("is not checked"),
}
assert set(OPERATOR_LABELS) == set(OPERATORS)

ACTION_LABELS = {
    "set_field": gettext_lazy("Set a field"),
    "move": gettext_lazy("Move the card"),
    "assign": gettext_lazy("Assign people"),
    "add_label": gettext_lazy("Add a label"),
    "comment": gettext_lazy("Comment"),
    "create_card": gettext_lazy("Open a connected card"),
    "send_email": gettext_lazy("Send an email"),
    "http": gettext_lazy("Call another system (HTTP)"),
}
assert set(ACTION_LABELS) == set(ACTION_TYPES)

# Where a value comes from, in set_field, request headers and bodies and a connected card's values.
VALUE_MODES = {
    "text": gettext_lazy("Text"),
    "number": gettext_lazy("Number"),
    "yes": gettext_lazy("Yes (checked)"),
    "no": gettext_lazy("No (unchecked)"),
    "field": gettext_lazy("This card's field"),
    "card": gettext_lazy("This card's"),
    "today": gettext_lazy("Today's date"),
    "now": gettext_lazy("The date and time now"),
    "secret": gettext_lazy("A stored secret"),
    "empty": gettext_lazy("Empty"),
}
CARD_ATTR_LABELS = {
    "id": gettext_lazy("id"),
    "reference": gettext_lazy("reference"),
    "title": gettext_lazy("title"),
    "phase": gettext_lazy("phase key"),
    "pipe": gettext_lazy("pipe slug"),
}
assert set(CARD_ATTR_LABELS) == set(CARD_ATTRS)
DECISIONS = ("approve", "reject", "done", "escalate")


# ---------------------------------------------------------------- the draft: what the form holds


@dataclass
class Value:
    """Where one value comes from: `mode` (VALUE_MODES) and its input."""

    mode: str = "text"
    text: str = ""
    field: str = ""
    card: str = "reference"
    prefix: str = ""  # before a secret, e.g. "Bearer "

    @classmethod
    def from_json(cls, node: Any) -> Value | None:
        """The value a stored JSON leaf stands for; None when the rows cannot show it."""
        if node is None:
            return cls(mode="empty")
        if isinstance(node, bool):
            return cls(mode="yes" if node else "no")
        if isinstance(node, int | float):
            return cls(mode="number", text=_plain_number(node))
        if isinstance(node, str):
            return cls(mode="text", text=node)
        if isinstance(node, dict) and len(node) == 1 and "$text" in node:
            return cls(mode="text", text=str(node["$text"]))
        if isinstance(node, dict) and len(node) == 1 and "$field" in node:
            return cls(mode="field", field=str(node["$field"]))
        if isinstance(node, dict) and len(node) == 1 and "$card" in node:
            return cls(mode="card", card=str(node["$card"]))
        if isinstance(node, dict) and len(node) == 1 and node.get("$now") in ("date", "datetime"):
            return cls(mode="today" if node["$now"] == "date" else "now")
        if isinstance(node, dict) and "$secret" in node and set(node) <= {"$secret", "prefix"}:
            return cls(mode="secret", text=str(node["$secret"]), prefix=str(node.get("prefix", "")))
        return None


def _plain_number(value: Any) -> str:
    number = Decimal(str(value))
    return str(int(number)) if number == number.to_integral() else format(number.normalize(), "f")


@dataclass
class Row:
    """One row of a list inside an action: a header, a body entry, a response mapping, a card value."""

    key: str = ""
    value: Value = dc_field(default_factory=Value)


@dataclass
class ActionDraft:
    type: str
    kept: dict | None = None  # a stored action the rows cannot show, kept as it is
    kept_index: int | None = None  # its place in the stored step's actions
    field: str = ""
    value: Value = dc_field(default_factory=Value)
    to: str = ""
    users: list[str] = dc_field(default_factory=list)
    label: str = ""
    text: str = ""
    subject: str = ""
    body: str = ""
    pipe: str = ""
    link_field: str = ""
    method: str = "POST"
    scheme: str = "https"
    host: str = ""
    path: str = ""
    timeout: str = "10"
    host_allowed: bool | None = None  # set for the editor: whether the host is on the allowed list
    headers: list[Row] = dc_field(default_factory=list)
    body_rows: list[Row] = dc_field(default_factory=list)
    response_map: list[Row] = dc_field(default_factory=list)  # key: field, value.text: response path
    values: list[Row] = dc_field(default_factory=list)  # create_card: target key -> value

    @property
    def label_text(self) -> str:
        return str(ACTION_LABELS.get(self.type, self.type))


@dataclass
class ConditionRow:
    field: str = ""
    op: str = "eq"
    value: str = ""


@dataclass
class RuleDraft:
    kept: dict | None = None
    kept_index: int | None = None
    field: str = ""
    op: str = "eq"
    value: str = ""
    decision: str = "approve"
    reason: str = ""
    values: list[Row] = dc_field(default_factory=list)  # fields the rule sets with its decision


@dataclass
class StepDraft:
    """What the step editor holds, as typed."""

    name: str = ""
    key: str = ""
    trigger: str = Trigger.ENTERED
    mechanism: str = Mechanism.AUTOMATION
    agent: str = ""
    risk: str = Risk.LOW
    four_eyes: bool = False
    question: str = ""
    reviewer: str = ""
    on_approve: str = ""
    on_reject: str = ""
    on_done: str = ""
    attempts: str = "3"
    match: str = "all"
    conditions: list[ConditionRow] = dc_field(default_factory=list)
    kept_condition: Any = None  # a stored condition the rows cannot show
    actions: list[ActionDraft] = dc_field(default_factory=list)
    rules: list[RuleDraft] = dc_field(default_factory=list)


# ---------------------------------------------------------------- from a stored step


def _condition_rows(condition: Any) -> tuple[str, list[ConditionRow]] | None:
    """("all"|"any", rows) for a leaf or a flat group of leaves; None for anything deeper."""
    if not condition:
        return "all", []
    if not isinstance(condition, dict):
        return None
    if "field" in condition:
        leaf = _leaf_row(condition)
        return ("all", [leaf]) if leaf else None
    for match in ("all", "any"):
        if set(condition) == {match} and isinstance(condition[match], list):
            rows = [_leaf_row(c) for c in condition[match]]
            if rows and all(rows):
                return match, rows  # type: ignore[return-value]
    return None


def _leaf_row(leaf: Any) -> ConditionRow | None:
    if not isinstance(leaf, dict) or "field" not in leaf or not set(leaf) <= {"field", "op", "value"}:
        return None
    value = leaf.get("value")
    if isinstance(value, list):
        text = ", ".join(str(v) for v in value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = ""
    elif isinstance(value, int | float):
        text = _plain_number(value)
    elif isinstance(value, str):
        text = value
    else:
        return None
    return ConditionRow(field=str(leaf["field"]), op=str(leaf.get("op", "eq")), value=text)


def _flatten(node: Any, prefix: str = "") -> list[Row] | None:
    """A request body as dotted keys ("order.total") and values; None when it holds lists or oddities."""
    if not isinstance(node, dict) or any(k.startswith("$") for k in node):
        return None
    rows: list[Row] = []
    for key, value in node.items():
        name = f"{prefix}{key}"
        leaf = Value.from_json(value)
        if leaf is not None and not (isinstance(value, dict) and not any(k.startswith("$") for k in value)):
            rows.append(Row(key=name, value=leaf))
            continue
        inner = _flatten(value, f"{name}.")
        if inner is None:
            return None
        rows.extend(inner)
    return rows


def _rows_of(mapping: Any) -> list[Row] | None:
    if not isinstance(mapping, dict):
        return None
    rows = []
    for key, value in mapping.items():
        leaf = Value.from_json(value)
        if leaf is None:
            return None
        rows.append(Row(key=str(key), value=leaf))
    return rows


def _action_draft(spec: Any) -> ActionDraft:
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind not in ACTION_TYPES:
        return ActionDraft(type=str(kind or "?"), kept=spec if isinstance(spec, dict) else {"value": spec})
    kept = ActionDraft(type=kind, kept=spec)
    d = ActionDraft(type=kind)
    if kind == "set_field":
        value = Value.from_json(spec.get("value"))
        if value is None:
            return kept
        d.field, d.value = str(spec.get("field", "")), value
    elif kind == "move":
        d.to = str(spec.get("to", ""))
    elif kind == "assign":
        d.users = [str(u) for u in spec.get("users") or []]
    elif kind == "add_label":
        d.label = str(spec.get("label", ""))
    elif kind == "comment":
        d.text = str(spec.get("text", ""))
    elif kind == "send_email":
        d.to, d.subject, d.body = (str(spec.get(k, "")) for k in ("to", "subject", "body"))
    elif kind == "create_card":
        values = _rows_of(spec.get("values") or {})
        if values is None:
            return kept
        d.pipe, d.link_field, d.values = str(spec.get("pipe", "")), str(spec.get("link_field") or ""), values
    elif kind == "http":
        url = urlsplit(str(spec.get("url", "")))
        headers = _rows_of(spec.get("headers") or {})
        body = _flatten(spec["body"]) if "body" in spec else []
        response_map = spec.get("response_map") or {}
        if headers is None or body is None or not isinstance(response_map, dict):
            return kept
        d.method = str(spec.get("method", "POST")).upper()
        d.scheme, d.host = url.scheme or "https", url.netloc
        d.path = url.path + (f"?{url.query}" if url.query else "")
        d.timeout = _plain_number(spec.get("timeout", 10))
        d.headers, d.body_rows = headers, body
        d.response_map = [Row(key=str(k), value=Value(text=str(v))) for k, v in response_map.items()]
    return d


def draft_from_step(step: Step) -> StepDraft:
    d = StepDraft(
        name=step.name,
        key=step.key,
        trigger=step.trigger,
        mechanism=step.mechanism,
        agent=str(step.agent_id or ""),
        risk=step.risk,
        four_eyes=step.four_eyes,
        question=step.question,
        reviewer=str(step.reviewer_id or ""),
        on_approve=step.on_approve,
        on_reject=step.on_reject,
        on_done=step.on_done,
        attempts=str(step.max_attempts),
    )
    rows = _condition_rows(step.condition)
    if rows is None:
        d.kept_condition = step.condition
    else:
        d.match, d.conditions = rows
    d.actions = [_action_draft(a) for a in step.actions or []]
    for index, action in enumerate(d.actions):
        if action.kept is not None:
            action.kept_index = index
    for index, rule in enumerate(step.rules or []):
        leaf = _leaf_row(rule.get("when")) if isinstance(rule, dict) else None
        values = _rows_of(rule.get("values") or {}) if isinstance(rule, dict) else None
        if leaf is None or values is None or not set(rule) <= {"when", "decision", "reason", "values"}:
            d.rules.append(
                RuleDraft(kept=rule if isinstance(rule, dict) else {"value": rule}, kept_index=index)
            )
        else:
            d.rules.append(
                RuleDraft(
                    field=leaf.field,
                    op=leaf.op,
                    value=leaf.value,
                    decision=str(rule.get("decision", "")),
                    reason=str(rule.get("reason", "")),
                    values=values,
                )
            )
    return d


def draft_new(phase: Phase) -> StepDraft:
    return StepDraft(name="", mechanism=Mechanism.AUTOMATION, actions=[ActionDraft(type="set_field")])


# ---------------------------------------------------------------- from the posted form


def _count(data: QueryDict, name: str) -> int:
    return min(parse_int(data.get(name, "0"), high=MAX_ROWS) or 0, MAX_ROWS)


def _value(data: QueryDict, prefix: str) -> Value:
    mode = data.get(f"{prefix}-mode", "text")
    return Value(
        mode=mode if mode in VALUE_MODES else "text",
        text=data.get(f"{prefix}-text", ""),
        field=data.get(f"{prefix}-field", ""),
        card=data.get(f"{prefix}-card", "reference"),
        prefix=data.get(f"{prefix}-prefix", ""),
    )


def _rows(data: QueryDict, prefix: str) -> list[Row]:
    return [
        Row(key=data.get(f"{prefix}-{j}-key", "").strip(), value=_value(data, f"{prefix}-{j}"))
        for j in range(_count(data, f"{prefix}-count"))
    ]


def draft_from_post(data: QueryDict, *, stored: Step | None) -> StepDraft:
    """The draft as posted; a part kept as it is comes from the stored step, never from the browser."""
    d = StepDraft(
        name=data.get("name", "").strip(),
        key=data.get("key", "").strip(),
        trigger=data.get("trigger", Trigger.ENTERED),
        mechanism=data.get("mechanism", Mechanism.AUTOMATION),
        agent=data.get("agent", ""),
        risk=data.get("risk", Risk.LOW),
        four_eyes=data.get("four_eyes") in ("on", "1", "true"),
        question=data.get("question", "").strip(),
        reviewer=data.get("reviewer", ""),
        on_approve=data.get("on_approve", ""),
        on_reject=data.get("on_reject", ""),
        on_done=data.get("on_done", ""),
        attempts=data.get("attempts", "3").strip(),
        match="any" if data.get("cond-match") == "any" else "all",
    )
    if stored is not None and data.get("cond-kept") == "1":
        d.kept_condition = stored.condition
    d.conditions = [
        ConditionRow(
            field=data.get(f"cond-{i}-field", ""),
            op=data.get(f"cond-{i}-op", "eq"),
            value=data.get(f"cond-{i}-value", "").strip(),
        )
        for i in range(_count(data, "cond-count"))
    ]
    stored_actions = list(stored.actions or []) if stored is not None else []
    for i in range(_count(data, "act-count")):
        p = f"act-{i}"
        kind = data.get(f"{p}-type", "")
        kept_index = parse_int(data.get(f"{p}-kept", ""), high=MAX_ROWS)
        if kept_index is not None and kept_index < len(stored_actions):
            spec = stored_actions[kept_index]
            d.actions.append(ActionDraft(type=str(spec.get("type", "?")), kept=spec, kept_index=kept_index))
            continue
        if kind not in ACTION_TYPES:
            continue
        a = ActionDraft(type=kind)
        a.field = data.get(f"{p}-field", "")
        a.value = _value(data, f"{p}-value")
        a.to = data.get(f"{p}-to", "").strip()
        a.users = [u for u in data.getlist(f"{p}-users") if u]
        a.label = data.get(f"{p}-label", "")
        a.text = data.get(f"{p}-text", "").strip()
        a.subject = data.get(f"{p}-subject", "").strip()
        a.body = data.get(f"{p}-body", "").strip()
        a.pipe = data.get(f"{p}-pipe", "")
        a.link_field = data.get(f"{p}-link_field", "")
        a.method = data.get(f"{p}-method", "POST").upper()
        a.scheme = "http" if data.get(f"{p}-scheme") == "http" else "https"
        a.host = data.get(f"{p}-host", "").strip().lower()
        a.path = data.get(f"{p}-path", "").strip()
        a.timeout = data.get(f"{p}-timeout", "10").strip()
        a.headers = _rows(data, f"{p}-headers")
        a.body_rows = _rows(data, f"{p}-bodyrows")
        a.response_map = _rows(data, f"{p}-map")
        a.values = _rows(data, f"{p}-values")
        d.actions.append(a)
    stored_rules = list(stored.rules or []) if stored is not None else []
    for i in range(_count(data, "rule-count")):
        kept_index = parse_int(data.get(f"rule-{i}-kept", ""), high=MAX_ROWS)
        if kept_index is not None and kept_index < len(stored_rules):
            d.rules.append(RuleDraft(kept=stored_rules[kept_index], kept_index=kept_index))
            continue
        d.rules.append(
            RuleDraft(
                field=data.get(f"rule-{i}-field", ""),
                op=data.get(f"rule-{i}-op", "eq"),
                value=data.get(f"rule-{i}-value", "").strip(),
                decision=data.get(f"rule-{i}-decision", "").strip(),
                reason=data.get(f"rule-{i}-reason", "").strip(),
                values=_rows(data, f"rule-{i}-values"),
            )
        )
    return d


def draft_edit(d: StepDraft, op: str) -> bool:
    """Apply an editing button ("add_action:http", "remove_cond:2", "add_row:act-1-headers" ...) to the
    draft; False when `op` is not one of them (then it is a save)."""
    verb, _sep, arg = op.partition(":")
    if verb == "add_action" and arg in ACTION_TYPES and len(d.actions) < MAX_ROWS:
        d.actions.append(ActionDraft(type=arg))
    elif verb == "remove_action":
        _remove(d.actions, arg)
    elif verb == "up_action":
        i = parse_int(arg)
        if i is not None and 0 < i < len(d.actions):
            d.actions[i - 1], d.actions[i] = d.actions[i], d.actions[i - 1]
    elif verb == "add_cond" and len(d.conditions) < MAX_ROWS:
        d.kept_condition = None
        d.conditions.append(ConditionRow())
    elif verb == "remove_cond":
        _remove(d.conditions, arg)
    elif verb == "clear_kept_cond":
        d.kept_condition = None
    elif verb == "add_rule" and len(d.rules) < MAX_ROWS:
        d.rules.append(RuleDraft())
    elif verb == "remove_rule":
        _remove(d.rules, arg)
    elif verb in ("add_row", "remove_row"):
        target, _sep, index = arg.partition(":")
        rule_match = re.fullmatch(r"rule-(\d+)-values", target)
        if rule_match:
            if int(rule_match.group(1)) < len(d.rules) and d.rules[int(rule_match.group(1))].kept is None:
                rows = d.rules[int(rule_match.group(1))].values
                if verb == "add_row" and len(rows) < MAX_ROWS:
                    rows.append(Row())
                elif verb == "remove_row":
                    _remove(rows, index)
            return True
        match = re.fullmatch(r"act-(\d+)-(headers|bodyrows|map|values)", target)
        if not match or int(match.group(1)) >= len(d.actions):
            return True
        action = d.actions[int(match.group(1))]
        rows = {
            "headers": action.headers,
            "bodyrows": action.body_rows,
            "map": action.response_map,
            "values": action.values,
        }[match.group(2)]
        if verb == "add_row" and len(rows) < MAX_ROWS:
            rows.append(Row(value=Value(mode="field")) if match.group(2) != "map" else Row())
        elif verb == "remove_row":
            _remove(rows, index)
    elif verb == "refresh":
        pass
    else:
        return False
    return True


def _remove(items: list, arg: str) -> None:
    i = parse_int(arg)
    if i is not None and i < len(items):
        del items[i]
