"""JSON conditions over field values, evaluated safely (never eval).

A condition is either a leaf {"field": "amount", "op": "gt", "value": 1000} or a group
{"all": [...]} / {"any": [...]} / {"not": {...}}. Used for conditional fields here and for
step conditions by the rail.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.translation import gettext as _

OPERATORS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "contains",
    "empty",
    "not_empty",
    "true",
    "false",
)


class ConditionError(ValueError):
    """A condition that is not well formed."""


def validate_condition(condition: Any, field_keys: set[str] | None = None, path: str = "condition") -> None:
    """Raise ConditionError naming the offending part when `condition` is malformed."""
    if not isinstance(condition, Mapping):
        raise ConditionError(_("%(path)s: must be an object") % {"path": path})
    groups = [k for k in ("all", "any", "not") if k in condition]
    if groups:
        if len(condition) != 1:
            raise ConditionError(_("%(path)s: a group has exactly one of all/any/not") % {"path": path})
        key = groups[0]
        if key == "not":
            validate_condition(condition["not"], field_keys, f"{path}.not")
            return
        items = condition[key]
        if not isinstance(items, list) or not items:
            raise ConditionError(_("%(path)s.%(key)s: must be a non-empty list") % {"path": path, "key": key})
        for i, item in enumerate(items):
            validate_condition(item, field_keys, f"{path}.{key}[{i}]")
        return
    unknown = set(condition) - {"field", "op", "value"}
    if unknown:
        raise ConditionError(_("%(path)s: unknown key '%(key)s'") % {"path": path, "key": sorted(unknown)[0]})
    if not isinstance(condition.get("field"), str):
        raise ConditionError(_("%(path)s.field: required") % {"path": path})
    if field_keys is not None and condition["field"] not in field_keys:
        raise ConditionError(
            _("%(path)s.field: unknown field '%(key)s'") % {"path": path, "key": condition["field"]}
        )
    op = condition.get("op", "eq")
    if op not in OPERATORS:
        raise ConditionError(_("%(path)s.op: unknown operator '%(op)s'") % {"path": path, "op": op})


def _scalar(value: Any) -> Any:
    if isinstance(value, Mapping) and "amount" in value:
        value = value["amount"]
    return value


def _number(value: Any) -> Decimal | None:
    value = _scalar(value)
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _compare(op: str, left: Any, right: Any) -> bool:
    a, b = _number(left), _number(right)
    if a is None or b is None:
        left, right = _scalar(left), _scalar(right)
        if left is None or right is None:
            return False
        a, b = str(left), str(right)
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


def _equal(left: Any, right: Any) -> bool:
    a, b = _number(left), _number(right)
    if a is not None and b is not None and not isinstance(_scalar(left), bool):
        return a == b
    return _scalar(left) == right


def evaluate(condition: Mapping | None, values: Mapping[str, Any]) -> bool:
    """True when `values` satisfy `condition`; an empty condition is always true."""
    if not condition:
        return True
    if "all" in condition:
        return all(evaluate(c, values) for c in condition["all"])
    if "any" in condition:
        return any(evaluate(c, values) for c in condition["any"])
    if "not" in condition:
        return not evaluate(condition["not"], values)
    value = values.get(condition["field"])
    op = condition.get("op", "eq")
    expected = condition.get("value")
    empty = value in (None, "", [], {}) or value is False
    if op == "empty":
        return empty
    if op == "not_empty":
        return not empty
    if op == "true":
        return value is True
    if op == "false":
        return value is not True
    if op == "eq":
        return _equal(value, expected)
    if op == "ne":
        return not _equal(value, expected)
    if op in ("gt", "gte", "lt", "lte"):
        return _compare(op, value, expected)
    if op in ("in", "not_in"):
        options = expected if isinstance(expected, list) else [expected]
        found = any(v in options for v in value) if isinstance(value, list) else _scalar(value) in options
        return found if op == "in" else not found
    if op == "contains":
        if isinstance(value, list):
            return expected in value
        return isinstance(value, str) and str(expected).lower() in value.lower()
    return False
