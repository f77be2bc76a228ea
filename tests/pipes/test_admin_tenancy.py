"""No organization sees or changes another's process through the Django admin.

Two tenants: Acme (the world's, with an agent, a step, an allowed host and rail settings) and
Zeta, whose every name carries "Zeta". For every model registered in the admin and every
persona who can reach the admin, each list, add and change page is read: no page may show a
Zeta name, and no form may offer a Zeta object. Then every relation field of every admin form
is forged to a Zeta id and posted: nothing of either tenant may change.
"""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.forms import ModelChoiceField, ModelMultipleChoiceField
from django.test import RequestFactory
from django.urls import reverse
from guardian.models import UserObjectPermission

from agents.models import Agent, AllowedHost
from orchestrator.models import InboundWebhook, Mechanism, OutboundWebhook, PipeRailSettings, Step
from pipes.choices import OrgRole, PipeRole
from pipes.design import designable
from pipes.models import Field, Label, Membership, Organization, Phase, Pipe
from pipes.roles import pipe_role_grant
from tests.orchestrator.conftest import make_agent, make_step
from tests.personas import PASSWORD, build_purchase_pipe, make_user

DESIGN_MODELS = (
    Organization,
    Membership,
    Pipe,
    Phase,
    Field,
    Label,
    Agent,
    Step,
    AllowedHost,
    PipeRailSettings,
    InboundWebhook,
    OutboundWebhook,
)


@pytest.fixture
def tenants(world):
    """Acme with one of every design object; Zeta, a tenant of its own, every name saying so."""
    make_step(world.phase("triage"), agent=make_agent(world.pipe), reviewer=world.reviewer)
    AllowedHost.objects.create(organization=world.org, host="erp.acme.example", note="ERP")
    PipeRailSettings.objects.create(pipe=world.pipe, monthly_token_budget=1000)
    InboundWebhook.objects.create(pipe=world.pipe, name="ERP orders", mapping={"$.item": "item"})
    OutboundWebhook.objects.create(pipe=world.pipe, name="ERP", url="https://erp.acme.example/hooks")

    zeta = Organization.objects.create(name="Zeta Corp", slug="zeta", currency="USD")
    zeta_pipe = build_purchase_pipe(zeta, slug="zeta-buys", code="ZB")
    Pipe.objects.filter(pk=zeta_pipe.pk).update(name="Zeta purchases")
    for phase in zeta_pipe.phases.all():
        Phase.objects.filter(pk=phase.pk).update(name=f"Zeta {phase.name}")
    for field in zeta_pipe.fields.all():
        Field.objects.filter(pk=field.pk).update(label=f"Zeta {field.label}")
    zeta_pipe.labels.update(name="Zeta label")
    zeta_owner = make_user("zeta.owner", first_name="Zeta Owner")
    zeta_reviewer = make_user("zeta.reviewer", first_name="Zeta Reviewer")
    Membership.objects.create(organization=zeta, user=zeta_owner, role=OrgRole.OWNER)
    pipe_role_grant(pipe=zeta_pipe, user=zeta_reviewer, role=PipeRole.REVIEWER)
    zeta_agent = make_agent(zeta_pipe, name="Zeta agent")
    make_step(
        zeta_pipe.phases.get(key="triage"),
        name="Zeta step",
        agent=zeta_agent,
        reviewer=zeta_reviewer,
    )
    AllowedHost.objects.create(organization=zeta, host="zeta.example", note="Zeta ERP")
    PipeRailSettings.objects.create(pipe=zeta_pipe, monthly_token_budget=5)
    InboundWebhook.objects.create(pipe=zeta_pipe, name="Zeta orders", mapping={"$.item": "item"})
    OutboundWebhook.objects.create(pipe=zeta_pipe, name="Zeta ERP", url="https://zeta.example/hooks")
    world.owner.is_staff = True
    world.owner.save(update_fields=["is_staff"])
    return world, zeta, zeta_owner


def zeta_objects(model, zeta_owner, world):
    """The objects of `model` that belong to Zeta and not to Acme."""
    User = get_user_model()
    if model is User:
        acme = Membership.objects.filter(organization=world.org).values("user_id")
        zeta = Membership.objects.filter(organization__slug="zeta").values("user_id")
        return User.objects.filter(pk__in=zeta).exclude(pk__in=acme)
    if model in DESIGN_MODELS:
        return designable(model, zeta_owner)
    if model is Permission:
        return Permission.objects.none()
    pipe_path = "pipe" if any(f.name == "pipe" for f in model._meta.fields) else "card__pipe"
    return model.objects.filter(**{f"{pipe_path}__organization__slug": "zeta"})


def snapshot():
    """Every design row of both tenants, with its many-to-many values, and every grant."""
    rows = {}
    for model in DESIGN_MODELS:
        for obj in model.objects.all():
            data = {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}
            for m2m in obj._meta.many_to_many:
                data[m2m.name] = sorted(getattr(obj, m2m.name).values_list("pk", flat=True))
            rows[(model.__name__, obj.pk)] = repr(data)
    grants = sorted(UserObjectPermission.objects.values_list("user_id", "permission_id", "object_pk"))
    return rows, grants


def registered():
    return sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def admin_personas(world):
    return {"pipe admin": world.admin, "org owner": world.owner}


def request_for(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def test_it_registers_only_models_this_test_knows(tenants):
    """A new admin model must be added to this test (its tenancy is then checked below)."""
    known = set(DESIGN_MODELS) | {
        m for m, _ in registered() if m._meta.app_label in ("pipes", "orchestrator")
    }
    for model, _model_admin in registered():
        assert model in known or model._meta.app_label in ("auth", "auditlog", "guardian"), model


@pytest.mark.parametrize("persona", ["pipe admin", "org owner"])
def test_it_never_shows_another_organizations_objects_on_any_admin_page(tenants, client, persona):
    world, zeta, zeta_owner = tenants
    user = admin_personas(world)[persona]
    assert client.login(username=user.username, password=PASSWORD)
    pages = ["/admin/"]
    for model, model_admin in registered():
        info = model._meta.app_label, model._meta.model_name
        pages.append(reverse("admin:{}_{}_changelist".format(*info)))
        pages.append(reverse("admin:{}_{}_add".format(*info)))
        first = model_admin.get_queryset(request_for(user)).first()
        if first is not None:
            pages.append(reverse("admin:{}_{}_change".format(*info), args=[first.pk]))
            if model is Pipe:
                pages.append(reverse("admin:pipes_pipe_roles", args=[first.pk]))
    seen = 0
    for url in pages:
        response = client.get(url)
        assert response.status_code in (200, 302, 403), (url, response.status_code)
        if response.status_code == 200:
            seen += 1
            assert not re.search("zeta", response.content.decode(), re.I), url
    assert seen >= 20  # the pages a designer uses were really read


@pytest.mark.parametrize("persona", ["pipe admin", "org owner"])
def test_it_never_offers_another_organizations_objects_in_any_admin_form(tenants, persona):
    world, zeta, zeta_owner = tenants
    user = admin_personas(world)[persona]
    request = request_for(user)
    checked = 0
    for model, model_admin in registered():
        if not model_admin.has_module_permission(request):
            continue
        obj = model_admin.get_queryset(request).first()
        forms = []
        if model_admin.has_add_permission(request):
            forms.append((model_admin.get_form(request, None)(), None))
        if obj is not None and model_admin.has_change_permission(request, obj):
            forms.append((model_admin.get_form(request, obj)(instance=obj), obj))
            request.resolver_match = type("M", (), {"kwargs": {"object_id": str(obj.pk)}})()
        for inline in model_admin.get_inline_instances(request, obj):
            forms.append((inline.get_formset(request, obj)(instance=obj).empty_form, obj))
        for form, _obj in forms:
            for name, field in form.fields.items():
                if isinstance(field, ModelChoiceField | ModelMultipleChoiceField):
                    checked += 1
                    offered = set(field.queryset.values_list("pk", flat=True))
                    foreign = set(
                        zeta_objects(field.queryset.model, zeta_owner, world).values_list("pk", flat=True)
                    )
                    assert not offered & foreign, (model.__name__, name)
        list_qs = model_admin.get_queryset(request)
        foreign = set(zeta_objects(model, zeta_owner, world).values_list("pk", flat=True))
        assert not set(list_qs.values_list("pk", flat=True)) & foreign, model.__name__
    assert checked >= 10


def _form_data(response) -> dict:
    """The POST data a person would send back unchanged: main form and inline formsets."""
    data = {}

    def add(form):
        for name, bound in form.fields.items():
            value = form[name].value()
            key = form.add_prefix(name)
            if isinstance(bound, ModelMultipleChoiceField):
                data[key] = [str(getattr(v, "pk", v)) for v in value]
            elif isinstance(value, bool):
                if value:
                    data[key] = "on"
            elif value is None:
                data[key] = ""
            else:
                data[key] = str(value)  # BoundField.value() is already what the widget shows

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for name in ("TOTAL_FORMS", "INITIAL_FORMS", "MIN_NUM_FORMS", "MAX_NUM_FORMS"):
            data[f"{formset.prefix}-{name}"] = formset.management_form[name].value()
        for form in formset.initial_forms:
            add(form)
    return data


def _relation_fields(form):
    return [
        (name, field)
        for name, field in form.fields.items()
        if isinstance(field, ModelChoiceField | ModelMultipleChoiceField)
    ]


@pytest.mark.parametrize("persona", ["pipe admin", "org owner"])
def test_it_refuses_every_forged_post_naming_another_organizations_object(tenants, client, persona):
    world, zeta, zeta_owner = tenants
    user = admin_personas(world)[persona]
    assert client.login(username=user.username, password=PASSWORD)
    forged = 0
    for model, model_admin in registered():
        obj = model_admin.get_queryset(request_for(user)).first()
        if obj is None or not model_admin.has_change_permission(request_for(user), obj):
            continue
        info = model._meta.app_label, model._meta.model_name
        url = reverse("admin:{}_{}_change".format(*info), args=[obj.pk])
        page = client.get(url)
        assert page.status_code == 200, url
        honest = _form_data(page)
        for name, field in _relation_fields(page.context["adminform"].form):
            target = zeta_objects(field.queryset.model, zeta_owner, world).first()
            if target is None:
                continue
            data = dict(honest)
            data[name] = [str(target.pk)] if isinstance(field, ModelMultipleChoiceField) else str(target.pk)
            before = snapshot()
            response = client.post(url, data)
            assert snapshot() == before, (model.__name__, name, response.status_code)
            forged += 1
            # The same post to the add page creates nothing either.
            add_url = reverse("admin:{}_{}_add".format(*info))
            for unique in ("key", "slug", "host", "code"):
                if unique in data:
                    data[unique] = "forged"
            client.post(add_url, data)
            assert snapshot() == before, (model.__name__, name, "add")
    assert forged >= 6


def test_it_saves_an_honest_change_so_the_forged_posts_were_refused_for_their_ids(tenants, client):
    world, zeta, zeta_owner = tenants
    assert client.login(username=world.admin.username, password=PASSWORD)
    step = Step.objects.get(phase__pipe=world.pipe)
    url = reverse("admin:orchestrator_step_change", args=[step.pk])
    data = _form_data(client.get(url))
    data["name"] = "Classify it well"
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    step.refresh_from_db()
    assert step.name == "Classify it well"


def test_it_refuses_a_pipe_admin_the_objects_of_another_organization_by_url(tenants, client):
    world, zeta, zeta_owner = tenants
    assert client.login(username=world.admin.username, password=PASSWORD)
    before = snapshot()
    zeta_step = Step.objects.get(name="Zeta step")
    url = reverse("admin:orchestrator_step_change", args=[zeta_step.pk])
    assert client.get(url).status_code in (302, 403, 404)
    client.post(url, {"name": "Mine now", "phase": zeta_step.phase_id, "mechanism": Mechanism.HUMAN})
    client.post(reverse("admin:orchestrator_step_delete", args=[zeta_step.pk]), {"post": "yes"})
    zeta_pipe = Pipe.objects.get(slug="zeta-buys")
    assert client.get(reverse("admin:pipes_pipe_roles", args=[zeta_pipe.pk])).status_code in (302, 403, 404)
    client.post(
        reverse("admin:pipes_pipe_roles", args=[zeta_pipe.pk]), {"user": world.admin.pk, "role": "admin"}
    )
    assert snapshot() == before


@pytest.mark.parametrize("persona", ["pipe admin", "org owner"])
def test_it_refuses_every_forged_inline_row_naming_another_organizations_object(tenants, client, persona):
    """The pipe page's inlines (phases, fields, labels): each relation of each row, its hidden id
    included, forged to a Zeta object, changes nothing of either tenant."""
    world, zeta, zeta_owner = tenants
    user = admin_personas(world)[persona]
    assert client.login(username=user.username, password=PASSWORD)
    forged = 0
    for model, model_admin in registered():
        obj = model_admin.get_queryset(request_for(user)).first()
        if obj is None or not model_admin.has_change_permission(request_for(user), obj):
            continue
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.pk])
        page = client.get(url)
        honest = _form_data(page)
        for inline in page.context["inline_admin_formsets"]:
            for row in inline.formset.initial_forms[:2]:
                for name, field in _relation_fields(row):
                    target = zeta_objects(field.queryset.model, zeta_owner, world).first()
                    if target is None:
                        continue
                    data = dict(honest)
                    key = row.add_prefix(name)
                    data[key] = (
                        [str(target.pk)] if isinstance(field, ModelMultipleChoiceField) else str(target.pk)
                    )
                    before = snapshot()
                    response = client.post(url, data)
                    assert snapshot() == before, (model.__name__, key, response.status_code)
                    forged += 1
    assert forged >= 4
