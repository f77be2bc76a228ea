"""The rail in the admin: steps are designed here; runs and reviews are read-only records."""

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms import ModelForm
from django.utils.translation import gettext_lazy as _

from agents.actions import action_validate
from pipes.admin import PipeScopedAdmin, ReadOnlyAdmin
from pipes.conditions import ConditionError, validate_condition

from .models import Mechanism, PipeRailSettings, ReviewTask, Step, StepRun


class StepForm(ModelForm):
    class Meta:
        model = Step
        fields = "__all__"  # noqa: DJ007 - the admin lays the fields out

    def clean(self):
        data = super().clean()
        phase = data.get("phase")
        if phase is None:
            return data
        pipe = phase.pipe
        keys = set(pipe.fields.values_list("key", flat=True))
        phases = set(pipe.phases.values_list("key", flat=True))
        errors: dict[str, list[str]] = {}
        if data.get("condition"):
            try:
                validate_condition(data["condition"], keys)
            except ConditionError as exc:
                errors.setdefault("condition", []).append(str(exc))
        for i, rule in enumerate(data.get("rules") or []):
            try:
                validate_condition((rule or {}).get("when"), keys, f"rules[{i}].when")
            except ConditionError as exc:
                errors.setdefault("rules", []).append(str(exc))
        for i, action in enumerate(data.get("actions") or []):
            errors.setdefault("actions", []).extend(
                action_validate(action, f"actions[{i}]", field_keys=keys, phase_keys=phases)
            )
        for name in ("on_approve", "on_reject", "on_done"):
            if data.get(name) and data[name] not in phases:
                errors.setdefault(name, []).append(_("Unknown phase."))
        agent = data.get("agent")
        if agent is not None and agent.pipe_id != pipe.pk:
            errors.setdefault("agent", []).append(_("Choose an agent of this pipe."))
        if data.get("mechanism") in (Mechanism.LOCAL_MODEL, Mechanism.FOUNDATION_MODEL) and agent is None:
            errors.setdefault("agent", []).append(_("This mechanism needs an agent."))
        if data.get("mechanism") == Mechanism.AUTOMATION and not data.get("actions"):
            errors.setdefault("actions", []).append(_("An automation step needs actions."))
        errors = {k: v for k, v in errors.items() if v}
        if errors:
            raise ValidationError(errors)
        return data


@admin.register(Step)
class StepAdmin(PipeScopedAdmin):
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
class PipeRailSettingsAdmin(PipeScopedAdmin):
    list_display = ("pipe", "monthly_token_budget")


@admin.register(StepRun)
class StepRunAdmin(ReadOnlyAdmin):
    list_display = ("step_name", "card", "mechanism", "status", "attempts", "cost", "created_at")
    list_filter = ("status", "mechanism")


@admin.register(ReviewTask)
class ReviewTaskAdmin(ReadOnlyAdmin):
    list_display = ("question", "card", "status", "decision", "decided_by", "created_at")
    list_filter = ("status",)
