"""Deleting a phase cards went through (confirmed in the designer) keeps their history on the rail: the
stays, the step runs that ran there and what those cost; none of it is left for the rail to run again."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from orchestrator.models import RunStatus, StepRun
from orchestrator.rail.dispatch import entries_sweep
from orchestrator.rail.selectors import pipe_cost_report
from pipes.design import design_delete
from pipes.models import Field, Phase, PhaseEntry, Pipe
from pipes.services import Actor, card_create, card_move, card_update_fields
from tests.orchestrator.conftest import drain
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db


def delete_triage(world) -> Phase:
    """Delete Triage as a designer who confirmed it, the design made to pass the checker without it."""
    triage = world.phase("triage")
    Field.objects.filter(phase=triage).delete()
    world.phase("approval").allowed_next.remove(triage)
    Pipe.objects.filter(pk=world.pipe.pk).update(key_fields=["amount"])  # "category" goes with the phase
    design_delete(actor=world.admin, obj=triage, confirm=True)
    return triage


def test_a_deleted_phase_keeps_the_step_runs_and_costs_of_the_cards_that_went_through_it(
    client, world, stamping_step
):
    member = Actor.for_user(world.member)
    card = card_create(actor=member, pipe=world.pipe, values=good_start_values())
    drain()  # the Stamp step runs in Triage
    run = StepRun.objects.get(card=card)
    assert run.status == RunStatus.DONE
    StepRun.objects.filter(pk=run.pk).update(cost=Decimal("0.42"))  # as a model's run would have cost
    card.refresh_from_db()
    card = card_move(actor=member, card=card, to_phase=world.phase("rejected"))
    before = pipe_cost_report(pipe=world.pipe).total

    triage = delete_triage(world)

    assert not Phase.objects.filter(pk=triage.pk).exists()
    run.refresh_from_db()  # the run is still there, as it ran
    assert (run.status, run.cost, run.step_name) == (RunStatus.DONE, Decimal("0.42"), "Stamp")
    stay = run.entry
    assert stay.phase_id is None and stay.card_id == card.pk and stay.left_at is not None
    assert stay.processed_at is not None
    after = pipe_cost_report(pipe=world.pipe).total
    assert (after.runs, after.cost) == (before.runs, before.cost) == (1, Decimal("0.42"))
    assert entries_sweep(older_than_seconds=0) == 0  # nothing of the deleted phase is sent again

    client.force_login(world.admin)
    page = client.get(reverse("rail:run", args=[run.pk]))
    assert page.status_code == 200
    assert "Step of a phase since deleted" in page.content.decode()


def test_a_deleted_phase_closes_a_stay_the_rail_had_not_finished(world, stamping_step):
    """A stay the rail never finished (the card moved on before its steps ran) is closed by the delete:
    the sweep does not send, every 30 s for ever, an entry whose phase is gone."""
    member = Actor.for_user(world.member)
    card = card_create(actor=member, pipe=world.pipe, values=good_start_values())
    card = card_update_fields(actor=member, card=card, values={"category": "Hardware"})
    card_move(actor=member, card=card, to_phase=world.phase("rejected"))
    stay = PhaseEntry.objects.get(card=card, phase=world.phase("triage"))
    assert stay.processed_at is None  # not run yet

    delete_triage(world)

    stay.refresh_from_db()
    assert stay.phase_id is None and stay.processed_at is not None
    assert entries_sweep(older_than_seconds=0) == 0
