"""The agent editor's form: an agent's scope as checkboxes over the pipe's fields, phases and decisions."""

from __future__ import annotations

import re
from decimal import Decimal

from django import forms
from django.db.models import F
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agents.models import FOUNDATION_PROVIDERS, Agent, Provider
from pipes.choices import FieldType
from pipes.models import Field, Phase, Pipe

NUMERIC = {FieldType.NUMBER, FieldType.CURRENCY, FieldType.PERCENTAGE}
KNOWN_DECISIONS = {
    "approve": gettext_lazy("Approve"),
    "reject": gettext_lazy("Reject"),
    "escalate": gettext_lazy("Escalate to a person"),
    "done": gettext_lazy("Done"),
}
CURRENCIES = ("BRL", "USD", "EUR", "GBP", "ARS", "CLP", "COP", "MXN", "PEN", "UYU", "CAD", "CHF", "JPY")

# The checker's names for an agent's parts ("agents[0].reads: unknown field 'x'") → this form's fields.
CHECKER_NAMES = {
    "key": "key",
    "name": "name",
    "model": "model",
    "escalate_to": "escalation_model",
    "instructions": "instructions",
    "reads": "readable_fields",
    "writes": "writable_fields",
    "moves_to": "allowed_phases",
    "decisions": "decisions",
    "authority": "authority_limit",
    "confidence_threshold": "confidence_threshold",
    "may_see_pii": "may_see_pii",
}


def _group_of(f: Field) -> str:
    return f.phase.name if f.phase_id else _("Start form")


class AgentForm(forms.Form):
    """An agent as its editor shows it; `apply` writes it onto an Agent for the design service."""

    name = forms.CharField(label=gettext_lazy("Name"), max_length=120)
    key = forms.CharField(
        label=gettext_lazy("Key"),
        max_length=64,
        required=False,
        help_text=gettext_lazy("Made from the name when empty."),
    )
    instructions = forms.CharField(
        label=gettext_lazy("Instructions"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=gettext_lazy("What the agent is for and how it decides, in plain words."),
    )
    provider = forms.ChoiceField(label=gettext_lazy("Provider"), choices=Provider.choices)
    model = forms.CharField(
        label=gettext_lazy("Model"),
        max_length=120,
        help_text=gettext_lazy("e.g. llama3.2 or gpt-4o-mini"),
    )
    escalation_provider = forms.ChoiceField(
        label=gettext_lazy("When unsure, escalate to"),
        required=False,
        choices=[("", gettext_lazy("No foundation model"))]
        + [(p.value, p.label) for p in Provider if p in FOUNDATION_PROVIDERS],
    )
    escalation_model = forms.CharField(label=gettext_lazy("Escalation model"), max_length=120, required=False)
    readable_fields = forms.MultipleChoiceField(
        label=gettext_lazy("Fields it reads"), required=False, widget=forms.CheckboxSelectMultiple
    )
    writable_fields = forms.MultipleChoiceField(
        label=gettext_lazy("Fields it writes"), required=False, widget=forms.CheckboxSelectMultiple
    )
    allowed_phases = forms.MultipleChoiceField(
        label=gettext_lazy("Phases it may move a card to"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    decisions = forms.MultipleChoiceField(
        label=gettext_lazy("Decisions it may take"), required=False, widget=forms.CheckboxSelectMultiple
    )
    other_decisions = forms.CharField(
        label=gettext_lazy("Other decisions"),
        required=False,
        max_length=200,
        help_text=gettext_lazy("Words of your process, separated by commas, e.g. hold, split."),
    )
    authority_field = forms.ChoiceField(label=gettext_lazy("Authority limit on"), required=False)
    authority_limit = forms.DecimalField(
        label=gettext_lazy("Up to"),
        required=False,
        min_value=Decimal(0),
        max_digits=18,
        decimal_places=2,
        localize=True,
    )
    authority_currency = forms.ChoiceField(label=gettext_lazy("Currency"), required=False)
    confidence_threshold = forms.IntegerField(
        label=gettext_lazy("Confidence needed"),
        min_value=0,
        max_value=100,
        help_text=gettext_lazy("Below it (in %), a person decides with the agent's draft."),
    )
    may_see_pii = forms.BooleanField(
        label=gettext_lazy("May see personal data"),
        required=False,
        help_text=gettext_lazy("Otherwise fields marked as personal data reach the model masked."),
    )

    def __init__(self, *args, pipe: Pipe, agent: Agent, **kwargs):
        self.pipe, self.agent = pipe, agent
        fields = list(
            Field.objects.filter(pipe=pipe)
            .select_related("phase")
            .order_by(F("phase__position").asc(nulls_first=True), "position", "pk")
        )
        self.groups = {f.key: _group_of(f) for f in fields}
        self.pipe_fields = {f.key: f for f in fields}
        phases = list(Phase.objects.filter(pipe=pipe).order_by("position", "pk"))
        if "initial" not in kwargs:
            kwargs["initial"] = self._initial(agent, pipe)
        super().__init__(*args, **kwargs)
        self.fields["readable_fields"].choices = [(f.key, f.label) for f in fields]
        self.fields["writable_fields"].choices = [
            (f.key, f.label) for f in fields if f.type != FieldType.ATTACHMENT
        ]
        self.fields["allowed_phases"].choices = [(p.key, p.name) for p in phases]
        self.fields["decisions"].choices = list(KNOWN_DECISIONS.items())
        self.fields["authority_field"].choices = [("", _("No limit"))] + [
            (f.key, f.label) for f in fields if f.type in NUMERIC
        ]
        currencies = list(CURRENCIES)
        for code in (pipe.organization.currency, agent.authority_currency):
            if code and code not in currencies:
                currencies.insert(0, code)
        self.fields["authority_currency"].choices = [(c, c) for c in currencies]

    def _grouped(self, name: str) -> list[tuple[str, list]]:
        """The checkboxes of a field list, under the start form and each phase they belong to."""
        groups: dict[str, list] = {}
        for box in self[name]:
            groups.setdefault(self.groups.get(str(box.data["value"]), ""), []).append(box)
        return list(groups.items())

    @property
    def readable_groups(self) -> list[tuple[str, list]]:
        return self._grouped("readable_fields")

    @property
    def writable_groups(self) -> list[tuple[str, list]]:
        return self._grouped("writable_fields")

    @staticmethod
    def _initial(agent: Agent, pipe: Pipe) -> dict:
        decisions = list(agent.decisions or [])
        return {
            "name": agent.name,
            "key": agent.key,
            "instructions": agent.instructions,
            "provider": agent.provider,
            "model": agent.model,
            "escalation_provider": agent.escalation_provider,
            "escalation_model": agent.escalation_model,
            "readable_fields": list(agent.readable_fields or []),
            "writable_fields": list(agent.writable_fields or []),
            "allowed_phases": list(agent.allowed_phases or []),
            "decisions": [d for d in decisions if d in KNOWN_DECISIONS],
            "other_decisions": ", ".join(d for d in decisions if d not in KNOWN_DECISIONS),
            "authority_field": agent.authority_field,
            "authority_limit": agent.authority_limit,
            "authority_currency": agent.authority_currency or pipe.organization.currency,
            "confidence_threshold": int((agent.confidence_threshold or Decimal("0.7")) * 100),
            "may_see_pii": agent.may_see_pii,
        }

    def clean_key(self) -> str:
        key = self.cleaned_data.get("key", "").strip() or slugify(self.data.get("name", "")).replace("-", "_")
        key = key[:64]
        if not re.fullmatch(r"[A-Za-z0-9_-]+", key or ""):
            raise forms.ValidationError(_("Letters, digits, - and _ only."))
        if Agent.objects.filter(pipe=self.pipe, key=key).exclude(pk=self.agent.pk).exists():
            raise forms.ValidationError(_("Another agent of this pipe has this key."))
        return key

    def clean_other_decisions(self) -> list[str]:
        words = [w.strip() for w in self.cleaned_data.get("other_decisions", "").split(",") if w.strip()]
        for word in words:
            if not re.fullmatch(r"[a-z][a-z_]*", word):
                raise forms.ValidationError(
                    _("“%(word)s”: a decision is one lowercase word (letters and _).") % {"word": word}
                )
        return words

    def clean(self) -> dict:
        data = super().clean()
        field_key, limit = data.get("authority_field"), data.get("authority_limit")
        if field_key and limit is None and "authority_limit" not in self.errors:
            self.add_error("authority_limit", _("Enter the limit, or choose no limit."))
        if limit is not None and not field_key:
            self.add_error("authority_field", _("Choose the field the limit applies to."))
        f = self.pipe_fields.get(field_key or "")
        currency = data.get("authority_currency") or ""
        if f is not None and f.type != FieldType.CURRENCY:
            data["authority_currency"] = ""  # a number has no currency: read in the limit's as it is
        elif currency and not re.fullmatch(r"[A-Z]{3}", currency):
            self.add_error("authority_currency", _("A three-letter currency code, e.g. BRL."))
        if bool(data.get("escalation_provider")) != bool((data.get("escalation_model") or "").strip()):
            self.add_error("escalation_model", _("Name the foundation model, or choose none."))
        personal = [
            self.pipe_fields[k].label
            for k in data.get("writable_fields") or []
            if k in self.pipe_fields and self.pipe_fields[k].pii
        ]
        if personal and not data.get("may_see_pii"):
            self.add_error(
                "writable_fields",
                _(
                    "An agent that may not see personal data may not write it either: %(fields)s."
                    " Tick “May see personal data”, or leave these fields out."
                )
                % {"fields": ", ".join(personal)},
            )
        return data

    def apply(self) -> Agent:
        """The form's values written onto the agent (not saved)."""
        data, agent = self.cleaned_data, self.agent
        agent.pipe = self.pipe
        agent.name = data["name"].strip()
        agent.key = data["key"]
        agent.instructions = data["instructions"].strip()
        agent.provider = data["provider"]
        agent.model = data["model"].strip()
        agent.escalation_provider = data["escalation_provider"] or ""
        agent.escalation_model = (data["escalation_model"] or "").strip() if agent.escalation_provider else ""
        agent.readable_fields = list(data["readable_fields"])
        agent.writable_fields = list(data["writable_fields"])
        agent.allowed_phases = list(data["allowed_phases"])
        agent.decisions = list(data["decisions"]) + [
            d for d in data["other_decisions"] if d not in data["decisions"]
        ]
        agent.authority_field = data["authority_field"] or ""
        agent.authority_limit = data["authority_limit"] if agent.authority_field else None
        agent.authority_currency = data.get("authority_currency", "") if agent.authority_field else ""
        agent.confidence_threshold = Decimal(data["confidence_threshold"]) / 100
        agent.may_see_pii = data["may_see_pii"]
        return agent

    def add_design_errors(self, errors: dict[str, list[str]]) -> None:
        """The design service's refusal beside the inputs it names (the checker's agent paths mapped)."""
        for name, messages in errors.items():
            for message in messages:
                target = name if name in self.fields else None
                if not name:
                    path, sep, reason = message.partition(": ")
                    match = re.match(r"^agents\[\d+\]\.(\w+)", path) if sep else None
                    if match and CHECKER_NAMES.get(match.group(1)) in self.fields:
                        target, message = CHECKER_NAMES[match.group(1)], reason
                self.add_error(target, message)


class HostForm(forms.Form):
    """A host the organization's automations may call."""

    host = forms.CharField(
        label=gettext_lazy("Host"),
        max_length=253,
        help_text=gettext_lazy(
            "e.g. erp.example.com, or *.example.com for every subdomain. No https://, no path."
        ),
    )
    note = forms.CharField(label=gettext_lazy("What it is"), max_length=200, required=False)

    def clean_host(self) -> str:
        host = self.cleaned_data["host"].strip().lower().rstrip(".")
        if "://" in host or "/" in host:
            raise forms.ValidationError(_("Only the host name, without https:// or a path."))
        name = host[2:] if host.startswith("*.") else host
        label = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
        if not re.fullmatch(rf"({label}\.)*{label}", name) or "*" in name:
            raise forms.ValidationError(_("A host name like erp.example.com or *.example.com."))
        return host
