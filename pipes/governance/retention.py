"""Retention: `retention_due` / `retention_apply` anonymise finished cards older than a pipe's retention
(its PipePolicy); `trace_retention_apply` prunes step traces past theirs through the pruner the rail
registers (`register_trace_pruner`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import services
from ..design import DesignError, design_save
from ..models import (
    Card,
    CardErasure,
    Pipe,
    PipePolicy,
    PrivacyRequest,
)
from .privacy import ErasureReport, _erase_cards

RETENTION_ACTOR_NAME = "Retention policy"
# ---------------------------------------------------------------- retention


def pipe_policy(*, pipe: Pipe) -> PipePolicy:
    """The pipe's governance policy (an empty one when none was saved)."""
    try:
        return pipe.policy
    except PipePolicy.DoesNotExist:
        return PipePolicy(pipe=pipe)


def pipe_policy_update(
    *, user: AbstractBaseUser, pipe: Pipe, retention_days: int | None, trace_retention_days: int | None
) -> PipePolicy:
    """Set how long finished cards and step traces of `pipe` are kept (pipe admins only).

    A policy is part of the process design: it is saved through the design service, which checks
    that `user` administers the pipe and records who changed it."""
    errors = {}
    for key, value in (("retention_days", retention_days), ("trace_retention_days", trace_retention_days)):
        if value is not None and not 1 <= value <= 36500:
            errors[key] = [_("Enter a number of days from 1 to 36500, or leave it empty.")]
    if errors:
        raise DesignError(errors)
    policy = PipePolicy.objects.filter(pipe=pipe).first() or PipePolicy(pipe=pipe)
    policy.retention_days = retention_days
    policy.trace_retention_days = trace_retention_days
    policy.updated_at = timezone.now()
    policy.updated_by = user
    design_save(actor=user, obj=policy, validate=False)
    return policy


def retention_due(*, pipe: Pipe, now: datetime | None = None) -> QuerySet[Card]:
    """Finished cards of `pipe` older than its retention period and not anonymised yet (dry-run preview)."""
    policy = pipe_policy(pipe=pipe)
    if not policy.retention_days:
        return Card.objects.none()
    cutoff = (now or timezone.now()) - timedelta(days=policy.retention_days)
    anonymised = CardErasure.objects.filter(request__kind=PrivacyRequest.Kind.RETENTION).values("card_id")
    return (
        Card.objects.filter(pipe=pipe, finished_at__isnull=False, finished_at__lt=cutoff)
        .exclude(pk__in=anonymised)
        .select_related("pipe", "phase")
        .order_by("finished_at", "pk")
    )


@dataclass
class RetentionRun:
    """Cards a retention run anonymised (or would, when dry_run), per pipe."""

    dry_run: bool
    by_pipe: dict[int, list[int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(len(ids) for ids in self.by_pipe.values())


def retention_apply(
    *, now: datetime | None = None, pipe: Pipe | None = None, dry_run: bool = False, limit: int = 500
) -> RetentionRun:
    """Anonymise finished cards past their pipe's retention (each pipe's PII fields, files and the
    timeline payloads that held them are erased, as for a data subject). `limit` cards per pipe and run."""
    now = now or timezone.now()
    run = RetentionRun(dry_run=dry_run)
    policies = PipePolicy.objects.filter(retention_days__isnull=False).select_related("pipe__organization")
    if pipe is not None:
        policies = policies.filter(pipe=pipe)
    actor = services.Actor.system(RETENTION_ACTOR_NAME)
    for policy in policies:
        cards = list(retention_due(pipe=policy.pipe, now=now)[:limit])
        run.by_pipe[policy.pipe_id] = [c.pk for c in cards]
        if dry_run or not cards:
            continue
        with transaction.atomic():
            request = PrivacyRequest.objects.create(
                organization=policy.pipe.organization,
                kind=PrivacyRequest.Kind.RETENTION,
                pipe_ids=[policy.pipe_id],
                card_ids=[c.pk for c in cards],
                note=_("Finished more than %(days)d days ago") % {"days": policy.retention_days},
            )
            reason = _("Retention: finished more than %(days)d days ago") % {"days": policy.retention_days}
            erased = _erase_cards(actor=actor, cards=cards, identifiers=[], request=request, reason=reason)
            request.counts = ErasureReport(dry_run=False, cards=erased).totals
            request.save(update_fields=["counts"])
    return run


def retention_runs(*, pipe: Pipe, limit: int = 10) -> list[PrivacyRequest]:
    """The latest retention runs that anonymised cards of `pipe` (newest first)."""
    runs = PrivacyRequest.objects.filter(
        kind=PrivacyRequest.Kind.RETENTION, organization_id=pipe.organization_id
    )
    return [r for r in runs[: limit * 10] if pipe.pk in (r.pipe_ids or [])][:limit]


def trace_retention_cutoffs(*, now: datetime | None = None) -> dict[int, datetime]:
    """For the rail's trace pruning: pipe id → prune traces of step runs older than this moment."""
    now = now or timezone.now()
    return {
        pipe_id: now - timedelta(days=days)
        for pipe_id, days in PipePolicy.objects.filter(trace_retention_days__isnull=False).values_list(
            "pipe_id", "trace_retention_days"
        )
    }


@dataclass
class TracePruning:
    """Step runs whose traces (prompts, raw outputs, calls) a pruning deleted, or would (dry run)."""

    runs: int = 0
    events: int = 0

    def __add__(self, other: TracePruning) -> TracePruning:
        return TracePruning(runs=self.runs + other.runs, events=self.events + other.events)


_trace_pruners: list[Callable[..., TracePruning]] = []


def register_trace_pruner(prune: Callable[..., TracePruning]) -> None:
    """The rail registers how it prunes traces: prune(pipe_id=, before=, dry_run=) -> TracePruning.

    pipes owns the policy (how many days, per pipe) and knows nothing of the traces themselves."""
    if prune not in _trace_pruners:
        _trace_pruners.append(prune)


def trace_retention_apply(
    *, now: datetime | None = None, pipe: Pipe | None = None, dry_run: bool = False
) -> dict[int, TracePruning]:
    """Prune the step traces older than each pipe's trace retention; pipe id → what was (or would be) pruned."""
    cutoffs = trace_retention_cutoffs(now=now)
    if pipe is not None:
        cutoffs = {pipe.pk: cutoffs[pipe.pk]} if pipe.pk in cutoffs else {}
    result = {}
    for pipe_id, before in cutoffs.items():
        pruned = TracePruning()
        for prune in _trace_pruners:
            pruned = pruned + prune(pipe_id=pipe_id, before=before, dry_run=dry_run)
        result[pipe_id] = pruned
    return result
