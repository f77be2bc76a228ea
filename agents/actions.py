"""Deterministic automation actions: check their definitions, run them, return their effects.

Card changes (set field, move, assign, label, comment, create a connected card) come back as
Effects that the rail applies through pipes.services in one transaction. An email comes back as
an Effect too: the rail writes it to its outbox in that transaction and sends it after commit, at
most once (orchestrator.rail.outbox). HTTP requests happen here; each one is written to a ledger
the caller provides as soon as it succeeds, so a retried step never repeats it, and each carries a
stable Idempotency-Key so the other system can recognise a repeat we could not record.

Values reach requests and messages only by substitution into a fixed structure: JSON bodies
use {"$field": key}, {"$card": attr}, {"$secret": name}, {"$text": "..."} and {"$now": "date"}
leaves; text uses {field.key} and {card.reference}-style placeholders. No template engine runs.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.db.models import Q
from django.utils import timezone

from pipes.fieldtypes import display_value
from pipes.models import Card, Field, Label, Pipe

from .http import HttpFailed, HttpRefused, http_send

ACTION_TYPES = ("set_field", "move", "assign", "add_label", "comment", "create_card", "send_email", "http")
EXTERNAL = {"send_email", "http"}
CARD_ATTRS = ("id", "reference", "title", "phase", "pipe")
PLACEHOLDER = re.compile(r"\{(field|card)\.([a-z0-9_]+)\}")
REDACTED = "***"


class ActionError(Exception):
    """An action failed; `transient` when a retry may succeed."""

    def __init__(self, message: str, *, transient: bool = False, call: dict | None = None):
        super().__init__(message)
        self.transient = transient
        self.call = call  # what was sent, for the trace


@dataclass(frozen=True)
class Effect:
    """A card change for the rail to apply through pipes.services."""

    kind: str  # set_fields | move | assign | add_label | comment | create_card | send_email
    data: dict[str, Any]


class Ledger(Protocol):
    """Remembers external actions already performed for this step run."""

    def done(self, index: int) -> dict | None: ...

    def record(self, index: int, outcome: dict, call: dict) -> None: ...


@dataclass
class ActionRun:
    """What running a step's actions produced."""

    effects: list[Effect] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)  # for the trace


# ---------------------------------------------------------------- definitions


def _template_errors(node: Any, path: str, field_keys: set[str], secrets: set[str] | None) -> list[str]:
    errors: list[str] = []
    if isinstance(node, dict):
        special = [k for k in node if k.startswith("$")]
        if special:
            key = special[0]
            if key == "$field" and node[key] not in field_keys:
                errors.append(f"{path}: unknown field '{node[key]}'")
            elif key == "$card" and node[key] not in CARD_ATTRS:
                errors.append(f"{path}: $card is one of {', '.join(CARD_ATTRS)}")
            elif key == "$secret" and not isinstance(node[key], str):
                errors.append(f"{path}: $secret names a secret")
            elif key == "$text" and isinstance(node[key], str):
                errors += _text_errors(node[key], path, field_keys)
            elif key == "$now" and node[key] not in ("date", "datetime"):
                errors.append(f"{path}: $now is date or datetime")
            elif key not in ("$field", "$card", "$secret", "$text", "$now"):
                errors.append(f"{path}: unknown substitution '{key}'")
            return errors
        for k, v in node.items():
            errors += _template_errors(v, f"{path}.{k}", field_keys, secrets)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            errors += _template_errors(v, f"{path}[{i}]", field_keys, secrets)
    return errors


def _text_errors(text: str, path: str, field_keys: set[str]) -> list[str]:
    errors = []
    for kind, name in PLACEHOLDER.findall(text):
        if kind == "field" and name not in field_keys:
            errors.append(f"{path}: unknown field '{name}' in {{field.{name}}}")
        if kind == "card" and name not in CARD_ATTRS:
            errors.append(f"{path}: {{card.{name}}} is not one of {', '.join(CARD_ATTRS)}")
    return errors


def action_validate(spec: Any, path: str, *, field_keys: set[str], phase_keys: set[str]) -> list[str]:
    """Problems of one action definition, each prefixed with `path`."""
    if not isinstance(spec, dict):
        return [f"{path}: an action is an object with a type"]
    kind = spec.get("type")
    if kind not in ACTION_TYPES:
        return [f"{path}.type: one of {', '.join(ACTION_TYPES)}"]
    errors: list[str] = []

    def need(key: str, types: type | tuple[type, ...] = str) -> None:
        if not isinstance(spec.get(key), types):
            errors.append(f"{path}.{key}: required")

    if kind == "set_field":
        need("field")
        if "value" not in spec:
            errors.append(f"{path}.value: required")
        elif spec.get("field") not in field_keys:
            errors.append(f"{path}.field: unknown field '{spec.get('field')}'")
        errors += _template_errors(spec.get("value"), f"{path}.value", field_keys, None)
    elif kind == "move":
        need("to")
        if spec.get("to") not in phase_keys:
            errors.append(f"{path}.to: unknown phase '{spec.get('to')}'")
    elif kind == "assign":
        need("users", list)
    elif kind == "add_label":
        need("label")
    elif kind == "comment":
        need("text")
        errors += _text_errors(str(spec.get("text", "")), f"{path}.text", field_keys)
    elif kind == "create_card":
        need("pipe")
        need("values", dict)
        errors += _template_errors(spec.get("values"), f"{path}.values", field_keys, None)
        link = spec.get("link_field")
        if link is not None and link not in field_keys:
            errors.append(f"{path}.link_field: unknown field '{link}'")
    elif kind == "send_email":
        need("to")
        need("subject")
        need("body")
        for key in ("subject", "body", "to"):
            errors += _text_errors(str(spec.get(key, "")), f"{path}.{key}", field_keys)
    elif kind == "http":
        need("url")
        method = str(spec.get("method", "POST")).upper()
        if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            errors.append(f"{path}.method: GET, POST, PUT, PATCH or DELETE")
        url = str(spec.get("url", ""))
        if not url.startswith(("http://", "https://")):
            errors.append(f"{path}.url: an http:// or https:// URL")
        errors += _text_errors(url, f"{path}.url", field_keys)
        headers = spec.get("headers", {})
        if not isinstance(headers, dict):
            errors.append(f"{path}.headers: an object of header names")
        else:
            errors += _template_errors(headers, f"{path}.headers", field_keys, None)
        errors += _template_errors(spec.get("body"), f"{path}.body", field_keys, None)
        timeout = spec.get("timeout", 10)
        if not isinstance(timeout, int | float) or not 0 < timeout <= 60:
            errors.append(f"{path}.timeout: seconds, between 0 and 60")
        response_map = spec.get("response_map", {})
        if not isinstance(response_map, dict):
            errors.append(f"{path}.response_map: an object of field key → response path")
        else:
            for key in response_map:
                if key not in field_keys:
                    errors.append(f"{path}.response_map: unknown field '{key}'")
    return errors


# ---------------------------------------------------------------- substitution


@dataclass
class _Context:
    card: Card
    values: dict[str, Any]
    fields: Mapping[str, Field]

    def card_attr(self, name: str) -> Any:
        card = self.card
        return {
            "id": card.pk,
            "reference": card.reference,
            "title": card.title,
            "phase": card.phase.key,
            "pipe": card.pipe.slug,
        }[name]

    def text_value(self, key: str) -> str:
        f = self.fields.get(key)
        value = self.values.get(key)
        if f is None or value is None:
            return ""
        try:
            return display_value(f, value)
        except Exception:  # noqa: BLE001 - a value written by an earlier action, not yet parsed
            return str(value)


def _secret(name: str) -> str:
    secrets = getattr(settings, "TRILHO_SECRETS", {}) or {}
    if name not in secrets:
        raise ActionError(f"secret '{name}' is not configured (settings.TRILHO_SECRETS)")
    return str(secrets[name])


def substitute_text(text: str, ctx: _Context, *, escape: Callable[[str], str] = str) -> str:
    def replace(match: re.Match) -> str:
        kind, name = match.groups()
        raw = ctx.text_value(name) if kind == "field" else str(ctx.card_attr(name))
        return escape(raw)

    return PLACEHOLDER.sub(replace, text)


def substitute_json(node: Any, ctx: _Context, *, reveal_secrets: bool) -> Any:
    """`node` with substitution leaves replaced by card values (or secrets, or *** when not revealed)."""
    if isinstance(node, dict):
        if "$field" in node:
            return ctx.values.get(node["$field"])
        if "$card" in node:
            return ctx.card_attr(node["$card"])
        if "$secret" in node:
            value = _secret(node["$secret"]) if reveal_secrets else REDACTED
            return f"{node.get('prefix', '')}{value}"
        if "$text" in node:
            return substitute_text(str(node["$text"]), ctx)
        if "$now" in node:
            now = timezone.now()
            if node["$now"] == "date":
                return (
                    now.astimezone(zoneinfo.ZoneInfo(ctx.card.pipe.organization.time_zone)).date().isoformat()
                )
            return now.isoformat()
        return {k: substitute_json(v, ctx, reveal_secrets=reveal_secrets) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute_json(v, ctx, reveal_secrets=reveal_secrets) for v in node]
    return node


def _dig(data: Any, path: str) -> Any:
    for part in [p for p in path.split(".") if p]:
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return None
    return data


# ---------------------------------------------------------------- running


def _users(names: Sequence[str]) -> list[int]:
    User = get_user_model()
    found = []
    for name in names:
        user = User.objects.filter(Q(username=name) | Q(email__iexact=name), is_active=True).first()
        if user is None:
            raise ActionError(f"no active user '{name}'")
        found.append(user.pk)
    return found


def _http(spec: dict, ctx: _Context, *, organization_id: int, idempotency_key: str) -> tuple[dict, dict]:
    """(outcome to keep, call for the trace)."""
    url = substitute_text(str(spec["url"]), ctx, escape=lambda s: quote(s, safe=""))
    method = str(spec.get("method", "POST")).upper()
    headers = {
        k: substitute_json(v, ctx, reveal_secrets=True) for k, v in (spec.get("headers") or {}).items()
    }
    shown_headers = {
        k: substitute_json(v, ctx, reveal_secrets=False) for k, v in (spec.get("headers") or {}).items()
    }
    headers = {k: str(v) for k, v in headers.items()}
    headers["Idempotency-Key"] = idempotency_key
    body = substitute_json(spec["body"], ctx, reveal_secrets=True) if "body" in spec else None
    shown_body = substitute_json(spec["body"], ctx, reveal_secrets=False) if "body" in spec else None
    call = {
        "type": "http",
        "method": method,
        "url": url,
        "headers": {**{k: str(v) for k, v in shown_headers.items()}, "Idempotency-Key": idempotency_key},
        "body": shown_body,
    }
    try:
        response = http_send(
            organization_id=organization_id,
            method=method,
            url=url,
            headers=headers,
            body=body,
            timeout=float(spec.get("timeout", 10)),
        )
    except HttpRefused as exc:
        call.update(status=None, error=f"refused: {exc}")
        raise ActionError(f"HTTP request refused: {exc}", call=call) from exc
    except HttpFailed as exc:
        call.update(status=exc.status, error=str(exc))
        raise ActionError(f"HTTP {method} {url} failed: {exc}", transient=exc.transient, call=call) from exc
    mapped = {}
    for key, path in (spec.get("response_map") or {}).items():
        value = _dig(response.json, str(path))
        if value is not None:
            mapped[key] = value
    call.update(
        status=response.status, elapsed_ms=response.elapsed_ms, response=response.text[:2000], mapped=mapped
    )
    return {"status": response.status, "mapped": mapped}, call


def _email(spec: dict, ctx: _Context, *, index: int) -> Effect:
    """The message, composed now from the card's values; the rail sends it once the step commits."""
    to = [a.strip() for a in substitute_text(str(spec["to"]), ctx).split(",") if a.strip()]
    if not to:
        raise ActionError("the email has no recipient (the field is empty)")
    subject = " ".join(substitute_text(str(spec["subject"]), ctx).split())[:200]
    body = substitute_text(str(spec["body"]), ctx)
    return Effect("send_email", {"index": index, "to": to, "subject": subject, "body": body})


def email_send(*, to: Sequence[str], subject: str, body: str) -> None:
    """Hand one message to the configured email backend (raises when it refuses it)."""
    EmailMessage(subject=subject, body=body, to=list(to)).send(fail_silently=False)


def actions_run(
    *,
    actions: Sequence[dict],
    card: Card,
    fields: Mapping[str, Field],
    ledger: Ledger,
    idempotency_prefix: str,
    on_call: Callable[[dict], None] | None = None,
) -> ActionRun:
    """Run `actions` in order for `card`. External actions already in `ledger` are not repeated.

    Raises ActionError (transient or not); effects are returned, never applied here."""
    run = ActionRun()
    ctx = _Context(card=card, values=dict(card.values), fields=fields)
    pipe: Pipe = card.pipe
    for index, spec in enumerate(actions):
        kind = spec.get("type")
        if kind == "send_email":
            run.effects.append(_email(spec, ctx, index=index))
            continue
        if kind == "http":
            outcome = ledger.done(index)
            if outcome is None:
                try:
                    outcome, call = _http(
                        spec,
                        ctx,
                        organization_id=pipe.organization_id,
                        idempotency_key=f"{idempotency_prefix}-{index}",
                    )
                except ActionError as exc:
                    call = {**(exc.call or {"type": kind}), "index": index, "error": str(exc)}
                    run.calls.append(call)
                    if on_call:
                        on_call(call)
                    raise
                call["index"] = index
                ledger.record(index, outcome, call)  # committed now: a retry will not repeat it
            else:
                call = {"type": kind, "index": index, "reused": True, **outcome}
                if on_call:
                    on_call(call)
            run.calls.append(call)
            if outcome.get("mapped"):
                ctx.values.update(outcome["mapped"])
                run.effects.append(Effect("set_fields", {"values": outcome["mapped"]}))
            continue
        if kind == "set_field":
            value = substitute_json(spec["value"], ctx, reveal_secrets=False)
            ctx.values[spec["field"]] = value
            run.effects.append(Effect("set_fields", {"values": {spec["field"]: value}}))
        elif kind == "move":
            run.effects.append(Effect("move", {"to": spec["to"]}))
        elif kind == "assign":
            run.effects.append(Effect("assign", {"user_ids": _users(spec["users"])}))
        elif kind == "add_label":
            label = Label.objects.filter(pipe=pipe, name=spec["label"]).first()
            if label is None:
                raise ActionError(f"no label '{spec['label']}' in {pipe.name}")
            run.effects.append(Effect("add_label", {"label_id": label.pk}))
        elif kind == "comment":
            run.effects.append(Effect("comment", {"text": substitute_text(str(spec["text"]), ctx)}))
        elif kind == "create_card":
            target = Pipe.objects.filter(organization_id=pipe.organization_id, slug=spec["pipe"]).first()
            if target is None:
                raise ActionError(f"no pipe '{spec['pipe']}' in this organization")
            run.effects.append(
                Effect(
                    "create_card",
                    {
                        "pipe_id": target.pk,
                        "values": substitute_json(spec["values"], ctx, reveal_secrets=False),
                        "link_field": spec.get("link_field") or "",
                    },
                )
            )
        else:
            raise ActionError(f"unknown action type {kind!r}")
    return run
