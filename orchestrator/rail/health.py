"""Is the rail alive? Beat's last tick (a periodic job stores its time) and whether workers answer a ping.

Beat sends `orchestrator.tasks.beat_heartbeat` every 30 s and a worker stores the time it ran
(RailHeartbeat "beat"): a tick older than TRILHO_BEAT_LATE_SECONDS (3 minutes) means beat stopped, or
no worker takes its jobs, and the sweeps (phase entries, stale leases, emails) no longer run. The
owners' status page (/rail/health/) and `bin/healthcheck rail` read it here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from pipes.choices import MailStatus
from pipes.models import Mail, Membership, OrgRole

from ..models import EmailOutbox, OutboxStatus, RailHeartbeat

BEAT = "beat"


def beat_late_seconds() -> float:
    return float(getattr(settings, "TRILHO_BEAT_LATE_SECONDS", 180))


def beat_tick_record(*, at: dt.datetime | None = None) -> None:
    """Store beat's tick (the periodic task that carries it just ran)."""
    RailHeartbeat.objects.update_or_create(name=BEAT, defaults={"at": at or timezone.now()})


# How far back, and how many, the health page lists the emails that did not go out.
NOT_SENT_DAYS = 14
NOT_SENT_LIMIT = 20


@dataclass(frozen=True)
class NotSent:
    """An email that did not go out, or may not have: refused by the mail server, or left being sent by
    a worker that stopped (never sent again: at most once). `run_id`: the step run that wrote it."""

    at: dt.datetime
    to: list[str]
    subject: str
    unknown: bool  # else refused (the mail server's answer is `error`)
    error: str
    run_id: int | None = None


@dataclass
class RailHealth:
    """What the health page and bin/healthcheck say."""

    checked_at: dt.datetime
    beat_at: dt.datetime | None
    beat_late: bool
    late_after_seconds: float
    workers: list[str] | None  # None: the broker could not be asked
    emails_unknown: int = 0
    emails_not_sent: list[NotSent] = field(default_factory=list)  # the latest, newest first
    problems: list[str] = field(default_factory=list)

    @property
    def beat_age_seconds(self) -> float | None:
        return None if self.beat_at is None else (self.checked_at - self.beat_at).total_seconds()

    @property
    def workers_ok(self) -> bool:
        return bool(self.workers)

    @property
    def ok(self) -> bool:
        return not self.beat_late and self.workers_ok


def workers_ping(*, timeout: float = 1.0) -> list[str] | None:
    """The names of the workers that answered a ping within `timeout`; None when the broker can't be asked."""
    from orchestrator.celery import app

    try:
        answers = app.control.ping(timeout=timeout) or []
    except Exception:  # noqa: BLE001 - a broker that is down or a transport without broadcast
        return None
    return sorted(name for answer in answers for name in answer)


def rail_health(*, ping_timeout: float = 1.0, organization_ids: list[int] | None = None) -> RailHealth:
    """Beat's last tick, the workers that answer, and (for the given organizations) emails whose fate is
    unknown. Reads no card."""
    now = timezone.now()
    beat_at = RailHeartbeat.objects.filter(name=BEAT).values_list("at", flat=True).first()
    late_after = beat_late_seconds()
    late = beat_at is None or (now - beat_at).total_seconds() > late_after
    workers = workers_ping(timeout=ping_timeout)
    unknown = 0
    if organization_ids:
        unknown = (
            EmailOutbox.objects.filter(
                status=OutboxStatus.UNKNOWN, run__pipe__organization_id__in=organization_ids
            ).count()
            + Mail.objects.filter(status=MailStatus.UNKNOWN, organization_id__in=organization_ids).count()
        )  # steps' emails, and every other (pipes.mailbox)
    health = RailHealth(
        checked_at=now,
        beat_at=beat_at,
        beat_late=late,
        late_after_seconds=late_after,
        workers=workers,
        emails_unknown=unknown,
        emails_not_sent=emails_not_sent(organization_ids=organization_ids or [], now=now),
    )
    if beat_at is None:
        health.problems.append("beat has never ticked")
    elif late:
        health.problems.append(f"beat is late: its last tick was {int(health.beat_age_seconds or 0)} s ago")
    if workers is None:
        health.problems.append("the broker could not be asked for workers")
    elif not workers:
        health.problems.append("no worker answered a ping")
    return health


def emails_not_sent(*, organization_ids: list[int], now: dt.datetime | None = None) -> list[NotSent]:
    """The organizations' emails of the last NOT_SENT_DAYS that were refused or whose fate is unknown,
    newest first, at most NOT_SENT_LIMIT: the steps' (rail/outbox.py) and every other (pipes.mailbox)."""
    if not organization_ids:
        return []
    since = (now or timezone.now()) - dt.timedelta(days=NOT_SENT_DAYS)
    mails = _not_sent(
        Mail.objects.filter(organization_id__in=organization_ids),
        since,
        MailStatus.FAILED,
        MailStatus.UNKNOWN,
    )
    steps = _not_sent(
        EmailOutbox.objects.filter(run__pipe__organization_id__in=organization_ids),
        since,
        OutboxStatus.FAILED,
        OutboxStatus.UNKNOWN,
        "run_id",
    )
    found = mails + steps
    found.sort(key=lambda e: e.at, reverse=True)
    return found[:NOT_SENT_LIMIT]


def _not_sent(rows, since: dt.datetime, failed: str, unknown: str, *extra: str) -> list[NotSent]:
    """The latest refused or unknown rows of an outbox since `since`, newest first, at most
    NOT_SENT_LIMIT; `extra`: the column of the run that wrote them, if any."""
    latest = (
        rows.filter(status__in=(failed, unknown), created_at__gte=since)
        .order_by("-created_at", "-pk")
        .values_list("created_at", "to", "subject", "status", "error", *extra)[:NOT_SENT_LIMIT]
    )
    return [
        NotSent(at, list(to), subject, status == unknown, error, *more)
        for at, to, subject, status, error, *more in latest
    ]


class NotAnOwner(Exception):
    """Only organization owners see the rail's health (HTTP 403)."""


def owned_organization_ids(*, user: AbstractBaseUser) -> list[int]:
    """The organizations `user` owns; NotAnOwner when none."""
    ids = list(
        Membership.objects.filter(user=user, role=OrgRole.OWNER).values_list("organization_id", flat=True)
    )
    if not ids:
        raise NotAnOwner()
    return ids
