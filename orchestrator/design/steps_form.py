"""The step editor's form: a step as rows of dropdowns and inputs, and back.

Nobody types JSON here. A step's condition, rules and actions are shown as rows ("when <field> <op>
<value>", "set <field> to <value>", "POST https://<allowed host>/<path>"), posted as flat names
(`cond-0-field`, `act-1-host`, `act-1-body-0-key` ...), read back into a `StepDraft` (the raw
strings, so a form with a mistake is shown again as typed), and built into the Step's JSON in
pipes.conditions' and agents.actions' formats. A part of a stored step the rows cannot show (a
nested condition, a list in a request body) is kept as it is and said so.

`draft_from_post` → `draft_apply` (errors by input name) → the design service saves the step.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.http import QueryDict
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agents.actions import ACTION_TYPES, CARD_ATTRS
from agents.models import Agent, AllowedHost
from pipes.choices import FieldType
from pipes.conditions import OPERATORS
from pipes.fieldtypes import FieldValueError, parse_decimal
from pipes.models import Field, Phase, Pipe
from pipes.parsing import parse_id, parse_int

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


# ---------------------------------------------------------------- building the step


@dataclass
class Context:
    """What the form offers: the pipe's fields, phases, agents, people, labels, hosts and pipes."""

    pipe: Pipe
    fields: dict[str, Field]
    phases: dict[str, Phase]
    agents: dict[int, Agent]
    workers: dict[str, Any]  # username -> user
    reviewers: dict[int, Any]
    labels: list[str]
    hosts: list[AllowedHost]
    pipes: dict[str, Pipe]


class Errors(dict):
    """Messages by the input name they belong to ("" for the whole step)."""

    def add(self, name: str, message: str) -> None:
        self.setdefault(name, []).append(message)


LITERAL_MODES = ("text", "number", "yes", "no", "empty")


def _json_value(v: Value, ctx: Context, name: str, errors: Errors, *, literal: bool = False) -> Any:
    """The JSON a value row stands for; `literal`: only values as written (a rule's values are applied as
    they are, with no substitution)."""
    if literal and v.mode not in LITERAL_MODES:
        errors.add(f"{name}-mode", _("A rule sets values as written: text, a number, yes, no or empty."))
        return None
    if v.mode == "text" and literal:
        return v.text
    if v.mode == "text":
        return {"$text": v.text} if re.search(r"\{(field|card)\.", v.text) else v.text
    if v.mode == "number":
        try:
            number = parse_decimal(v.text)
        except FieldValueError as exc:
            errors.add(f"{name}-text", str(exc))
            return None
        return int(number) if number == number.to_integral() else float(number)
    if v.mode in ("yes", "no"):
        return v.mode == "yes"
    if v.mode == "empty":
        return None
    if v.mode == "field":
        if v.field not in ctx.fields:
            errors.add(f"{name}-field", _("Choose a field of this pipe."))
        return {"$field": v.field}
    if v.mode == "card":
        if v.card not in CARD_ATTRS:
            errors.add(f"{name}-card", _("Choose what of the card to use."))
        return {"$card": v.card}
    if v.mode in ("today", "now"):
        return {"$now": "date" if v.mode == "today" else "datetime"}
    if v.mode == "secret":
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", v.text):
            errors.add(f"{name}-text", _("Name the secret: letters, digits, dots, - and _."))
        return {"$secret": v.text, "prefix": v.prefix} if v.prefix else {"$secret": v.text}
    errors.add(f"{name}-mode", _("Choose where the value comes from."))
    return None


def _condition_value(row: ConditionRow, ctx: Context, name: str, errors: Errors) -> Any:
    f = ctx.fields.get(row.field)
    if row.op in NO_VALUE_OPS:
        return None
    if row.op in LIST_OPS:
        items = [s.strip() for s in row.value.split(",") if s.strip()]
        if not items:
            errors.add(name, _("List one or more values, separated by commas."))
        return items
    if not row.value:
        errors.add(name, _("Enter a value to compare with."))
        return None
    if f is not None and f.type in NUMERIC and row.op != "contains":
        try:
            number = parse_decimal(row.value)
        except FieldValueError as exc:
            errors.add(name, str(exc))
            return None
        return int(number) if number == number.to_integral() else float(number)
    if f is not None and f.type == FieldType.CHECKBOX and row.op in ("eq", "ne"):
        return row.value.lower() in ("true", "yes", "sim", "1", "on")
    if row.op in ORDER_OPS and f is not None and f.type not in (FieldType.DATE, FieldType.DATETIME):
        errors.add(f"{name}", _("Only numbers and dates are more or less than a value."))
    return row.value


def _leaf(row: ConditionRow, ctx: Context, prefix: str, errors: Errors) -> dict:
    if row.field not in ctx.fields:
        errors.add(f"{prefix}-field", _("Choose a field of this pipe."))
    if row.op not in OPERATORS:
        errors.add(f"{prefix}-op", _("Choose how to compare."))
    leaf: dict[str, Any] = {"field": row.field, "op": row.op}
    value = _condition_value(row, ctx, f"{prefix}-value", errors)
    if row.op not in NO_VALUE_OPS:
        leaf["value"] = value
    return leaf


def condition_build(d: StepDraft, ctx: Context, errors: Errors) -> Any:
    if d.kept_condition is not None:
        return d.kept_condition
    leaves = [_leaf(row, ctx, f"cond-{i}", errors) for i, row in enumerate(d.conditions)]
    if not leaves:
        return None
    if len(leaves) == 1:
        return leaves[0]
    return {d.match: leaves}


def mark_hosts(d: StepDraft, ctx: Context) -> None:
    """Say on each HTTP action whether its host is allowed (the editor warns before a save refuses it)."""
    for a in d.actions:
        if a.type == "http" and a.kept is None and a.host:
            a.host_allowed = _host_allowed(a.host, ctx)


def _host_allowed(host: str, ctx: Context) -> bool:
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return any(h.matches(hostname) for h in ctx.hosts)


def _action_build(a: ActionDraft, i: int, ctx: Context, errors: Errors) -> dict:
    if a.kept is not None:
        return copy.deepcopy(a.kept)
    p = f"act-{i}"
    spec: dict[str, Any] = {"type": a.type}
    if a.type == "set_field":
        if a.field not in ctx.fields:
            errors.add(f"{p}-field", _("Choose the field to set."))
        elif ctx.fields[a.field].type == FieldType.ATTACHMENT:
            errors.add(f"{p}-field", _("An automation cannot set an attachment field."))
        spec["field"] = a.field
        spec["value"] = _json_value(a.value, ctx, f"{p}-value", errors)
    elif a.type == "move":
        if a.to not in ctx.phases:
            errors.add(f"{p}-to", _("Choose the phase to move the card to."))
        spec["to"] = a.to
    elif a.type == "assign":
        unknown = [u for u in a.users if u not in ctx.workers]
        if not a.users:
            errors.add(f"{p}-users", _("Choose at least one person."))
        elif unknown:
            errors.add(f"{p}-users", _("Choose people who work this pipe."))
        spec["users"] = list(a.users)
    elif a.type == "add_label":
        if a.label not in ctx.labels:
            errors.add(f"{p}-label", _("Choose one of this pipe's labels."))
        spec["label"] = a.label
    elif a.type == "comment":
        if not a.text:
            errors.add(f"{p}-text", _("Write the comment."))
        spec["text"] = a.text
    elif a.type == "send_email":
        for name, value in (("to", a.to), ("subject", a.subject), ("body", a.body)):
            if not value:
                errors.add(f"{p}-{name}", _("Required."))
        spec.update(to=a.to, subject=a.subject, body=a.body)
    elif a.type == "create_card":
        target = ctx.pipes.get(a.pipe)
        if target is None:
            errors.add(f"{p}-pipe", _("Choose a pipe of this organization."))
        spec["pipe"] = a.pipe
        target_keys = {f.key for f in target.fields.all()} if target is not None else set()
        values: dict[str, Any] = {}
        for j, row in enumerate(a.values):
            if target is not None and row.key not in target_keys:
                errors.add(f"{p}-values-{j}-key", _("Choose a field of the connected pipe."))
            values[row.key] = _json_value(row.value, ctx, f"{p}-values-{j}", errors)
        spec["values"] = values
        if a.link_field:
            if a.link_field not in ctx.fields or ctx.fields[a.link_field].type != FieldType.CONNECTION:
                errors.add(f"{p}-link_field", _("Choose a connection field of this pipe."))
            spec["link_field"] = a.link_field
    elif a.type == "http":
        if a.method not in HTTP_METHODS:
            errors.add(f"{p}-method", _("Choose a method."))
        if not a.host:
            errors.add(f"{p}-host", _("Choose one of the organization's allowed hosts."))
        elif not re.fullmatch(r"[a-z0-9.-]+(:\d{1,5})?|\[[0-9a-f:.]+\](:\d{1,5})?", a.host):
            errors.add(f"{p}-host", _("A host name, like erp.example.com (no scheme, no path)."))
        elif not _host_allowed(a.host, ctx):
            errors.add(
                f"{p}-host",
                _("%(host)s is not one of the organization's allowed hosts.") % {"host": a.host},
            )
        path = a.path
        if path and not path.startswith("/"):
            path = "/" + path
        if re.search(r"\s", path):
            errors.add(f"{p}-path", _("A path has no spaces."))
        spec["method"] = a.method
        spec["url"] = f"{a.scheme}://{a.host}{path}"
        headers: dict[str, Any] = {}
        for j, row in enumerate(a.headers):
            if not re.fullmatch(r"[A-Za-z0-9-]+", row.key):
                errors.add(f"{p}-headers-{j}-key", _("A header name: letters, digits and -."))
            headers[row.key] = _json_value(row.value, ctx, f"{p}-headers-{j}", errors)
        if headers:
            spec["headers"] = headers
        if a.body_rows and a.method != "GET":
            body: dict[str, Any] = {}
            for j, row in enumerate(a.body_rows):
                parts = row.key.split(".")
                if not row.key or not all(parts):
                    errors.add(f"{p}-bodyrows-{j}-key", _("Name the entry, e.g. total or order.total."))
                    continue
                node = body
                for part in parts[:-1]:
                    node = node.setdefault(part, {})
                    if not isinstance(node, dict):
                        errors.add(f"{p}-bodyrows-{j}-key", _("This name is used above for a value."))
                        break
                else:
                    node[parts[-1]] = _json_value(row.value, ctx, f"{p}-bodyrows-{j}", errors)
            spec["body"] = body
        try:
            timeout = parse_decimal(a.timeout or "10")
        except FieldValueError:
            timeout = Decimal(0)
        if not 0 < timeout <= 60:
            errors.add(f"{p}-timeout", _("Seconds, from 1 to 60."))
        spec["timeout"] = int(timeout) if timeout == timeout.to_integral() else float(timeout)
        if spec["timeout"] == 10:
            del spec["timeout"]
        mapping: dict[str, str] = {}
        for j, row in enumerate(a.response_map):
            if row.key not in ctx.fields:
                errors.add(f"{p}-map-{j}-key", _("Choose the field to fill."))
            if not row.value.text.strip():
                errors.add(f"{p}-map-{j}-text", _("Where in the answer, e.g. data.id."))
            mapping[row.key] = row.value.text.strip()
        if mapping:
            spec["response_map"] = mapping
    return spec


def _phase_target(value: str, ctx: Context, name: str, errors: Errors) -> str:
    if value and value not in ctx.phases:
        errors.add(name, _("Choose a phase of this pipe."))
    return value


def draft_apply(d: StepDraft, step: Step, ctx: Context) -> Errors:
    """Write the draft onto `step` (not saved); the problems found, by input name."""
    errors = Errors()
    if not d.name:
        errors.add("name", _("Give the step a name."))
    key = d.key or slugify(d.name).replace("-", "_")[:64]
    if not key or not re.fullmatch(r"[A-Za-z0-9_-]+", key):
        errors.add("key", _("Letters, digits, - and _ only."))
    elif Step.objects.filter(phase_id=step.phase_id, key=key).exclude(pk=step.pk).exists():
        errors.add("key", _("Another step of this phase has this key."))
    if d.trigger not in Trigger.values:
        errors.add("trigger", _("Choose when the step runs."))
    if d.mechanism not in Mechanism.values:
        errors.add("mechanism", _("Choose who settles the step."))
    if d.risk not in Risk.values:
        errors.add("risk", _("Choose a risk level."))
    attempts = parse_int(d.attempts, low=1, high=10)
    if attempts is None:
        errors.add("attempts", _("From 1 to 10."))
    agent = None
    if d.agent:
        agent = ctx.agents.get(parse_id(d.agent) or 0)
        if agent is None:
            errors.add("agent", _("Choose one of this pipe's agents."))
    needs_agent = d.mechanism in (Mechanism.LOCAL_MODEL, Mechanism.FOUNDATION_MODEL)
    if needs_agent and agent is None and "agent" not in errors:
        errors.add("agent", _("A step run by a model needs an agent."))
    reviewer = None
    if d.reviewer:
        reviewer = ctx.reviewers.get(parse_id(d.reviewer) or 0)
        if reviewer is None:
            errors.add("reviewer", _("Choose a reviewer of this pipe."))
    actions: list[dict] = []
    if d.mechanism == Mechanism.AUTOMATION:
        if not d.actions:
            errors.add("actions", _("An automation needs at least one action."))
        actions = [_action_build(a, i, ctx, errors) for i, a in enumerate(d.actions)]
    rules: list[dict] = []
    if d.mechanism == Mechanism.AUTO:
        for i, r in enumerate(d.rules):
            if r.kept is not None:
                rules.append(copy.deepcopy(r.kept))
                continue
            rule: dict[str, Any] = {
                "when": _leaf(ConditionRow(r.field, r.op, r.value), ctx, f"rule-{i}", errors)
            }
            if not re.fullmatch(r"[a-z_]+", r.decision or ""):
                errors.add(f"rule-{i}-decision", _("Choose the decision."))
            rule["decision"] = r.decision
            if r.reason:
                rule["reason"] = r.reason
            if r.values:
                values: dict[str, Any] = {}
                for j, row in enumerate(r.values):
                    if row.key not in ctx.fields or ctx.fields[row.key].type == FieldType.ATTACHMENT:
                        errors.add(f"rule-{i}-values-{j}-key", _("Choose the field to set."))
                    values[row.key] = _json_value(
                        row.value, ctx, f"rule-{i}-values-{j}", errors, literal=True
                    )
                rule["values"] = values
            rules.append(rule)
    step.name = d.name[:120]
    step.key = key
    step.trigger = d.trigger
    step.mechanism = d.mechanism
    step.agent = agent if d.mechanism != Mechanism.AUTOMATION else None
    step.risk = d.risk
    step.four_eyes = d.four_eyes and d.mechanism != Mechanism.AUTOMATION
    step.question = d.question[:300] if d.mechanism != Mechanism.AUTOMATION else ""
    step.reviewer = reviewer if d.mechanism != Mechanism.AUTOMATION else None
    step.condition = condition_build(d, ctx, errors)
    step.actions = actions
    step.rules = rules
    decides = d.mechanism != Mechanism.AUTOMATION
    step.on_approve = _phase_target(d.on_approve, ctx, "on_approve", errors) if decides else ""
    step.on_reject = _phase_target(d.on_reject, ctx, "on_reject", errors) if decides else ""
    step.on_done = _phase_target(d.on_done, ctx, "on_done", errors)
    step.max_attempts = attempts or 3
    return errors


# ---------------------------------------------------------------- the service's refusals, by input


_PATH = re.compile(r"^phases\[\d+\]\.steps\[\d+\]\.?(?P<rest>.*)$")


def step_path(step: Step) -> str:
    """Where `step` stands in the pipe's definition ("phases[1].steps[0]"), as the checker names it."""
    phases = list(
        Phase.objects.filter(pipe_id=step.phase.pipe_id)
        .order_by("position", "pk")
        .values_list("pk", flat=True)
    )
    others = Step.objects.filter(phase_id=step.phase_id).exclude(pk=step.pk).values_list("position", "pk")
    mine = (step.position, step.pk or 2**63)
    index = sum(1 for other in others if other < mine)
    return f"phases[{phases.index(step.phase_id)}].steps[{index}]"


def errors_from_design(messages: dict[str, list[str]], *, step_path: str | None) -> Errors:
    """The design service's refusal placed beside the inputs it names.

    Model fields ("key", "agent") keep their names; the checker's paths for this step
    ("phases[1].steps[0].actions[2].field: unknown field") go to the action's input; the rest
    is about the whole step (or the pipe) and is shown above the form."""
    errors = Errors()
    for name, items in messages.items():
        for message in items:
            if name:
                errors.add(name, message)
                continue
            path, sep, reason = message.partition(": ")
            match = _PATH.match(path) if sep else None
            mine = step_path is not None and (path == step_path or path.startswith(step_path + "."))
            if match is None or not mine:
                errors.add("", message)
                continue
            rest = match.group("rest")
            action = re.match(r"actions\[(\d+)\]\.?(\w*)", rest)
            rule = re.match(r"rules\[(\d+)\]\.?(\w*)", rest)
            if action:
                target = (
                    f"act-{action.group(1)}-{action.group(2)}"
                    if action.group(2)
                    else f"act-{action.group(1)}"
                )
            elif rule:
                target = f"rule-{rule.group(1)}-{rule.group(2) or 'decision'}"
            elif rest.startswith("when"):
                target = "cond"
            else:
                target = rest.split(".")[0].split("[")[0] or ""
            errors.add(target, reason if target else message)
    return errors
