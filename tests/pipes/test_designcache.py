"""The design cache (pipes.designcache): every write to a phase, a field or a transition, however it is
made, changes the pipe's stamp, so the next move, field update or board render sees the new design;
and what one caller gets is never shared with another."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from pipes import designcache
from pipes.models import Card, DesignStamp, Field, Label, Phase, Pipe
from pipes.services import Actor, CardError, CardTransitionError, card_move, card_update_fields
from pipes.timeline import verify_timelines
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db


def stamp(pipe) -> int:
    return DesignStamp.objects.get(pipe=pipe).version


def new_card(world, **values) -> Card:
    from pipes.services import card_create

    return card_create(
        actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values(**values)
    )


def fresh(card: Card) -> Card:
    return Card.objects.select_related("pipe__organization", "phase").get(pk=card.pk)


def test_every_kind_of_design_write_changes_the_stamp_and_card_writes_do_not(world):
    pipe = world.pipe
    seen = [stamp(pipe)]

    def changed() -> bool:
        now = stamp(pipe)
        new = now not in seen
        seen.append(now)
        return new

    phase = Phase.objects.create(pipe=pipe, name="Extra", key="extra", position=9)
    assert changed()
    Phase.objects.filter(pk=phase.pk).update(name="Renamed")  # a queryset update: no signal, still seen
    assert changed()
    world.phase("triage").allowed_next.add(phase)
    assert changed()
    world.phase("triage").allowed_next.remove(phase)
    assert changed()
    Field.objects.filter(pipe=pipe, key="cost_center").update(required=True)
    assert changed()
    Field.objects.bulk_create([Field(pipe=pipe, key="bulk", label="Bulk", type="short_text")])
    assert changed()
    Field.objects.filter(pipe=pipe, key="bulk").delete()
    assert changed()
    phase.delete()
    assert changed()
    label = Label.objects.create(pipe=pipe, name="New label", color="#000000")  # tiles show labels
    assert changed()
    Label.objects.filter(pk=label.pk).update(color="#ffffff")
    assert changed()
    label.delete()
    assert changed()

    card = new_card(world)
    card_update_fields(
        actor=Actor.for_user(world.member),
        card=fresh(card),
        values={"category": "Hardware", "cost_center": "CC-123"},
    )
    card_move(actor=Actor.for_user(world.member), card=fresh(card), to_phase=world.phase("rejected"))
    assert not changed()


def test_a_move_sees_a_transition_added_after_the_cache_was_warm(world):
    actor = Actor.for_user(world.member)
    card = new_card(world)
    card_update_fields(actor=actor, card=fresh(card), values={"category": "Hardware"})
    # Triage may go to Approval or Rejected; warm the cache with one refused move to Purchased.
    with pytest.raises(CardTransitionError):
        card_move(actor=actor, card=fresh(card), to_phase=world.phase("done"))
    world.phase("triage").allowed_next.add(world.phase("done"))
    moved = card_move(actor=actor, card=fresh(card), to_phase=world.phase("done"))
    assert moved.phase.key == "done"


def test_a_field_made_required_by_a_queryset_update_is_enforced_at_once(world):
    actor = Actor.for_user(world.member)
    card = new_card(world)
    card_update_fields(actor=actor, card=fresh(card), values={"category": "Hardware"})
    moved = card_move(actor=actor, card=fresh(card), to_phase=world.phase("approval"))
    card_move(actor=actor, card=moved, to_phase=world.phase("triage"))  # back, with the cache warm
    Field.objects.filter(pipe=world.pipe, key="cost_center").update(required=True)
    with pytest.raises(CardTransitionError) as refused:
        card_move(actor=actor, card=fresh(card), to_phase=world.phase("approval"))
    assert "cost_center" in refused.value.field_keys
    assert list(verify_timelines([fresh(card)])) == []


def test_a_field_added_after_the_cache_was_warm_can_be_written_at_once(world):
    actor = Actor.for_user(world.member)
    card = new_card(world)
    with pytest.raises(CardError):
        card_update_fields(actor=actor, card=fresh(card), values={"supplier": "ACME"})
    Field.objects.create(pipe=world.pipe, key="supplier", label="Supplier", type="short_text", position=9)
    updated = card_update_fields(actor=actor, card=fresh(card), values={"supplier": "ACME"})
    assert updated.values["supplier"] == "ACME"


def test_the_board_shows_a_renamed_phase_on_the_next_render_and_then_loads_no_design(client, world):
    client.force_login(world.member)
    url = reverse("board", args=[world.pipe.pk])
    client.get(url)
    Phase.objects.filter(pk=world.phase("triage").pk).update(name="Intake desk")
    assert "Intake desk" in client.get(url).content.decode()
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    loaded = [q["sql"] for q in queries if '"pipes_phase"' in q["sql"] or 'FROM "pipes_field"' in q["sql"]]
    assert loaded == []


def test_a_design_change_rolled_back_is_never_served(world):
    pipe = world.pipe
    with pytest.raises(RuntimeError), transaction.atomic():
        Phase.objects.filter(pk=world.phase("triage").pk).update(name="Never committed")
        assert designcache.design_of(pipe).phases[0].name == "Never committed"  # cached at its stamp
        raise RuntimeError
    assert designcache.design_of(pipe).phases[0].name == "Triage"


def test_each_pipe_object_gets_its_own_instances(world):
    first = designcache.design_of(world.pipe)
    first.phases[0].name = "Changed in memory"
    first.fields[0].options.append("Leaked")
    assert designcache.design_of(world.pipe).phases[0] is first.phases[0]  # the same object, same stamp
    second = designcache.design_of(Pipe.objects.get(pk=world.pipe.pk))  # another request's pipe
    assert second.phases[0].name == "Triage"
    assert "Leaked" not in second.fields[0].options
    assert second.phases[0] is not first.phases[0]


def test_a_pipe_object_gets_new_instances_when_its_design_changes(world):
    pipe = world.pipe
    before = designcache.design_of(pipe)
    Phase.objects.filter(pk=world.phase("triage").pk).update(name="Intake")
    after = designcache.design_of(pipe)
    assert after.phases[0].name == "Intake" and before.phases[0].name == "Triage"


def test_the_card_getter_reads_what_the_orm_reads(world):
    """card_get_for_user's one plain statement (PostgreSQL) builds the same card, pipe and organization."""
    from pipes.selectors import card_get_for_user

    card = new_card(world)
    card_update_fields(actor=Actor.for_user(world.member), card=fresh(card), values={"category": "Hardware"})
    got, _access = card_get_for_user(user=world.member, pk=card.pk, pipe_id=world.pipe.pk)
    expected = fresh(card)
    for model_field in Card._meta.concrete_fields:
        assert getattr(got, model_field.attname) == getattr(expected, model_field.attname), model_field.name
    assert got.values["amount"] == expected.values["amount"] and isinstance(got.values, dict)
    assert got.pipe.key_fields == expected.pipe.key_fields == ["amount", "category"]
    assert got.pipe.organization.time_zone == expected.pipe.organization.time_zone
    assert got.phase.key == "triage" and got.phase.pipe is got.pipe
    assert not got._state.adding and got.pipe._state.db == "default"
