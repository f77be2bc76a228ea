"""Conditions are JSON evaluated safely, and malformed ones are named precisely."""

import pytest

from pipes.conditions import ConditionError, evaluate, validate_condition

VALUES = {
    "amount": {"amount": "52000.00", "currency": "BRL"},
    "kind": "Software",
    "tags": ["a", "b"],
    "ok": True,
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"field": "amount", "op": "gt", "value": 10000}, True),
        ({"field": "amount", "op": "lte", "value": "10000"}, False),
        ({"field": "kind", "op": "eq", "value": "Software"}, True),
        ({"field": "kind", "op": "in", "value": ["Hardware", "Services"]}, False),
        ({"field": "tags", "op": "contains", "value": "b"}, True),
        ({"field": "missing", "op": "empty"}, True),
        ({"field": "ok", "op": "true"}, True),
        ({"all": [{"field": "ok", "op": "true"}, {"field": "kind", "op": "ne", "value": "Software"}]}, False),
        (
            {"any": [{"field": "ok", "op": "false"}, {"field": "kind", "op": "contains", "value": "soft"}]},
            True,
        ),
        ({"not": {"field": "ok", "op": "true"}}, False),
        (None, True),
    ],
)
def test_it_evaluates_conditions(condition, expected):
    assert evaluate(condition, VALUES) is expected


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"field": "amount", "op": "resembles"}, "condition.op: unknown operator 'resembles'"),
        ({"all": []}, "condition.all: must be a non-empty list"),
        ({"any": [{"field": "nope"}]}, "condition.any[0].field: unknown field 'nope'"),
        ({"field": "amount", "value": 1, "extra": 2}, "condition: unknown key 'extra'"),
        ("__import__('os')", "condition: must be an object"),
    ],
)
def test_it_names_what_is_wrong_in_a_condition(condition, message):
    with pytest.raises(ConditionError) as exc:
        validate_condition(condition, {"amount"})
    assert str(exc.value) == message
