"""Each field type parses good input into its stored form and rejects bad input with a plain reason."""

import pytest

from pipes.choices import FieldType
from pipes.fieldtypes import FieldValueError, ParseContext, display_value, is_filled, parse_value
from pipes.models import Field, Organization, Pipe


@pytest.fixture
def ctx(db):
    org = Organization.objects.create(name="Acme", slug="acme", time_zone="America/Sao_Paulo", currency="BRL")
    return ParseContext(pipe=Pipe.objects.create(organization=org, name="P", slug="p", code="P"))


def field(type_, **extra):
    return Field(key="f", label="F", type=type_, **extra)


GOOD = [
    (field(FieldType.SHORT_TEXT), "  Hello   world ", "Hello world"),
    (field(FieldType.LONG_TEXT), "line 1\nline 2", "line 1\nline 2"),
    (field(FieldType.NUMBER), "1.234,5", "1234.5"),
    (field(FieldType.NUMBER), 42, "42"),
    (field(FieldType.CURRENCY), "R$ 1.250,50", {"amount": "1250.50", "currency": "BRL"}),
    (field(FieldType.CURRENCY), {"amount": "10", "currency": "BRL"}, {"amount": "10.00", "currency": "BRL"}),
    (field(FieldType.PERCENTAGE), "12,5%", "12.5"),
    (field(FieldType.DATE), "2026-03-31", "2026-03-31"),
    (field(FieldType.DATE), "31/03/2026", "2026-03-31"),
    (field(FieldType.DATETIME), "2026-03-31 09:00", "2026-03-31T12:00:00Z"),  # São Paulo is UTC-3
    (field(FieldType.DATETIME), "2026-03-31T09:00:00+00:00", "2026-03-31T09:00:00Z"),
    (field(FieldType.DUE_DATE), "2026-03-31", "2026-04-01T02:59:00Z"),  # end of the day, local
    (field(FieldType.EMAIL), "Ana@Example.COM", "Ana@example.com"),
    (field(FieldType.PHONE), "+55 (11) 98765-4321", "+5511987654321"),
    (field(FieldType.SELECT, options=["A", "B"]), "B", "B"),
    (field(FieldType.MULTI_SELECT, options=["A", "B", "C"]), ["C", "A"], ["A", "C"]),
    (field(FieldType.CHECKBOX), "on", True),
    (field(FieldType.CHECKBOX), "false", False),
    (field(FieldType.CHECKLIST, options=["ID", "Contract"]), ["Contract"], ["Contract"]),
    (field(FieldType.ATTACHMENT, config={"multiple": True}), ["3", 4], [3, 4]),
    (field(FieldType.ASSIGNEE), "7", [7]),
    (field(FieldType.LABEL), [1, 2], [1, 2]),
    (field(FieldType.CONNECTION), 9, [9]),
]


@pytest.mark.parametrize(("f", "raw", "stored"), GOOD, ids=[f"{g[0].type}-{i}" for i, g in enumerate(GOOD)])
def test_it_parses_good_input(ctx, f, raw, stored):
    assert parse_value(f, raw, ctx) == stored


BAD = [
    (field(FieldType.SHORT_TEXT), "x" * 256, "at most 255"),
    (
        field(FieldType.SHORT_TEXT, validation={"regex": r"^CC-\d{3}$", "regex_message": "Use CC-123."}),
        "C1",
        "Use CC-123.",
    ),
    (field(FieldType.SHORT_TEXT, validation={"min_length": 5}), "abc", "at least 5"),
    (field(FieldType.LONG_TEXT), ["not", "text"], "Enter text"),
    (field(FieldType.NUMBER), "twelve", "Enter a number"),
    (field(FieldType.NUMBER, validation={"min": 1}), "0", "1 or more"),
    (field(FieldType.NUMBER, validation={"max": 10}), "11", "10 or less"),
    (field(FieldType.NUMBER), "NaN", "Enter a number"),
    (field(FieldType.CURRENCY), "12.345", "two decimal places"),
    (field(FieldType.CURRENCY), {"amount": "1", "currency": "USD"}, "BRL, not USD"),
    (field(FieldType.CURRENCY, validation={"min": 0}), "-5", "0 or more"),
    (field(FieldType.PERCENTAGE, validation={"max": 100}), "150", "100 or less"),
    (field(FieldType.DATE), "2026-02-30", "real date"),
    (field(FieldType.DATE), "tomorrow", "real date"),
    (field(FieldType.DATE, validation={"min": "2026-01-01"}), "2025-12-31", "2026-01-01 or later"),
    (field(FieldType.DATETIME), "31 March", "date and time"),
    (field(FieldType.EMAIL), "ana@", "email address"),
    (field(FieldType.PHONE), "call me", "only digits"),
    (field(FieldType.PHONE), "123", "8 to 15 digits"),
    (field(FieldType.SELECT, options=["A", "B"]), "Z", "not one of the options"),
    (field(FieldType.MULTI_SELECT, options=["A"]), ["A", "Q"], "not one of the options"),
    (field(FieldType.CHECKBOX), "maybe", "Tick the box"),
    (field(FieldType.CHECKLIST, options=["ID"]), ["Passport"], "not one of the options"),
    (field(FieldType.ATTACHMENT), ["x"], "not a valid reference"),
    (field(FieldType.ASSIGNEE), [1, 2], "only one"),
    (field(FieldType.CONNECTION), [True], "not a valid reference"),
    # Past the edges of Python's dates, or of the database's integers (issue #12): a reason, not a 500.
    (field(FieldType.DATE), "9999-12-31", "between 0002-01-01 and 9998-12-31"),
    (field(FieldType.DATE), "0001-01-01", "between 0002-01-01 and 9998-12-31"),
    (field(FieldType.DATETIME), "9999-12-31 23:59", "between 0002-01-01 and 9998-12-31"),
    (field(FieldType.DATETIME), "2026-02-30 10:00", "date and time"),
    (field(FieldType.DUE_DATE), "9999-12-31", "between 0002-01-01 and 9998-12-31"),
    (field(FieldType.ASSIGNEE), "9" * 20, "not a valid reference"),
    (field(FieldType.LABEL), ["²"], "not a valid reference"),
    (field(FieldType.CONNECTION), [2**63], "not a valid reference"),
]


@pytest.mark.parametrize(("f", "raw", "reason"), BAD, ids=[f"{b[0].type}-{i}" for i, b in enumerate(BAD)])
def test_it_rejects_bad_input_with_a_reason(ctx, f, raw, reason):
    with pytest.raises(FieldValueError, match=reason):
        parse_value(f, raw, ctx)


@pytest.mark.parametrize("type_", list(FieldType.values))
def test_it_treats_blank_input_as_empty_for_every_type(ctx, type_):
    f = field(type_, options=["A"])
    assert parse_value(f, "", ctx) is None
    assert parse_value(f, None, ctx) is None
    assert not is_filled(f, None)
    assert display_value(f, None) == ""


def test_it_requires_every_checklist_item_to_count_as_filled():
    f = field(FieldType.CHECKLIST, options=["ID", "Contract"])
    assert not is_filled(f, ["ID"])
    assert is_filled(f, ["ID", "Contract"])


def test_it_displays_money_with_its_currency():
    assert (
        display_value(field(FieldType.CURRENCY), {"amount": "1250.50", "currency": "BRL"}) == "BRL 1,250.50"
    )
