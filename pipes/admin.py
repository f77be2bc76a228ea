"""The Django admin as a process designer: a pipe with inline phases, fields and labels.

Every design object is saved and deleted through the design service (pipes.design), which
refuses what the actor may not change and validates the whole pipe with the import checker.
The admin narrows every list, choice and filter to the actor's own pipes and organizations as
a courtesy; the service is what refuses. Cards are read-only here because every card change
must go through pipes.services.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import RelatedOnlyFieldListFilter
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.db import transaction
from django.forms import ModelForm
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .choices import PipeRole
from .design import DesignError, design_check, design_delete, design_save, design_validate, designable
from .design.people import design_grant, design_revoke
from .design.services import (
    administered_pipes,
    design_archive,
    design_impact,
    design_model,
    design_restore,
    designable_organizations,
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
    design_whole_pipe = True  # False when the page's inlines come too: _PipeCheck checks the pipe then

    def _post_clean(self):
        super()._post_clean()
        if not self.design_inline_fk:
            self.instance._design_form = self  # the page's whole-pipe check (_PipeCheck) finds its form
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
        validate = self.design_whole_pipe and not inline_fk
        errors = design_check(actor=self.design_actor, obj=self.instance, m2m=m2m, validate=validate)
        for key, messages_ in errors.items():
            target = key if key in self.fields else None
            for message in messages_:
                self.add_error(target, message if target or not key else f"{key}: {message}")


class DesignForm(DesignFormMixin, ModelForm):
    pass


def _design_form(form_class, actor, inline_fk: str = "", whole_pipe: bool = True):
    base = (
        form_class
        if issubclass(form_class, DesignFormMixin)
        else type(form_class.__name__, (DesignFormMixin, form_class), {})
    )
    attrs = {"design_actor": actor, "design_inline_fk": inline_fk, "design_whole_pipe": whole_pipe}
    return type(base.__name__, (base,), attrs)


class DesignChoicesMixin:
    """Every foreign key and many-to-many choice narrowed to the actor's own design objects."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        kwargs["queryset"] = _narrowed(db_field.related_model, request, kwargs.get("queryset"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        kwargs["queryset"] = _narrowed(db_field.related_model, request, kwargs.get("queryset"))
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class _OwnRowsFormSet:
    """An inline formset whose rows' hidden ids name only the parent's own rows (Django offers every
    row of the model there: a forged id of another pipe's row is refused as an invalid choice)."""

    def add_fields(self, form, index):
        super().add_fields(form, index)
        pk_name = self.model._meta.pk.name
        if pk_name in form.fields and hasattr(form.fields[pk_name], "queryset"):
            form.fields[pk_name].queryset = self.get_queryset()


class DesignInlineMixin(DesignChoicesMixin):
    """An inline whose rows are saved through the design service.

    Shown to whoever designs the parent object (a pipe admin holds no model-wide permission on
    phases or fields: the rows are theirs because the pipe is); the service checks every row."""

    def _designs(self, request, obj) -> bool:
        if not (request.user.is_active and request.user.is_staff):
            return False
        if obj is None or obj.pk is None:
            return self.parent_model is not Pipe or designable_organizations(request.user).exists()
        return designable(self.parent_model, request.user).filter(pk=obj.pk).exists()

    def has_view_permission(self, request, obj=None):
        return self._designs(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._designs(request, obj)

    def has_add_permission(self, request, obj=None):
        return self._designs(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._designs(request, obj)

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.form = _design_form(formset.form, request.user, inline_fk=formset.fk.name)
        return type(formset.__name__, (_OwnRowsFormSet, formset), {})


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
        form = super().get_form(request, obj, change=change, **kwargs)
        return _design_form(form, request.user, whole_pipe=not self.inlines)

    def _create_formsets(self, request, obj, change):
        formsets, inline_instances = super()._create_formsets(request, obj, change)
        if request.method == "POST" and formsets:
            formsets.append(_PipeCheck(self, request, obj, list(formsets)))
        return formsets, inline_instances

    def save_model(self, request, obj, form, change):
        # Saved with its many-to-many values and inlines in save_related, in one design transaction.
        pass

    def save_related(self, request, form, formsets, change):
        self.design_save_all(request, form, [f for f in formsets if not isinstance(f, _PipeCheck)])

    def design_save_all(self, request, form, formsets) -> None:
        """The object, then its inline rows, through the design service; then the whole pipe, once."""
        obj = form.instance
        m2m = {
            f.name: form.cleaned_data[f.name] for f in obj._meta.many_to_many if f.name in form.cleaned_data
        }
        design_save(actor=request.user, obj=obj, m2m=m2m, validate=False)
        for formset in formsets:
            self.save_formset(request, form, formset, change=True)
        pipe = design_model(type(obj)).pipe_of(obj)
        if pipe is not None:
            design_validate(actor=request.user, pipe=pipe)

    def save_formset(self, request, form, formset, change):
        confirm = CONFIRM_IMPACT in request.POST
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline_form in formset.forms:
            if inline_form in formset.deleted_forms:
                if inline_form.instance.pk is not None:
                    design_delete(
                        actor=request.user, obj=inline_form.instance, validate=False, confirm=confirm
                    )
                    formset.deleted_objects.append(inline_form.instance)
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
                new = obj.pk is None
                design_save(actor=request.user, obj=obj, m2m=m2m, validate=False)
                if new:
                    formset.new_objects.append(obj)
                else:
                    formset.changed_objects.append((obj, inline_form.changed_data))

    # Django's delete page is the confirmation the service asks for on a live process; it says how
    # many cards the deletion touches before the person confirms (delete_view below).
    def delete_model(self, request, obj):
        design_delete(actor=request.user, obj=obj, confirm=True)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            design_delete(actor=request.user, obj=obj, confirm=True)

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
        if request.method == "GET":
            obj = self.get_queryset(request).filter(pk=object_id).first()
            impact = design_impact(obj) if obj is not None else None
            if impact:
                messages.warning(request, impact.message)
        try:
            return super().delete_view(request, object_id, extra_context)
        except DesignError as exc:
            if isinstance(exc, PermissionDenied):
                raise
            for message in exc.messages:
                messages.error(request, message)
            info = self.model._meta.app_label, self.model._meta.model_name
            return HttpResponseRedirect(reverse("admin:{}_{}_change".format(*info), args=[object_id]))


CONFIRM_IMPACT = "_confirm_impact"


class _Rollback(Exception):
    pass


class _PipeCheck:
    """The last of a design page's formsets, and not a formset: when Django asks each formset whether
    it is valid, this one saves the object and every inline row through the design service in a
    savepoint, checks the whole pipe, rolls it all back and puts each refusal beside the row and field
    it names (the checker's messages on options, validation, conditions...). The page then comes back
    with the person's input and the reasons, instead of failing after the fact."""

    new_objects: list = []
    changed_objects: list = []
    deleted_objects: list = []
    errors: list = []

    def __init__(self, model_admin: DesignAdmin, request, obj, formsets: list):
        self.model_admin, self.request, self.obj, self.formsets = model_admin, request, obj, formsets

    def non_form_errors(self) -> list:
        return []

    def is_valid(self) -> bool:
        form = getattr(self.obj, "_design_form", None)
        rows_valid = [fs.is_valid() for fs in self.formsets]  # every formset validated, as all_valid does
        if form is None or not form.is_valid() or not all(rows_valid):
            return True  # their own errors come first; the pipe is checked once they are fixed
        confirm = CONFIRM_IMPACT in self.request.POST
        if not _check_deletions(form, self.formsets, confirm):
            return False
        remembered = _remember(form, self.formsets)
        try:
            with transaction.atomic():
                try:
                    self.model_admin.design_save_all(self.request, form, self.formsets)
                finally:
                    _restore(remembered)
                raise _Rollback
        except _Rollback:
            return True
        except DesignError as exc:
            if isinstance(exc, PermissionDenied):
                raise
            _place(exc, form, self.formsets)
            return False


def _remember(form, formsets) -> list[tuple]:
    objects = [form.instance] + [f.instance for fs in formsets for f in fs.forms]
    return [(obj, obj.pk, obj._state.adding, obj._state.db) for obj in objects]


def _restore(remembered: list[tuple]) -> None:
    """Objects as they were before the dry run (a row it created or deleted has its primary key back)."""
    for obj, pk, adding, db in remembered:
        obj.pk, obj._state.adding, obj._state.db = pk, adding, db


def _check_deletions(form, formsets, confirm: bool) -> bool:
    """Rows deleted on a live process: a phase with cards in it is refused; one that holds data is
    deleted only once the person ticks the confirmation the page then shows."""
    ok = True
    for formset in formsets:
        for row in formset.deleted_forms:
            if row.instance.pk is None:
                continue
            impact = design_impact(row.instance)
            if getattr(impact, "in_phase", 0):
                row.add_error(
                    None,
                    ngettext(
                        "%(n)d card is in this phase: move it to another phase first.",
                        "%(n)d cards are in this phase: move them to another phase first.",
                        impact.in_phase,
                    )
                    % {"n": impact.in_phase},
                )
                ok = False
            elif impact and not confirm:
                row.add_error(
                    None,
                    f"{impact.message} {gettext('Tick “Delete even though cards hold data” and save again.')}",
                )
                form.design_needs_confirm = True
                ok = False
    if not ok:
        form.add_error(None, gettext("Some rows can't be deleted as they are: see below."))
    return ok


def _row_key(obj) -> tuple:
    return type(obj), obj.name if isinstance(obj, Label) else str(getattr(obj, "key", ""))


def _place(exc: DesignError, form, formsets) -> None:
    """Each message beside the row and field it is about; the rest at the top of the page."""
    rows = {_row_key(f.instance): f for fs in formsets for f in fs.forms if f not in fs.deleted_forms}
    rows[(type(form.instance), "" if isinstance(form.instance, Pipe) else _row_key(form.instance)[1])] = form
    for key, messages_ in exc.errors.items():
        if exc.located and key == "":
            continue  # the checker's messages, placed below
        for message in messages_:
            form.add_error(
                key if key in form.fields else None,
                message if key in form.fields or not key else f"{key}: {message}",
            )
    for loc in exc.located:
        target = rows.get((loc.model, loc.key))
        if target is None:
            form.add_error(None, loc.message)
        elif loc.attr in target.fields:
            target.add_error(loc.attr, loc.text)
        else:
            target.add_error(None, loc.message if target is form else loc.text)
    if form.is_valid():  # every message went to a row: say so at the top, too
        form.add_error(None, gettext("The process can't be saved as it is: see the rows below."))


class LinesField(forms.CharField):
    """A list of short texts edited one per line (a field's options, a pipe's key fields), not as JSON."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 40})

    def prepare_value(self, value):
        if isinstance(value, list | tuple):
            return "\n".join(str(v) for v in value)
        return value

    def to_python(self, value):
        text = super().to_python(value) or ""
        return [line.strip() for line in str(text).splitlines() if line.strip()]


class OptionalJSONField(forms.JSONField):
    """A JSON box that shows nothing, rather than `null`, when there is no value (a field's condition)."""

    def prepare_value(self, value):
        return "" if value is None else super().prepare_value(value)


def _json_widget():
    return forms.Textarea(attrs={"rows": 2, "cols": 48, "class": "vLargeTextField", "spellcheck": "false"})


class FieldForm(DesignForm):
    options = LinesField(
        label=_("Options"),
        required=False,
        help_text=_("One choice per line (select, multiple select and checklist fields)."),
    )

    class Meta:
        model = Field
        fields = "__all__"  # noqa: DJ007 - the inline chooses the fields it shows
        widgets = {"validation": _json_widget(), "config": _json_widget(), "condition": _json_widget()}
        field_classes = {"condition": OptionalJSONField}


class PhaseForm(DesignForm):
    class Meta:
        model = Phase
        fields = "__all__"  # noqa: DJ007 - the inline chooses the fields it shows
        widgets = {
            "position": forms.NumberInput(attrs={"style": "width: 4em"}),
            "name": forms.TextInput(attrs={"size": 22}),
            "key": forms.TextInput(attrs={"size": 14}),
            "sla_hours": forms.NumberInput(attrs={"style": "width: 5em"}),
            "wip_limit": forms.NumberInput(attrs={"style": "width: 5em"}),
            "requester_status": forms.TextInput(attrs={"size": 16}),
        }


class PipeForm(DesignForm):
    key_fields = LinesField(
        label=_("Key fields"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 30}),
        help_text=_("Keys of up to three fields shown on board cards, one per line."),
    )

    class Meta:
        model = Pipe
        fields = "__all__"  # noqa: DJ007 - the admin chooses the fields it shows


class PhaseInline(DesignInlineMixin, admin.TabularInline):
    model = Phase
    form = PhaseForm
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
            kwargs["empty_label"] = _("Start form (no phase)")
            kwargs["label"] = _("Phase")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class LabelInline(DesignInlineMixin, admin.TabularInline):
    model = Label
    extra = 0


class ArchivedFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "archived"

    def lookups(self, request, model_admin):
        return [("no", _("In use")), ("yes", _("Archived"))]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(archived_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(archived_at__isnull=False)
        return queryset


@admin.register(Pipe)
class PipeAdmin(DesignAdmin):
    form = PipeForm
    list_display = ("name", "organization", "code", "public_form", "in_use")
    list_filter = ("organization", ArchivedFilter)
    search_fields = ("name", "code")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at", "archived_at")
    inlines = [PhaseInline, FieldInline, LabelInline]
    change_form_template = "admin/pipes/pipe/change_form.html"
    actions = ["archive_pipes", "restore_pipes"]

    @admin.display(boolean=True, description=_("in use"))
    def in_use(self, pipe):
        return pipe.archived_at is None

    def has_add_permission(self, request):
        # Owners and the admins of one of an organization's pipes create pipes in it (the service decides).
        return self.has_module_permission(request) and designable_organizations(request.user).exists()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization" and not request.user.is_superuser:
            # A pipe is created in an organization the actor designs in; an existing one never moves.
            kwargs["queryset"] = designable_organizations(request.user)
            object_id = request.resolver_match.kwargs.get("object_id")
            if object_id:
                kwargs["queryset"] = Organization.objects.filter(pipes__pk=object_id)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        organizations = list(designable_organizations(request.user)[:2])
        if len(organizations) == 1:
            initial.setdefault("organization", organizations[0].pk)
        return initial

    @admin.action(description=_("Archive the selected pipes (their cards and timelines stay)"))
    def archive_pipes(self, request, queryset):
        self._each(request, queryset, design_archive, _("Archived: %(pipes)s."))

    @admin.action(description=_("Restore the selected pipes"))
    def restore_pipes(self, request, queryset):
        self._each(request, queryset, design_restore, _("Restored: %(pipes)s."))

    def _each(self, request, queryset, service, done):
        names = []
        for pipe in queryset:
            try:
                service(actor=request.user, pipe=pipe)
            except DesignError as exc:
                for message in exc.messages:
                    messages.error(request, message)
            else:
                names.append(pipe.name)
        if names:
            messages.success(request, done % {"pipes": ", ".join(names)})

    def delete_view(self, request, object_id, extra_context=None):
        pipe = self.get_queryset(request).filter(pk=object_id).first()
        impact = design_impact(pipe) if pipe is not None else None
        if impact:
            # A pipe with cards is archived, not deleted: say so where the person can archive it.
            messages.warning(
                request,
                ngettext(
                    "“%(pipe)s” has %(n)d card, so it can't be deleted: archive it instead, which keeps "
                    "the card and its timeline.",
                    "“%(pipe)s” has %(n)d cards, so it can't be deleted: archive it instead, which keeps "
                    "the cards and their timelines.",
                    impact.cards,
                )
                % {"pipe": pipe.name, "n": impact.cards},
            )
            return HttpResponseRedirect(reverse("admin:pipes_pipe_change", args=[pipe.pk]))
        return super().delete_view(request, object_id, extra_context)

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
    readonly_fields = ("created_at",)

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

    def has_module_permission(self, request):
        # Owners only: a pipe admin has nothing to change here (and no pencil beside a pipe's organization).
        return super().has_module_permission(request) and owned_organizations(request.user).exists()


@admin.register(Membership)
class MembershipAdmin(DesignAdmin):
    list_display = ("user", "organization", "role")
    list_filter = ("role",)

    def has_module_permission(self, request):
        return super().has_module_permission(request) and owned_organizations(request.user).exists()

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
