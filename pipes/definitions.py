"""Process definitions as files: a whole pipe as YAML, checked, imported and exported.

A definition is a mapping (documented in docs/process-format.md) with the pipe's settings,
its labels, its start form and its phases in order, each phase with its fields. It holds no
people and no roles, so a definition moves freely between organizations.

- `definition_load(text)` parses YAML and checks it; `definition_check(dict)` checks a mapping.
  Both raise DefinitionError listing every problem as "<path>: <reason>", e.g.
  "phases[2].fields[0].type: unknown type 'numbr'".
- `pipe_import(organization=..., definition=...)` creates the pipe in one transaction.
- `pipe_export(pipe)` gives the definition of a pipe and `definition_dump(dict)` writes it
  as YAML with a stable key order and defaults left out, so export → import → export is exact.

Other apps add keys to the format with `register_extension` (the rail adds "agents" on the
pipe and "steps" on each phase) without this module knowing them.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from django.db import IntegrityError, transaction
from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _

from .choices import FieldType
from .conditions import ConditionError, validate_condition
from .fieldtypes import TYPES_WITH_OPTIONS
from .files import KNOWN_TYPES
from .models import Field, Label, Organization, Phase, Pipe

TEMPLATES_DIR = Path(__file__).resolve().parent / "process_templates"

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


# ---------------------------------------------------------------- checking


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _what(value: Any) -> str:
    """A YAML-minded name of a value's type, for messages."""
    if value is None:
        return _("nothing")
    if isinstance(value, bool):
        return _("true/false")
    if isinstance(value, int | float):
        return _("a number")
    if isinstance(value, str):
        return _("text")
    if isinstance(value, list):
        return _("a list")
    if isinstance(value, dict):
        return _("a mapping")
    return type(value).__name__


def _jsonable(value: Any) -> Any:
    """Dates YAML parsed on its own become ISO strings, as values are stored."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class _FieldEntry:
    path: str
    data: dict
    phase_index: int | None  # None: the start form


class _Checker:
    """Walks a definition and collects every problem with its path."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    # ----- primitives

    def mapping(self, value: Any, path: str) -> bool:
        if isinstance(value, dict):
            return True
        self.error(path, _("must be a mapping of keys to values, got %(what)s") % {"what": _what(value)})
        return False

    def unknown_keys(self, data: dict, allowed: tuple[str, ...] | list[str], path: str) -> None:
        for key in data:
            if key in allowed:
                continue
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            message = _("unknown key")
            if hint:
                message += " " + _("(did you mean '%(hint)s'?)") % {"hint": hint[0]}
            self.error(_join(path, str(key)), message)

    def text(
        self,
        data: dict,
        key: str,
        path: str,
        *,
        required: bool = False,
        max_length: int | None = None,
    ) -> str | None:
        where = _join(path, key)
        if key not in data or data[key] is None:
            if required:
                self.error(where, _("required"))
            return None
        value = data[key]
        if not isinstance(value, str):
            self.error(where, _("must be text, got %(what)s") % {"what": _what(value)})
            return None
        if required and not value.strip():
            self.error(where, _("must not be empty"))
            return None
        if max_length is not None and len(value) > max_length:
            self.error(
                where,
                _("must be at most %(n)d characters (has %(m)d)") % {"n": max_length, "m": len(value)},
            )
        return value

    def key(self, data: dict, key: str, path: str, *, max_length: int) -> str | None:
        value = self.text(data, key, path, required=True, max_length=max_length)
        if value is not None and not SLUG_RE.match(value):
            self.error(
                _join(path, key),
                _("'%(value)s' may use only letters, digits, underscores and hyphens") % {"value": value},
            )
            return None
        return value

    def boolean(self, data: dict, key: str, path: str) -> bool | None:
        if key not in data:
            return None
        value = data[key]
        if not isinstance(value, bool):
            self.error(_join(path, key), _("must be true or false, got %(what)s") % {"what": _what(value)})
            return None
        return value

    def whole(self, data: dict, key: str, path: str, *, minimum: int = 1) -> int | None:
        if key not in data or data[key] is None:
            return None
        value = data[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.error(
                _join(path, key),
                _("must be a whole number of at least %(min)d, got %(value)r")
                % {"min": minimum, "value": value},
            )
            return None
        return value

    def string_list(self, data: dict, key: str, path: str, *, unique_what: str) -> list[str]:
        """A list of non-empty strings without repeats; returns the valid ones."""
        where = _join(path, key)
        if key not in data or data[key] is None:
            return []
        items = data[key]
        if not isinstance(items, list):
            self.error(where, _("must be a list, got %(what)s") % {"what": _what(items)})
            return []
        seen: list[str] = []
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                self.error(
                    _join(where, i),
                    _("must be non-empty text, got %(what)s (quote values like yes, no, on, off)")
                    % {"what": _what(item)},
                )
                continue
            if item in seen:
                self.error(
                    _join(where, i), _("repeats %(what)s '%(value)s'") % {"what": unique_what, "value": item}
                )
                continue
            seen.append(item)
        return seen

    # ----- the pipe

    def check(self, definition: Any) -> None:
        if not isinstance(definition, dict):
            self.error(
                _("definition"),
                _("must be a mapping of keys to values, got %(what)s") % {"what": _what(definition)},
            )
            return
        d = definition
        self.unknown_keys(d, [*PIPE_KEYS, *_EXTENSIONS["pipe"]], "")
        self.text(d, "name", "", required=True, max_length=120)
        self.key(d, "slug", "", max_length=50)
        code = self.text(d, "code", "", required=True)
        if code and not CODE_RE.match(code):
            self.error("code", _("'%(value)s' must be 1 to 8 letters or digits, like AP") % {"value": code})
        self.text(d, "description", "")
        self.text(d, "portal_group", "", max_length=80)
        self.whole(d, "expiration_days", "")
        self.boolean(d, "public_form", "")
        self.check_labels(d)

        entries: list[_FieldEntry] = []
        start_form = d.get("start_form")
        if start_form is not None:
            if isinstance(start_form, list):
                for i, item in enumerate(start_form):
                    entries.append(_FieldEntry(path=f"start_form[{i}]", data=item, phase_index=None))
            else:
                self.error(
                    "start_form", _("must be a list of fields, got %(what)s") % {"what": _what(start_form)}
                )

        phases = self.check_phases(d, entries)
        fields = self.check_fields(entries, phases)
        self.check_pipe_references(d, fields)

    def check_labels(self, d: dict) -> None:
        labels = d.get("labels")
        if labels is None:
            return
        if not isinstance(labels, list):
            self.error("labels", _("must be a list, got %(what)s") % {"what": _what(labels)})
            return
        names: set[str] = set()
        for i, label in enumerate(labels):
            path = f"labels[{i}]"
            if not self.mapping(label, path):
                continue
            self.unknown_keys(label, LABEL_KEYS, path)
            name = self.text(label, "name", path, required=True, max_length=60)
            if name:
                if name in names:
                    self.error(_join(path, "name"), _("repeats label '%(name)s'") % {"name": name})
                names.add(name)
            color = self.text(label, "color", path)
            if color is not None and not COLOR_RE.match(color):
                self.error(
                    _join(path, "color"),
                    _("'%(value)s' is not a color like \"#2563eb\" (quote it: # starts a YAML comment)")
                    % {"value": color},
                )

    def check_phases(self, d: dict, entries: list[_FieldEntry]) -> list[tuple[str, dict]]:
        """Checks the phases; returns (path, phase) of the well-formed ones."""
        phases = d.get("phases")
        if phases is None:
            self.error("phases", _("required: at least one phase"))
            return []
        if not isinstance(phases, list):
            self.error("phases", _("must be a list of phases, got %(what)s") % {"what": _what(phases)})
            return []
        if not phases:
            self.error("phases", _("required: at least one phase"))
            return []
        good: list[tuple[str, dict]] = []
        keys: dict[str, str] = {}
        phase_keys = [p.get("key") for p in phases if isinstance(p, dict)]
        for i, phase in enumerate(phases):
            path = f"phases[{i}]"
            if not self.mapping(phase, path):
                continue
            self.unknown_keys(phase, [*PHASE_KEYS, *_EXTENSIONS["phase"]], path)
            key = self.key(phase, "key", path, max_length=64)
            if key:
                if key in keys:
                    self.error(
                        _join(path, "key"),
                        _("repeats phase key '%(key)s' (first at %(first)s)")
                        % {"key": key, "first": keys[key]},
                    )
                else:
                    keys[key] = path
            self.text(phase, "name", path, required=True, max_length=120)
            self.text(phase, "description", path)
            final = self.boolean(phase, "final", path)
            if i == 0 and final:
                self.error(
                    _join(path, "final"), _("the first phase cannot be final: every card starts there")
                )
            self.whole(phase, "sla_hours", path)
            wip_limit = self.whole(phase, "wip_limit", path)
            if self.boolean(phase, "wip_blocks", path) and not wip_limit:
                self.error(_join(path, "wip_blocks"), _("needs a wip_limit"))
            self.text(phase, "requester_status", path, max_length=80)
            allowed = self.string_list(phase, "allowed_next", path, unique_what=_("phase"))
            for j, target in enumerate(phase.get("allowed_next") or []):
                if target not in allowed:
                    continue  # already reported
                if target == key:
                    self.error(f"{path}.allowed_next[{j}]", _("a phase cannot list itself"))
                elif target not in phase_keys:
                    self.error(f"{path}.allowed_next[{j}]", _("unknown phase '%(key)s'") % {"key": target})
            fields = phase.get("fields")
            if fields is not None:
                if isinstance(fields, list):
                    for j, item in enumerate(fields):
                        entries.append(_FieldEntry(path=f"{path}.fields[{j}]", data=item, phase_index=i))
                else:
                    self.error(
                        _join(path, "fields"),
                        _("must be a list of fields, got %(what)s") % {"what": _what(fields)},
                    )
            good.append((path, phase))
        if not any(p.get("final") is True for p in phases if isinstance(p, dict)):
            self.error("phases", _("at least one phase must be final (where finished cards rest)"))
        return good

    def check_fields(
        self, entries: list[_FieldEntry], phases: list[tuple[str, dict]]
    ) -> dict[str, _FieldEntry]:
        """Checks every field; returns the well-keyed ones by key."""
        by_key: dict[str, _FieldEntry] = {}
        due_date_at: str | None = None
        for entry in entries:
            if not self.mapping(entry.data, entry.path):
                continue
            key = self.key(entry.data, "key", entry.path, max_length=64)
            if key:
                if key in by_key:
                    self.error(
                        _join(entry.path, "key"),
                        _("repeats field key '%(key)s' (first at %(first)s)")
                        % {"key": key, "first": by_key[key].path},
                    )
                else:
                    by_key[key] = entry
        for entry in entries:
            if not isinstance(entry.data, dict):
                continue
            field_type = self.check_field(entry)
            if field_type == FieldType.DUE_DATE:
                if due_date_at:
                    self.error(
                        _join(entry.path, "type"),
                        _("a pipe has at most one due_date field (the first is %(first)s)")
                        % {"first": due_date_at},
                    )
                due_date_at = due_date_at or entry.path
        for entry in entries:
            if isinstance(entry.data, dict) and entry.data.get("condition") is not None:
                self.check_condition(entry, by_key)
        return by_key

    def check_field(self, entry: _FieldEntry) -> str | None:
        path, f = entry.path, entry.data
        self.unknown_keys(f, FIELD_KEYS, path)
        self.text(f, "label", path, required=True, max_length=200)
        self.text(f, "help_text", path, max_length=300)
        for flag in ("required", "pii", "visible_to_requester", "requester_editable"):
            self.boolean(f, flag, path)
        field_type = self.text(f, "type", path, required=True)
        if field_type is not None and field_type not in FieldType.values:
            self.error(_join(path, "type"), _("unknown type '%(type)s'") % {"type": field_type})
            field_type = None
        if f.get("requester_editable") is True:
            if entry.phase_index is None:
                self.error(
                    _join(path, "requester_editable"),
                    _(
                        "only phase fields can be requester_editable (the requester fills the whole start form)"
                    ),
                )
            elif f.get("visible_to_requester") is False:
                self.error(
                    _join(path, "requester_editable"),
                    _("a field the requester fills must be visible_to_requester"),
                )
        if field_type is None:
            return None
        self.check_options(f, path, field_type)
        self.check_validation(f, path, field_type)
        self.check_config(f, path, field_type)
        return field_type

    def check_options(self, f: dict, path: str, field_type: str) -> None:
        options = self.string_list(f, "options", path, unique_what=_("option"))
        for i, option in enumerate(options):
            if len(option) > 200:
                self.error(f"{path}.options[{i}]", _("must be at most 200 characters"))
        if field_type in TYPES_WITH_OPTIONS:
            if not f.get("options"):
                self.error(_join(path, "options"), _("required for %(type)s fields") % {"type": field_type})
        elif f.get("options"):
            self.error(
                _join(path, "options"),
                _("only select, multi_select and checklist fields have options, not %(type)s")
                % {"type": field_type},
            )

    def check_validation(self, f: dict, path: str, field_type: str) -> None:
        rules = f.get("validation")
        if rules is None:
            return
        where = _join(path, "validation")
        if not self.mapping(rules, where):
            return
        self.unknown_keys(rules, VALIDATION_KEYS, where)
        if field_type in NUMERIC_TYPES:
            used = ("min", "max")
            for name in used:
                if name in rules and not _is_number(rules[name]):
                    self.error(
                        _join(where, name), _("must be a number, got %(what)s") % {"what": _what(rules[name])}
                    )
            low, high = rules.get("min"), rules.get("max")
            if _is_number(low) and _is_number(high) and low > high:
                self.error(
                    where, _("min (%(min)s) is greater than max (%(max)s)") % {"min": low, "max": high}
                )
        elif field_type == FieldType.DATE:
            used = ("min", "max")
            for name in used:
                if name in rules and not (isinstance(rules[name], str) and _iso_date(rules[name])):
                    self.error(
                        _join(where, name),
                        _("must be a date like 2026-01-31, got %(value)r") % {"value": rules[name]},
                    )
            low, high = rules.get("min"), rules.get("max")
            if (
                isinstance(low, str)
                and isinstance(high, str)
                and _iso_date(low)
                and _iso_date(high)
                and low > high
            ):
                self.error(where, _("min (%(min)s) is after max (%(max)s)") % {"min": low, "max": high})
        elif field_type in TEXT_TYPES:
            used = ("min_length", "max_length", "regex", "regex_message")
            limit = TEXT_TYPES[field_type]
            for name in ("min_length", "max_length"):
                if name in rules:
                    value = rules[name]
                    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
                        self.error(
                            _join(where, name),
                            _("must be a whole number from 0 to %(limit)d, got %(value)r")
                            % {"limit": limit, "value": value},
                        )
            low, high = rules.get("min_length"), rules.get("max_length")
            if isinstance(low, int) and isinstance(high, int) and low > high:
                self.error(
                    where,
                    _("min_length (%(min)s) is greater than max_length (%(max)s)")
                    % {"min": low, "max": high},
                )
            if "regex" in rules:
                pattern = rules["regex"]
                if not isinstance(pattern, str) or not pattern:
                    self.error(
                        _join(where, "regex"), _("must be text, got %(what)s") % {"what": _what(pattern)}
                    )
                else:
                    try:
                        re.compile(pattern)
                    except re.error as exc:
                        self.error(_join(where, "regex"), _("does not compile (%(error)s)") % {"error": exc})
            if "regex_message" in rules:
                if not isinstance(rules["regex_message"], str):
                    self.error(
                        _join(where, "regex_message"),
                        _("must be text, got %(what)s") % {"what": _what(rules["regex_message"])},
                    )
                elif "regex" not in rules:
                    self.error(_join(where, "regex_message"), _("only with a regex"))
        else:
            used = ()
        for name in rules:
            if name in VALIDATION_KEYS and name not in used:
                self.error(_join(where, name), _("not used by %(type)s fields") % {"type": field_type})

    def check_config(self, f: dict, path: str, field_type: str) -> None:
        config = f.get("config")
        if config is None:
            return
        where = _join(path, "config")
        if not self.mapping(config, where):
            return
        allowed = CONFIG_KEYS.get(field_type, {})
        for name, value in config.items():
            if name not in allowed:
                if allowed:
                    self.unknown_keys({name: value}, tuple(allowed), where)
                else:
                    self.error(
                        _join(where, str(name)), _("%(type)s fields take no settings") % {"type": field_type}
                    )
                continue
            problem = allowed[name](value)
            if problem:
                self.error(_join(where, name), problem)

    def check_condition(self, entry: _FieldEntry, by_key: dict[str, _FieldEntry]) -> None:
        where = _join(entry.path, "condition")
        condition = entry.data["condition"]
        try:
            validate_condition(condition, set(by_key), where)
        except ConditionError as exc:
            self.errors.append(str(exc))  # already "<path>: <reason>"
            return
        own_key = entry.data.get("key")
        for leaf_path, leaf in _condition_leaves(condition, where):
            target = by_key[leaf["field"]]
            op = leaf.get("op", "eq")
            if leaf["field"] == own_key:
                self.error(_join(leaf_path, "field"), _("a field cannot depend on itself"))
                continue
            if not _asked_before(target, entry):
                self.error(
                    _join(leaf_path, "field"),
                    _(
                        "'%(key)s' is filled in a later phase (%(where)s); use fields asked earlier or in the same phase"
                    )
                    % {"key": leaf["field"], "where": target.path},
                )
            if op in VALUE_OPERATORS and "value" not in leaf:
                self.error(leaf_path, _("operator '%(op)s' needs a value") % {"op": op})
                continue
            options = target.data.get("options") or []
            if (
                op in VALUE_OPERATORS - {"gt", "gte", "lt", "lte"}
                and options
                and target.data.get("type") in TYPES_WITH_OPTIONS
            ):
                wanted = leaf["value"] if isinstance(leaf["value"], list) else [leaf["value"]]
                for value in wanted:
                    if value not in options:
                        self.error(
                            _join(leaf_path, "value"),
                            _("'%(value)s' is not an option of '%(key)s'")
                            % {"value": value, "key": leaf["field"]},
                        )

    def check_pipe_references(self, d: dict, fields: dict[str, _FieldEntry]) -> None:
        title = self.text(d, "title_field", "")
        if title:
            entry = fields.get(title)
            if entry is None or entry.phase_index is not None:
                self.error("title_field", _("unknown start-form field '%(key)s'") % {"key": title})
        key_fields = self.string_list(d, "key_fields", "", unique_what=_("field"))
        if len(key_fields) > 3:
            self.error("key_fields", _("at most three fields (has %(n)d)") % {"n": len(key_fields)})
        for i, key in enumerate(d.get("key_fields") or []):
            if key in key_fields and key not in fields:
                self.error(f"key_fields[{i}]", _("unknown field '%(key)s'") % {"key": key})


def _iso_date(value: str) -> bool:
    try:
        return parse_date(value) is not None
    except ValueError:
        return False


def _asked_before(target: _FieldEntry, entry: _FieldEntry) -> bool:
    """True when `target` is on the start form or in the same or an earlier phase than `entry`."""
    if target.phase_index is None:
        return True
    return entry.phase_index is not None and target.phase_index <= entry.phase_index


def _condition_leaves(condition: Mapping, path: str) -> Iterator[tuple[str, Mapping]]:
    for group in ("all", "any"):
        if group in condition:
            for i, item in enumerate(condition[group]):
                yield from _condition_leaves(item, f"{path}.{group}[{i}]")
            return
    if "not" in condition:
        yield from _condition_leaves(condition["not"], f"{path}.not")
        return
    yield path, condition


def _config_bool(value: Any) -> str | None:
    return (
        None if isinstance(value, bool) else _("must be true or false, got %(what)s") % {"what": _what(value)}
    )


def _config_currency(value: Any) -> str | None:
    if isinstance(value, str) and CURRENCY_RE.match(value):
        return None
    return _("must be a three-letter currency code like BRL, got %(value)r") % {"value": value}


def _config_positive_int(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100:
        return None
    return _("must be a whole number from 1 to 100, got %(value)r") % {"value": value}


def _config_size(value: Any) -> str | None:
    if _is_number(value) and value > 0:
        return None
    return _("must be a number of megabytes above 0, got %(value)r") % {"value": value}


def _config_file_types(value: Any) -> str | None:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        return _("must be a list of file extensions like [pdf, png]")
    unknown = [v for v in value if v.lower().lstrip(".") not in KNOWN_TYPES]
    if unknown:
        return _("unknown file type '%(ext)s' (known: %(known)s)") % {
            "ext": unknown[0],
            "known": ", ".join(sorted(KNOWN_TYPES)),
        }
    return None


def _config_pipe_slug(value: Any) -> str | None:
    if isinstance(value, str) and SLUG_RE.match(value):
        return None
    return _("must be the slug of a pipe of the same organization, got %(value)r") % {"value": value}


# The settings each field type reads (pipes.fieldtypes, pipes.files, pipes.services).
CONFIG_KEYS: dict[str, dict[str, Callable[[Any], str | None]]] = {
    FieldType.CURRENCY: {"currency": _config_currency},
    FieldType.ATTACHMENT: {
        "multiple": _config_bool,
        "max_files": _config_positive_int,
        "max_size_mb": _config_size,
        "allowed_types": _config_file_types,
    },
    FieldType.ASSIGNEE: {"multiple": _config_bool},
    FieldType.LABEL: {"multiple": _config_bool},
    FieldType.CONNECTION: {"pipe": _config_pipe_slug, "multiple": _config_bool},
}


def _normalized(definition: Any) -> Any:
    """A copy whose validation, config and condition values are JSON (YAML dates become ISO text)."""
    if not isinstance(definition, dict):
        return definition
    d = dict(definition)

    def fields(items: Any) -> Any:
        if not isinstance(items, list):
            return items
        out = []
        for item in items:
            if isinstance(item, dict):
                item = dict(item)
                for name in ("validation", "config", "condition"):
                    if name in item:
                        item[name] = _jsonable(item[name])
            out.append(item)
        return out

    if "start_form" in d:
        d["start_form"] = fields(d["start_form"])
    if isinstance(d.get("phases"), list):
        d["phases"] = [
            {**p, "fields": fields(p["fields"])} if isinstance(p, dict) and "fields" in p else p
            for p in d["phases"]
        ]
    return d


def definition_check(definition: Any) -> dict:
    """The definition, normalized; raises DefinitionError listing every problem with its path."""
    definition = _normalized(definition)
    checker = _Checker()
    checker.check(definition)
    core_errors = bool(checker.errors)
    if isinstance(definition, dict):
        checker.errors += _extension_errors(definition, core_errors)
    if checker.errors:
        raise DefinitionError(checker.errors)
    return definition


def _extension_errors(definition: dict, core_errors: bool) -> list[str]:
    """Messages of the registered extensions' validators.

    When the core of the definition is already broken, an extension validator that trips
    over it is skipped: the core messages are what to fix first."""
    messages: list[str] = []

    def run(ext: Extension, value: Any, path: str) -> None:
        try:
            messages.extend(ext.validate(value, path, definition))
        except Exception:
            if not core_errors:
                raise

    for ext in extensions("pipe"):
        if ext.key in definition:
            run(ext, definition[ext.key], ext.key)
    phases = definition.get("phases")
    if isinstance(phases, list):
        for ext in extensions("phase"):
            for i, phase in enumerate(phases):
                if isinstance(phase, dict) and ext.key in phase:
                    run(ext, phase[ext.key], f"phases[{i}].{ext.key}")
    return messages


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, _("the key '%(key)s' is given twice") % {"key": key}, key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def definition_load(text: str) -> dict:
    """Parse and check a YAML definition; raises DefinitionError."""
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if mark is not None:
            raise DefinitionError(
                _("line %(line)d, column %(column)d: %(problem)s")
                % {"line": mark.line + 1, "column": mark.column + 1, "problem": problem}
            ) from None
        raise DefinitionError(_("not valid YAML: %(problem)s") % {"problem": problem}) from None
    return definition_check(data)


# ---------------------------------------------------------------- import


def pipe_import(*, organization: Organization, definition: dict) -> Pipe:
    """Create the pipe a definition describes in `organization`, in one transaction.

    Refuses (DefinitionError) when the definition has problems or the organization already
    has a pipe with that slug."""
    d = definition_check(definition)
    slug = d["slug"]
    with transaction.atomic():
        if Pipe.objects.filter(organization=organization, slug=slug).exists():
            raise DefinitionError(_slug_taken(organization, slug))
        try:
            with transaction.atomic():
                pipe = Pipe.objects.create(
                    organization=organization,
                    name=d["name"],
                    slug=slug,
                    code=d["code"],
                    description=d.get("description") or "",
                    portal_group=d.get("portal_group") or "",
                    title_field=d.get("title_field") or "",
                    key_fields=list(d.get("key_fields") or []),
                    expiration_days=d.get("expiration_days"),
                    public_form=bool(d.get("public_form", False)),
                )
        except IntegrityError:  # created by someone else a moment ago
            raise DefinitionError(_slug_taken(organization, slug)) from None
        phases: dict[str, Phase] = {}
        for position, p in enumerate(d["phases"], start=1):
            phases[p["key"]] = Phase.objects.create(
                pipe=pipe,
                key=p["key"],
                name=p["name"],
                position=position,
                description=p.get("description") or "",
                is_final=bool(p.get("final", False)),
                sla_hours=p.get("sla_hours"),
                wip_limit=p.get("wip_limit"),
                wip_blocks=bool(p.get("wip_blocks", False)),
                requester_status=p.get("requester_status") or "",
            )
        for p in d["phases"]:
            if p.get("allowed_next"):
                phases[p["key"]].allowed_next.set([phases[k] for k in p["allowed_next"]])
        for position, f in enumerate(d.get("start_form") or [], start=1):
            _field_create(pipe, None, position, f)
        for p in d["phases"]:
            for position, f in enumerate(p.get("fields") or [], start=1):
                _field_create(pipe, phases[p["key"]], position, f)
        for label in d.get("labels") or []:
            Label.objects.create(
                pipe=pipe, name=label["name"], color=label.get("color") or DEFAULT_LABEL_COLOR
            )
        for ext in extensions("pipe"):
            if d.get(ext.key) is not None:
                ext.load(pipe, d[ext.key])
        for ext in extensions("phase"):
            for p in d["phases"]:
                if p.get(ext.key) is not None:
                    ext.load(phases[p["key"]], p[ext.key])
    return pipe


def _slug_taken(organization: Organization, slug: str) -> str:
    return _(
        "slug: %(org)s already has a pipe with the slug '%(slug)s'; change the slug in the file "
        "or remove that pipe first"
    ) % {"org": organization.name, "slug": slug}


def _field_create(pipe: Pipe, phase: Phase | None, position: int, f: dict) -> Field:
    return Field.objects.create(
        pipe=pipe,
        phase=phase,
        key=f["key"],
        label=f["label"],
        type=f["type"],
        help_text=f.get("help_text") or "",
        required=bool(f.get("required", False)),
        position=position,
        options=list(f.get("options") or []),
        validation=dict(f.get("validation") or {}),
        config=dict(f.get("config") or {}),
        condition=f.get("condition"),
        pii=bool(f.get("pii", False)),
        visible_to_requester=bool(f.get("visible_to_requester", True)),
        requester_editable=bool(f.get("requester_editable", False)),
    )


# ---------------------------------------------------------------- export and dump


def pipe_export(pipe: Pipe) -> dict:
    """The definition of `pipe`: keys in the documented order, defaults left out."""
    phases = list(pipe.phases.order_by("position", "id").prefetch_related("allowed_next"))
    order = {phase.pk: i for i, phase in enumerate(phases)}
    fields = list(pipe.fields.order_by("position", "id"))

    def field_dict(f: Field) -> dict:
        return {
            "key": f.key,
            "label": f.label,
            "type": f.type,
            "help_text": f.help_text,
            "required": f.required,
            "options": list(f.options or []),
            "validation": dict(f.validation or {}),
            "config": dict(f.config or {}),
            "condition": f.condition or None,
            "pii": f.pii,
            "visible_to_requester": f.visible_to_requester,
            "requester_editable": f.requester_editable,
        }

    phase_dicts = []
    for phase in phases:
        entry = {
            "key": phase.key,
            "name": phase.name,
            "description": phase.description,
            "final": phase.is_final,
            "sla_hours": phase.sla_hours,
            "wip_limit": phase.wip_limit,
            "wip_blocks": phase.wip_blocks,
            "requester_status": phase.requester_status,
            "allowed_next": [
                p.key for p in sorted(phase.allowed_next.all(), key=lambda p: order.get(p.pk, len(order)))
            ],
            "fields": [field_dict(f) for f in fields if f.phase_id == phase.pk],
        }
        for ext in extensions("phase"):
            value = ext.dump(phase)
            if value is not None:
                entry[ext.key] = value
        phase_dicts.append(entry)

    definition = {
        "name": pipe.name,
        "slug": pipe.slug,
        "code": pipe.code,
        "description": pipe.description,
        "portal_group": pipe.portal_group,
        "title_field": pipe.title_field,
        "key_fields": list(pipe.key_fields or []),
        "expiration_days": pipe.expiration_days,
        "public_form": pipe.public_form,
        "labels": [
            {"name": label.name, "color": label.color} for label in pipe.labels.order_by("name", "id")
        ],
        "start_form": [field_dict(f) for f in fields if f.phase_id is None],
        "phases": phase_dicts,
    }
    for ext in extensions("pipe"):
        value = ext.dump(pipe)
        if value is not None:
            definition[ext.key] = value
    return _canonical(definition)


def _is_default(value: Any, default: Any) -> bool:
    if default is None:
        return value is None
    return type(value) is type(default) and value == default


def _ordered(data: Mapping, keys: tuple[str, ...], defaults: Mapping[str, Any], extra: list[str]) -> dict:
    """`data` with its keys in the documented order (then extensions, then anything else), defaults dropped."""
    out: dict[str, Any] = {}
    for key in [*keys, *extra]:
        if key in data and not (key in defaults and _is_default(data[key], defaults[key])):
            out[key] = data[key]
    for key in data:
        if key not in out and key not in keys and key not in extra:
            out[key] = data[key]
    return out


def _canonical_condition(condition: Any) -> Any:
    if not isinstance(condition, Mapping):
        return condition
    for group in ("all", "any"):
        if group in condition and isinstance(condition[group], list):
            return {group: [_canonical_condition(c) for c in condition[group]]}
    if "not" in condition:
        return {"not": _canonical_condition(condition["not"])}
    return _ordered(condition, ("field", "op", "value"), {}, [])


def _canonical_field(f: Any) -> Any:
    if not isinstance(f, Mapping):
        return f
    f = dict(f)
    if isinstance(f.get("validation"), Mapping):
        f["validation"] = _ordered(f["validation"], VALIDATION_KEYS, {}, [])
    if isinstance(f.get("config"), Mapping):
        f["config"] = {k: f["config"][k] for k in sorted(f["config"], key=str)}
    if f.get("condition") is not None:
        f["condition"] = _canonical_condition(f["condition"])
    return _ordered(f, FIELD_KEYS, FIELD_DEFAULTS, [])


def _canonical(definition: Any) -> Any:
    """The definition in dump form: documented key order, defaults left out (JSON key order is not kept
    by every database, so nested mappings are ordered here too)."""
    if not isinstance(definition, Mapping):
        return definition
    d = dict(definition)
    if isinstance(d.get("labels"), list):
        d["labels"] = [
            _ordered(label, LABEL_KEYS, LABEL_DEFAULTS, []) if isinstance(label, Mapping) else label
            for label in d["labels"]
        ]
    if isinstance(d.get("start_form"), list):
        d["start_form"] = [_canonical_field(f) for f in d["start_form"]]
    if isinstance(d.get("phases"), list):
        phase_ext = [e.key for e in extensions("phase")]
        phases = []
        for p in d["phases"]:
            if isinstance(p, Mapping):
                p = dict(p)
                if isinstance(p.get("fields"), list):
                    p["fields"] = [_canonical_field(f) for f in p["fields"]]
                p = _ordered(p, PHASE_KEYS, PHASE_DEFAULTS, phase_ext)
            phases.append(p)
        d["phases"] = phases
    return _ordered(d, PIPE_KEYS, PIPE_DEFAULTS, [e.key for e in extensions("pipe")])


class _Dumper(yaml.SafeDumper):
    """Indented lists, short scalar lists inline, multi-line text as literal blocks, no aliases."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_list(dumper: yaml.SafeDumper, value: list):
    scalars = all(
        isinstance(v, str | int | float | bool) and not (isinstance(v, str) and "\n" in v) for v in value
    )
    flow = bool(value) and scalars and sum(len(str(v)) + 2 for v in value) <= 70
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


class _Compact(dict):
    """A small mapping (validation, config, condition) written inline when it fits on a line."""


def _represent_compact(dumper: yaml.SafeDumper, value: _Compact):
    def flat(v: Any) -> bool:
        if isinstance(v, list):
            return all(isinstance(i, str | int | float | bool) for i in v)
        if isinstance(v, dict):
            return all(flat(i) for i in v.values())
        return v is None or isinstance(v, str | int | float | bool) and "\n" not in str(v)

    inline = flat(value) and len(str(value)) <= 80
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(), flow_style=inline)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(_Compact, _represent_compact)


def _compacted(definition: Any) -> Any:
    """Wraps the small mappings of every field so the dump writes them inline."""

    def field(f: Any) -> Any:
        if not isinstance(f, dict):
            return f
        return {
            k: _Compact(v) if k in ("validation", "config", "condition") and isinstance(v, dict) else v
            for k, v in f.items()
        }

    if not isinstance(definition, dict):
        return definition
    d = dict(definition)
    if isinstance(d.get("start_form"), list):
        d["start_form"] = [field(f) for f in d["start_form"]]
    if isinstance(d.get("phases"), list):
        d["phases"] = [
            {**p, "fields": [field(f) for f in p["fields"]]}
            if isinstance(p, dict) and isinstance(p.get("fields"), list)
            else p
            for p in d["phases"]
        ]
    return d


def definition_dump(definition: dict) -> str:
    """YAML text of a definition, with a stable key order and defaults left out."""
    return yaml.dump(
        _compacted(_canonical(definition)),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )


# ---------------------------------------------------------------- templates


def process_templates() -> dict[str, Path]:
    """The bundled process templates (pipes/process_templates/*.yaml) by file stem."""
    return {path.stem: path for path in sorted(TEMPLATES_DIR.glob("*.yaml"))}


def process_template_load(name: str) -> dict:
    """The checked definition of a bundled template, e.g. "accounts_payable"."""
    templates = process_templates()
    if name not in templates:
        raise DefinitionError(
            _("unknown template '%(name)s' (known: %(known)s)")
            % {"name": name, "known": ", ".join(templates)}
        )
    return definition_load(templates[name].read_text(encoding="utf-8"))
