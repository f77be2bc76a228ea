"""A run's trace: its events, written in batches in the order they happened, the ledger of external calls
it already made (so a retried run never makes them twice), and what the card's timeline records of it."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone

from ..models import Step, StepRun, TraceEvent, TraceKind


class Tracer:
    """Collects a run's trace events in order and writes them in batches.

    Events are flushed before anything that may not come back (a model or HTTP call, an
    email) and inside the transaction that finishes the run, so a crash loses nothing that
    happened before the call, and a quick automation costs one INSERT for its whole trace."""

    def __init__(self, run: StepRun, *, fresh: bool = False):
        self.run = run
        self.fresh = fresh  # this worker created the run: no other worker ever numbered its events
        self.seq: int | None = 0 if fresh else None
        self.pending: list[TraceEvent] = []

    def add(self, kind: str, summary: str = "", data: Any = None) -> None:
        self.pending.append(
            TraceEvent(
                run=self.run,
                attempt=self.run.attempts,
                kind=kind,
                summary=str(summary)[:500],
                data=data,
                created_at=timezone.now(),
            )
        )

    def record(self, kind: str, summary: str = "", data: Any = None) -> None:
        """Add an event and write it now."""
        self.add(kind, summary, data)
        self.flush()

    def _last_seq(self) -> int:
        return TraceEvent.objects.filter(run=self.run).aggregate(m=Max("seq"))["m"] or 0

    def take_numbered(self) -> list[TraceEvent]:
        """The pending events, numbered and taken off the list, for a caller that writes them itself in
        the transaction holding the run's row lock, checked against its claim. Only for a run this
        worker created (`fresh`): no other worker ever numbered its events (see flush)."""
        if not self.fresh or self.seq is None:
            raise RuntimeError("only a run this worker created numbers its events without reading them")
        events, self.pending = self.pending, []
        for offset, event in enumerate(events, start=1):
            event.seq = self.seq + offset
        self.seq += len(events)
        return events

    def flush(self, *, claim_locked: bool = False) -> None:
        """Write the pending events. `claim_locked`: the caller holds the run's row lock, checked against
        its claim, in the transaction this runs in. For a run this worker created, no other worker ever
        numbered its events nor can now, so the numbers cannot conflict: no savepoint to try again
        (one statement, not three)."""
        if not self.pending:
            return
        for _try in range(3):
            if self.seq is None:
                self.seq = self._last_seq()
            for offset, event in enumerate(self.pending, start=1):
                event.seq = self.seq + offset
            if claim_locked and self.fresh:
                TraceEvent.objects.bulk_create(self.pending)
                self.seq += len(self.pending)
                self.pending = []
                return
            try:
                with transaction.atomic(savepoint=connection.in_atomic_block):
                    TraceEvent.objects.bulk_create(self.pending)
            except IntegrityError:  # numbers taken by a worker that held this run before
                self.seq = None
                for event in self.pending:
                    event.pk = None
                continue
            self.seq += len(self.pending)
            self.pending = []
            return
        raise RuntimeError("could not append trace events")


class RunLedger:
    """External actions already performed by this run (kept as trace events, committed at once)."""

    def __init__(self, tracer: Tracer):
        self.tracer = tracer

    def done(self, index: int) -> dict | None:
        event = (
            TraceEvent.objects.filter(
                run=self.tracer.run, kind__in=[TraceKind.HTTP_CALL, TraceKind.TOOL_CALL]
            )
            .filter(data__ledger_index=index)
            .order_by("seq")
            .first()
        )
        return event.data.get("outcome") if event else None

    def record(self, index: int, outcome: dict, call: dict) -> None:
        kind = TraceKind.HTTP_CALL if call.get("type") == "http" else TraceKind.TOOL_CALL
        summary = (
            f"{call.get('method')} {call.get('url')} → {call.get('status')}"
            if kind == TraceKind.HTTP_CALL
            else f"{call.get('type')} sent"
        )
        self.tracer.record(kind, summary, {**call, "ledger_index": index, "outcome": outcome})


def run_url(run: StepRun) -> str:
    """The run page, linked from the card's timeline."""
    return _run_url_pattern(get_script_prefix(), get_urlconf()).replace(_SOME_RUN, str(run.pk))


_SOME_RUN = "918273645546372819"  # a run id no URL of the project otherwise holds


@lru_cache(maxsize=8)
def _run_url_pattern(prefix: str, urlconf: str | None) -> str:
    # Every step links its run: the URL resolver's reverse, once per prefix and URLconf, not per step.
    return reverse("rail:run", kwargs={"run_id": int(_SOME_RUN)}, urlconf=urlconf)


def timeline_payload(run: StepRun, step: Step, **extra: Any) -> dict[str, Any]:
    return {
        "run_id": run.pk,
        "step": run.step_name,
        "mechanism": run.mechanism or step.mechanism,
        "status": run.status,
        "decision": run.decision,
        "reason": run.routing_reason,
        "reason_data": run.reason_data,
        "cost": str(run.cost),
        "currency": run.currency,
        "url": run_url(run),
        **extra,
    }
