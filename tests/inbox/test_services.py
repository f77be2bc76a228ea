"""The inbox's services on review tasks the rail made: due times, decisions, four-eyes, the AI draft,
requests for changes, delegation, bulk approval, escalation and notifications."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from orchestrator.inbox.models import InboxItem, ReviewDelegation, ReviewSignoff
from orchestrator.inbox.services import (
    inbox_bulk_approve,
    inbox_decide,
    inbox_delegate,
    inbox_escalate_overdue,
    inbox_open_missing,
    inbox_request_changes,
)
from orchestrator.models import ReviewStatus, ReviewTask, Risk, RunStatus, StepRun
from orchestrator.rail.services import RailError, RailPermissionError
from pipes.choices import PipeRole, RailStatus
from pipes.models import Notification
from pipes.roles import pipe_role_grant
from pipes.services import CardError, CardPermissionError
from tests.inbox.conftest import (
    approval_step,
    card_in_approval,
    drafted_card,
    task_of,
    triage_agent_step,
)
from tests.personas import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def second_reviewer(world):
    user = make_user("rita", first_name="Rita")
    pipe_role_grant(pipe=world.pipe, user=user, role=PipeRole.REVIEWER)
    return user


# ---------------------------------------------------------------- opening


def test_it_opens_an_item_due_after_the_phases_sla(world, rail_settings):
    approval_step(world)
    card = card_in_approval(world)
    task = task_of(card)
    item = InboxItem.objects.get(task=task)
    assert item.sla_hours == 48 and item.due_at == task.created_at + timedelta(hours=48)
    assert item.approvals_required == 1 and item.escalated_at is None


def test_it_falls_back_to_a_day_when_the_phase_has_no_sla(world, rail_settings):
    world.phase("approval").__class__.objects.filter(pk=world.phase("approval").pk).update(sla_hours=None)
    approval_step(world)
    item = InboxItem.objects.get(task=task_of(card_in_approval(world)))
    assert item.sla_hours == 24


def test_it_needs_two_approvals_on_a_four_eyes_step(world, rail_settings):
    approval_step(world, four_eyes=True)
    assert InboxItem.objects.get(task=task_of(card_in_approval(world))).approvals_required == 2


def test_it_opens_items_the_signal_missed(world, rail_settings):
    approval_step(world)
    task = task_of(card_in_approval(world))
    InboxItem.objects.filter(task=task).delete()
    assert inbox_open_missing() == 1
    assert InboxItem.objects.filter(task=task).exists()


def test_it_emails_the_reviewers_of_a_new_task(world, rail_settings, django_capture_on_commit_callbacks):
    approval_step(world)
    with django_capture_on_commit_callbacks(execute=True):
        card = card_in_approval(world)
    task = task_of(card)
    to = {address for message in mail.outbox for address in message.to}
    assert {"reviewer@example.com", "admin@example.com", "owner@example.com"} <= to
    assert "requester@example.com" not in to  # the requester never reviews their own case
    message = next(m for m in mail.outbox if m.to == ["reviewer@example.com"])
    assert f"/inbox/tasks/{task.pk}/" in message.body and "Approve this purchase?" in message.body
    note = Notification.objects.get(user=world.reviewer, card=card)
    assert note.url == f"/inbox/tasks/{task.pk}/"


# ---------------------------------------------------------------- deciding


def test_it_applies_a_single_approval_and_moves_the_card(world, rail_settings):
    approval_step(world)
    card = card_in_approval(world)
    outcome = inbox_decide(
        task=task_of(card), user=world.reviewer, decision="approve", values={"po_number": "PO-7"}
    )
    card.refresh_from_db()
    assert outcome.final and card.phase.key == "done" and card.values["po_number"] == "PO-7"
    signoff = ReviewSignoff.objects.get(task=outcome.task)
    assert signoff.user == world.reviewer and signoff.final and signoff.decision == "approve"


def supplier_phone(world):
    """A personal-data field of Approval: a review of that phase sets it."""
    from pipes.choices import FieldType
    from pipes.models import Field

    return Field.objects.create(
        pipe=world.pipe,
        phase=world.phase("approval"),
        key="supplier_phone",
        label="Supplier phone",
        type=FieldType.SHORT_TEXT,
        position=9,
        pii=True,
    )


def test_a_reviewer_who_may_not_see_personal_data_may_not_set_it(world, rail_settings):
    # The decision's values are applied as the rail's, past the write path's check of the person: the
    # inbox's service checks it, for the screen's values as for the API's or a forged form's.
    supplier_phone(world)
    approval_step(world)
    card = card_in_approval(world)
    task = task_of(card)
    with pytest.raises(CardPermissionError) as refused:
        inbox_decide(
            task=task,
            user=world.reviewer,  # a reviewer: no view_pii
            decision="approve",
            values={"po_number": "PO-7", "supplier_phone": "+55 11 99999-0000"},
        )
    assert refused.value.field_keys == ["supplier_phone"]
    assert "You may not see this personal data" in refused.value.message
    card.refresh_from_db()
    task.refresh_from_db()
    assert task.status == ReviewStatus.OPEN and card.phase.key == "approval"
    assert "supplier_phone" not in card.values and "po_number" not in card.values
    assert not ReviewSignoff.objects.filter(task=task).exists()

    # One who may see it (the pipe's admin reviews too) sets it with the decision.
    outcome = inbox_decide(
        task=task,
        user=world.admin,
        decision="approve",
        values={"po_number": "PO-7", "supplier_phone": "+55 11 99999-0000"},
    )
    card.refresh_from_db()
    assert outcome.final and card.values["supplier_phone"] == "+55 11 99999-0000"


def test_a_reviewer_who_may_not_see_personal_data_may_not_approve_a_draft_that_sets_it(world, ollama_only):
    """Approving applies the agent's draft whole: a reviewer shown a personal value masked would vouch
    for what they never saw. They may reject it or ask for changes; one who may see it approves."""
    from agents.models import Agent
    from pipes.models import Field

    Field.objects.filter(pipe=world.pipe, key="cost_center").update(pii=True)
    step = triage_agent_step(world, risk=Risk.LOW)  # low risk: bulk approval may take it
    Agent.objects.filter(pk=step.agent_id).update(may_see_pii=True)  # it may write personal data
    card = drafted_card(world, ollama_only)
    task = task_of(card)
    assert task.proposal["values"]["cost_center"] == "CC-123"

    with pytest.raises(RailPermissionError) as refused:
        inbox_decide(task=task, user=world.reviewer, decision="approve", values={"category": "Software"})
    assert "sets personal data you may not see: Cost center" in refused.value.message
    card.refresh_from_db()
    task.refresh_from_db()
    assert task.status == ReviewStatus.OPEN and "cost_center" not in card.values
    bulk = inbox_bulk_approve(task_ids=[task.pk], user=world.reviewer)  # nor all at once
    assert not bulk.approved and "Cost center" in bulk.refused[0][1]

    # The screen says so before anyone tries: no Approve button, the reason instead.
    from django.test import Client
    from django.urls import reverse

    browser = Client()
    browser.force_login(world.reviewer)
    page = browser.get(reverse("inbox:task", args=[task.pk])).content.decode()
    assert 'id="unseen-draft"' in page and "personal data you may not see: Cost center" in page
    assert 'value="approve"' not in page and 'value="reject"' in page
    assert "CC-123" not in page  # the draft's personal value is masked on the proposal too
    # Even once the agent may no longer write the field (its draft then sets a field the review does not).
    Agent.objects.filter(pk=step.agent_id).update(writable_fields=["category"])
    page = browser.get(reverse("inbox:task", args=[task.pk])).content.decode()
    assert "CC-123" not in page and "Cost center" in page

    outcome = inbox_decide(task=task, user=world.admin, decision="approve", values={"category": "Software"})
    card.refresh_from_db()
    assert outcome.final and card.values["cost_center"] == "CC-123"


def test_it_never_lets_the_requester_decide_their_own_case(world, rail_settings):
    approval_step(world)
    card = card_in_approval(world, by=world.requester)
    pipe_role_grant(
        pipe=world.pipe, user=world.requester, role=PipeRole.REVIEWER
    )  # now they review this pipe too
    with pytest.raises(RailPermissionError, match="You filed this request"):
        inbox_decide(
            task=task_of(card), user=world.requester, decision="approve", values={"po_number": "P-1"}
        )
    with pytest.raises(RailPermissionError, match="You filed this request"):
        inbox_decide(task=task_of(card), user=world.requester, decision="reject", comment="no")
    assert task_of(card).status == ReviewStatus.OPEN


def test_it_requires_a_comment_to_reject(world, rail_settings):
    approval_step(world)
    card = card_in_approval(world)
    with pytest.raises(CardError) as exc:
        inbox_decide(task=task_of(card), user=world.reviewer, decision="reject", values={"po_number": "P-1"})
    assert "comment" in exc.value.errors


def test_it_refuses_a_decision_on_a_decided_task_with_who_decided(world, rail_settings):
    approval_step(world)
    card = card_in_approval(world)
    task = task_of(card)
    inbox_decide(task=task, user=world.reviewer, decision="approve", values={"po_number": "PO-7"})
    with pytest.raises(RailError) as exc:
        inbox_decide(
            task=task, user=world.admin, decision="reject", comment="late", values={"po_number": "X"}
        )
    assert exc.value.message == "This review was already decided (approve) by Reviewer; nothing was changed."
    card.refresh_from_db()
    assert card.phase.key == "done" and card.values["po_number"] == "PO-7"


@pytest.mark.parametrize("who", ["member", "viewer", "requester", "outsider"])
def test_it_lets_only_reviewers_of_the_pipe_decide(world, rail_settings, who):
    approval_step(world)
    card = card_in_approval(world, by=world.member)
    with pytest.raises(RailPermissionError):
        inbox_decide(
            task=task_of(card), user=getattr(world, who), decision="approve", values={"po_number": "P"}
        )


def test_it_names_the_missing_field_and_changes_nothing(world, rail_settings):
    approval_step(world)
    card = card_in_approval(world)
    with pytest.raises(CardError) as exc:
        inbox_decide(task=task_of(card), user=world.reviewer, decision="approve", values={"po_number": ""})
    assert "po_number" in exc.value.errors
    assert task_of(card).status == ReviewStatus.OPEN and not ReviewSignoff.objects.exists()


def test_it_tells_the_requester_of_the_decision(world, rail_settings, django_capture_on_commit_callbacks):
    approval_step(world)
    card = card_in_approval(world)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        inbox_decide(
            task=task_of(card),
            user=world.reviewer,
            decision="reject",
            comment="Over budget",
            values={"po_number": "P"},
        )
    note = Notification.objects.get(user=world.requester, card=card)
    assert note.message == f"Your request {card.reference} was rejected by Reviewer"
    assert note.url == f"/portal/requests/{card.pk}/"
    email = next(m for m in mail.outbox if m.to == ["requester@example.com"])
    assert "Over budget" in email.body and f"/portal/requests/{card.pk}/" in email.body


# ---------------------------------------------------------------- the agent's draft


def test_it_records_the_agents_proposal_on_the_timeline_and_trace(world, ollama_only):
    triage_agent_step(world)
    card = drafted_card(world, ollama_only)
    task = task_of(card)
    assert task.proposal["values"] == {"category": "Software", "cost_center": "CC-123"}
    proposed = card.events.get(kind="step", actor_kind="agent")
    assert proposed.actor_label == "Triage agent"
    assert proposed.reason == "Proposed approve with confidence 0.55 · draft of Category, Cost center"
    assert proposed.payload["proposal"]["values"]["category"] == "Software"
    assert task.run.events.filter(kind="review", data__proposal__decision="approve").exists()


def test_it_applies_the_reviewers_edits_and_records_both(world, ollama_only):
    triage_agent_step(world)
    card = drafted_card(world, ollama_only)
    task = task_of(card)
    inbox_decide(
        task=task,
        user=world.reviewer,
        decision="approve",
        values={"category": "Hardware", "cost_center": "CC-123"},
    )
    card.refresh_from_db()
    assert card.phase.key == "approval" and card.values["category"] == "Hardware"
    edited = card.events.get(kind="step", reason__startswith="Edited the agent's draft")
    assert edited.actor_label == "Reviewer" and edited.reason == "Edited the agent's draft: Category"
    assert edited.payload["edits"] == {"category": {"proposed": "Software", "reviewer": "Hardware"}}
    changed = card.events.filter(kind="fields_changed").last()
    assert changed.payload["changes"]["category"]["after"] == "Hardware"
    assert ReviewSignoff.objects.get(task=task).edited_keys == ["category"]


def test_it_applies_the_draft_as_proposed_when_nothing_was_edited(world, ollama_only):
    triage_agent_step(world)
    card = drafted_card(world, ollama_only)
    inbox_decide(
        task=task_of(card),
        user=world.reviewer,
        decision="approve",
        values={"category": "Software", "cost_center": "CC-123"},
    )
    card.refresh_from_db()
    assert card.values["category"] == "Software"
    assert not card.events.filter(reason__startswith="Edited").exists()


def test_a_rejection_applies_only_what_the_reviewer_changed(world, ollama_only):
    triage_agent_step(world)
    card = drafted_card(world, ollama_only)
    inbox_decide(
        task=task_of(card),
        user=world.reviewer,
        decision="reject",
        comment="Services are bought elsewhere",
        values={"category": "Services", "cost_center": "CC-123"},  # the draft's cost center left as proposed
    )
    card.refresh_from_db()
    assert card.phase.key == "rejected" and card.values["category"] == "Services"
    assert "cost_center" not in card.values


# ---------------------------------------------------------------- four eyes


def test_four_eyes_records_the_first_approval_and_waits(world, rail_settings, second_reviewer):
    approval_step(world, four_eyes=True)
    card = card_in_approval(world)
    task = task_of(card)
    outcome = inbox_decide(task=task, user=world.reviewer, decision="approve", values={"po_number": "PO-1"})
    card.refresh_from_db()
    assert not outcome.final and (outcome.approvals, outcome.approvals_required) == (1, 2)
    assert card.phase.key == "approval" and "po_number" not in card.values
    assert card.rail_status == RailStatus.WAITING_REVIEW
    task.refresh_from_db()
    assert task.status == ReviewStatus.OPEN
    assert card.events.filter(reason__startswith="Approved (1 of 2)").exists()


def test_four_eyes_refuses_the_same_person_twice(world, rail_settings):
    approval_step(world, four_eyes=True)
    task = task_of(card_in_approval(world))
    inbox_decide(task=task, user=world.reviewer, decision="approve", values={"po_number": "PO-1"})
    with pytest.raises(RailPermissionError, match="a second, different reviewer"):
        inbox_decide(task=task, user=world.reviewer, decision="approve")


def test_four_eyes_closes_with_a_second_different_reviewer(world, rail_settings, second_reviewer):
    approval_step(world, four_eyes=True)
    card = card_in_approval(world)
    task = task_of(card)
    inbox_decide(task=task, user=world.reviewer, decision="approve", values={"po_number": "PO-1"})
    outcome = inbox_decide(task=task, user=second_reviewer, decision="approve", comment="Confirmed")
    card.refresh_from_db()
    assert outcome.final and outcome.approvals == 2
    assert card.phase.key == "done" and card.values["po_number"] == "PO-1"
    assert outcome.task.decided_by == second_reviewer
    assert list(ReviewSignoff.objects.filter(task=task).values_list("user__username", "final")) == [
        ("reviewer", False),
        ("rita", True),
    ]


def test_four_eyes_second_reviewer_cannot_change_the_values(world, rail_settings, second_reviewer):
    approval_step(world, four_eyes=True)
    task = task_of(card_in_approval(world))
    inbox_decide(task=task, user=world.reviewer, decision="approve", values={"po_number": "PO-1"})
    with pytest.raises(RailError, match="confirms the first approver's values"):
        inbox_decide(task=task, user=second_reviewer, decision="approve", values={"po_number": "PO-2"})


def test_four_eyes_rejection_by_either_ends_it(world, rail_settings, second_reviewer):
    approval_step(world, four_eyes=True)
    card = card_in_approval(world)
    task = task_of(card)
    inbox_decide(task=task, user=world.reviewer, decision="approve", values={"po_number": "PO-1"})
    inbox_decide(task=task, user=second_reviewer, decision="reject", comment="Duplicate order")
    card.refresh_from_db()
    task.refresh_from_db()
    assert task.status == ReviewStatus.DECIDED and task.decision == "reject"
    assert card.phase.key == "rejected"


def test_four_eyes_first_approval_is_checked_against_the_process(world, rail_settings):
    approval_step(world, four_eyes=True)
    task = task_of(card_in_approval(world))
    with pytest.raises(CardError) as exc:
        inbox_decide(task=task, user=world.reviewer, decision="approve", values={})
    assert "po_number" in exc.value.errors and not ReviewSignoff.objects.exists()
    task.refresh_from_db()
    assert task.status == ReviewStatus.OPEN and task.run.events.filter(kind="review").count() == 1


def test_four_eyes_covers_agent_drafts(world, ollama_only, second_reviewer):
    """The agent drafts, reviewer A edits and approves, reviewer B (not A) confirms."""
    triage_agent_step(world, four_eyes=True)
    card = drafted_card(world, ollama_only)
    task = task_of(card)
    inbox_decide(
        task=task,
        user=world.reviewer,
        decision="approve",
        values={"category": "Hardware", "cost_center": "CC-123"},
    )
    with pytest.raises(RailPermissionError):
        inbox_decide(task=task, user=world.reviewer, decision="approve")
    inbox_decide(task=task, user=second_reviewer, decision="approve")
    card.refresh_from_db()
    assert card.phase.key == "approval" and card.values["category"] == "Hardware"
    reasons = list(card.events.filter(kind="step").values_list("actor_label", "reason"))
    assert (
        "Triage agent",
        "Proposed approve with confidence 0.55 · draft of Category, Cost center",
    ) in reasons
    assert ("Reviewer", "Edited the agent's draft: Category") in reasons


def test_four_eyes_assigned_step_opens_the_second_approval_to_others(world, rail_settings, second_reviewer):
    approval_step(world, four_eyes=True, reviewer=world.reviewer)
    task = task_of(card_in_approval(world))
    assert task.assignee == world.reviewer
    inbox_decide(task=task, user=world.reviewer, decision="approve", values={"po_number": "PO-1"})
    task.refresh_from_db()
    assert task.assignee is None
    assert inbox_decide(task=task, user=second_reviewer, decision="approve").final


# ---------------------------------------------------------------- request changes


def test_it_sends_the_card_back_and_asks_the_requester(
    world, rail_settings, django_capture_on_commit_callbacks
):
    approval_step(world)
    card = card_in_approval(world)
    task = task_of(card)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        inbox_request_changes(
            task=task,
            user=world.reviewer,
            field_keys=["amount", "quote"],
            comment="Attach the supplier's quote and the amount with taxes.",
            to_phase=world.phase("triage"),
        )
    card.refresh_from_db()
    task.refresh_from_db()
    run = StepRun.objects.get(pk=task.run_id)
    assert card.phase.key == "triage" and card.requested_fields == ["amount", "quote"]
    assert task.status == ReviewStatus.DECIDED and task.decision == "request_changes"
    assert task.decided_by == world.reviewer
    assert run.status == RunStatus.DONE and run.decision == "request_changes"
    assert run.events.filter(kind="review", data__fields=["amount", "quote"]).exists()
    assert card.events.filter(kind="step", reason="Asked the requester to correct: Amount, Quote").exists()
    email = next(m for m in mail.outbox if m.to == ["requester@example.com"])
    assert "- Amount" in email.body and "- Quote" in email.body
    assert f"/portal/requests/{card.pk}/" in email.body and "supplier's quote" in email.body
    assert Notification.objects.filter(
        user=world.requester, card=card, url=f"/portal/requests/{card.pk}/"
    ).exists()


def test_it_requires_a_comment_and_fields_to_request_changes(world, rail_settings):
    approval_step(world)
    task = task_of(card_in_approval(world))
    with pytest.raises(CardError) as exc:
        inbox_request_changes(task=task, user=world.reviewer, field_keys=[], comment="")
    assert {"fields", "comment"} <= set(exc.value.errors)
    task.refresh_from_db()
    assert task.status == ReviewStatus.OPEN


def test_the_requester_cannot_request_changes_on_their_own_case(world, rail_settings):
    approval_step(world)
    card = card_in_approval(world, by=world.admin)
    with pytest.raises(RailPermissionError):
        inbox_request_changes(task=task_of(card), user=world.admin, field_keys=["amount"], comment="More")


# ---------------------------------------------------------------- delegation


def test_it_delegates_to_another_reviewer_and_records_it(
    world, rail_settings, second_reviewer, django_capture_on_commit_callbacks
):
    approval_step(world)
    card = card_in_approval(world)
    task = task_of(card)
    with django_capture_on_commit_callbacks(execute=True):
        inbox_delegate(task=task, user=world.reviewer, to_user=second_reviewer, note="You know this supplier")
    task.refresh_from_db()
    assert task.assignee == second_reviewer
    delegation = ReviewDelegation.objects.get(task=task)
    assert (delegation.from_user, delegation.by, delegation.note) == (
        None,
        world.reviewer,
        "You know this supplier",
    )
    assert card.events.filter(reason="Delegated the review to Rita: You know this supplier").exists()
    assert Notification.objects.filter(user=second_reviewer, url=f"/inbox/tasks/{task.pk}/").exists()
    assert any(m.to == ["rita@example.com"] for m in mail.outbox)
    with pytest.raises(RailPermissionError, match="assigned to Rita"):
        inbox_decide(task=task, user=world.reviewer, decision="approve", values={"po_number": "P"})


@pytest.mark.parametrize("who", ["member", "viewer", "requester"])
def test_it_delegates_only_to_reviewers_of_the_pipe(world, rail_settings, who):
    approval_step(world)
    task = task_of(card_in_approval(world, by=world.admin))
    with pytest.raises(RailError, match="is not a reviewer"):
        inbox_delegate(task=task, user=world.reviewer, to_user=getattr(world, who))


# ---------------------------------------------------------------- bulk


def test_it_approves_low_risk_tasks_of_one_step_each_recorded(world, ollama_only):
    triage_agent_step(world, risk=Risk.LOW)
    cards = [drafted_card(world, ollama_only, item=f"Mouse {i}") for i in range(3)]
    result = inbox_bulk_approve(task_ids=[task_of(c).pk for c in cards], user=world.reviewer)
    assert len(result.approved) == 3 and not result.refused
    for card in cards:
        card.refresh_from_db()
        assert card.phase.key == "approval" and card.values["category"] == "Software"
        assert card.events.filter(kind="step", actor_label="Reviewer", reason="Decided approve").exists()
    assert ReviewSignoff.objects.filter(user=world.reviewer, final=True).count() == 3


def test_it_refuses_bulk_approval_of_high_risk_or_mixed_steps(world, rail_settings, ollama_only):
    approval_step(world)  # high risk
    first, second = card_in_approval(world, item="A"), card_in_approval(world, item="B")
    with pytest.raises(RailError, match="low-risk"):
        inbox_bulk_approve(task_ids=[task_of(first).pk, task_of(second).pk], user=world.reviewer)
    triage_agent_step(world, risk=Risk.LOW)
    drafted = drafted_card(world, ollama_only, item="C")
    with pytest.raises(RailError, match="one and the same step"):
        inbox_bulk_approve(task_ids=[task_of(first).pk, task_of(drafted).pk], user=world.reviewer)


def test_bulk_approval_reports_each_refusal(world, ollama_only):
    triage_agent_step(world, risk=Risk.LOW)
    ok, own = (
        drafted_card(world, ollama_only, item="Mouse"),
        drafted_card(world, ollama_only, by=world.admin, item="Desk"),
    )
    result = inbox_bulk_approve(task_ids=[task_of(ok).pk, task_of(own).pk], user=world.admin)
    assert [t.card_id for t in result.approved] == [ok.pk]
    assert [(t.card_id, reason) for t, reason in result.refused] == [
        (own.pk, "You filed this request, so you cannot decide it: another reviewer will.")
    ]


# ---------------------------------------------------------------- escalation


def test_it_escalates_an_overdue_task_to_the_pipes_admins_once(
    world, rail_settings, django_capture_on_commit_callbacks
):
    approval_step(world)
    card = card_in_approval(world)
    task = task_of(card)
    assert inbox_escalate_overdue() == 0
    later = timezone.now() + timedelta(hours=49)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert inbox_escalate_overdue(now=later) == 1
    assert inbox_escalate_overdue(now=later + timedelta(hours=1)) == 0
    item = InboxItem.objects.get(task=task)
    assert item.escalated_at == later
    notified = set(
        Notification.objects.filter(card=card, message__startswith="Overdue review escalated").values_list(
            "user__username", flat=True
        )
    )
    assert notified == {"admin", "owner"}
    assert {m.to[0] for m in mail.outbox if "escalated" in m.subject} == {
        "admin@example.com",
        "owner@example.com",
    }
    assert card.events.filter(reason__startswith="Review overdue (SLA 48 h)").exists()
    assert task.run.events.filter(kind="review", summary__contains="escalated").exists()


def test_it_does_not_escalate_decided_tasks(world, rail_settings):
    approval_step(world)
    task = task_of(card_in_approval(world))
    inbox_decide(task=task, user=world.reviewer, decision="approve", values={"po_number": "PO-1"})
    assert inbox_escalate_overdue(now=timezone.now() + timedelta(days=5)) == 0


def test_the_beat_task_escalates(world, rail_settings):
    from orchestrator.inbox.tasks import escalate_overdue_reviews

    approval_step(world)
    task = task_of(card_in_approval(world))
    InboxItem.objects.filter(task=task).update(due_at=timezone.now() - timedelta(minutes=1))
    assert escalate_overdue_reviews.apply().get() == 1
    assert ReviewTask.objects.get(pk=task.pk).inbox.escalated_at is not None
