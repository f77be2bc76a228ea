"""The Django admin as a process designer: a pipe with inline phases, fields and labels.

Every design object is saved and deleted through the design service (pipes.design), which
refuses what the actor may not change and validates the whole pipe with the import checker.
The admin narrows every list, choice and filter to the actor's own pipes and organizations as
a courtesy; the service is what refuses. Cards are read-only here because every card change
must go through pipes.services.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import RelatedOnlyFieldListFilter
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.forms import ModelForm
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from .choices import PipeRole
from .design import DesignError, design_check, design_delete, design_save, design_validate, designable
from .design.services import (
    administered_pipes,
    design_grant,
    design_model,
    design_revoke,
    owned_organizations,
    people_for_designer,
)
from .models import Card, CardEvent, Field, Label, Membership, Organization, Phase, Pipe
from .roles import ALL_PERMS, pipe_access


def _administered(request):
    return designable(Pipe, request.user)


def _narrowed(model, request, queryset=None):
    """The objects of `model` the actor may choose in a design form (their own pipes' and organizations')."""
    allowed = designable(model, request.user)
    return allowed if queryset is None else queryset.filter(pk__in=allowed.values("pk"))


def _relation_filters(model, list_filter):
    """List filters on relations list only related objects of rows the actor sees (never other tenants')."""
    out = []
    for item in list_filter:
        if isinstance(item, str):
            try:
                target = model
                for part in item.split("__"):
                    field = target._meta.get_field(part)
                    target = field.related_model or target
                if field.is_relation:
                    item = (item, RelatedOnlyFieldListFilter)
            except FieldDoesNotExist:
                pass
        out.append(item)
    return out


class DesignFormMixin:
    """A model form that asks the design service, before saving, what it would refuse."""

    design_actor = None
    design_inline_fk = ""

    def _post_clean(self):
        super()._post_clean()
        if self.errors or self.design_actor is None:
            return
        m2m = {
            f.name: self.cleaned_data[f.name]
            for f in self.instance._meta.many_to_many
            if f.name in self.cleaned_data
        }
        inline_fk = self.design_inline_fk
        if inline_fk and getattr(self.instance, f"{inline_fk}_id", None) is None:
            return  # a row of a pipe not created yet: checked when the whole form is saved
        # An inline row is checked alone for who may name what; the pipe as a whole is checked
        # once all rows are saved (rows may depend on each other).
        errors = design_check(actor=self.design_actor, obj=self.instance, m2m=m2m, validate=not inline_fk)
        for key, messages_ in errors.items():
            target = key if key in self.fields else None
            for message in messages_:
                self.add_error(target, message if target or not key else f"{key}: {message}")


class DesignForm(DesignFormMixin, ModelForm):
    pass


def _design_form(form_class, actor, inline_fk: str = ""):
    base = (
        form_class
        if issubclass(form_class, DesignFormMixin)
        else type(form_class.__name__, (DesignFormMixin, form_class), {})
    )
    return type(base.__name__, (base,), {"design_actor": actor, "design_inline_fk": inline_fk})


class DesignChoicesMixin:
    """Every foreign key and many-to-many choice narrowed to the actor's own design objects."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        kwargs["queryset"] = _narrowed(db_field.related_model, request, kwargs.get("queryset"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        kwargs["queryset"] = _narrowed(db_field.related_model, request, kwargs.get("queryset"))
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class DesignInlineMixin(DesignChoicesMixin):
    """An inline whose rows are saved through the design service."""

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.form = _design_form(formset.form, request.user, inline_fk=formset.fk.name)
        return formset


class DesignAdmin(DesignChoicesMixin, admin.ModelAdmin):
    """Design objects of pipes (or organizations) the actor designs, saved through the design service."""

    def get_queryset(self, request):
        return super().get_queryset(request).filter(pk__in=designable(self.model, request.user).values("pk"))

    def get_list_filter(self, request):
        return _relation_filters(self.model, super().get_list_filter(request))

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        if not self.has_module_permission(request):
            return False
        return obj is None or designable(self.model, request.user).filter(pk=obj.pk).exists()

    has_change_permission = has_view_permission
    has_delete_permission = has_view_permission

    def has_add_permission(self, request):
        # Offer "Add" only where the service would accept it: pipe objects to pipe admins,
        # organization objects (allowed hosts, memberships) to owners.
        if not self.has_module_permission(request):
            return False
        if design_model(self.model).pipe_path:
            return administered_pipes(request.user).exists()
        return owned_organizations(request.user).exists()

    def get_form(self, request, obj=None, change=False, **kwargs):
        return _design_form(super().get_form(request, obj, change=change, **kwargs), request.user)

    def save_model(self, request, obj, form, change):
        # Saved with its many-to-many values and inlines in save_related, in one design transaction.
        pass

    def save_related(self, request, form, formsets, change):
        obj = form.instance
        m2m = {
            f.name: form.cleaned_data[f.name] for f in obj._meta.many_to_many if f.name in form.cleaned_data
        }
        design_save(actor=request.user, obj=obj, m2m=m2m, validate=False)
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)
        pipe = design_model(type(obj)).pipe_of(obj)
        if pipe is not None:
            design_validate(actor=request.user, pipe=pipe)

    def save_formset(self, request, form, formset, change):
        for inline_form in formset.forms:
            if inline_form in formset.deleted_forms:
                if inline_form.instance.pk is not None:
                    design_delete(actor=request.user, obj=inline_form.instance, validate=False)
                continue
            if not inline_form.has_changed() and inline_form.instance.pk is None:
                continue
            obj = inline_form.instance
            setattr(obj, formset.fk.name, formset.instance)
            m2m = {
                f.name: inline_form.cleaned_data[f.name]
                for f in obj._meta.many_to_many
                if f.name in inline_form.cleaned_data
            }
            if inline_form.has_changed() or obj.pk is None:
                design_save(actor=request.user, obj=obj, m2m=m2m, validate=False)

    def delete_model(self, request, obj):
        design_delete(actor=request.user, obj=obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            design_delete(actor=request.user, obj=obj)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DesignError as exc:  # the transaction is rolled back: nothing was saved
            if isinstance(exc, PermissionDenied):
                raise
            for message in exc.messages:
                messages.error(request, message)
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except DesignError as exc:
            if isinstance(exc, PermissionDenied):
                raise
            for message in exc.messages:
                messages.error(request, message)
            return HttpResponseRedirect(request.get_full_path())


class FieldForm(DesignForm):
    class Meta:
        model = Field
        fields = "__all__"  # noqa: DJ007 - the inline chooses the fields it shows


class PhaseInline(DesignInlineMixin, admin.TabularInline):
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


class FieldInline(DesignInlineMixin, admin.StackedInline):
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


class LabelInline(DesignInlineMixin, admin.TabularInline):
    model = Label
    extra = 0


@admin.register(Pipe)
class PipeAdmin(DesignAdmin):
    list_display = ("name", "organization", "code", "public_form")
    list_filter = ("organization",)
    search_fields = ("name", "code")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [PhaseInline, FieldInline, LabelInline]
    change_form_template = "admin/pipes/pipe/change_form.html"

    def has_add_permission(self, request):
        return request.user.is_superuser or request.user.memberships.filter(role="owner").exists()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization" and not request.user.is_superuser:
            # A pipe is created in an organization the actor owns; an existing one never moves.
            kwargs["queryset"] = Organization.objects.filter(
                memberships__user=request.user, memberships__role="owner"
            )
            object_id = request.resolver_match.kwargs.get("object_id")
            if object_id:
                kwargs["queryset"] = Organization.objects.filter(pipes__pk=object_id)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_urls(self):
        roles = self.admin_site.admin_view(self.roles_view)
        return [path("<path:object_id>/roles/", roles, name="pipes_pipe_roles"), *super().get_urls()]

    def roles_view(self, request, object_id):
        """Who holds which role on the pipe; grants and removals go through the design service."""
        pipe = self.get_queryset(request).filter(pk=object_id).first()
        if pipe is None or not pipe_access(user=request.user, pipe=pipe).can_administer:
            raise PermissionDenied
        people = people_for_designer(request.user).filter(memberships__organization=pipe.organization)
        if request.method == "POST":
            person = people.filter(pk=request.POST.get("user") or 0).first()
            role = request.POST.get("role", "")
            try:
                if person is None:
                    raise DesignError({"user": [_("Choose a person of this organization.")]})
                if role == "":
                    design_revoke(actor=request.user, pipe=pipe, user=person)
                else:
                    design_grant(actor=request.user, pipe=pipe, user=person, role=role)
            except DesignError as exc:
                for message in exc.messages:
                    messages.error(request, message)
            else:
                messages.success(request, _("Roles saved."))
            return HttpResponseRedirect(reverse("admin:pipes_pipe_roles", args=[pipe.pk]))
        rows = [(person, pipe_access(user=person, pipe=pipe)) for person in people.order_by("username")]
        context = {
            **self.admin_site.each_context(request),
            "title": _("Roles on %(pipe)s") % {"pipe": pipe.name},
            "opts": self.model._meta,
            "original": pipe,
            "rows": [(p, a.role or "", a.is_owner) for p, a in rows],
            "roles": PipeRole.choices,
            "all_perms": ALL_PERMS,
        }
        return TemplateResponse(request, "admin/pipes/pipe/roles.html", context)


@admin.register(Phase)
class PhaseAdmin(DesignAdmin):
    list_display = ("name", "pipe", "position", "is_final", "sla_hours")
    list_filter = ("pipe",)
    filter_horizontal = ("allowed_next",)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "allowed_next":
            object_id = request.resolver_match.kwargs.get("object_id")
            phase = Phase.objects.filter(pk=object_id).first() if object_id else None
            kwargs["queryset"] = (
                Phase.objects.filter(pipe_id=phase.pipe_id) if phase else Phase.objects.none()
            )
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(Field)
class FieldAdmin(DesignAdmin):
    form = FieldForm
    list_display = ("label", "key", "type", "pipe", "phase", "required", "pii")
    list_filter = ("pipe", "type", "required", "pii")


@admin.register(Label)
class LabelAdmin(DesignAdmin):
    list_display = ("name", "pipe", "color")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records of a pipe the actor administers, shown read-only: cards change only through the services."""

    pipe_path = "pipe"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(**{f"{self.pipe_path}__in": _administered(request)})

    def get_list_filter(self, request):
        return _relation_filters(self.model, super().get_list_filter(request))

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        if not self.has_module_permission(request):
            return False
        return obj is None or self.get_queryset(request).filter(pk=obj.pk).exists()

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
class OrganizationAdmin(DesignAdmin):
    list_display = ("name", "slug", "time_zone", "currency")

    def get_queryset(self, request):
        qs = super(DesignAdmin, self).get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(memberships__user=request.user, memberships__role="owner")

    def has_view_permission(self, request, obj=None):
        if not self.has_module_permission(request):
            return False
        return obj is None or self.get_queryset(request).filter(pk=obj.pk).exists()

    has_change_permission = has_view_permission
    has_delete_permission = has_view_permission

    def has_add_permission(self, request):
        return request.user.is_superuser


@admin.register(Membership)
class MembershipAdmin(DesignAdmin):
    list_display = ("user", "organization", "role")
    list_filter = ("role",)

    def get_queryset(self, request):
        qs = super(DesignAdmin, self).get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(
            organization__memberships__user=request.user, organization__memberships__role="owner"
        )

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization":
            kwargs["queryset"] = Organization.objects.filter(
                pk__in=self.get_queryset(request).values("organization_id")
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_view_permission(self, request, obj=None):
        if not self.has_module_permission(request):
            return False
        return obj is None or self.get_queryset(request).filter(pk=obj.pk).exists()

    has_change_permission = has_view_permission
    has_delete_permission = has_view_permission
