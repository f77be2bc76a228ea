"""Reads of the rail: permission-checking getters, a run's trace, a pipe's costs per mechanism."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, Sum
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy

from pipes.choices import FieldType
from pipes.fieldtypes import display_value
from pipes.masking import field_text, mask_text, title_shown
from pipes.models import CardFile, Field, Pipe
from pipes.roles import PipeAccess, pipe_access

from ..models import Mechanism, ReviewTask, RunStatus, StepRun, TraceEvent, TraceKind
from . import costs

# Shown in a prompt's trace instead of the text of a personal-data file, to people without view_pii.
HIDDEN_DOCUMENT = _lazy("(the text of a personal-data file, hidden)")


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


@dataclass
class RunShown:
    """A run as one viewer may see it: personal data masked like on the card page when they lack view_pii.

    `run`, `review` and `events` are copies for rendering only; never save them."""

    run: StepRun
    review: ReviewTask | None
    events: list[TraceEvent]
    card_title: str


class _PiiMasker:
    """Masks what a run's records hold of the pipe's personal-data fields: structured values by their
    field (as field_text does on the card page), and the same values wherever free text repeats them
    (prompts, raw outputs, reasons, errors, call records) by their masked form."""

    MIN_CHARS = 3  # shorter values would mask unrelated text

    def __init__(self, *, fields: Iterable[Field]):
        self.pii = {f.key: f for f in fields if f.pii}
        self.files: dict[int, str] = {}  # id → sha256 of files held by personal-data fields
        self._masked: dict[str, str] = {}
        self._pattern: re.Pattern | None = None

    def learn(self, key: str, value: Any) -> None:
        """Remember `value` of field `key` (if it is personal data) so free text is masked of it."""
        f = self.pii.get(key)
        if f is None or value in (None, "", []):
            return
        if f.type == FieldType.ATTACHMENT:  # ids on the card, file names in what an agent saw
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, int):
                    self.files.setdefault(item, "")
                else:
                    self.learn_text(str(item))
            return
        masked = field_text(f, value, can_view_pii=False)
        for text in {display_value(f, value), *self._leaves(value)}:
            self.learn_text(text, masked=masked)

    def learn_text(self, text: str, *, masked: str = "") -> None:
        text = str(text or "").strip()
        if len(text) >= self.MIN_CHARS:
            self._masked.setdefault(text.lower(), masked or mask_text(text))
            self._masked.setdefault(json.dumps(text)[1:-1].lower(), masked or mask_text(text))
            self._pattern = None

    def _leaves(self, value: Any) -> list[str]:
        if isinstance(value, dict):
            return [leaf for v in value.values() for leaf in self._leaves(v)]
        if isinstance(value, list):
            return [leaf for v in value for leaf in self._leaves(v)]
        return [str(value)] if isinstance(value, str | int | float) and not isinstance(value, bool) else []

    def field(self, key: str, value: Any) -> Any:
        """`value` of field `key` as the card page shows it to someone without view_pii."""
        f = self.pii.get(key)
        if f is None or value in (None, "", []):
            return self.text(value)
        if f.type == FieldType.ATTACHMENT:
            return mask_text("file")
        return field_text(f, value, can_view_pii=False)

    def documents(self, text: str) -> str:
        """A prompt with the blocks quoting files of personal-data fields emptied (their text is theirs)."""
        for sha256 in {sha for sha in self.files.values() if sha}:
            block = re.compile(
                rf'<(document-[0-9a-f]+) [^\n]*?sha256="{re.escape(sha256[:16])}"[^\n]*>\n.*?</\1>', re.DOTALL
            )
            text = block.sub(lambda m: f"<{m.group(1)}>\n{HIDDEN_DOCUMENT}\n</{m.group(1)}>", text)
        return text

    def text(self, value: Any) -> Any:
        """`value` (text or JSON data) with every known personal value replaced by its masked form."""
        if isinstance(value, dict):
            return {k: self.text(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.text(v) for v in value]
        if not isinstance(value, str) or not self._masked:
            return value
        if self._pattern is None:
            forms = sorted(self._masked, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(form) for form in forms), re.IGNORECASE)
        return self._pattern.sub(lambda m: self._masked[m.group(0).lower()], value)


def _learn_run(masker: _PiiMasker, *, run: StepRun, review: ReviewTask | None, events: list[TraceEvent]):
    card = run.card
    for key, value in (card.values or {}).items():
        masker.learn(key, value)
    masker.learn_text(card.requester_email)
    for card_file in CardFile.objects.filter(card=card, field_key__in=list(masker.pii)).only("pk", "name"):
        masker.files.setdefault(card_file.pk, "")
        masker.learn_text(card_file.name)
    for event in events:
        if event.kind == TraceKind.FILES and isinstance(event.data, list):
            for item in event.data:
                if isinstance(item, dict) and item.get("id") in masker.files:
                    masker.files[item["id"]] = str(item.get("sha256") or "")
    for event in events:
        data = event.data if isinstance(event.data, dict) else {}
        if event.kind == TraceKind.INPUTS:
            for item in data.get("fields") or []:
                if isinstance(item, dict) and item.get("key") not in (data.get("masked") or []):
                    masker.learn(str(item.get("key")), item.get("value"))
        elif event.kind == TraceKind.CHANGES:
            for key, value in (data.get("fields") or {}).items():
                masker.learn(key, value)
    if review is not None:
        for values in (review.values, (review.proposal or {}).get("values")):
            for key, value in (values if isinstance(values, dict) else {}).items():
                masker.learn(key, value)


def _mask_event(masker: _PiiMasker, event: TraceEvent) -> TraceEvent:
    shown = copy.copy(event)
    shown.summary = masker.text(event.summary)
    data = event.data
    if event.kind == TraceKind.INPUTS and isinstance(data, dict):
        masked = data.get("masked") or []
        data = {
            **data,
            "fields": [
                {**item, "value": masker.field(item.get("key"), item.get("value"))}
                if isinstance(item, dict) and item.get("key") not in masked
                else item
                for item in data.get("fields") or []
            ],
        }
    elif event.kind == TraceKind.CHANGES and isinstance(data, dict):
        data = {**data, "fields": {k: masker.field(k, v) for k, v in (data.get("fields") or {}).items()}}
    elif event.kind == TraceKind.FILES and isinstance(data, list):
        data = [
            {**item, "name": mask_text(item.get("name", ""))}
            if isinstance(item, dict) and item.get("id") in masker.files
            else item
            for item in data
        ]
    elif event.kind == TraceKind.PROMPT and isinstance(data, dict):
        data = {k: masker.documents(v) if isinstance(v, str) else v for k, v in data.items()}
    shown.data = masker.text(data)
    return shown


def run_shown(*, run: StepRun, access: PipeAccess) -> RunShown:
    """The run, its review and its trace as the viewer may see them: in clear with view_pii, otherwise
    with the pipe's personal-data fields masked wherever the run's records hold them."""
    review = getattr(run, "review", None)
    events = run_events(run)
    fields = list(run.pipe.fields.all())
    card_title = title_shown(pipe=run.pipe, can_view_pii=access.can_view_pii, fields=fields)(run.card.title)
    if access.can_view_pii:
        return RunShown(run=run, review=review, events=events, card_title=card_title)
    masker = _PiiMasker(fields=fields)
    _learn_run(masker, run=run, review=review, events=events)
    shown_run = copy.copy(run)
    shown_run.routing_reason = masker.text(run.routing_reason)
    shown_run.error = masker.text(run.error)
    shown_review = None
    if review is not None:
        shown_review = copy.copy(review)
        for name in ("question", "reasoning", "reason", "comment"):
            setattr(shown_review, name, masker.text(getattr(review, name)))
        if isinstance(review.proposal, dict):
            values = review.proposal.get("values")
            shown_review.proposal = masker.text(
                {
                    **review.proposal,
                    **(
                        {"values": {k: masker.field(k, v) for k, v in values.items()}}
                        if isinstance(values, dict)
                        else {}
                    ),
                }
            )
        shown_review.values = masker.text(
            {k: masker.field(k, v) for k, v in review.values.items()}
            if isinstance(review.values, dict)
            else review.values
        )
    events = [_mask_event(masker, e) for e in events]
    return RunShown(run=shown_run, review=shown_review, events=events, card_title=card_title)


# ---------------------------------------------------------------- costs


PERIODS = {"7d": 7, "30d": 30, "90d": 90}
MEANINGFUL_BASELINE = Decimal("0.01")  # below a cent, a percentage of the baseline says nothing


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
    # Whether a foundation model alone was a real alternative: not for the runs a person settled
    # (the process required one: high risk, authority, four eyes), nor for runs nothing settled yet.
    compared: bool = True

    @property
    def saving(self) -> Decimal:
        return self.baseline - self.cost

    @property
    def is_loss(self) -> bool:
        return self.saving < 0

    @property
    def saving_abs(self) -> Decimal:
        return abs(self.saving)


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
    # Runs recorded in another currency (the setting changed): shown apart, never added in.
    other_currencies: list[CostRow] = field(default_factory=list)
    rates: list[costs.FxRate] = field(default_factory=list)  # the operator's rates into `currency`
    baseline_model: str = ""

    # The runs rules, automations and models settled: the only ones compared with the baseline.
    compared: CostRow = field(default_factory=lambda: CostRow("compared", "Compared"))

    @property
    def saving_share(self) -> Decimal | None:
        """The saving (or the extra cost) as a percentage of the baseline, where that means something:
        None without a baseline of at least a cent, or when the cost is more than twice it (then
        `cost_multiple` says how many times)."""
        baseline = self.compared.baseline
        if baseline < MEANINGFUL_BASELINE or self.cost_multiple is not None:
            return None
        return (abs(self.compared.saving) / baseline * 100).quantize(Decimal("1"))

    @property
    def cost_multiple(self) -> Decimal | None:
        """How many times the baseline the compared runs cost, when it is more than twice."""
        baseline = self.compared.baseline
        if baseline < MEANINGFUL_BASELINE or self.compared.cost <= 2 * baseline:
            return None
        return (self.compared.cost / baseline).quantize(Decimal("0.1"))


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
    currency = costs.cost_currency()
    in_period = StepRun.objects.filter(pipe=pipe, created_at__gte=since, created_at__lte=now).exclude(
        status=RunStatus.SKIPPED
    )
    report = CostReport(
        pipe=pipe,
        period=period,
        since=since,
        until=now,
        currency=currency,
        rates=costs.rates_in_use(currency),
        baseline_model="/".join(costs.baseline_model()),
    )
    runs = in_period.filter(currency__in=[currency, ""])
    by_mechanism = {
        row["mechanism"]: row
        for row in runs.values("mechanism").annotate(**_AGGREGATES).order_by("mechanism")
    }
    for value, label in Mechanism.choices:
        if value == Mechanism.AUTO:
            continue
        data = by_mechanism.get(value)
        row = _row(value, str(label), data) if data else CostRow(value, str(label))
        row.compared = value != Mechanism.HUMAN
        report.mechanisms.append(row)
    unrouted = by_mechanism.get("")
    if unrouted:  # queued, running, or failed before a mechanism settled them
        row = _row("", _("Not settled"), unrouted)
        row.compared = False
        report.mechanisms.append(row)
    for row in report.mechanisms:
        if row.compared:
            report.compared.runs += row.runs
            report.compared.cost += row.cost
            report.compared.baseline += row.baseline
    for data in (
        runs.values("step_name", "requested_mechanism").annotate(**_AGGREGATES).order_by("-cost", "step_name")
    ):
        row = _row(data["requested_mechanism"], data["step_name"], data)
        row.note = str(Mechanism(data["requested_mechanism"]).label)
        report.steps.append(row)
    # Amounts add up only within one currency: runs recorded in another (the setting changed) are
    # listed apart, never added in. One query gives the total of each.
    report.total = CostRow("total", _("Total"))
    for data in in_period.values("currency").annotate(**_AGGREGATES).order_by("currency"):
        if data["currency"] in (currency, ""):
            report.total = _row("total", _("Total"), data)
        else:
            report.other_currencies.append(_row(data["currency"], data["currency"], data))
    return report
