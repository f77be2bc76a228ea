"""The design service: one gate for every change to a process, whoever makes it."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.urls import reverse

from agents.models import AllowedHost
from orchestrator.models import Mechanism, Step
from pipes.choices import FieldType, OrgRole, PipeRole
from pipes.design import (
    SYSTEM,
    DesignError,
    DesignPermissionError,
    design_delete,
    design_grant,
    design_import,
    design_save,
    pipe_export,
)
from pipes.models import Field, Membership, Phase, Pipe
from pipes.roles import pipe_access
from tests.orchestrator.conftest import make_agent
from tests.personas import PASSWORD, build_purchase_pipe, make_user


@pytest.fixture
def other_pipe(world):
    """A pipe of another organization, owned by the world's outsider."""
    return build_purchase_pipe(world.outsider.memberships.get().organization, slug="theirs", code="TH")


def test_it_refuses_a_step_on_another_organizations_phase(world, other_pipe):
    step = Step(
        phase=other_pipe.phases.get(key="triage"),
        key="leak",
        name="Mail their data",
        mechanism=Mechanism.AUTOMATION,
        actions=[{"type": "send_email", "to": "thief@example.com", "subject": "x", "body": "{item}"}],
    )
    with pytest.raises(DesignPermissionError):
        design_save(actor=world.admin, obj=step)
    assert not Step.objects.filter(key="leak").exists()


def test_it_refuses_a_field_of_this_pipe_placed_on_another_pipes_phase(world, other_pipe):
    field = Field(
        pipe=world.pipe, phase=other_pipe.phases.get(key="triage"), key="stolen", label="S", type="short_text"
    )
    with pytest.raises(DesignError) as refused:
        design_save(actor=world.admin, obj=field)
    assert "phase" in refused.value.errors
    assert not Field.objects.filter(key="stolen").exists()


def test_it_refuses_a_step_whose_agent_belongs_to_another_pipe(world, other_pipe):
    theirs = make_agent(other_pipe, key="theirs")
    step = Step(phase=world.phase("triage"), key="x", name="X", mechanism=Mechanism.LOCAL_MODEL, agent=theirs)
    with pytest.raises(DesignError) as refused:
        design_save(actor=world.admin, obj=step)
    assert "agent" in refused.value.errors


def test_it_refuses_a_reviewer_who_cannot_review_the_pipe(world):
    step = Step(
        phase=world.phase("triage"), key="r", name="R", mechanism=Mechanism.HUMAN, reviewer=world.outsider
    )
    with pytest.raises(DesignError) as refused:
        design_save(actor=world.admin, obj=step)
    assert "reviewer" in refused.value.errors
    step.reviewer = world.reviewer
    design_save(actor=world.admin, obj=step)
    assert Step.objects.get(key="r").reviewer == world.reviewer


def test_it_refuses_what_the_importer_refuses_and_keeps_the_pipe_exportable(world):
    field = Field(pipe=world.pipe, key="color", label="Color", type=FieldType.SHORT_TEXT, options=["red"])
    with pytest.raises(DesignError) as refused:
        design_save(actor=world.admin, obj=field)
    assert any("options" in m for m in refused.value.messages)
    conditional = Field(
        pipe=world.pipe,
        key="why",
        label="Why",
        type=FieldType.SHORT_TEXT,
        condition={"field": "nowhere", "op": "eq", "value": 1},
    )
    with pytest.raises(DesignError) as refused:
        design_save(actor=world.admin, obj=conditional)
    assert any("nowhere" in m for m in refused.value.messages)
    assert not Field.objects.filter(key__in=["color", "why"]).exists()
    pipe_export(world.pipe)  # what is stored still exports


def test_it_refuses_deleting_a_field_a_condition_still_needs(world):
    needed = Field.objects.filter(pipe=world.pipe, key="amount").first()
    assert needed is not None
    pk = needed.pk
    with pytest.raises(DesignError):
        design_delete(actor=world.admin, obj=needed)
    assert Field.objects.filter(pk=pk).exists()


def test_it_refuses_people_who_do_not_administer_the_pipe(world):
    phase = world.phase("triage")
    for person in (world.member, world.reviewer, world.requester, world.viewer, world.outsider):
        phase.name = f"Renamed by {person.username}"
        with pytest.raises(DesignPermissionError):
            design_save(actor=person, obj=phase)
    assert Phase.objects.get(pk=phase.pk).name == "Triage"


def test_it_never_moves_a_pipe_to_another_organization(world):
    other_org = world.outsider.memberships.get().organization
    Membership.objects.create(organization=other_org, user=world.owner, role=OrgRole.OWNER)
    pipe = Pipe.objects.get(pk=world.pipe.pk)
    pipe.organization = other_org
    with pytest.raises(DesignError):
        design_save(actor=world.owner, obj=pipe)
    assert Pipe.objects.get(pk=world.pipe.pk).organization_id == world.org.pk


def test_it_audits_a_step_change_on_the_pipes_trail_with_its_author(world):
    step = Step(phase=world.phase("triage"), key="notify", name="Notify", mechanism=Mechanism.HUMAN)
    design_save(actor=world.admin, obj=step)
    entry = LogEntry.objects.get_for_object(world.pipe).latest("timestamp")
    assert entry.actor == world.admin
    assert "Notify" in str(entry.changes)


def test_it_lets_only_owners_name_an_allowed_host(world):
    host = AllowedHost(organization=world.org, host="erp.example.com")
    with pytest.raises(DesignPermissionError):
        design_save(actor=world.admin, obj=host)
    design_save(actor=world.owner, obj=host)
    assert AllowedHost.objects.filter(host="erp.example.com").exists()


def test_it_grants_roles_only_to_people_of_the_pipes_organization(world):
    stranger = make_user("stranger")
    with pytest.raises(DesignError) as refused:
        design_grant(actor=world.admin, pipe=world.pipe, user=stranger, role=PipeRole.MEMBER)
    assert "user" in refused.value.errors
    assert not pipe_access(user=stranger, pipe=world.pipe).perms
    with pytest.raises(DesignPermissionError):
        design_grant(actor=world.member, pipe=world.pipe, user=world.viewer, role=PipeRole.ADMIN)
    design_grant(actor=world.admin, pipe=world.pipe, user=world.viewer, role=PipeRole.MEMBER)
    assert pipe_access(user=world.viewer, pipe=world.pipe).can_work


def test_it_imports_a_pipe_only_for_owners_and_pipe_admins_of_the_organization(world):
    definition = pipe_export(world.pipe) | {"slug": "copy", "code": "CP"}
    with pytest.raises(DesignPermissionError):
        design_import(actor=world.member, organization=world.org, definition=definition)
    with pytest.raises(DesignPermissionError):
        design_import(actor=world.outsider, organization=world.org, definition=definition)
    assert design_import(actor=world.owner, organization=world.org, definition=definition).slug == "copy"
    assert design_import(actor=SYSTEM, organization=world.org, definition=definition | {"slug": "c2"})


def test_it_shows_the_checkers_error_beside_the_admin_form_and_saves_nothing(world, client):
    assert client.login(username=world.admin.username, password=PASSWORD)
    response = client.post(
        reverse("admin:pipes_field_add"),
        {
            "pipe": world.pipe.pk,
            "key": "color",
            "label": "Color",
            "type": FieldType.SHORT_TEXT,
            "position": 9,
            "options": '["red", "blue"]',
            "validation": "{}",
            "config": "{}",
            "condition": "null",
            "visible_to_requester": "on",
        },
    )
    assert response.status_code == 200
    assert "options" in response.content.decode()
    assert response.context["adminform"].form.errors
    assert not Field.objects.filter(key="color").exists()


def test_it_grants_a_role_on_the_admin_roles_page_through_the_service(world, client):
    assert client.login(username=world.admin.username, password=PASSWORD)
    url = reverse("admin:pipes_pipe_roles", args=[world.pipe.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert world.viewer.username in page.content.decode()
    assert world.outsider.username not in page.content.decode()
    client.post(url, {"user": world.viewer.pk, "role": PipeRole.REVIEWER})
    assert pipe_access(user=world.viewer, pipe=world.pipe).can_review
    client.post(url, {"user": world.outsider.pk, "role": PipeRole.ADMIN})
    assert not pipe_access(user=world.outsider, pipe=world.pipe).perms
    client.post(url, {"user": world.viewer.pk, "role": ""})
    assert not pipe_access(user=world.viewer, pipe=world.pipe).perms


def test_it_offers_add_in_the_admin_only_where_the_service_would_accept_it(world, client):
    assert client.login(username=world.admin.username, password=PASSWORD)
    index = client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:orchestrator_step_add") in index
    assert reverse("admin:agents_allowedhost_add") not in index
    assert client.get(reverse("admin:agents_allowedhost_add")).status_code == 403
    world.owner.is_staff = True
    world.owner.save(update_fields=["is_staff"])
    assert client.login(username=world.owner.username, password=PASSWORD)
    assert reverse("admin:agents_allowedhost_add") in client.get(reverse("admin:index")).content.decode()


def test_it_saves_a_retention_policy_through_the_design_service(world):
    from pipes.governance import pipe_policy_update
    from pipes.models import PipePolicy

    with pytest.raises(DesignPermissionError):
        pipe_policy_update(user=world.member, pipe=world.pipe, retention_days=30, trace_retention_days=None)
    with pytest.raises(DesignError) as refused:
        pipe_policy_update(user=world.admin, pipe=world.pipe, retention_days=0, trace_retention_days=None)
    assert "retention_days" in refused.value.errors
    assert not PipePolicy.objects.exists()
    pipe_policy_update(user=world.admin, pipe=world.pipe, retention_days=30, trace_retention_days=7)
    assert PipePolicy.objects.get().retention_days == 30
    entry = LogEntry.objects.get_for_object(world.pipe).latest("timestamp")
    assert entry.actor == world.admin and "30" in str(entry.changes)


def test_it_refuses_a_caller_that_lost_its_user_rather_than_taking_it_for_the_system(world):
    phase = world.phase("triage")
    phase.name = "Renamed by nobody"
    with pytest.raises(DesignPermissionError):
        design_save(actor=None, obj=phase)
    with pytest.raises(DesignPermissionError):
        design_grant(actor=None, pipe=world.pipe, user=world.viewer, role=PipeRole.ADMIN)
    with pytest.raises(DesignPermissionError):
        design_import(actor=None, organization=world.org, definition=pipe_export(world.pipe) | {"slug": "x"})
    assert Phase.objects.get(pk=phase.pk).name == "Triage"
