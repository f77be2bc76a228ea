"""The step editor's form, built: a `StepDraft` (steps_form.py) turned into the Step's condition, rules
and actions in pipes.conditions' and agents.actions' formats, with every mistake named by the input
it came from; and the design service's refusals placed back on those inputs.

`draft_from_post` (steps_form) → `draft_apply` (here, errors by input name) → the design service saves.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.utils.text import slugify
from django.utils.translation import gettext as _

from agents.actions import CARD_ATTRS
from agents.models import Agent, AllowedHost
from pipes.choices import FieldType
from pipes.conditions import OPERATORS
from pipes.fieldtypes import FieldValueError, parse_decimal
from pipes.models import Field, Phase, Pipe
from pipes.parsing import parse_id, parse_int

from ..models import Mechanism, Risk, Step, Trigger
from .steps_form import (
    HTTP_METHODS,
    LIST_OPS,
    NO_VALUE_OPS,
    NUMERIC,
    ORDER_OPS,
    ActionDraft,
    ConditionRow,
    StepDraft,
    Value,
)

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
