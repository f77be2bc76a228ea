"""The field-type registry: how each type parses, validates, displays and is empty.

Values are stored in `Card.values` as JSON: text as strings, numbers as decimal strings,
money as {"amount": "12.50", "currency": "BRL"}, dates as ISO strings (datetimes in UTC),
and references (files, users, labels, cards) as lists of ids. `parse` accepts what a
form posts (strings) as well as those JSON values, and raises FieldValueError with a
plain-language message when it cannot.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import formats, timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext as _

from .choices import FieldType
from .parsing import FIRST_DAY, LAST_DAY, MAX_INT, day_in_range, parse_id

if TYPE_CHECKING:
    from .models import Field, Pipe


class FieldValueError(ValueError):
    """A value a field cannot accept; the message says why in plain words."""


@dataclass(frozen=True)
class ParseContext:
    """What parsing needs beyond the value: the pipe (for references) and its time zone."""

    pipe: Pipe

    @property
    def tz(self) -> dt.tzinfo:
        return zoneinfo.ZoneInfo(self.pipe.organization.time_zone)

    @property
    def currency(self) -> str:
        return self.pipe.organization.currency


class FieldKind:
    """Base behaviour; one subclass per field type."""

    type: str
    many = False  # stored as a list

    def parse(self, field: Field, raw: Any, ctx: ParseContext) -> Any:
        raise NotImplementedError

    def is_empty(self, value: Any) -> bool:
        return value is None or value == "" or value == [] or value == {}

    def display(self, field: Field, value: Any) -> str:
        if self.is_empty(value):
            return ""
        return str(value)

    def empty_raw(self, raw: Any) -> bool:
        if raw is None:
            return True
        if isinstance(raw, str):
            return raw.strip() == ""
        if isinstance(raw, list | tuple | dict):
            return len(raw) == 0
        return False


def _out_of_range() -> str:
    return _("Enter a date between %(first)s and %(last)s.") % {
        "first": FIRST_DAY.isoformat(),
        "last": LAST_DAY.isoformat(),
    }


def _rule(field: Field, name: str) -> Any:
    return (field.validation or {}).get(name)


class TextKind(FieldKind):
    max_length = 255

    def __init__(self, type_: str, max_length: int):
        self.type = type_
        self.max_length = max_length

    def parse(self, field, raw, ctx):
        if not isinstance(raw, str | int | float | Decimal):
            raise FieldValueError(_("Enter text."))
        value = str(raw).strip()
        if self.type == FieldType.SHORT_TEXT:
            value = " ".join(value.split())
        limit = min(int(_rule(field, "max_length") or self.max_length), self.max_length)
        if len(value) > limit:
            raise FieldValueError(
                _("Use at most %(n)d characters (this has %(m)d).") % {"n": limit, "m": len(value)}
            )
        min_length = _rule(field, "min_length")
        if min_length and len(value) < int(min_length):
            raise FieldValueError(_("Use at least %(n)d characters.") % {"n": int(min_length)})
        pattern = _rule(field, "regex")
        if pattern and not re.fullmatch(pattern, value):
            message = _rule(field, "regex_message") or _("This does not have the expected format.")
            raise FieldValueError(str(message))
        return value


def parse_decimal(raw: Any) -> Decimal:
    """A decimal from a number or a string written with '.' or ',' as the decimal mark."""
    if isinstance(raw, bool):
        raise FieldValueError(_("Enter a number."))
    if isinstance(raw, int | Decimal):
        return Decimal(raw)
    if isinstance(raw, float):
        return Decimal(str(raw))
    if not isinstance(raw, str):
        raise FieldValueError(_("Enter a number."))
    text = raw.strip().replace(" ", "").replace("\u00a0", "")
    for symbol in ("R$", "US$", "$", "€", "%"):
        text = text.replace(symbol, "")
    if "," in text and "." in text:
        # The last mark is the decimal one: 1.234,56 or 1,234.56.
        if text.rfind(",") > text.rfind("."):
            text = text.replace(".", "").replace(",", ".")
        else:
            text = text.replace(",", "")
    elif "," in text:
        text = text.replace(",", ".")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise FieldValueError(_("Enter a number, like 1250 or 1250.50.")) from None
    if not value.is_finite():
        raise FieldValueError(_("Enter a number, like 1250 or 1250.50."))
    return value


def _check_bounds(field: Field, value: Decimal) -> None:
    low, high = _rule(field, "min"), _rule(field, "max")
    if low is not None and value < Decimal(str(low)):
        raise FieldValueError(_("Enter %(min)s or more.") % {"min": low})
    if high is not None and value > Decimal(str(high)):
        raise FieldValueError(_("Enter %(max)s or less.") % {"max": high})


class NumberKind(FieldKind):
    type = FieldType.NUMBER

    def parse(self, field, raw, ctx):
        value = parse_decimal(raw)
        _check_bounds(field, value)
        if abs(value) >= Decimal("1e15"):
            raise FieldValueError(_("This number is too large."))
        return format(value.normalize(), "f") if value != value.to_integral() else str(int(value))

    def display(self, field, value):
        if self.is_empty(value):
            return ""
        return formats.number_format(Decimal(value), use_l10n=True, force_grouping=True)


class PercentageKind(NumberKind):
    type = FieldType.PERCENTAGE

    def parse(self, field, raw, ctx):
        value = parse_decimal(raw)
        _check_bounds(field, value)
        if abs(value) > Decimal("1000000"):
            raise FieldValueError(_("This percentage is too large."))
        return (
            str(value.quantize(Decimal("0.01")).normalize())
            if value != value.to_integral()
            else str(int(value))
        )

    def display(self, field, value):
        return "" if self.is_empty(value) else f"{formats.number_format(Decimal(value), use_l10n=True)}%"


class CurrencyKind(FieldKind):
    type = FieldType.CURRENCY

    def parse(self, field, raw, ctx):
        currency = (field.config or {}).get("currency") or ctx.currency
        if isinstance(raw, dict):
            if raw.get("currency") and raw["currency"] != currency:
                raise FieldValueError(
                    _("This field takes amounts in %(cur)s, not %(other)s.")
                    % {"cur": currency, "other": raw["currency"]}
                )
            raw = raw.get("amount")
        amount = parse_decimal(raw)
        _check_bounds(field, amount)
        # Money is 0 or more unless the designer allows less (config allow_negative, or a min below 0).
        if amount < 0 and _rule(field, "min") is None and not (field.config or {}).get("allow_negative"):
            raise FieldValueError(_("Enter an amount of 0 or more."))
        if amount != amount.quantize(Decimal("0.01")):
            raise FieldValueError(_("Use at most two decimal places."))
        if abs(amount) >= Decimal("1e13"):
            raise FieldValueError(_("This amount is too large."))
        return {"amount": str(amount.quantize(Decimal("0.01"))), "currency": currency}

    def display(self, field, value):
        if self.is_empty(value):
            return ""
        amount = formats.number_format(
            Decimal(value["amount"]), decimal_pos=2, use_l10n=True, force_grouping=True
        )
        return f"{value['currency']} {amount}"


def currency_amount(value: Any) -> Decimal | None:
    """The Decimal amount of a stored currency, number or percentage value."""
    if value in (None, "", {}):
        return None
    if isinstance(value, dict):
        return Decimal(value["amount"])
    return Decimal(str(value))


class DateKind(FieldKind):
    type = FieldType.DATE

    def parse(self, field, raw, ctx):
        if isinstance(raw, dt.datetime):
            raw = raw.date()
        if isinstance(raw, dt.date):
            return raw.isoformat()
        if not isinstance(raw, str):
            raise FieldValueError(_("Enter a date as YYYY-MM-DD."))
        text = raw.strip()
        value = None
        try:
            value = parse_date(text)
        except ValueError:
            value = None
        if value is None:
            match = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text)  # dd/mm/yyyy, as written in Brazil
            if match:
                try:
                    value = dt.date(int(match[3]), int(match[2]), int(match[1]))
                except ValueError:
                    value = None
        if value is None:
            raise FieldValueError(_("Enter a real date as YYYY-MM-DD, like 2026-03-31."))
        if not day_in_range(value):
            raise FieldValueError(_out_of_range())
        low, high = _rule(field, "min"), _rule(field, "max")
        if low and value.isoformat() < str(low):
            raise FieldValueError(_("Enter %(min)s or later.") % {"min": low})
        if high and value.isoformat() > str(high):
            raise FieldValueError(_("Enter %(max)s or earlier.") % {"max": high})
        return value.isoformat()

    def display(self, field, value):
        return (
            ""
            if self.is_empty(value)
            else formats.date_format(dt.date.fromisoformat(value), "SHORT_DATE_FORMAT")
        )


class DateTimeKind(FieldKind):
    def __init__(self, type_: str):
        self.type = type_

    def parse(self, field, raw, ctx):
        if isinstance(raw, dt.datetime):
            value = raw
        elif isinstance(raw, str):
            text = raw.strip().replace(" ", "T", 1) if "T" not in raw else raw.strip()
            value = None
            if self.type == FieldType.DUE_DATE and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                try:  # a due date given as a day is due at the end of it
                    value = dt.datetime.combine(dt.date.fromisoformat(text), dt.time(23, 59))
                except ValueError:
                    value = None
            if value is None:
                try:
                    value = parse_datetime(text)
                except ValueError:
                    value = None
            if value is None:
                raise FieldValueError(_("Enter a date and time as YYYY-MM-DD HH:MM."))
        else:
            raise FieldValueError(_("Enter a date and time as YYYY-MM-DD HH:MM."))
        if timezone.is_naive(value):
            value = value.replace(tzinfo=ctx.tz)  # people type times in their organization's zone
        try:
            moment = value.astimezone(dt.UTC)
        except OverflowError:  # 9999-12-31 23:59 west of UTC is past Python's last day
            raise FieldValueError(_out_of_range()) from None
        if not (day_in_range(value) and day_in_range(moment)):
            raise FieldValueError(_out_of_range())
        return moment.isoformat().replace("+00:00", "Z")

    def display(self, field, value):
        if self.is_empty(value):
            return ""
        moment = timezone.localtime(parse_datetime(value))
        return formats.date_format(moment, "SHORT_DATETIME_FORMAT")


class EmailKind(FieldKind):
    type = FieldType.EMAIL

    def parse(self, field, raw, ctx):
        if not isinstance(raw, str):
            raise FieldValueError(_("Enter an email address."))
        value = raw.strip()
        try:
            validate_email(value)
        except ValidationError:
            raise FieldValueError(_("Enter an email address like name@example.com.")) from None
        local, _sep, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}"


class PhoneKind(FieldKind):
    type = FieldType.PHONE

    def parse(self, field, raw, ctx):
        if not isinstance(raw, str | int):
            raise FieldValueError(_("Enter a phone number."))
        text = str(raw).strip()
        if not re.fullmatch(r"\+?[\d\s().\-]+", text):
            raise FieldValueError(
                _("A phone number has only digits, spaces, dashes, parentheses and a leading +.")
            )
        digits = re.sub(r"\D", "", text)
        if not 8 <= len(digits) <= 15:
            raise FieldValueError(
                _("A phone number has 8 to 15 digits (this has %(n)d).") % {"n": len(digits)}
            )
        return ("+" if text.startswith("+") else "") + digits


class SelectKind(FieldKind):
    type = FieldType.SELECT

    def parse(self, field, raw, ctx):
        if not isinstance(raw, str):
            raise FieldValueError(_("Choose one option."))
        value = raw.strip()
        if value not in (field.options or []):
            raise FieldValueError(_("“%(value)s” is not one of the options.") % {"value": value[:60]})
        return value


class MultiSelectKind(FieldKind):
    many = True

    def __init__(self, type_: str):
        self.type = type_

    def parse(self, field, raw, ctx):
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise FieldValueError(_("Choose from the options."))
        options = list(field.options or [])
        unknown = [i for i in items if i not in options]
        if unknown:
            raise FieldValueError(_("“%(value)s” is not one of the options.") % {"value": unknown[0][:60]})
        chosen = set(items)
        return [o for o in options if o in chosen]  # stored in the options' order

    def display(self, field, value):
        return "" if self.is_empty(value) else ", ".join(value)


class ChecklistKind(MultiSelectKind):
    """Items to tick; when required, every item must be ticked."""

    def display(self, field, value):
        if self.is_empty(value):
            return ""
        return _("%(done)d of %(total)d done") % {"done": len(value), "total": len(field.options or [])}


class CheckboxKind(FieldKind):
    """A yes/no box; when required it must be ticked (e.g. 'I agree')."""

    type = FieldType.CHECKBOX

    def parse(self, field, raw, ctx):
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("1", "true", "on", "yes", "sim"):
            return True
        if isinstance(raw, str) and raw.strip().lower() in ("0", "false", "off", "no", "não", "nao"):
            return False
        raise FieldValueError(_("Tick the box or leave it empty."))

    def empty_raw(self, raw):
        return raw is None or raw == "" or raw is False

    def is_empty(self, value):
        return value is not True

    def display(self, field, value):
        if value is None:
            return ""
        return _("Yes") if value is True else _("No")


class ReferenceKind(FieldKind):
    """A list of ids of other objects: files, users, labels or cards. The service checks they exist."""

    many = True

    def __init__(self, type_: str):
        self.type = type_

    def parse(self, field, raw, ctx):
        items = raw if isinstance(raw, list | tuple) else [raw]
        ids = []
        for item in items:
            if isinstance(item, bool):
                raise FieldValueError(_("This is not a valid reference."))
            number = item if isinstance(item, int) else parse_id(item)
            if number is None or not 0 < number <= MAX_INT:
                raise FieldValueError(_("This is not a valid reference."))
            ids.append(number)
        ids = list(dict.fromkeys(ids))
        if not (field.config or {}).get("multiple", self.type == FieldType.LABEL) and len(ids) > 1:
            raise FieldValueError(_("Choose only one."))
        return ids

    def display(self, field, value):
        return "" if self.is_empty(value) else ", ".join(f"#{v}" for v in value)


REGISTRY: dict[str, FieldKind] = {
    FieldType.SHORT_TEXT: TextKind(FieldType.SHORT_TEXT, 255),
    FieldType.LONG_TEXT: TextKind(FieldType.LONG_TEXT, 20000),
    FieldType.NUMBER: NumberKind(),
    FieldType.CURRENCY: CurrencyKind(),
    FieldType.PERCENTAGE: PercentageKind(),
    FieldType.DATE: DateKind(),
    FieldType.DATETIME: DateTimeKind(FieldType.DATETIME),
    FieldType.DUE_DATE: DateTimeKind(FieldType.DUE_DATE),
    FieldType.EMAIL: EmailKind(),
    FieldType.PHONE: PhoneKind(),
    FieldType.SELECT: SelectKind(),
    FieldType.MULTI_SELECT: MultiSelectKind(FieldType.MULTI_SELECT),
    FieldType.CHECKBOX: CheckboxKind(),
    FieldType.CHECKLIST: ChecklistKind(FieldType.CHECKLIST),
    FieldType.ATTACHMENT: ReferenceKind(FieldType.ATTACHMENT),
    FieldType.ASSIGNEE: ReferenceKind(FieldType.ASSIGNEE),
    FieldType.LABEL: ReferenceKind(FieldType.LABEL),
    FieldType.CONNECTION: ReferenceKind(FieldType.CONNECTION),
}

TYPES_WITH_OPTIONS = {FieldType.SELECT, FieldType.MULTI_SELECT, FieldType.CHECKLIST}


def kind_of(field: Field) -> FieldKind:
    return REGISTRY[field.type]


def parse_value(field: Field, raw: Any, ctx: ParseContext) -> Any:
    """The stored form of `raw` for `field`, or None when it is empty. Raises FieldValueError."""
    kind = kind_of(field)
    if kind.empty_raw(raw):
        return None
    return kind.parse(field, raw, ctx)


def is_filled(field: Field, value: Any) -> bool:
    kind = kind_of(field)
    if kind.is_empty(value):
        return False
    if field.type == FieldType.CHECKLIST:
        return set(value) >= set(field.options or [])
    return True


def display_value(field: Field, value: Any) -> str:
    return kind_of(field).display(field, value)


# How a form draws each type: the name of the input the portal's field template (portal/_field.html)
# renders. The portal and the designer's start-form preview both read it, so the preview is the form.
FORM_WIDGETS: dict[str, str] = {
    FieldType.SHORT_TEXT: "text",
    FieldType.LONG_TEXT: "textarea",
    FieldType.NUMBER: "number",
    FieldType.CURRENCY: "currency",
    FieldType.PERCENTAGE: "percentage",
    FieldType.DATE: "date",
    FieldType.DATETIME: "datetime",
    FieldType.DUE_DATE: "datetime",
    FieldType.EMAIL: "email",
    FieldType.PHONE: "phone",
    FieldType.SELECT: "select",
    FieldType.MULTI_SELECT: "chips",
    FieldType.CHECKBOX: "checkbox",
    FieldType.CHECKLIST: "checklist",
    FieldType.ATTACHMENT: "file",
    FieldType.ASSIGNEE: "reference",
    FieldType.LABEL: "reference",
    FieldType.CONNECTION: "reference",
}
# The symbol a currency input shows before the amount (the code itself for the others).
CURRENCY_SYMBOLS = {"BRL": "R$", "USD": "US$", "EUR": "€", "GBP": "£", "ARS": "AR$", "MXN": "MX$"}
