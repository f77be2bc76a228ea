"""Agents and allowed hosts in the admin, scoped to what the user administers."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from pipes.admin import DesignAdmin, DesignForm

from .models import Agent, AllowedHost


class AgentForm(DesignForm):
    class Meta:
        model = Agent
        fields = "__all__"  # noqa: DJ007 - the admin lays the fields out


@admin.register(Agent)
class AgentAdmin(DesignAdmin):
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
                    ("authority_field", "authority_limit", "authority_currency"),
                    "confidence_threshold",
                    "may_see_pii",
                )
            },
        ),
    )


@admin.register(AllowedHost)
class AllowedHostAdmin(DesignAdmin):
    list_display = ("host", "organization", "note")
