"""Two reviewers clicking at once, on PostgreSQL with real row locks: one wins, the other is told."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from orchestrator.inbox.models import ReviewSignoff
from orchestrator.inbox.services import inbox_decide
from orchestrator.models import ReviewStatus, ReviewTask
from orchestrator.rail.services import RailError
from pipes.choices import PipeRole
from pipes.models import Card
from pipes.roles import pipe_role_grant
from tests.inbox.conftest import approval_step, card_in_approval, task_of
from tests.personas import make_user

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def at_once(*calls):
    """Run the calls in threads released together; returns each one's result or exception, in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait(timeout=10)
            results[index] = call()
        except Exception as exc:  # noqa: BLE001 - the test reads what each click got
            results[index] = exc
        finally:
            connection.close()  # this thread's own connection, so the test database can be dropped

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.fixture
def rita(world):
    user = make_user("rita", first_name="Rita")
    pipe_role_grant(pipe=world.pipe, user=user, role=PipeRole.REVIEWER)
    return user


def test_two_reviewers_deciding_at_once_one_wins_the_other_is_told(world, rail_settings, rita):
    approval_step(world)
    card = card_in_approval(world)
    task = task_of(card)
    results = at_once(
        lambda: inbox_decide(
            task=task, user=world.reviewer, decision="approve", values={"po_number": "PO-A"}
        ),
        lambda: inbox_decide(
            task=task, user=rita, decision="reject", comment="No", values={"po_number": "PO-R"}
        ),
    )
    won = [r for r in results if not isinstance(r, Exception)]
    lost = [r for r in results if isinstance(r, Exception)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], RailError)
    winner = won[0].task.decided_by
    assert lost[0].message == (
        f"This review was already decided ({won[0].decision}) by {winner.first_name}; nothing was changed."
    )
    task.refresh_from_db()
    card = Card.objects.get(pk=card.pk)
    assert task.status == ReviewStatus.DECIDED and task.decided_by == winner
    assert card.phase.key == ("done" if won[0].decision == "approve" else "rejected")
    assert ReviewSignoff.objects.filter(task=task).count() == 1
    assert card.events.filter(kind="step", reason__startswith="Decided").count() == 1


def test_two_first_approvals_at_once_make_one_four_eyes_decision(world, rail_settings, rita):
    approval_step(world, four_eyes=True)
    card = card_in_approval(world)
    task = task_of(card)
    results = at_once(
        lambda: inbox_decide(
            task=task, user=world.reviewer, decision="approve", values={"po_number": "PO-1"}
        ),
        lambda: inbox_decide(task=task, user=rita, decision="approve", values={"po_number": "PO-1"}),
    )
    assert not any(isinstance(r, Exception) for r in results), results
    assert sorted(r.final for r in results) == [False, True]
    task = ReviewTask.objects.get(pk=task.pk)
    assert task.status == ReviewStatus.DECIDED
    assert Card.objects.get(pk=card.pk).phase.key == "done"
    assert sorted(ReviewSignoff.objects.filter(task=task).values_list("final", flat=True)) == [False, True]


def test_one_reviewer_double_clicking_records_one_approval(world, rail_settings):
    approval_step(world, four_eyes=True)
    task = task_of(card_in_approval(world))
    results = at_once(
        lambda: inbox_decide(
            task=task, user=world.reviewer, decision="approve", values={"po_number": "PO-1"}
        ),
        lambda: inbox_decide(
            task=task, user=world.reviewer, decision="approve", values={"po_number": "PO-1"}
        ),
    )
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and "a second, different reviewer" in errors[0].message
    assert ReviewSignoff.objects.filter(task=task).count() == 1
    assert ReviewTask.objects.get(pk=task.pk).status == ReviewStatus.OPEN
