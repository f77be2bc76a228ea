"""What the designer's phase and field editors post, parsed into a Phase or a Field ready for the
design service, with a message per input that could not be read.

Nothing here writes: the views hand `.obj` (and `.m2m`) to `design_save`, which decides. These
classes only turn inputs into model values (numbers, lists, the condition's structure), keep what
was typed for the form to show again, and put the service's refusals back beside the inputs they
are about (`add_design_errors`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.http import QueryDict
from django.utils.dateparse import parse_date
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..choices import FieldType
from ..design import DesignError
from ..design.format import CURRENCY_RE, NUMERIC_TYPES, REFERENCE_TYPES, SLUG_RE, TEXT_TYPES
from ..fieldtypes import TYPES_WITH_OPTIONS, FieldValueError, parse_decimal
from ..models import Field, Phase

# ---------------------------------------------------------------- keys


def key_from(text: str, taken: set[str], fallback: str) -> str:
    """A key like "cost_center" from a name, unique among `taken` (cost_center_2, ...)."""
    base = slugify(text).replace("-", "_")[:56].strip("_") or fallback
    if not base[0].isalpha():
        base = f"{fallback}_{base}"[:56]
    key, n = base, 2
    while key in taken:
        key, n = f"{base}_{n}", n + 1
    return key


# ---------------------------------------------------------------- errors


class Errors:
    """Messages by input name ("" for the whole object)."""

    def __init__(self) -> None:
        self.by_name: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        bucket = self.by_name.setdefault(name, [])
        if message not in bucket:
            bucket.append(message)

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def get(self, name: str) -> list[str]:
        return self.by_name.get(name, [])

    def __getitem__(self, name: str) -> list[str]:
        # Templates read `errors.label`; a name with no message is missing (KeyError), so Django
        # then finds the attributes (`errors.general`) and treats other names as empty.
        return self.by_name[name]

    @property
    def general(self) -> list[str]:
        return self.by_name.get("", [])


_PATH_PART = re.compile(r"[.\[]")


def _input_name(rest: str, aliases: dict[str, str]) -> str:
    """The input a checker path below the object names: "validation.min" -> "validation_min"."""
    parts = rest.split(".")
    head = _PATH_PART.split(parts[0])[0]
    if head in ("validation", "config") and len(parts) > 1:
        return f"{head}_{_PATH_PART.split(parts[1])[0]}"
    return aliases.get(head, head)


def add_design_errors(
    errors: Errors, exc: DesignError, *, path: str, aliases: dict[str, str], describe
) -> None:
    """Put a DesignError's messages beside the inputs they name.

    The service keys its own refusals by model field; the checker's come whole as
    "<definition path>: <reason>". Those about this object (`path`, e.g. "phases[2]") go to the
    input below it; the others, about another part of the process, stay general and are told with
    names instead of paths (`describe`)."""
    for name, messages in exc.errors.items():
        for message in messages:
            if name:
                errors.add(aliases.get(name, name), message)
                continue
            where, sep, reason = message.partition(": ")
            if sep and where == path:
                errors.add("", reason)
            elif sep and (where.startswith(path + ".") or where.startswith(path + "[")):
                errors.add(_input_name(where[len(path) :].lstrip("."), aliases), reason)
            else:
                errors.add("", describe(message))


# ---------------------------------------------------------------- small parsers


def _text(data: QueryDict, name: str) -> str:
    value = data.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _flag(data: QueryDict, name: str) -> bool:
    return data.get(name) in ("on", "1", "true")


def _whole(errors: Errors, name: str, raw: str, *, minimum: int = 1, maximum: int = 1_000_000) -> int | None:
    if raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        errors.add(name, _("Enter a whole number."))
        return None
    if not minimum <= value <= maximum:
        errors.add(
            name, _("Enter a whole number from %(min)d to %(max)d.") % {"min": minimum, "max": maximum}
        )
        return None
    return value


def number_value(raw: str) -> int | float | None:
    """A number typed as people type them (5000, 5.000,50, 12.5), as JSON keeps it; None if it is not one."""
    try:
        value = parse_decimal(raw)
    except FieldValueError:
        return None
    if not value.is_finite():
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def _limited(errors: Errors, name: str, value: str, limit: int) -> str:
    if len(value) > limit:
        errors.add(name, _("Use at most %(n)d characters (this has %(m)d).") % {"n": limit, "m": len(value)})
    return value[:limit]


def _key(errors: Errors, name: str, raw: str, taken: set[str]) -> str:
    if not raw:
        errors.add(name, _("Give it a key."))
    elif not SLUG_RE.match(raw) or len(raw) > 64:
        errors.add(name, _("Use up to 64 letters, digits, underscores and hyphens."))
    elif raw in taken:
        errors.add(name, _("Another one of this process already uses the key “%(key)s”.") % {"key": raw})
    return raw


# ---------------------------------------------------------------- phases

PHASE_ALIASES = {"final": "is_final"}


class PhaseEdit:
    """The phase settings form: name, key, final, SLA, requester status, next phases, WIP limit."""

    def __init__(self, *, phase: Phase, phases: list[Phase], key_locked: bool, data: QueryDict | None = None):
        self.obj = phase
        self.phases = phases
        self.others = [p for p in phases if p.pk != phase.pk]
        self.key_locked = key_locked
        self.errors = Errors()
        self.bound = data is not None
        self.next_ids = {p.pk for p in phase.allowed_next.all()} if phase.pk else set()
        self.raw = {
            "sla_hours": "" if phase.sla_hours is None else str(phase.sla_hours),
            "wip_limit": "" if phase.wip_limit is None else str(phase.wip_limit),
        }
        if data is not None:
            self._parse(data)

    @property
    def m2m(self) -> dict[str, list[Phase]]:
        return {"allowed_next": [p for p in self.others if p.pk in self.next_ids]}

    def _parse(self, data: QueryDict) -> None:
        phase, errors = self.obj, self.errors
        name = _limited(errors, "name", _text(data, "name"), 120)
        if not name:
            errors.add("name", _("Give the phase a name."))
        phase.name = name or phase.name
        if not self.key_locked and "key" in data:
            taken = {p.key for p in self.others}
            phase.key = _key(errors, "key", _text(data, "key"), taken) or phase.key
        phase.is_final = _flag(data, "is_final")
        phase.requester_status = _limited(errors, "requester_status", _text(data, "requester_status"), 80)
        for name in ("sla_hours", "wip_limit"):
            self.raw[name] = _text(data, name)
        phase.sla_hours = _whole(errors, "sla_hours", self.raw["sla_hours"], maximum=100_000)
        phase.wip_limit = _whole(errors, "wip_limit", self.raw["wip_limit"], maximum=10_000)
        phase.wip_blocks = _flag(data, "wip_blocks")
        if phase.wip_blocks and not phase.wip_limit and "wip_limit" not in errors.by_name:
            errors.add("wip_blocks", _("Set a WIP limit first: blocking needs one."))
        wanted = set(data.getlist("allowed_next"))
        self.next_ids = {p.pk for p in self.others if str(p.pk) in wanted}


# ---------------------------------------------------------------- conditions

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
    "true": gettext_lazy("is ticked"),
    "false": gettext_lazy("is not ticked"),
}
NO_VALUE = {"empty", "not_empty", "true", "false"}
DATE_TYPES = {FieldType.DATE, FieldType.DATETIME, FieldType.DUE_DATE}


def operators_for(field_type: str) -> list[str]:
    """The operators that make sense for a field of this type, in the order the dropdown shows them."""
    if field_type in NUMERIC_TYPES:
        return ["gt", "gte", "lt", "lte", "eq", "ne", "empty", "not_empty"]
    if field_type in DATE_TYPES:
        return ["gt", "gte", "lt", "lte", "eq", "empty", "not_empty"]
    if field_type == FieldType.SELECT:
        return ["eq", "ne", "in", "not_in", "empty", "not_empty"]
    if field_type in (FieldType.MULTI_SELECT, FieldType.CHECKLIST):
        return ["contains", "empty", "not_empty"]
    if field_type == FieldType.CHECKBOX:
        return ["true", "false"]
    if field_type in (FieldType.ATTACHMENT, FieldType.ASSIGNEE, FieldType.LABEL, FieldType.CONNECTION):
        return ["not_empty", "empty"]
    return ["eq", "ne", "contains", "empty", "not_empty"]


@dataclass
class ConditionRow:
    """One "<field> <operator> <value>" line of the condition builder."""

    index: int
    field_key: str = ""
    op: str = ""
    value: str = ""
    values: list[str] = field(default_factory=list)  # in / not_in
    target: Field | None = None
    error: str = ""

    @property
    def operators(self) -> list[tuple[str, str]]:
        ops = operators_for(self.target.type) if self.target else []
        return [(op, str(OPERATOR_LABELS[op])) for op in ops]

    @property
    def needs_value(self) -> bool:
        return bool(self.op) and self.op not in NO_VALUE

    @property
    def many(self) -> bool:
        return self.op in ("in", "not_in")

    @property
    def options(self) -> list[str]:
        if self.target is not None and self.target.type in TYPES_WITH_OPTIONS:
            return [str(o) for o in self.target.options or []]
        return []

    @property
    def input_type(self) -> str:
        if self.target is None:
            return "text"
        if self.target.type == FieldType.DATE:
            return "date"
        if self.target.type in (FieldType.DATETIME, FieldType.DUE_DATE):
            return "datetime-local"
        return "text"

    @property
    def numeric(self) -> bool:
        return self.target is not None and self.target.type in NUMERIC_TYPES


def row_for(index: int, key: str, op: str, sources: dict[str, Field]) -> ConditionRow:
    """A row for the field `key`, with `op` kept when that field takes it (else its first operator)."""
    target = sources.get(key)
    row = ConditionRow(index=index, field_key=key if target else "", target=target)
    if target is not None:
        ops = operators_for(target.type)
        row.op = op if op in ops else ops[0]
    return row


def condition_rows(condition: Any, sources: dict[str, Field]) -> tuple[str, list[ConditionRow], bool]:
    """(all/any, rows, editable) of a stored condition; editable is False for shapes the builder
    does not draw (nested groups, "not"), which it then keeps as they are."""
    if not condition:
        return "all", [], True
    mode, leaves = "all", [condition]
    for group in ("all", "any"):
        if isinstance(condition, dict) and group in condition:
            mode, leaves = group, condition[group]
    if not isinstance(leaves, list) or not all(isinstance(c, dict) and "field" in c for c in leaves):
        return "all", [], False
    rows = []
    for i, leaf in enumerate(leaves):
        row = row_for(i, str(leaf.get("field", "")), str(leaf.get("op", "eq")), sources)
        if row.target is None:  # a field that is gone or asked later: keep what it says, to be fixed
            row.field_key = str(leaf.get("field", ""))
            row.op = str(leaf.get("op", "eq"))
        value = leaf.get("value")
        if isinstance(value, list):
            row.values = [str(v) for v in value]
        elif value is not None:
            row.value = "true" if value is True else "false" if value is False else str(value)
        rows.append(row)
    return mode, rows, True


def _leaf(row: ConditionRow) -> dict | None:
    """The condition leaf a row stands for; sets row.error when its value can't be used."""
    target = row.target
    if target is None:
        row.error = _("Choose a field.")
        return None
    leaf: dict[str, Any] = {"field": target.key, "op": row.op}
    if row.op in NO_VALUE:
        return leaf
    if row.many:
        if not row.values:
            row.error = _("Choose at least one option.")
            return None
        leaf["value"] = list(row.values)
        return leaf
    if row.value == "":
        row.error = _("Give a value to compare with.")
        return None
    if target.type in NUMERIC_TYPES and row.op not in ("contains",):
        number = number_value(row.value)
        if number is None:
            row.error = _("Enter a number, like 5000 or 12.5.")
            return None
        leaf["value"] = number
        return leaf
    if target.type == FieldType.DATE and parse_date(row.value) is None:
        row.error = _("Enter a date.")
        return None
    leaf["value"] = row.value
    return leaf


# ---------------------------------------------------------------- fields

FIELD_ALIASES: dict[str, str] = {}  # the checker names a field's keys as the model does


class FieldEdit:
    """The field form: label, key, help, required, options, validation, settings, flags and condition."""

    def __init__(
        self,
        *,
        f: Field,
        sources: dict[str, Field],
        taken_keys: set[str],
        key_locked: bool,
        data: QueryDict | None = None,
    ):
        self.obj = f
        self.sources = sources  # fields a condition may read: asked before this one or beside it
        self.taken_keys = taken_keys
        self.key_locked = key_locked
        self.errors = Errors()
        self.bound = data is not None
        rules = f.validation or {}
        self.raw = {
            name: "" if rules.get(name) is None else str(rules[name])
            for name in ("min", "max", "min_length", "max_length", "regex", "regex_message")
        }
        self.options = [str(o) for o in f.options or []]
        self.cond_mode, self.rows, self.cond_editable = condition_rows(f.condition, sources)
        if data is not None:
            self._parse(data)

    # what the template asks
    @property
    def has_options(self) -> bool:
        return self.obj.type in TYPES_WITH_OPTIONS

    @property
    def numeric(self) -> bool:
        return self.obj.type in NUMERIC_TYPES

    @property
    def dated(self) -> bool:
        return self.obj.type == FieldType.DATE

    @property
    def textual(self) -> bool:
        return self.obj.type in TEXT_TYPES

    @property
    def referencing(self) -> bool:
        return self.obj.type in REFERENCE_TYPES

    @property
    def on_phase(self) -> bool:
        return self.obj.phase_id is not None

    @property
    def has_condition(self) -> bool:
        return bool(self.rows) or not self.cond_editable

    def _parse(self, data: QueryDict) -> None:
        f, errors = self.obj, self.errors
        label = _limited(errors, "label", _text(data, "label"), 200)
        if not label:
            errors.add("label", _("Give the field a label."))
        f.label = label or f.label
        if not self.key_locked and "key" in data:
            f.key = _key(errors, "key", _text(data, "key"), self.taken_keys) or f.key
        f.help_text = _limited(errors, "help_text", _text(data, "help_text"), 300)
        f.required = _flag(data, "required")
        f.pii = _flag(data, "pii")
        f.visible_to_requester = _flag(data, "visible_to_requester")
        f.requester_editable = self.on_phase and _flag(data, "requester_editable")
        self._parse_options(data)
        self._parse_validation(data)
        self._parse_config(data)
        self._parse_condition(data)

    def _parse_options(self, data: QueryDict) -> None:
        if not self.has_options:
            self.obj.options = []
            return
        self.options = [o.strip() for o in data.getlist("options") if o.strip()]
        seen: set[str] = set()
        for option in self.options:
            if option in seen:
                self.errors.add("options", _("“%(option)s” is listed twice.") % {"option": option})
            if len(option) > 200:
                self.errors.add("options", _("An option has at most 200 characters."))
            seen.add(option)
        if not self.options:
            self.errors.add("options", _("Give at least one option."))
        self.obj.options = self.options

    def _parse_validation(self, data: QueryDict) -> None:
        errors, rules = self.errors, {}
        for name in self.raw:
            value = data.get(f"validation_{name}", "")
            self.raw[name] = value if name == "regex" else value.strip()
        if self.numeric:
            for name in ("min", "max"):
                if self.raw[name]:
                    number = number_value(self.raw[name])
                    if number is None:
                        errors.add(f"validation_{name}", _("Enter a number."))
                    else:
                        rules[name] = number
        elif self.dated:
            for name in ("min", "max"):
                if self.raw[name]:
                    if parse_date(self.raw[name]) is None:
                        errors.add(f"validation_{name}", _("Enter a date."))
                    else:
                        rules[name] = self.raw[name]
        elif self.textual:
            limit = TEXT_TYPES[self.obj.type]
            for name in ("min_length", "max_length"):
                value = _whole(errors, f"validation_{name}", self.raw[name], minimum=0, maximum=limit)
                if value is not None:
                    rules[name] = value
            if self.raw["regex"]:
                try:
                    re.compile(self.raw["regex"])
                except re.error as exc:
                    errors.add(
                        "validation_regex", _("This pattern does not work: %(error)s") % {"error": exc}
                    )
                rules["regex"] = self.raw["regex"]
                if self.raw["regex_message"]:
                    rules["regex_message"] = self.raw["regex_message"]
        low, high = rules.get("min"), rules.get("max")
        if low is not None and high is not None and low > high:
            errors.add("validation_max", _("The maximum is below the minimum."))
        self.obj.validation = rules

    def _parse_config(self, data: QueryDict) -> None:
        config = dict(self.obj.config or {})
        if self.obj.type == FieldType.CURRENCY:
            code = _text(data, "config_currency").upper()
            if code and not CURRENCY_RE.match(code):
                self.errors.add("config_currency", _("Use a three-letter code like BRL or USD."))
            if code:
                config["currency"] = code
            else:
                config.pop("currency", None)
            if _flag(data, "config_allow_negative"):
                config["allow_negative"] = True
            else:
                config.pop("allow_negative", None)
        if self.referencing:
            # Labels allow several unless told otherwise, the other references one: the default is
            # left out, so saving an untouched field leaves its definition as it was.
            several = _flag(data, "config_multiple")
            default = self.obj.type == FieldType.LABEL
            if several == default:
                config.pop("multiple", None)
            else:
                config["multiple"] = several
        if self.obj.type == FieldType.CONNECTION:
            slug = _text(data, "config_pipe")
            if slug:
                config["pipe"] = slug
            else:
                config.pop("pipe", None)
        self.obj.config = config

    def _parse_condition(self, data: QueryDict) -> None:
        if data.get("cond_keep") == "1":
            return  # a shape the builder doesn't draw, left as it was
        self.cond_editable = True
        self.cond_mode = "any" if data.get("cond_mode") == "any" else "all"
        self.rows = []
        for raw_index in data.getlist("cond_row"):
            try:
                index = int(raw_index)
            except ValueError:
                continue
            row = row_for(
                index, data.get(f"cond-{index}-field", ""), data.get(f"cond-{index}-op", ""), self.sources
            )
            row.value = data.get(f"cond-{index}-value", "").strip()
            row.values = [v for v in data.getlist(f"cond-{index}-values") if v]
            self.rows.append(row)
        leaves = [_leaf(row) for row in self.rows]
        if any(row.error for row in self.rows):
            self.errors.add("condition", _("Complete each rule of the condition."))
            return
        if not leaves:
            self.obj.condition = None
        elif len(leaves) == 1:
            self.obj.condition = leaves[0]
        else:
            self.obj.condition = {self.cond_mode: leaves}
