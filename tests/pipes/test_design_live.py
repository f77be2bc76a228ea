"""Safe changes to a live process: what the design service refuses once cards use a pipe, whoever calls it."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry

from pipes.board.selectors import home_pipes
from pipes.choices import PipeRole
from pipes.design import (
    SYSTEM,
    DesignError,
    DesignImpactError,
    DesignPermissionError,
    administered_pipes,
    design_archive,
    design_delete,
    design_grant,
    design_impact,
    design_import,
    design_restore,
    design_revoke,
    design_save,
    pipe_export,
)
from pipes.models import Card, Field, Phase, Pipe
from pipes.portal.selectors import portal_pipes_for_user
from pipes.roles import pipe_access
from pipes.services import Actor, CardError, card_create, card_move, card_update_fields
from pipes.timeline import verify_timelines
from tests.personas import good_start_values


def _card(world, **values):
    return card_create(
        actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values(**values)
    )


def _breaks(pipe):
    return list(verify_timelines(Card.objects.filter(pipe=pipe)))


# ---------------------------------------------------------------- keys


def test_it_lets_a_field_key_change_while_no_card_uses_it(world):
    field = Field.objects.get(pipe=world.pipe, key="cost_center")
    field.key = "cost_centre"
    design_save(actor=world.admin, obj=field)
    assert Field.objects.get(pk=field.pk).key == "cost_centre"


def test_it_keeps_a_field_key_once_a_card_holds_a_value_in_it_but_lets_its_label_change(world):
    _card(world)
    field = Field.objects.get(pipe=world.pipe, key="item")
    field.key = "thing"
    with pytest.raises(DesignError) as refused:
        design_save(actor=world.admin, obj=field)
    assert "key" in refused.value.errors
    assert "1 card" in refused.value.errors["key"][0]
    assert Field.objects.get(pk=field.pk).key == "item"
    field.key, field.label = "item", "What to buy"
    design_save(actor=world.admin, obj=field)
    assert Field.objects.get(pk=field.pk).label == "What to buy"
    assert not _breaks(world.pipe)


def test_it_keeps_a_phase_key_once_a_card_went_through_it_but_lets_its_name_change(world):
    _card(world)
    triage = world.phase("triage")
    triage.key = "screening"
    with pytest.raises(DesignError) as refused:
        design_save(actor=world.admin, obj=triage)
    assert list(refused.value.errors) == ["key"]
    approval = world.phase("approval")
    approval.key = "sign-off"  # no card was ever there
    design_save(actor=world.admin, obj=approval)
    triage = world.phase("triage")
    triage.name = "Screening"
    design_save(actor=world.admin, obj=triage)
    assert set(world.pipe.phases.values_list("key", flat=True)) == {"triage", "sign-off", "done", "rejected"}


# ---------------------------------------------------------------- deleting what holds data


def test_it_says_how_many_cards_hold_a_value_in_a_field(world):
    _card(world, urgent=True, urgency_reason="Broken")
    _card(world)
    _card(world, urgent=True, urgency_reason="Again")
    impact = design_impact(Field.objects.get(pipe=world.pipe, key="urgency_reason"))
    assert impact.cards == 2 and impact.with_values == 2
    assert impact.message == "2 cards hold a value in this field."
    assert design_impact(Field.objects.get(pipe=world.pipe, key="po_number")).cards == 0


def test_it_deletes_a_field_holding_data_only_when_confirmed_and_keeps_the_cards_values(world):
    card = _card(world)
    Field.objects.filter(pipe=world.pipe, key="urgency_reason").update(condition=None)
    field = Field.objects.get(pipe=world.pipe, key="requester_email")
    field_pk = field.pk
    with pytest.raises(DesignImpactError) as refused:
        design_delete(actor=world.admin, obj=field)
    assert refused.value.impact.cards == 1
    assert "1 card holds a value in this field." in refused.value.messages[0]
    assert Field.objects.filter(pk=field.pk).exists()
    design_delete(actor=world.admin, obj=field, confirm=True)
    assert not Field.objects.filter(pk=field.pk).exists()
    card.refresh_from_db()
    assert card.values["requester_email"] == "ana@example.com"
    assert not _breaks(world.pipe)
    entry = LogEntry.objects.filter(object_pk=str(field_pk), action=LogEntry.Action.DELETE).get()
    assert entry.actor == world.admin and entry.object_repr == "Your email"


def test_it_deletes_a_field_no_card_uses_without_asking(world):
    _card(world)
    field = Field.objects.get(pipe=world.pipe, key="po_number")
    design_delete(actor=world.admin, obj=field)
    assert not Field.objects.filter(pk=field.pk).exists()


def test_it_refuses_to_delete_a_phase_with_cards_in_it_even_when_confirmed(world):
    _card(world)
    _card(world)
    triage = world.phase("triage")
    Field.objects.filter(phase=triage).delete()
    with pytest.raises(DesignError) as refused:
        design_delete(actor=world.admin, obj=triage, confirm=True)
    assert not isinstance(refused.value, DesignImpactError)
    assert "2 cards are in the phase “Triage”: move them to another phase first." in refused.value.messages
    assert Phase.objects.filter(pk=triage.pk).exists()


def test_it_deletes_a_phase_cards_went_through_only_when_confirmed(world):
    card = _card(world)
    member = Actor.for_user(world.member)
    card = card_update_fields(actor=member, card=card, values={"category": "Hardware"})
    card_move(actor=member, card=card, to_phase=world.phase("rejected"))
    triage = world.phase("triage")
    impact = design_impact(triage)
    assert (impact.cards, impact.in_phase, impact.passed, impact.with_values) == (1, 0, 1, 1)
    world.phase("approval").allowed_next.remove(triage)
    Pipe.objects.filter(pk=world.pipe.pk).update(key_fields=["amount"])  # "category" goes with the phase
    with pytest.raises(DesignImpactError):
        design_delete(actor=world.admin, obj=triage)
    design_delete(actor=world.admin, obj=triage, confirm=True)
    card.refresh_from_db()
    assert card.values["category"] == "Hardware"
    assert not _breaks(world.pipe)


# ---------------------------------------------------------------- archiving a pipe with cards


def test_it_refuses_to_delete_a_pipe_with_cards_and_deletes_an_empty_one(world):
    _card(world)
    with pytest.raises(DesignError) as refused:
        design_delete(actor=world.owner, obj=world.pipe, confirm=True)
    assert "archive it instead" in refused.value.messages[0]
    assert Pipe.objects.filter(pk=world.pipe.pk).exists()
    empty = design_import(
        actor=world.owner,
        organization=world.org,
        definition=pipe_export(world.pipe) | {"slug": "e", "code": "E"},
    )
    design_delete(actor=world.owner, obj=empty)
    assert not Pipe.objects.filter(pk=empty.pk).exists()


def test_it_archives_a_pipe_out_of_every_list_and_keeps_its_cards_readable_and_verifiable(world):
    card = _card(world)
    with pytest.raises(DesignPermissionError):
        design_archive(actor=world.member, pipe=world.pipe)
    design_archive(actor=world.admin, pipe=world.pipe)
    pipe = Pipe.objects.get(pk=world.pipe.pk)
    assert pipe.is_archived
    assert home_pipes(user=world.member) == []
    assert not portal_pipes_for_user(user=world.requester).exists()
    assert not administered_pipes(world.admin).exists()
    member = pipe_access(user=world.member, pipe=pipe)
    assert member.can_view_board and not member.can_work and not member.can_request
    assert pipe_access(user=world.admin, pipe=pipe).can_administer
    with pytest.raises(CardError):
        card_create(actor=Actor.system(), pipe=pipe, values=good_start_values())
    with pytest.raises(CardError):
        card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    assert Card.objects.filter(pipe=pipe).count() == 1
    assert not _breaks(pipe)
    entry = LogEntry.objects.get_for_object(pipe).latest("timestamp")
    assert entry.actor == world.admin and "archived_at" in entry.changes


def test_it_restores_an_archived_pipe(world):
    design_archive(actor=world.admin, pipe=world.pipe)
    design_restore(actor=world.admin, pipe=world.pipe)
    pipe = Pipe.objects.get(pk=world.pipe.pk)
    assert not pipe.is_archived
    assert pipe_access(user=world.member, pipe=pipe).can_work
    assert [s.pipe for group in home_pipes(user=world.member) for s in group.pipes] == [pipe]


# ---------------------------------------------------------------- who creates pipes, who stays admin


def test_it_lets_a_pipe_admin_create_a_pipe_in_their_organization_and_administer_it(world):
    # The pipe alone (its phases come in the same transaction, then the whole pipe is checked).
    travel = Pipe(organization=world.org, name="Travel", slug="travel", code="TR")
    pipe = design_save(actor=world.admin, obj=travel, validate=False)
    assert pipe_access(user=world.admin, pipe=pipe).can_administer
    for person in (world.member, world.outsider):
        with pytest.raises(DesignPermissionError):
            design_save(
                actor=person, obj=Pipe(organization=world.org, name="X", slug="x", code="X"), validate=False
            )
    definition = pipe_export(world.pipe) | {"slug": "copy", "code": "CP"}
    copy = design_import(actor=world.admin, organization=world.org, definition=definition)
    assert pipe_access(user=world.admin, pipe=copy).can_administer
    assert not Pipe.objects.filter(slug="x").exists()


def test_it_never_removes_the_last_admin_of_a_pipe(world):
    with pytest.raises(DesignError) as refused:
        design_revoke(actor=world.owner, pipe=world.pipe, user=world.admin)
    assert "user" in refused.value.errors and "last admin" in refused.value.errors["user"][0]
    with pytest.raises(DesignError):
        design_grant(actor=world.admin, pipe=world.pipe, user=world.admin, role=PipeRole.MEMBER)
    assert pipe_access(user=world.admin, pipe=world.pipe).can_administer
    design_grant(actor=world.admin, pipe=world.pipe, user=world.member, role=PipeRole.ADMIN)
    design_revoke(actor=world.member, pipe=world.pipe, user=world.admin)
    assert not pipe_access(user=world.admin, pipe=world.pipe).perms


def test_it_lets_the_system_import_for_any_organization(world):
    pipe = design_import(
        actor=SYSTEM, organization=world.org, definition=pipe_export(world.pipe) | {"slug": "s", "code": "S"}
    )
    assert pipe.organization == world.org
