"""What one automation step costs the database on the worker's code path (issue 17): the statements of the
task a worker runs for a phase entry, counted, so a per-step load or a repeated query cannot creep back."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator.models import Mechanism, RunStatus, StepRun, TraceEvent
from orchestrator.rail.tasks import run_phase_entry
from pipes.models import PhaseEntry
from pipes.services import Actor, card_create
from pipes.timeline import verify_timelines
from tests.orchestrator.conftest import make_step
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db

TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")

# The statements of one automation step that sets a field, once the worker knows the pipe's design:
#   the entry with its card, pipe, organization, phases, design stamp and whether it has runs (1);
#   and an id reserved for the run; then ONE transaction (an automation that calls no other system,
#   loop._run_at_once): the card locked through the write path (1), which the write path's functions
#   given it neither read nor lock again; the field written and the step recorded on the card's
#   timeline, the card's row once, the audit log's entry (written from the locked row: no read), the run
#   inserted finished, its trace and the entry processed, all in one statement
#   (services.card_writes_together, and card_writes_join for the run's part) (1). No savepoint.
STEP_STATEMENTS = 3  # 19 before issue 17 (and 8 more for savepoints), 15 (and 6) before the lock once,
# 9 while the run was inserted first and updated at the end, 8 before the card's writes went together,
# 4 while the run's part was a statement of its own
# SQLite (the embedded default) takes the ORM's path: the run finished, its trace and the entry processed
# in three statements.
STEP_STATEMENTS_SQLITE = 11


def statements(queries) -> list[str]:
    return [q["sql"] for q in queries if not q["sql"].upper().startswith(TRANSACTION_CONTROL)]


def new_entry(world) -> int:
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    return PhaseEntry.objects.get(card=card, processed_at__isnull=True).pk


def test_an_automation_step_on_the_worker_asks_a_bounded_number_of_statements(world, stamping_step):
    run_phase_entry(new_entry(world))  # the first step of a process loads its design (steps, fields)
    entry_id = new_entry(world)

    with CaptureQueriesContext(connection) as queries:
        run_phase_entry(entry_id)  # as the worker calls it

    run = StepRun.objects.get(entry_id=entry_id)
    assert run.status == RunStatus.DONE
    assert run.card.values["category"] == "Hardware"
    assert TraceEvent.objects.filter(run=run).count() >= 2  # the trace is written, in one statement
    sql = statements(queries)
    bound = STEP_STATEMENTS if connection.vendor == "postgresql" else STEP_STATEMENTS_SQLITE
    assert len(sql) <= bound, "\n".join(sql)
    # Inside the test's own transaction the step's transaction is a savepoint (a worker sends BEGIN for
    # it); nothing inside it adds one.
    assert len([q for q in queries if q["sql"].upper().startswith("SAVEPOINT")]) == 1
    card_reads = [s for s in sql if s.startswith("SELECT") and ("FROM pipes_card" in s.replace('"', ""))]
    assert len(card_reads) == 1, card_reads  # the card locked once
    assert LogEntry.objects.get_for_object(run.card).filter(action=LogEntry.Action.UPDATE).exists()
    # Nothing of the design is read again: the steps, phases and fields come from the design cache.
    assert not [s for s in sql if '"orchestrator_step"' in s.split(" WHERE ")[0]], sql
    assert not [s for s in sql if s.startswith('SELECT "pipes_field"')], sql
    assert sum(1 for s in sql if "INSERT INTO orchestrator_traceevent" in s.replace('"', "")) == 1
    # Both events are on the card's timeline, chained, and the card's row counts them.
    card = run.card
    assert list(card.events.order_by("seq").values_list("kind", flat=True))[-2:] == ["fields_changed", "step"]
    assert card.event_count == card.events.count() and list(verify_timelines([card])) == []


def test_a_step_written_is_run_as_written_the_next_time(world, stamping_step):
    """The steps come from the design cache: a change to a step reaches the next entry at once."""
    run_phase_entry(new_entry(world))
    stamping_step.actions = [{"type": "set_field", "field": "category", "value": "Software"}]
    stamping_step.save()

    entry_id = new_entry(world)
    run_phase_entry(entry_id)

    assert StepRun.objects.get(entry_id=entry_id).card.values["category"] == "Software"


def test_a_refused_automation_leaves_one_failed_run_and_nothing_applied(world, rail_settings):
    """The one-transaction path rolls back whole when the write path refuses the result; the claimed path
    then runs the step once more and records the refusal: one run, failed at its first attempt."""
    make_step(
        world.phase("triage"),
        key="stamp",
        name="Stamp",
        mechanism=Mechanism.AUTOMATION,
        actions=[{"type": "set_field", "field": "category", "value": "Furniture"}],  # not an option
        on_approve="",
        on_reject="",
    )
    entry_id = new_entry(world)

    run_phase_entry(entry_id)

    run = StepRun.objects.get(entry_id=entry_id)
    assert (run.status, run.attempts) == (RunStatus.FAILED, 1)
    assert "category" not in run.card.values
    assert TraceEvent.objects.filter(run=run, kind="error").exists()
    assert PhaseEntry.objects.get(pk=entry_id).processed_at is not None


def _conversions():
    """How many statements psycopg converted from its cache (values bound on the server, or on the client)."""
    from psycopg import _queries

    return _queries._query2pg.cache_info().hits + _queries._query2pg_client.cache_info().hits


@pytest.mark.postgres
def test_a_steps_statements_are_converted_once_per_process(world, stamping_step):
    """psycopg converts a statement's placeholders once and reuses the conversion: a step's one-statement
    writes (51 values and more) too, not only the short ones (pipes.apps._psycopg_conversion_cache)."""
    run_phase_entry(new_entry(world))
    run_phase_entry(new_entry(world))
    entry_id = new_entry(world)
    hits = _conversions()
    with CaptureQueriesContext(connection) as queries:
        run_phase_entry(entry_id)
    after_hits = _conversions()
    assert StepRun.objects.get(entry_id=entry_id).status == RunStatus.DONE
    # every statement of the step (each has values) was converted from the cache: 3 of 4 when the cache
    # turned the widest away
    assert after_hits - hits >= len(statements(queries)), statements(queries)
