"""The rail under governance: steps triggered by SLA marks, trace retention, erasure of step traces."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from orchestrator.models import Mechanism, ReviewTask, RunStatus, StepRun, TraceEvent, Trigger
from orchestrator.rail.privacy import CONTENT_KINDS
from pipes import governance
from pipes.choices import RailStatus
from pipes.models import Card, PhaseEntry, PipePolicy
from pipes.services import Actor, card_create, card_move, card_update_fields
from pipes.timeline import verify_timelines
from tests.modelservers import answer
from tests.orchestrator.conftest import drain, make_agent, make_step
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db

EMAIL = "ana.souza@example.com"


def submit(world, **values) -> Card:
    return card_create(
        actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values(**values)
    )


def mark(django_capture_on_commit_callbacks) -> governance.SlaResult:
    """The beat job's minute: mark late cards, with the after-commit hooks (the rail's dispatch) run."""
    with django_capture_on_commit_callbacks(execute=True):
        return governance.sla_mark_late()


# ---------------------------------------------------------------- steps triggered by SLA marks


@pytest.fixture
def escalation(world, rail_settings):
    """Triage asks a person; when the card is late there, an automation escalates to the admin."""
    make_step(world.phase("triage"), key="decide", name="Decide", mechanism=Mechanism.HUMAN, risk="low")
    return make_step(
        world.phase("triage"),
        position=2,
        key="escalate",
        name="Escalate",
        trigger=Trigger.LATE,
        mechanism=Mechanism.AUTOMATION,
        on_approve="",
        on_reject="",
        actions=[
            {"type": "assign", "users": [world.admin.username]},
            {"type": "comment", "text": "Over the SLA: escalated."},
        ],
    )


def test_a_late_step_waits_until_the_card_is_late(
    world, escalation, clock, django_capture_on_commit_callbacks
):
    card = submit(world)
    drain()
    card.refresh_from_db()
    assert card.rail_status == RailStatus.WAITING_REVIEW
    assert not StepRun.objects.filter(step=escalation).exists()

    clock.advance(hours=23)
    mark(django_capture_on_commit_callbacks)
    drain()
    assert not StepRun.objects.filter(step=escalation).exists()


def test_a_card_becoming_late_runs_the_phases_late_steps_once_while_its_review_waits(
    world, escalation, clock, django_capture_on_commit_callbacks
):
    card = submit(world)
    drain()
    clock.advance(hours=25)

    assert mark(django_capture_on_commit_callbacks).late == [card.pk]
    entry = PhaseEntry.objects.get(card=card, left_at__isnull=True)
    assert entry.processed_at is None  # re-opened: the sweep sends it even if the broker was down
    drain()

    card.refresh_from_db()
    run = StepRun.objects.get(step=escalation)
    assert run.status == RunStatus.DONE and run.entry_id == entry.pk
    assert list(card.assignees.values_list("username", flat=True)) == [world.admin.username]
    comment = card.events.filter(kind="commented").get()
    assert comment.payload["text"] == "Over the SLA: escalated." and comment.actor_kind == "system"
    assert card.rail_status == RailStatus.WAITING_REVIEW  # the person's review still waits
    assert ReviewTask.objects.get(card=card).status == "open"
    assert StepRun.objects.filter(card=card).count() == 2

    clock.advance(minutes=5)
    mark(django_capture_on_commit_callbacks)
    drain()
    assert StepRun.objects.filter(step=escalation).count() == 1
    assert card.events.filter(kind="commented").count() == 1
    assert list(verify_timelines([card])) == []


def test_an_expired_step_runs_when_the_card_passes_the_pipes_deadline(
    world, rail_settings, clock, django_capture_on_commit_callbacks
):
    step = make_step(
        world.phase("triage"),
        key="close_expired",
        name="Close expired requests",
        trigger=Trigger.EXPIRED,
        mechanism=Mechanism.AUTOMATION,
        on_approve="",
        on_reject="",
        on_done="rejected",
        actions=[
            {"type": "set_field", "field": "category", "value": "Hardware"},  # required to leave triage
            {"type": "comment", "text": "Expired: closed."},
        ],
    )
    card = submit(world)
    drain()
    assert not StepRun.objects.filter(step=step).exists()

    clock.advance(days=30, minutes=1)
    result = mark(django_capture_on_commit_callbacks)
    assert card.pk in result.expired
    drain()

    card.refresh_from_db()
    run = StepRun.objects.get(step=step)
    assert run.status == RunStatus.DONE, run.error
    assert card.phase.key == "rejected" and card.finished_at is not None
    assert card.expired_at is None  # finished: no longer overdue


def test_a_phase_without_late_steps_is_not_reopened(
    world, rail_settings, clock, django_capture_on_commit_callbacks
):
    make_step(world.phase("triage"), key="decide", name="Decide", mechanism=Mechanism.HUMAN, risk="low")
    card = submit(world)
    drain()
    entry = PhaseEntry.objects.get(card=card, left_at__isnull=True)
    processed = entry.processed_at
    clock.advance(hours=25)

    mark(django_capture_on_commit_callbacks)

    entry.refresh_from_db()
    assert entry.processed_at == processed


# ---------------------------------------------------------------- trace retention


@pytest.fixture
def agent_runs(world, ollama, openai):
    """Two cards decided by the local model: one a year ago, one today."""
    agent = make_agent(world.pipe, may_see_pii=True)
    make_step(world.phase("triage"), agent=agent)
    cards = []
    for item in ("Old laptop", "New laptop"):
        ollama.push(answer("approve", {"category": "Hardware", "cost_center": "CC-100"}, 0.9))
        cards.append(submit(world, item=item, requester_email=EMAIL))
        drain()
    old = StepRun.objects.get(card=cards[0])
    StepRun.objects.filter(pk=old.pk).update(finished_at=timezone.now() - dt.timedelta(days=365))
    return cards


def _content_events(card) -> int:
    return TraceEvent.objects.filter(run__card=card, kind__in=CONTENT_KINDS).count()


def test_trace_retention_previews_then_prunes_old_traces_keeping_cost_and_decision(world, agent_runs):
    old_card, new_card = agent_runs
    old = StepRun.objects.get(card=old_card)
    cost, decision, reason = old.cost, old.decision, old.routing_reason
    assert _content_events(old_card) == 4  # inputs, prompt, raw output, changes
    PipePolicy.objects.create(pipe=world.pipe, trace_retention_days=30)

    preview = governance.trace_retention_apply(dry_run=True)
    assert preview == {world.pipe.pk: governance.TracePruning(runs=1, events=4)}
    assert (
        _content_events(old_card) == 4 and not StepRun.objects.filter(trace_pruned_at__isnull=False).exists()
    )

    pruned = governance.trace_retention_apply()

    assert pruned == {world.pipe.pk: governance.TracePruning(runs=1, events=4)}
    old.refresh_from_db()
    assert old.trace_pruned_at is not None
    assert (old.cost, old.decision, old.routing_reason) == (cost, decision, reason)
    assert _content_events(old_card) == 0
    kept = TraceEvent.objects.filter(run=old)
    assert list(kept.values_list("kind", flat=True)) == ["routing"]
    assert kept.get().data is None
    assert EMAIL not in str(list(TraceEvent.objects.filter(run=old).values()))
    assert _content_events(new_card) == 4  # today's run keeps its trace
    assert governance.trace_retention_apply() == {world.pipe.pk: governance.TracePruning()}


def test_a_pipe_without_trace_retention_keeps_every_trace(world, agent_runs):
    assert governance.trace_retention_apply() == {}
    call_command("retention")
    assert _content_events(agent_runs[0]) == 4


def test_the_retention_page_previews_and_prunes_and_the_run_page_says_so(client, world, agent_runs):
    PipePolicy.objects.create(pipe=world.pipe, trace_retention_days=30)
    client.force_login(world.admin)
    url = reverse("governance:retention", args=[world.pipe.pk])

    page = client.get(url).content.decode()
    assert "ended more than 30 days ago" in page and "Prune traces now" in page
    assert _content_events(agent_runs[0]) == 4  # looking changes nothing

    response = client.post(url, {"action": "prune"})
    assert response.status_code == 302 and response.url.endswith("?pruned=1")
    assert "The trace of 1 step run was pruned." in client.get(response.url).content.decode()
    assert _content_events(agent_runs[0]) == 0

    run = StepRun.objects.get(card=agent_runs[0])
    run_page = client.get(reverse("rail:run", kwargs={"run_id": run.pk})).content.decode()
    assert "were deleted on" in run_page and "trace retention" in run_page


def test_members_cannot_prune_traces(client, world, agent_runs):
    PipePolicy.objects.create(pipe=world.pipe, trace_retention_days=30)
    client.force_login(world.member)
    response = client.post(reverse("governance:retention", args=[world.pipe.pk]), {"action": "prune"})
    assert response.status_code == 403
    assert _content_events(agent_runs[0]) == 4


def test_the_retention_command_dry_runs_and_prunes(world, agent_runs, capsys):
    PipePolicy.objects.create(pipe=world.pipe, trace_retention_days=30)
    call_command("retention", "--dry-run")
    out = capsys.readouterr().out
    assert "would prune the traces of 1 step run(s) (4 trace events)" in out
    assert _content_events(agent_runs[0]) == 4
    call_command("retention")
    assert "1 step trace(s) pruned" in capsys.readouterr().out
    assert _content_events(agent_runs[0]) == 0


# ---------------------------------------------------------------- erasure reaches the traces


def test_erasing_a_person_scrubs_their_values_from_step_traces_and_reviews(world, agent_runs, ollama):
    old_card, new_card = agent_runs
    assert EMAIL in str(
        list(TraceEvent.objects.filter(run__card=new_card).values("data"))
    )  # a PII agent saw it
    ReviewTask.objects.create(
        run=StepRun.objects.get(card=new_card),
        card=new_card,
        pipe=world.pipe,
        question=f"Is {EMAIL} allowed to buy this?",
        reasoning=f"The requester {EMAIL} asked before.",
        allowed_decisions=["approve"],
    )

    governance.subject_erase(user=world.admin, organization=world.org, identifier=EMAIL)

    held = [
        *TraceEvent.objects.values("summary", "data"),
        *StepRun.objects.values("routing_reason", "error"),
        *ReviewTask.objects.values("question", "reasoning", "proposal", "comment", "values"),
    ]
    assert EMAIL not in str(held).lower()
    assert "[erased]" in str(held)
    assert list(verify_timelines(Card.objects.all())) == []


# ---------------------------------------------------------------- the export holds what the rail keeps


def _rail_columns():
    """(model, column name) of every text and JSON column of the rail's tables (and notifications)."""
    from django.apps import apps
    from django.db import models

    for model in apps.get_models():
        if (
            model._meta.app_label in ("orchestrator", "inbox", "agents")
            or model._meta.label == "pipes.Notification"
        ):
            for f in model._meta.concrete_fields:
                if isinstance(f, models.CharField | models.TextField | models.JSONField):
                    yield model, f.attname


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_the_person_s_export_holds_every_rail_record_of_their_data(world, agent_runs):
    from orchestrator.inbox.models import ReviewDelegation, ReviewSignoff
    from pipes.models import Notification

    run = StepRun.objects.get(card=agent_runs[1])
    task = ReviewTask.objects.create(
        run=run,
        card=run.card,
        pipe=world.pipe,
        question=f"Is {EMAIL} allowed to buy this?",
        proposal={"decision": "approve", "values": {"cost_center": "CC-100"}, "note": f"asked by {EMAIL}"},
        reasoning=f"The requester {EMAIL} asked before.",
        allowed_decisions=["approve"],
        comment=f"Spoke to {EMAIL}.",
    )
    ReviewSignoff.objects.create(
        task=task, user=world.reviewer, decision="approve", comment=f"ok for {EMAIL}"
    )
    ReviewDelegation.objects.create(
        task=task, to_user=world.admin, by=world.reviewer, note=f"{EMAIL} is a VIP"
    )
    Notification.objects.create(user=world.admin, card=run.card, message=f"Review for {EMAIL} is overdue")
    StepRun.objects.filter(pk=run.pk).update(error=f"mail to {EMAIL} bounced")

    data, _request = governance.subject_export(user=world.admin, organization=world.org, identifier=EMAIL)

    exported = set(_strings(data))
    places = []
    for model, column in _rail_columns():
        for value in model.objects.values_list(column, flat=True):
            for text in _strings(value):
                if EMAIL in text.lower():
                    places.append(f"{model._meta.db_table}.{column}")
                    assert text in exported, (
                        f"{model._meta.db_table}.{column} holds {text!r}, not in the export"
                    )
    assert {
        "orchestrator_traceevent.data",
        "orchestrator_steprun.error",
        "orchestrator_reviewtask.reasoning",
        "inbox_reviewsignoff.comment",
        "inbox_reviewdelegation.note",
        "pipes_notification.message",
    } <= set(places)
    [card] = [c for c in data["cards"] if c["reference"] == run.card.reference]
    assert [r["step"] for r in card["step_runs"]] == [run.step_name]
    assert {e["kind"] for e in card["step_runs"][0]["trace"]} >= {"inputs", "prompt", "raw_output"}
    assert card["reviews"][0]["signoffs"][0]["comment"] == f"ok for {EMAIL}"


def test_erasing_a_person_scrubs_their_values_from_delegation_notes(world, agent_runs):
    from orchestrator.inbox.models import ReviewDelegation

    run = StepRun.objects.get(card=agent_runs[1])
    task = ReviewTask.objects.create(
        run=run, card=run.card, pipe=world.pipe, question="Approve?", allowed_decisions=["approve"]
    )
    ReviewDelegation.objects.create(
        task=task, to_user=world.admin, by=world.reviewer, note=f"{EMAIL} is a VIP"
    )

    governance.subject_erase(user=world.admin, organization=world.org, identifier=EMAIL)

    assert ReviewDelegation.objects.get().note == "[erased] is a VIP"


def test_a_dry_run_erasure_leaves_the_traces_alone(world, agent_runs):
    before = list(TraceEvent.objects.order_by("pk").values("summary", "data"))
    governance.subject_erase(user=world.admin, organization=world.org, identifier=EMAIL, dry_run=True)
    assert list(TraceEvent.objects.order_by("pk").values("summary", "data")) == before


# ---------------------------------------------------------------- deleting


def test_a_pipe_with_agents_and_steps_can_be_deleted_but_an_agent_in_use_cannot(world, rail_settings):
    from django.db.models import RestrictedError

    agent = make_agent(world.pipe)
    make_step(world.phase("triage"), agent=agent)
    with pytest.raises(RestrictedError):
        agent.delete()  # a step still runs with it
    world.pipe.delete()
    assert not StepRun.objects.exists() and not type(agent).objects.exists()


# ---------------------------------------------------------------- dispatch


def test_an_entry_into_a_phase_without_steps_is_closed_at_once_and_one_with_steps_is_sent(
    world, rail_settings, django_capture_on_commit_callbacks
):
    make_step(world.phase("approval"), mechanism=Mechanism.HUMAN, risk="low", key="decide", name="Decide")
    with django_capture_on_commit_callbacks(execute=True):
        card = submit(world)  # triage has no steps
    entry = PhaseEntry.objects.get(card=card)
    assert entry.processed_at is not None and entry.dispatch_count == 0  # no broker round trip

    with django_capture_on_commit_callbacks(execute=True):
        card = card_update_fields(
            actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"}
        )
        card_move(actor=Actor.for_user(world.member), card=card, to_phase=world.phase("approval"))
    entry = PhaseEntry.objects.get(card=card, phase__key="approval")
    assert entry.processed_at is None and entry.dispatch_count == 1  # sent to a worker


def test_the_sweep_runs_late_steps_whose_after_commit_hook_was_lost(world, escalation, clock):
    from orchestrator.rail.tasks import sweep_phase_entries

    card = submit(world)
    drain()
    clock.advance(hours=25)
    governance.sla_mark_late()  # after-commit hooks not run: as if the beat process died right after the commit
    entry = PhaseEntry.objects.get(card=card, left_at__isnull=True)
    assert entry.processed_at is not None and not StepRun.objects.filter(step=escalation).exists()

    sweep_phase_entries()  # within 30 s of the mark: the hook may still be on its way
    entry.refresh_from_db()
    assert entry.processed_at is not None

    clock.advance(minutes=1)
    sweep_phase_entries()
    entry.refresh_from_db()
    # Two sends counted: the one the write recorded for its lost hook, and the sweep's.
    assert entry.processed_at is None and entry.dispatch_count == 2
    drain()

    assert StepRun.objects.get(step=escalation).status == RunStatus.DONE
    clock.advance(minutes=1)
    sweep_phase_entries()
    drain()
    assert StepRun.objects.filter(step=escalation).count() == 1  # once per stay
    assert card.events.filter(kind="commented").count() == 1
