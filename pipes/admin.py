"""The Django admin as a process designer: a pipe with inline phases, fields and labels.

Pipe admins see and change only the pipes they administer; cards are read-only here
because every card change must go through pipes.services.
"""

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms import ModelForm
from django.utils.translation import gettext_lazy as _
from guardian.admin import GuardedModelAdmin

from .conditions import ConditionError, validate_condition
from .fieldtypes import TYPES_WITH_OPTIONS
from .models import Card, CardEvent, Field, Label, Membership, Organization, Phase, Pipe
from .roles import pipe_access, pipes_for_user


def _administered(request):
    return pipes_for_user(request.user, ("administer_pipe",))


class PipeScopedAdmin(admin.ModelAdmin):
    """Design objects of pipes the user administers."""

    pipe_path = "pipe"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(**{f"{self.pipe_path}__in": _administered(request)})

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    has_change_permission = has_view_permission
    has_add_permission = has_view_permission
    has_delete_permission = has_view_permission

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "pipe":
            kwargs["queryset"] = _administered(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class FieldForm(ModelForm):
    class Meta:
        model = Field
        fields = "__all__"  # noqa: DJ007 - the inline chooses the fields it shows

    def clean(self):
        data = super().clean()
        if data.get("type") in TYPES_WITH_OPTIONS and not data.get("options"):
            raise ValidationError({"options": _("This type needs a list of options.")})
        if data.get("condition"):
            try:
                validate_condition(data["condition"])
            except ConditionError as exc:
                raise ValidationError({"condition": str(exc)}) from None
        return data


class PhaseInline(admin.TabularInline):
    model = Phase
    extra = 0
    fields = (
        "position",
        "name",
        "key",
        "is_final",
        "sla_hours",
        "wip_limit",
        "wip_blocks",
        "requester_status",
    )
    ordering = ("position",)


class FieldInline(admin.StackedInline):
    model = Field
    form = FieldForm
    extra = 0
    fields = (
        ("key", "label", "type"),
        ("phase", "position", "required", "pii"),
        "help_text",
        ("options", "validation"),
        ("config", "condition"),
        ("visible_to_requester", "requester_editable"),
    )
    ordering = ("phase__position", "position")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "phase":
            pipe_id = request.resolver_match.kwargs.get("object_id")
            kwargs["queryset"] = Phase.objects.filter(pipe_id=pipe_id) if pipe_id else Phase.objects.none()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class LabelInline(admin.TabularInline):
    model = Label
    extra = 0


@admin.register(Pipe)
class PipeAdmin(GuardedModelAdmin):
    list_display = ("name", "organization", "code", "public_form")
    list_filter = ("organization",)
    search_fields = ("name", "code")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [PhaseInline, FieldInline, LabelInline]
    # Object permissions are granted as pipe roles (pipes.roles), not edited row by row here.
    user_can_access_owned_objects_only = False

    def get_queryset(self, request):
        return super().get_queryset(request).filter(pk__in=_administered(request))

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        if obj is None:
            return self.has_module_permission(request)
        return pipe_access(user=request.user, pipe=obj).can_administer

    has_change_permission = has_view_permission
    has_delete_permission = has_view_permission

    def has_add_permission(self, request):
        return request.user.is_superuser or request.user.memberships.filter(role="owner").exists()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization" and not request.user.is_superuser:
            kwargs["queryset"] = Organization.objects.filter(
                memberships__user=request.user, memberships__role="owner"
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(Phase)
class PhaseAdmin(PipeScopedAdmin):
    list_display = ("name", "pipe", "position", "is_final", "sla_hours")
    list_filter = ("pipe",)
    filter_horizontal = ("allowed_next",)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "allowed_next":
            object_id = request.resolver_match.kwargs.get("object_id")
            phase = Phase.objects.filter(pk=object_id).first()
            kwargs["queryset"] = (
                Phase.objects.filter(pipe_id=phase.pipe_id) if phase else Phase.objects.none()
            )
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(Field)
class FieldAdmin(PipeScopedAdmin):
    form = FieldForm
    list_display = ("label", "key", "type", "pipe", "phase", "required", "pii")
    list_filter = ("pipe", "type", "required", "pii")


@admin.register(Label)
class LabelAdmin(PipeScopedAdmin):
    list_display = ("name", "pipe", "color")


class ReadOnlyAdmin(PipeScopedAdmin):
    """Cards change only through the services; the admin shows them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Card)
class CardAdmin(ReadOnlyAdmin):
    list_display = ("title", "pipe", "phase", "created_at", "finished_at")
    list_filter = ("pipe", "phase")
    search_fields = ("title",)


@admin.register(CardEvent)
class CardEventAdmin(ReadOnlyAdmin):
    pipe_path = "card__pipe"
    list_display = ("card", "seq", "kind", "actor_kind", "actor_label", "created_at")
    list_filter = ("kind", "actor_kind")


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "time_zone", "currency")

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return (
            qs
            if request.user.is_superuser
            else qs.filter(memberships__user=request.user, memberships__role="owner")
        )


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "organization", "role")

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(
            organization__memberships__user=request.user, organization__memberships__role="owner"
        )
