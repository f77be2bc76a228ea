"""Money fields take amounts of 0 or more unless the designer allows negatives."""

import pytest

from pipes.choices import FieldType
from pipes.design import DefinitionError, definition_check
from pipes.fieldtypes import FieldValueError, ParseContext, parse_value
from pipes.models import Field, Organization, Pipe
from tests.pipes.test_definitions import base


@pytest.fixture
def ctx(db):
    org = Organization.objects.create(name="Acme", slug="acme", currency="BRL")
    return ParseContext(pipe=Pipe.objects.create(organization=org, name="P", slug="p", code="P"))


def money(**extra):
    return Field(key="amount", label="Amount", type=FieldType.CURRENCY, **extra)


def test_it_refuses_a_negative_amount_by_default(ctx):
    with pytest.raises(FieldValueError, match="0 or more"):
        parse_value(money(), "-5", ctx)


def test_it_takes_zero(ctx):
    assert parse_value(money(), "0", ctx) == {"amount": "0.00", "currency": "BRL"}


def test_it_takes_a_negative_amount_where_the_designer_allows_it(ctx):
    field = money(config={"allow_negative": True})
    assert parse_value(field, "-5", ctx) == {"amount": "-5.00", "currency": "BRL"}


def test_it_lets_a_min_below_zero_set_the_lowest_amount(ctx):
    field = money(validation={"min": -100})
    assert parse_value(field, "-5", ctx)["amount"] == "-5.00"
    with pytest.raises(FieldValueError):
        parse_value(field, "-101", ctx)


def test_it_accepts_allow_negative_in_a_process_definition():
    definition = base()
    definition["start_form"][1]["config"] = {"allow_negative": True}
    definition_check(definition)


def test_it_refuses_an_allow_negative_that_is_not_true_or_false():
    definition = base()
    definition["start_form"][1]["config"] = {"allow_negative": "yes"}
    with pytest.raises(DefinitionError) as info:
        definition_check(definition)
    assert any("allow_negative" in m and "true or false" in m for m in info.value.messages)
