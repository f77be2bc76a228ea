"""The rail's part of process definitions: "agents" on the pipe and "steps" on each phase.

Registered with pipes.design.register_extension from OrchestratorConfig.ready(). The
format is documented in docs/process-format.md ("Agents and steps"). Dumps leave defaults
out and keep a fixed key order, so export → import → export gives the same text.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from agents.actions import action_validate
from agents.models import FOUNDATION_PROVIDERS, LOCAL_PROVIDERS, Agent, Provider
from pipes.choices import FieldType
from pipes.conditions import ConditionError, validate_condition
from pipes.models import Phase, Pipe

from ..models import Mechanism, Risk, Step, Trigger

AGENT_KEYS = (
    "key",
    "name",
    "model",
    "escalate_to",
    "instructions",
    "reads",
    "writes",
    "moves_to",
    "decisions",
    "authority",
    "confidence_threshold",
    "may_see_pii",
)
STEP_KEYS = (
    "key",
    "name",
    "mechanism",
    "trigger",
    "agent",
    "risk",
    "when",
    "rules",
    "actions",
    "question",
    "on_approve",
    "on_reject",
    "on_done",
    "four_eyes",
    "attempts",
)
RULE_KEYS = ("when", "decision", "reason", "values")
ACTION_KEYS = (
    "type",
    "field",
    "value",
    "to",
    "users",
    "label",
    "subject",
    "text",
    "pipe",
    "values",
    "link_field",
    "method",
    "url",
    "headers",
    "body",
    "timeout",
    "response_map",
)
AUTHORITY_KEYS = {"field", "limit", "currency"}
DEFAULT_THRESHOLD = Decimal("0.70")
NUMERIC_TYPES = {FieldType.NUMBER, FieldType.CURRENCY, FieldType.PERCENTAGE}


def _field_types(definition: dict) -> dict[str, str]:
    types: dict[str, str] = {}
    for f in definition.get("start_form") or []:
        if isinstance(f, dict) and isinstance(f.get("key"), str):
            types[f["key"]] = f.get("type", "")
    for phase in definition.get("phases") or []:
        if isinstance(phase, dict):
            for f in phase.get("fields") or []:
                if isinstance(f, dict) and isinstance(f.get("key"), str):
                    types[f["key"]] = f.get("type", "")
    return types


def _personal_fields(definition: dict) -> set[str]:
    """The keys of the definition's fields that hold personal data (`pii: true`)."""
    fields = list(definition.get("start_form") or [])
    for phase in definition.get("phases") or []:
        if isinstance(phase, dict):
            fields += phase.get("fields") or []
    return {
        f["key"]
        for f in fields
        if isinstance(f, dict) and isinstance(f.get("key"), str) and f.get("pii") is True
    }


def _phase_keys(definition: dict) -> set[str]:
    return {
        p["key"]
        for p in definition.get("phases") or []
        if isinstance(p, dict) and isinstance(p.get("key"), str)
    }


def _model_ref(value: Any) -> tuple[str, str] | None:
    if not isinstance(value, str) or "/" not in value:
        return None
    provider, _sep, model = value.partition("/")
    if provider not in Provider.values or not model:
        return None
    return provider, model


def _key_list(value: Any, path: str, known: set[str], what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return [f"{path}: a list of {what} keys"]
    return [f"{path}: unknown {what} '{v}'" for v in value if v not in known]


# ---------------------------------------------------------------- agents


def agents_validate(value: Any, path: str, definition: dict) -> list[str]:
    if not isinstance(value, list):
        return [f"{path}: a list of agents"]
    errors: list[str] = []
    types = _field_types(definition)
    personal = _personal_fields(definition)
    phases = _phase_keys(definition)
    seen: set[str] = set()
    for i, agent in enumerate(value):
        p = f"{path}[{i}]"
        if not isinstance(agent, dict):
            errors.append(f"{p}: an agent is a mapping with key, name and model")
            continue
        errors += [f"{p}: unknown key '{k}'" for k in agent if k not in AGENT_KEYS]
        key = agent.get("key")
        if not isinstance(key, str) or not key.replace("_", "").replace("-", "").isalnum():
            errors.append(f"{p}.key: letters, digits, - and _")
        elif key in seen:
            errors.append(f"{p}.key: '{key}' is used by another agent")
        else:
            seen.add(key)
        if not isinstance(agent.get("name"), str) or not agent.get("name"):
            errors.append(f"{p}.name: required")
        if _model_ref(agent.get("model")) is None:
            errors.append(f"{p}.model: provider/model, e.g. ollama/llama3.2 or openai/gpt-4o-mini")
        if "escalate_to" in agent:
            ref = _model_ref(agent["escalate_to"])
            if ref is None or ref[0] not in FOUNDATION_PROVIDERS:
                errors.append(f"{p}.escalate_to: a foundation model, e.g. openai/gpt-4o-mini")
        if "instructions" in agent and not isinstance(agent["instructions"], str):
            errors.append(f"{p}.instructions: text")
        if "reads" in agent:
            errors += _key_list(agent["reads"], f"{p}.reads", set(types), "field")
        if "writes" in agent:
            errors += _key_list(agent["writes"], f"{p}.writes", set(types), "field")
            if isinstance(agent["writes"], list):
                errors += [
                    f"{p}.writes: agents cannot write attachment fields ('{k}')"
                    for k in agent["writes"]
                    if types.get(k) == FieldType.ATTACHMENT
                ]
                if agent.get("may_see_pii") is not True:
                    errors += [
                        f"{p}.writes: '{k}' holds personal data; an agent writes it only with may_see_pii: true"
                        for k in agent["writes"]
                        if k in personal
                    ]
        if "moves_to" in agent:
            errors += _key_list(agent["moves_to"], f"{p}.moves_to", phases, "phase")
        if "decisions" in agent and (
            not isinstance(agent["decisions"], list)
            or not all(isinstance(d, str) and d for d in agent["decisions"])
        ):
            errors.append(f"{p}.decisions: a list of words, e.g. [approve, reject, escalate]")
        if "authority" in agent:
            authority = agent["authority"]
            if not isinstance(authority, dict) or not {"field", "limit"} <= set(authority) <= AUTHORITY_KEYS:
                errors.append(f"{p}.authority: a mapping with field and limit (and currency)")
            else:
                currency = authority.get("currency", "BRL")
                if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha()):
                    errors.append(f"{p}.authority.currency: a three-letter currency code, e.g. BRL")
                if types.get(authority["field"]) not in NUMERIC_TYPES:
                    errors.append(f"{p}.authority.field: a number or currency field")
                if not isinstance(authority["limit"], int | float) or isinstance(authority["limit"], bool):
                    errors.append(f"{p}.authority.limit: a number")
        if "confidence_threshold" in agent:
            t = agent["confidence_threshold"]
            if not isinstance(t, int | float) or isinstance(t, bool) or not 0 <= t <= 1:
                errors.append(f"{p}.confidence_threshold: a number from 0 to 1")
        if "may_see_pii" in agent and not isinstance(agent["may_see_pii"], bool):
            errors.append(f"{p}.may_see_pii: true or false")
    return errors


def agents_load(pipe: Pipe, value: list[dict]) -> None:
    for spec in value:
        provider, model = _model_ref(spec["model"])
        escalation = _model_ref(spec.get("escalate_to")) or ("", "")
        authority = spec.get("authority") or {}
        Agent.objects.create(
            pipe=pipe,
            key=spec["key"],
            name=spec["name"],
            provider=provider,
            model=model,
            escalation_provider=escalation[0],
            escalation_model=escalation[1],
            instructions=spec.get("instructions") or "",
            readable_fields=list(spec.get("reads") or []),
            writable_fields=list(spec.get("writes") or []),
            allowed_phases=list(spec.get("moves_to") or []),
            decisions=list(spec.get("decisions") or []),
            authority_field=authority.get("field", ""),
            authority_limit=Decimal(str(authority["limit"])) if "limit" in authority else None,
            authority_currency=str(authority.get("currency", "")).upper(),
            confidence_threshold=Decimal(str(spec.get("confidence_threshold", DEFAULT_THRESHOLD))),
            may_see_pii=bool(spec.get("may_see_pii", False)),
        )


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral() else float(value)


def agents_dump(pipe: Pipe) -> list[dict] | None:
    out = []
    for agent in Agent.objects.filter(pipe=pipe).order_by("id"):
        d: dict[str, Any] = {"key": agent.key, "name": agent.name, "model": f"{agent.provider}/{agent.model}"}
        if agent.escalation_provider and agent.escalation_model:
            d["escalate_to"] = f"{agent.escalation_provider}/{agent.escalation_model}"
        if agent.instructions:
            d["instructions"] = agent.instructions
        for key, attr in (
            ("reads", "readable_fields"),
            ("writes", "writable_fields"),
            ("moves_to", "allowed_phases"),
        ):
            if getattr(agent, attr):
                d[key] = list(getattr(agent, attr))
        if agent.decisions:
            d["decisions"] = list(agent.decisions)
        if agent.authority_field and agent.authority_limit is not None:
            d["authority"] = {"field": agent.authority_field, "limit": _number(agent.authority_limit)}
            if agent.authority_currency:
                d["authority"]["currency"] = agent.authority_currency
        if agent.confidence_threshold != DEFAULT_THRESHOLD:
            d["confidence_threshold"] = _number(agent.confidence_threshold)
        if agent.may_see_pii:
            d["may_see_pii"] = True
        out.append(d)
    return out or None


# ---------------------------------------------------------------- steps


def _agent_specs(definition: dict) -> dict[str, dict]:
    return {
        a["key"]: a
        for a in definition.get("agents") or []
        if isinstance(a, dict) and isinstance(a.get("key"), str)
    }


def steps_validate(value: Any, path: str, definition: dict) -> list[str]:
    if not isinstance(value, list):
        return [f"{path}: a list of steps"]
    errors: list[str] = []
    types = _field_types(definition)
    phases = _phase_keys(definition)
    agents = _agent_specs(definition)
    seen: set[str] = set()
    for i, step in enumerate(value):
        p = f"{path}[{i}]"
        if not isinstance(step, dict):
            errors.append(f"{p}: a step is a mapping with key, name and mechanism")
            continue
        errors += [f"{p}: unknown key '{k}'" for k in step if k not in STEP_KEYS]
        key = step.get("key")
        if not isinstance(key, str) or not key.replace("_", "").replace("-", "").isalnum():
            errors.append(f"{p}.key: letters, digits, - and _")
        elif key in seen:
            errors.append(f"{p}.key: '{key}' is used by another step of this phase")
        else:
            seen.add(key)
        if not isinstance(step.get("name"), str) or not step.get("name"):
            errors.append(f"{p}.name: required")
        mechanism = step.get("mechanism")
        if mechanism not in Mechanism.values:
            errors.append(f"{p}.mechanism: one of {', '.join(Mechanism.values)}")
        if "risk" in step and step["risk"] not in Risk.values:
            errors.append(f"{p}.risk: low, medium or high")
        agent_key = step.get("agent")
        agent = agents.get(agent_key) if agent_key is not None else None
        if agent_key is not None and agent is None:
            errors.append(f"{p}.agent: no agent '{agent_key}' under agents")
        if mechanism in (Mechanism.LOCAL_MODEL, Mechanism.FOUNDATION_MODEL) and agent_key is None:
            errors.append(f"{p}.agent: a {mechanism} step needs an agent")
        if agent is not None and mechanism in (Mechanism.LOCAL_MODEL, Mechanism.FOUNDATION_MODEL):
            wanted = LOCAL_PROVIDERS if mechanism == Mechanism.LOCAL_MODEL else FOUNDATION_PROVIDERS
            refs = [_model_ref(agent.get("model")), _model_ref(agent.get("escalate_to"))]
            if not any(r and r[0] in wanted for r in refs):
                tier = "local (ollama/…)" if mechanism == Mechanism.LOCAL_MODEL else "foundation"
                errors.append(f"{p}.agent: agent '{agent_key}' has no {tier} model")
        if mechanism == Mechanism.AUTOMATION:
            actions = step.get("actions")
            if not isinstance(actions, list) or not actions:
                errors.append(f"{p}.actions: an automation step needs a list of actions")
            else:
                for j, action in enumerate(actions):
                    errors += action_validate(
                        action, f"{p}.actions[{j}]", field_keys=set(types), phase_keys=phases
                    )
        elif "actions" in step:
            errors.append(f"{p}.actions: only automation steps have actions")
        if mechanism == Mechanism.AUTOMATION and step.get("four_eyes"):
            # The designer's form drops it for an automation; a file must not promise two approvals
            # that never happen: an automation hands nothing to people.
            errors.append(
                f"{p}.four_eyes: an automation step asks no one to approve; for two approvals, make it"
                " human, or auto with rules"
            )
        if "when" in step:
            try:
                validate_condition(step["when"], set(types), f"{p}.when")
            except ConditionError as exc:
                errors.append(str(exc))
        rules = step.get("rules")
        if rules is not None:
            if mechanism != Mechanism.AUTO:
                errors.append(f"{p}.rules: only auto steps have rules")
            if not isinstance(rules, list):
                errors.append(f"{p}.rules: a list of rules")
                rules = []
            for j, rule in enumerate(rules):
                rp = f"{p}.rules[{j}]"
                if not isinstance(rule, dict):
                    errors.append(f"{rp}: a mapping with when and decision")
                    continue
                errors += [f"{rp}: unknown key '{k}'" for k in rule if k not in RULE_KEYS]
                try:
                    validate_condition(rule.get("when"), set(types), f"{rp}.when")
                except ConditionError as exc:
                    errors.append(str(exc))
                if not isinstance(rule.get("decision"), str):
                    errors.append(f"{rp}.decision: required, e.g. approve")
                if "values" in rule and (
                    not isinstance(rule["values"], dict) or any(k not in types for k in rule["values"])
                ):
                    errors.append(f"{rp}.values: a mapping of field keys to values")
        for target in ("on_approve", "on_reject", "on_done"):
            if target in step and step[target] not in phases:
                errors.append(f"{p}.{target}: unknown phase '{step[target]}'")
        if "question" in step and not isinstance(step["question"], str):
            errors.append(f"{p}.question: text")
        if "trigger" in step and step["trigger"] not in Trigger.values:
            errors.append(f"{p}.trigger: one of {', '.join(Trigger.values)}")
        if "four_eyes" in step and not isinstance(step["four_eyes"], bool):
            errors.append(f"{p}.four_eyes: true or false")
        if "attempts" in step and (
            not isinstance(step["attempts"], int)
            or isinstance(step["attempts"], bool)
            or not 1 <= step["attempts"] <= 10
        ):
            errors.append(f"{p}.attempts: 1 to 10")
    return errors


def steps_load(phase: Phase, value: list[dict]) -> None:
    agents = {a.key: a for a in Agent.objects.filter(pipe_id=phase.pipe_id)}
    for position, spec in enumerate(value, start=1):
        Step.objects.create(
            phase=phase,
            position=position,
            key=spec["key"],
            name=spec["name"],
            mechanism=spec["mechanism"],
            trigger=spec.get("trigger", Trigger.ENTERED),
            agent=agents.get(spec.get("agent")) if spec.get("agent") else None,
            risk=spec.get("risk", Risk.LOW),
            condition=spec.get("when"),
            rules=list(spec.get("rules") or []),
            actions=list(spec.get("actions") or []),
            question=spec.get("question") or "",
            on_approve=spec.get("on_approve") or "",
            on_reject=spec.get("on_reject") or "",
            on_done=spec.get("on_done") or "",
            four_eyes=bool(spec.get("four_eyes", False)),
            max_attempts=int(spec.get("attempts", 3)),
        )


def _ordered(data: dict, keys: tuple[str, ...]) -> dict:
    """`data` with `keys` first in that order (JSON columns do not keep key order on every database)."""
    return {**{k: data[k] for k in keys if k in data}, **{k: data[k] for k in sorted(data) if k not in keys}}


def _condition(condition: Any) -> Any:
    if not isinstance(condition, dict):
        return condition
    for group in ("all", "any"):
        if group in condition:
            return {group: [_condition(c) for c in condition[group]]}
    if "not" in condition:
        return {"not": _condition(condition["not"])}
    return _ordered(condition, ("field", "op", "value"))


def steps_dump(phase: Phase) -> list[dict] | None:
    out = []
    for step in Step.objects.filter(phase=phase).select_related("agent").order_by("position", "id"):
        d: dict[str, Any] = {"key": step.key, "name": step.name, "mechanism": step.mechanism}
        if step.trigger != Trigger.ENTERED:
            d["trigger"] = step.trigger
        if step.agent is not None:
            d["agent"] = step.agent.key
        if step.risk != Risk.LOW:
            d["risk"] = step.risk
        if step.condition:
            d["when"] = _condition(step.condition)
        if step.rules:
            d["rules"] = [_ordered({**r, "when": _condition(r.get("when"))}, RULE_KEYS) for r in step.rules]
        if step.actions:
            d["actions"] = [_ordered(a, ACTION_KEYS) for a in step.actions]
        for attr in ("question", "on_approve", "on_reject", "on_done"):
            if getattr(step, attr):
                d[attr] = getattr(step, attr)
        if step.four_eyes and step.mechanism != Mechanism.AUTOMATION:  # it never applied to one
            d["four_eyes"] = True
        if step.max_attempts != 3:
            d["attempts"] = step.max_attempts
        out.append(d)
    return out or None


def register() -> None:
    from pipes.design import register_extension

    register_extension(
        level="pipe", key="agents", validate=agents_validate, load=agents_load, dump=agents_dump
    )
    register_extension(level="phase", key="steps", validate=steps_validate, load=steps_load, dump=steps_dump)
