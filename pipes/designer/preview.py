"""The start form as the requester will see it, drawn by the portal's own field template
(templates/portal/_field.html) from the pipe's fields, so the preview can't drift from the form.

The portal's form code is another area (pipes.portal) that this one may not import; the template
is shared instead, and this module gives it what it reads of each field. Conditional fields are
all shown, each with the rule that makes it appear."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext as _

from ..choices import FieldType
from ..fieldtypes import CURRENCY_SYMBOLS, FORM_WIDGETS
from ..models import Field, Label, Pipe
from .forms import NO_VALUE, OPERATOR_LABELS


@dataclass
class Choice:
    value: str
    label: str
    checked: bool = False


@dataclass
class PreviewField:
    """What templates/portal/_field.html reads of a field, for a blank form."""

    field: Field
    widget: str
    value: Any = ""
    visible: bool = True
    required: bool = False
    errors: list[str] = field(default_factory=list)
    choices: list[Choice] = field(default_factory=list)
    multiple: bool = False
    kept: list = field(default_factory=list)
    attached: list = field(default_factory=list)
    is_source: bool = False
    unavailable: bool = False
    prefix: str = ""
    suffix: str = ""
    accept: str = ""
    hint: str = ""
    when: str = ""  # the condition in words, for conditional fields

    @property
    def key(self) -> str:
        return self.field.key

    @property
    def name(self) -> str:
        return f"preview-{self.field.key}"

    @property
    def id(self) -> str:
        return f"preview-{self.field.key}"

    @property
    def conditional(self) -> bool:
        return bool(self.field.condition)

    @property
    def checked(self) -> bool:
        return False

    @property
    def many_options(self) -> bool:
        return len(self.choices) > 12

    @property
    def described_by(self) -> str:
        return f"{self.id}-help" if self.field.help_text or self.hint else ""


def condition_text(condition: Any, labels: dict[str, str]) -> str:
    """A condition in words: “Amount” is more than 5000 and “Urgent” is ticked."""
    if not isinstance(condition, dict) or not condition:
        return ""
    for group, joiner in (("all", _(" and ")), ("any", _(" or "))):
        if group in condition and isinstance(condition[group], list):
            return joiner.join(condition_text(c, labels) for c in condition[group])
    if "not" in condition:
        return _("not (%(rule)s)") % {"rule": condition_text(condition["not"], labels)}
    key = str(condition.get("field", ""))
    op = str(condition.get("op", "eq"))
    words = f"“{labels.get(key, key)}” {OPERATOR_LABELS.get(op, op)}"
    if op in NO_VALUE:
        return words
    value = condition.get("value")
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    return f"{words} {value}"


def start_form_preview(*, pipe: Pipe) -> list[PreviewField]:
    """The start form's fields in order, ready for the portal's field template."""
    fields = list(Field.objects.filter(pipe=pipe, phase__isnull=True).order_by("position", "id"))
    labels = {f.key: f.label for f in Field.objects.filter(pipe=pipe)}
    currency = pipe.organization.currency
    labels_of_pipe: list[tuple[int, str]] | None = None  # read once, for label fields
    out = []
    for f in fields:
        pf = PreviewField(field=f, widget=FORM_WIDGETS.get(f.type, "text"), required=f.required)
        if f.type in (FieldType.MULTI_SELECT, FieldType.CHECKLIST, FieldType.ATTACHMENT):
            pf.value = []
        if f.type in (FieldType.SELECT, FieldType.MULTI_SELECT, FieldType.CHECKLIST):
            pf.choices = [Choice(str(o), str(o)) for o in f.options or []]
            pf.multiple = f.type != FieldType.SELECT
        elif f.type == FieldType.CURRENCY:
            code = (f.config or {}).get("currency") or currency
            pf.prefix = CURRENCY_SYMBOLS.get(code, code)
        elif f.type == FieldType.PERCENTAGE:
            pf.suffix = "%"
        elif f.type in (FieldType.DATETIME, FieldType.DUE_DATE):
            pf.hint = _("Time in %(zone)s") % {"zone": pipe.organization.time_zone.replace("_", " ")}
        elif f.type == FieldType.ATTACHMENT:
            pf.multiple = bool((f.config or {}).get("multiple"))
        elif f.type == FieldType.LABEL:
            pf.multiple = bool((f.config or {}).get("multiple", True))
            if labels_of_pipe is None:
                labels_of_pipe = list(Label.objects.filter(pipe=pipe).values_list("pk", "name"))
            pf.choices = [Choice(str(pk), name) for pk, name in labels_of_pipe]
        elif f.type in (FieldType.ASSIGNEE, FieldType.CONNECTION):
            pf.unavailable = True  # people and cards are listed to signed-in requesters only
        if f.condition:
            pf.when = condition_text(f.condition, labels)
        out.append(pf)
    return out
