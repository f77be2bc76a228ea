"""Reads of the rail: permission-checking getters, a run's trace, a pipe's costs per mechanism."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, Sum
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _

from pipes.models import Pipe
from pipes.roles import PipeAccess, pipe_access

from . import costs
from .models import Mechanism, RunStatus, StepRun


class RailForbidden(Exception):
    """The person sees the pipe but may not see the rail's records (HTTP 403)."""


def _check(user: AbstractBaseUser, pipe: Pipe) -> PipeAccess:
    """Pipe members and admins see the rail; anyone else who knows the pipe gets 403, outsiders 404."""
    access = pipe_access(user=user, pipe=pipe)
    if access.can_work or access.can_administer:
        return access
    if access.can_view_board or access.can_request:
        raise RailForbidden()
    raise Http404()


def run_get_for_user(*, user: AbstractBaseUser, run_id: int) -> tuple[StepRun, PipeAccess]:
    run = (
        StepRun.objects.select_related("card__phase", "pipe__organization", "step__agent", "entry__phase")
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        raise Http404()
    return run, _check(user, run.pipe)


def pipe_get_for_costs(*, user: AbstractBaseUser, pipe_id: int) -> Pipe:
    pipe = Pipe.objects.select_related("organization").filter(pk=pipe_id).first()
    if pipe is None:
        raise Http404()
    _check(user, pipe)
    return pipe


def run_events(run: StepRun) -> list:
    return list(run.events.order_by("seq"))


# ---------------------------------------------------------------- costs


PERIODS = {"7d": 7, "30d": 30, "90d": 90}


@dataclass
class CostRow:
    """Runs, tokens and money of one mechanism (or one step) in a period."""

    key: str
    label: str
    runs: int = 0
    done: int = 0
    failed: int = 0
    waiting: int = 0
    tokens: int = 0
    cost: Decimal = Decimal(0)
    baseline: Decimal = Decimal(0)
    note: str = ""

    @property
    def saving(self) -> Decimal:
        return self.baseline - self.cost


@dataclass
class CostReport:
    """A pipe's rail costs for a period, per mechanism and per step, next to the foundation-only baseline."""

    pipe: Pipe
    period: str
    since: dt.datetime
    until: dt.datetime
    currency: str
    mechanisms: list[CostRow] = field(default_factory=list)
    steps: list[CostRow] = field(default_factory=list)
    total: CostRow = field(default_factory=lambda: CostRow("total", "Total"))

    @property
    def saving_share(self) -> Decimal | None:
        if not self.total.baseline:
            return None
        return (self.total.saving / self.total.baseline * 100).quantize(Decimal("1"))


def _row(key: str, label: str, data: dict) -> CostRow:
    return CostRow(
        key=key,
        label=label,
        runs=data["runs"],
        done=data["done"],
        failed=data["failed"],
        waiting=data["waiting"],
        tokens=(data["input"] or 0) + (data["output"] or 0),
        cost=data["cost"] or Decimal(0),
        baseline=data["baseline"] or Decimal(0),
    )


_AGGREGATES = {
    "runs": Count("id"),
    "done": Count("id", filter=Q(status=RunStatus.DONE)),
    "failed": Count("id", filter=Q(status=RunStatus.FAILED)),
    "waiting": Count("id", filter=Q(status=RunStatus.WAITING_REVIEW)),
    "input": Sum("input_tokens"),
    "output": Sum("output_tokens"),
    "cost": Sum("cost"),
    "baseline": Sum("baseline_cost"),
}


def pipe_cost_report(*, pipe: Pipe, period: str = "30d", now: dt.datetime | None = None) -> CostReport:
    """Costs of the runs created in the period ("7d", "30d", "90d" or "month": this calendar month)."""
    now = now or timezone.now()
    if period == "month":
        since = timezone.localtime(now).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        period = period if period in PERIODS else "30d"
        since = now - dt.timedelta(days=PERIODS[period])
    runs = StepRun.objects.filter(pipe=pipe, created_at__gte=since, created_at__lte=now).exclude(
        status=RunStatus.SKIPPED
    )
    report = CostReport(pipe=pipe, period=period, since=since, until=now, currency=costs.cost_currency())
    by_mechanism = {
        row["mechanism"]: row
        for row in runs.values("mechanism").annotate(**_AGGREGATES).order_by("mechanism")
    }
    for value, label in Mechanism.choices:
        if value == Mechanism.AUTO:
            continue
        data = by_mechanism.get(value)
        report.mechanisms.append(_row(value, str(label), data) if data else CostRow(value, str(label)))
    unrouted = by_mechanism.get("")
    if unrouted:  # queued, running, or failed before a mechanism settled them
        report.mechanisms.append(_row("", _("Not settled"), unrouted))
    for data in (
        runs.values("step_name", "requested_mechanism").annotate(**_AGGREGATES).order_by("-cost", "step_name")
    ):
        row = _row(data["requested_mechanism"], data["step_name"], data)
        row.note = str(Mechanism(data["requested_mechanism"]).label)
        report.steps.append(row)
    total = runs.aggregate(**_AGGREGATES)
    report.total = _row("total", _("Total"), total)
    return report
