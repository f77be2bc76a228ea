"""The cost page tells a loss from a saving, compares with a foundation model only where one was a real
alternative, and bills the minutes of both reviewers of a four-eyes review."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from orchestrator.inbox.services import inbox_decide
from orchestrator.models import Mechanism, ReviewTask, StepRun
from orchestrator.rail.services import review_open
from pipes.services import Actor, card_create, card_move, card_update_fields
from tests.orchestrator.conftest import drain, make_step
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db


@pytest.fixture
def human_step(world, rail_settings):
    return make_step(
        world.phase("approval"),
        key="approve",
        name="Manager approval",
        mechanism=Mechanism.HUMAN,
        on_approve="done",
        on_reject="rejected",
    )


def waiting_task(world) -> ReviewTask:
    card = card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())
    card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    card_move(actor=Actor.for_user(world.member), card=card, to_phase=world.phase("approval"))
    drain()
    return ReviewTask.objects.get(card=card)


def settled_run(world, *, mechanism: str, cost: str, baseline: str) -> StepRun:
    """A run settled by `mechanism` that cost `cost` where a foundation model would have cost `baseline`."""
    task = waiting_task(world)
    inbox_decide(task=task, user=world.reviewer, decision="approve", values={"po_number": "PO-1"})
    StepRun.objects.filter(pk=task.run_id).update(
        mechanism=mechanism, cost=Decimal(cost), baseline_cost=Decimal(baseline)
    )
    return StepRun.objects.get(pk=task.run_id)


def costs_page(client, world):
    client.force_login(world.owner)
    return client.get(reverse("rail:pipe_costs", args=[world.pipe.pk]))


def test_it_shows_a_loss_as_a_loss(client, world, human_step):
    settled_run(world, mechanism=Mechanism.AUTOMATION, cost="0.75", baseline="0.50")
    response = costs_page(client, world)
    page = response.content.decode()
    assert "Cost more than foundation only (estimate)" in page
    assert "USD 0.25" in page and "USD -0.25" not in page
    assert "50% more than foundation only" in page
    assert "% less" not in page


def test_it_says_how_many_times_the_baseline_a_much_dearer_run_cost(client, world, human_step):
    settled_run(world, mechanism=Mechanism.LOCAL_MODEL, cost="0.75", baseline="0.07")
    page = costs_page(client, world).content.decode()
    assert (
        "10.7× the foundation-only estimate" in page and "%" not in page.split('data-kpi="saving"')[1][:600]
    )


def test_it_does_not_compare_the_runs_a_person_settled(client, world, human_step):
    settled_run(world, mechanism=Mechanism.HUMAN, cost="0.74", baseline="0.06")  # the demo's -1050%
    response = costs_page(client, world)
    report, page = response.context["report"], response.content.decode()
    assert report.compared.runs == 0 and report.saving_share is None
    assert "no step settled by rules or a model in this period" in page
    assert "-1050" not in page and "% less" not in page
    human = next(r for r in report.mechanisms if r.key == Mechanism.HUMAN)
    assert not human.compared and human.cost == Decimal("0.74")


def test_it_reports_a_saving_over_the_runs_machines_settled(client, world, human_step):
    settled_run(world, mechanism=Mechanism.LOCAL_MODEL, cost="0.01", baseline="0.50")
    settled_run(world, mechanism=Mechanism.HUMAN, cost="6.00", baseline="0.50")
    response = costs_page(client, world)
    report, page = response.context["report"], response.content.decode()
    assert report.compared.saving == Decimal("0.49") and report.total.cost == Decimal("6.01")
    assert "Saved (estimate)" in page and "98% less than foundation only, over 1 run settled" in page


def test_it_counts_both_reviewers_minutes_under_four_eyes(world, human_step, clock, settings):
    settings.TRILHO_HUMAN_COST_PER_MINUTE = Decimal("2.00")
    human_step.four_eyes = True
    human_step.save()
    task = waiting_task(world)
    review_open(task=task, user=world.reviewer)
    clock.advance(minutes=3)
    inbox_decide(
        task=ReviewTask.objects.get(pk=task.pk),
        user=world.reviewer,
        decision="approve",
        values={"po_number": "PO-1"},
    )
    clock.advance(minutes=30)  # nobody looks at it for a while: not billed
    review_open(task=ReviewTask.objects.get(pk=task.pk), user=world.admin)
    clock.advance(minutes=2)
    inbox_decide(task=ReviewTask.objects.get(pk=task.pk), user=world.admin, decision="approve")
    assert StepRun.objects.get(pk=task.run_id).cost == Decimal("10.00")  # (3 + 2) minutes at 2.00
