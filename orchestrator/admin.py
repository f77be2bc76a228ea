"""The rail in the admin: steps are designed here; runs and reviews are read-only records."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from pipes.admin import DesignAdmin, DesignForm, ReadOnlyAdmin

from .models import PipeRailSettings, ReviewTask, Step, StepRun


class StepForm(DesignForm):
    class Meta:
        model = Step
        fields = "__all__"  # noqa: DJ007 - the admin lays the fields out


@admin.register(Step)
class StepAdmin(DesignAdmin):
    form = StepForm
    pipe_path = "phase__pipe"
    list_display = ("name", "phase", "position", "trigger", "mechanism", "risk", "agent")
    list_filter = ("trigger", "mechanism", "risk", "phase__pipe")
    fieldsets = (
        (None, {"fields": ("phase", "position", "key", "name", "trigger", "mechanism", "risk")}),
        (_("What runs it"), {"fields": ("agent", "actions", "rules", "condition")}),
        (_("People"), {"fields": ("question", "reviewer", "four_eyes")}),
        (_("Afterwards"), {"fields": ("on_approve", "on_reject", "on_done", "max_attempts")}),
    )


@admin.register(PipeRailSettings)
class PipeRailSettingsAdmin(DesignAdmin):
    list_display = ("pipe", "monthly_token_budget")


@admin.register(StepRun)
class StepRunAdmin(ReadOnlyAdmin):
    list_display = ("step_name", "card", "mechanism", "status", "attempts", "cost", "created_at")
    list_filter = ("status", "mechanism")


@admin.register(ReviewTask)
class ReviewTaskAdmin(ReadOnlyAdmin):
    list_display = ("question", "card", "status", "decision", "decided_by", "created_at")
    list_filter = ("status",)


from .webhooks import admin as _webhooks_admin  # noqa: E402, F401 - the webhooks' admin registers itself
