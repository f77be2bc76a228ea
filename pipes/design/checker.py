"""Checking a process definition: `definition_check(dict)` checks a mapping and raises DefinitionError
listing every problem as "<path>: <reason>", e.g. "phases[2].fields[0].type: unknown type 'numbr'";
registered extensions check their own keys. The YAML import and the design service both use it.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _

from ..choices import FieldType
from ..conditions import ConditionError, validate_condition
from ..fieldtypes import TYPES_WITH_OPTIONS
from ..files import KNOWN_TYPES
from .format import (
    _EXTENSIONS,
    CODE_RE,
    COLOR_RE,
    CURRENCY_RE,
    FIELD_KEYS,
    LABEL_KEYS,
    NUMERIC_TYPES,
    PHASE_KEYS,
    PIPE_KEYS,
    SLUG_RE,
    TEXT_TYPES,
    VALIDATION_KEYS,
    VALUE_OPERATORS,
    DefinitionError,
    Extension,
    extensions,
)

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
    FieldType.CURRENCY: {"currency": _config_currency, "allow_negative": _config_bool},
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
