"""The webhooks in the admin: inbound and outbound webhooks are design objects (saved through the design
service); deliveries are read-only records."""

from django.contrib import admin
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from pipes.admin import DesignAdmin, ReadOnlyAdmin

from ..models import InboundWebhook, OutboundWebhook, WebhookDelivery


@admin.register(InboundWebhook)
class InboundWebhookAdmin(DesignAdmin):
    list_display = ("name", "pipe", "auth", "is_active")
    list_filter = ("pipe", "is_active")
    readonly_fields = ("address", "secret")
    fields = (
        "pipe",
        "name",
        "auth",
        "is_active",
        "address",
        "secret",
        "mapping",
        "external_id_path",
        "phase_path",
    )

    @admin.display(description=_("address"))
    def address(self, obj):
        return reverse("webhooks:inbound", kwargs={"key": obj.key}) if obj.pk else "—"


@admin.register(OutboundWebhook)
class OutboundWebhookAdmin(DesignAdmin):
    list_display = ("name", "pipe", "url", "is_active", "failure_count")
    list_filter = ("pipe", "is_active")
    readonly_fields = ("secret", "failure_count", "disabled_at", "disabled_reason")
    fields = (
        "pipe",
        "name",
        "url",
        "events",
        "is_active",
        "secret",
        "failure_count",
        "disabled_at",
        "disabled_reason",
    )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    pipe_path = "webhook__pipe"
    list_display = ("event", "webhook", "status", "attempts", "response_status", "created_at")
    list_filter = ("status", "event")
