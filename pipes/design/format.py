"""The process format's vocabulary (docs/process-format.md): the keys of each level in the order a dump
writes them, the defaults a dump leaves out, the constants the checker reads, DefinitionError, and the
registry of keys other apps add to the format (`register_extension`: the rail adds "agents" on the pipe
and "steps" on each phase) without this package knowing them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..choices import FieldType
from ..models import Phase, Pipe

# The keys of each level, in the order a dump writes them.
PIPE_KEYS = (
    "name",
    "slug",
    "code",
    "description",
    "portal_group",
    "title_field",
    "key_fields",
    "expiration_days",
    "public_form",
    "labels",
    "start_form",
    "phases",
)
PHASE_KEYS = (
    "key",
    "name",
    "description",
    "final",
    "sla_hours",
    "wip_limit",
    "wip_blocks",
    "requester_status",
    "allowed_next",
    "fields",
)
FIELD_KEYS = (
    "key",
    "label",
    "type",
    "help_text",
    "required",
    "options",
    "validation",
    "config",
    "condition",
    "pii",
    "visible_to_requester",
    "requester_editable",
)
LABEL_KEYS = ("name", "color")
VALIDATION_KEYS = ("min", "max", "min_length", "max_length", "regex", "regex_message")

DEFAULT_LABEL_COLOR = "#64748b"

# Values a dump leaves out because import would set them anyway.
PIPE_DEFAULTS: dict[str, Any] = {
    "description": "",
    "portal_group": "",
    "title_field": "",
    "key_fields": [],
    "expiration_days": None,
    "public_form": False,
    "labels": [],
    "start_form": [],
}
PHASE_DEFAULTS: dict[str, Any] = {
    "description": "",
    "final": False,
    "sla_hours": None,
    "wip_limit": None,
    "wip_blocks": False,
    "requester_status": "",
    "allowed_next": [],
    "fields": [],
}
FIELD_DEFAULTS: dict[str, Any] = {
    "help_text": "",
    "required": False,
    "options": [],
    "validation": {},
    "config": {},
    "condition": None,
    "pii": False,
    "visible_to_requester": True,
    "requester_editable": False,
}
LABEL_DEFAULTS: dict[str, Any] = {"color": DEFAULT_LABEL_COLOR}

# Which validation rules each field type reads (see pipes.fieldtypes).
NUMERIC_TYPES = {FieldType.NUMBER, FieldType.CURRENCY, FieldType.PERCENTAGE}
TEXT_TYPES = {FieldType.SHORT_TEXT: 255, FieldType.LONG_TEXT: 20000}
REFERENCE_TYPES = {FieldType.ATTACHMENT, FieldType.ASSIGNEE, FieldType.LABEL, FieldType.CONNECTION}

SLUG_RE = re.compile(r"^[-a-zA-Z0-9_]+$")
CODE_RE = re.compile(r"^[A-Za-z0-9]{1,8}$")
COLOR_RE = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
VALUE_OPERATORS = {"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains"}


class DefinitionError(ValueError):
    """A definition that cannot be imported; `messages` lists every problem as "<path>: <reason>"."""

    def __init__(self, messages: list[str] | str):
        self.messages: list[str] = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))


# ---------------------------------------------------------------- extensions


@dataclass(frozen=True)
class Extension:
    """An extra key of the format, owned by another app."""

    level: Literal["pipe", "phase"]
    key: str
    validate: Callable[[Any, str, dict], list[str]]
    load: Callable[[Any, Any], None]
    dump: Callable[[Any], Any]


_EXTENSIONS: dict[str, dict[str, Extension]] = {"pipe": {}, "phase": {}}
_CORE_KEYS = {"pipe": PIPE_KEYS, "phase": PHASE_KEYS}


def register_extension(
    *,
    level: Literal["pipe", "phase"],
    key: str,
    validate: Callable[[Any, str, dict], list[str]],
    load: Callable[[Pipe | Phase, Any], None],
    dump: Callable[[Pipe | Phase], Any],
) -> None:
    """Allow `key` at `level` (the pipe's top level, or each phase entry).

    validate(value, path, whole_definition) returns messages already prefixed with `path`;
    load(obj, value) runs inside the import transaction after the pipe, phases, fields and
    labels exist (pipe-level extensions first, in registration order, then phase-level ones);
    dump(obj) returns a YAML-able value, or None to leave the key out. Registering a key
    again replaces the earlier registration (AppConfig.ready may run more than once in tests).
    """
    if level not in _EXTENSIONS:
        raise ValueError(f"level must be 'pipe' or 'phase', not {level!r}")
    if key in _CORE_KEYS[level]:
        raise ValueError(f"'{key}' is a core key of a {level}; an extension cannot redefine it")
    _EXTENSIONS[level][key] = Extension(level=level, key=key, validate=validate, load=load, dump=dump)


def unregister_extension(level: Literal["pipe", "phase"], key: str) -> None:
    """Forget an extension (tests register their own and remove them after)."""
    _EXTENSIONS.get(level, {}).pop(key, None)


def extensions(level: Literal["pipe", "phase"]) -> list[Extension]:
    """The extensions of `level` in registration order."""
    return list(_EXTENSIONS[level].values())
