"""Agents and allowed hosts in the admin, scoped to what the user administers."""

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms import ModelForm
from django.utils.translation import gettext_lazy as _

from pipes.admin import PipeScopedAdmin

from .models import Agent, AllowedHost


class AgentForm(ModelForm):
    class Meta:
        model = Agent
        fields = "__all__"  # noqa: DJ007 - the admin lays the fields out

    def clean(self):
        data = super().clean()
        pipe = data.get("pipe")
        if pipe is None:
            return data
        keys = set(pipe.fields.values_list("key", flat=True))
        phases = set(pipe.phases.values_list("key", flat=True))
        errors = {}
        for name in ("readable_fields", "writable_fields"):
            unknown = [k for k in data.get(name) or [] if k not in keys]
            if unknown:
                errors[name] = _("Unknown fields: %(keys)s") % {"keys": ", ".join(unknown)}
        unknown = [k for k in data.get("allowed_phases") or [] if k not in phases]
        if unknown:
            errors["allowed_phases"] = _("Unknown phases: %(keys)s") % {"keys": ", ".join(unknown)}
        if data.get("authority_field") and data["authority_field"] not in keys:
            errors["authority_field"] = _("Unknown field.")
        if errors:
            raise ValidationError(errors)
        return data


@admin.register(Agent)
class AgentAdmin(PipeScopedAdmin):
    form = AgentForm
    list_display = ("name", "pipe", "provider", "model", "escalation_model", "authority_limit")
    list_filter = ("pipe", "provider")
    fieldsets = (
        (None, {"fields": ("pipe", "key", "name", "instructions")}),
        (_("Model"), {"fields": (("provider", "model"), ("escalation_provider", "escalation_model"))}),
        (
            _("Scope"),
            {
                "fields": (
                    "readable_fields",
                    "writable_fields",
                    "allowed_phases",
                    "decisions",
                    ("authority_field", "authority_limit"),
                    "confidence_threshold",
                    "may_see_pii",
                )
            },
        ),
    )


@admin.register(AllowedHost)
class AllowedHostAdmin(admin.ModelAdmin):
    list_display = ("host", "organization", "note")

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(
            organization__memberships__user=request.user, organization__memberships__role="owner"
        )
