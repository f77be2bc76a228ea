"""SLA marks: `sla_mark_late` marks cards over their phase's SLA ("late") or their pipe's deadline
("expired"), records it on each card's timeline (pipes.services.card_mark_overdue), notifies assignees and
pipe admins, and announces it (hooks.card_changed kind "late"/"expired") so the rail can run steps. The
rail's beat runs it every minute; `sla_preview` tells what a run would do without doing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import F, Q
from django.utils import timezone

from .. import services
from ..models import Card, Phase, Pipe
from ..notifications import notify_overdue

SLA_ACTOR_NAME = "SLA monitor"


@dataclass
class SlaPlan:
    """What an SLA run would do: (card id, since, phase id) to mark, card ids to clear."""

    late: list[tuple[int, datetime, int]] = field(default_factory=list)
    expired: list[tuple[int, datetime]] = field(default_factory=list)
    clear_late: list[int] = field(default_factory=list)
    clear_expired: list[int] = field(default_factory=list)


@dataclass
class SlaResult:
    """What an SLA run did (ids of cards)."""

    late: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    cleared_late: list[int] = field(default_factory=list)
    cleared_expired: list[int] = field(default_factory=list)
    notifications: int = 0

    def __str__(self) -> str:
        return (
            f"{len(self.late)} late, {len(self.expired)} expired, "
            f"{len(self.cleared_late) + len(self.cleared_expired)} cleared, {self.notifications} notified"
        )


def sla_preview(*, now: datetime | None = None, pipe: Pipe | None = None, limit: int = 1000) -> SlaPlan:
    """The cards a run at `now` would mark late or expired, or clear (dry run: changes nothing).

    Late: unfinished cards whose time in their phase passed the phase's SLA and that carry no mark
    set in that phase (a card marked in an earlier phase is recomputed). Expired: unfinished cards
    older than their pipe's deadline. Marks that no longer hold (the card moved on or finished, the
    SLA or deadline was lengthened or removed) are cleared."""
    now = now or timezone.now()
    plan = SlaPlan()
    phases = Phase.objects.filter(sla_hours__isnull=False, is_final=False)
    pipes = Pipe.objects.filter(expiration_days__isnull=False)
    if pipe is not None:
        phases, pipes = phases.filter(pipe=pipe), pipes.filter(pk=pipe.pk)
    unfinished = Card.objects.filter(finished_at__isnull=True)
    not_marked_here = Q(late_at__isnull=True) | Q(late_at__lt=F("phase_entered_at"))
    late_ids: set[int] = set()
    for phase in phases:
        cutoff = now - timedelta(hours=phase.sla_hours)
        over = unfinished.filter(phase=phase, phase_entered_at__lt=cutoff)
        for pk, entered in over.filter(not_marked_here).values_list("pk", "phase_entered_at")[: limit + 1]:
            plan.late.append((pk, entered + timedelta(hours=phase.sla_hours), phase.pk))
        late_ids.update(over.values_list("pk", flat=True)[: limit * 10])
        plan.clear_late += list(
            Card.objects.filter(
                phase=phase,
                late_at__isnull=False,
                late_at__gte=F("phase_entered_at"),
                phase_entered_at__gte=cutoff,
            ).values_list("pk", flat=True)[:limit]
        )
    stale = Card.objects.filter(late_at__isnull=False).filter(
        Q(late_at__lt=F("phase_entered_at")) | Q(phase__sla_hours__isnull=True) | Q(phase__is_final=True)
    )
    if pipe is not None:
        stale = stale.filter(pipe=pipe)
    plan.clear_late += [pk for pk in stale.values_list("pk", flat=True)[:limit] if pk not in late_ids]

    for p in pipes:
        cutoff = now - timedelta(days=p.expiration_days)
        cards = unfinished.filter(pipe=p, expired_at__isnull=True, created_at__lt=cutoff)
        plan.expired += [
            (pk, created + timedelta(days=p.expiration_days))
            for pk, created in cards.values_list("pk", "created_at")[: limit + 1]
        ]
        plan.clear_expired += list(
            unfinished.filter(pipe=p, expired_at__isnull=False, created_at__gte=cutoff).values_list(
                "pk", flat=True
            )[:limit]
        )
    no_deadline = unfinished.filter(expired_at__isnull=False, pipe__expiration_days__isnull=True)
    if pipe is not None:
        no_deadline = no_deadline.filter(pipe=pipe)
    plan.clear_expired += list(no_deadline.values_list("pk", flat=True)[:limit])
    plan.late, plan.expired = plan.late[:limit], plan.expired[:limit]
    return plan


def sla_mark_late(*, now: datetime | None = None, pipe: Pipe | None = None, limit: int = 1000) -> SlaResult:
    """Mark cards late or expired (and clear marks that no longer hold); idempotent, safe to overlap.

    Each mark goes through services.card_mark_overdue (timeline event, announcement), then the
    card's assignees and the pipe's admins are told in the app and by email. `limit` bounds the
    work of one run; the next run picks up the rest."""
    now = now or timezone.now()
    plan = sla_preview(now=now, pipe=pipe, limit=limit)
    result = SlaResult()
    actor = services.Actor.system(SLA_ACTOR_NAME)
    phases = {p.pk: p for p in Phase.objects.filter(pk__in={ph for _c, _s, ph in plan.late})}
    for card_id, since, phase_id in plan.late:
        phase = phases[phase_id]
        payload = {"phase": phase.key, "sla_hours": phase.sla_hours, "due": since.isoformat()}
        if services.card_mark_overdue(
            card_id=card_id, kind="late", since=since, phase_id=phase_id, payload=payload, actor=actor
        ):
            result.late.append(card_id)
    for card_id, since in plan.expired:
        card = Card.objects.select_related("pipe").only("pipe__expiration_days").get(pk=card_id)
        payload = {"expiration_days": card.pipe.expiration_days, "due": since.isoformat()}
        if services.card_mark_overdue(
            card_id=card_id, kind="expired", since=since, payload=payload, actor=actor
        ):
            result.expired.append(card_id)
    result.cleared_late = plan.clear_late
    result.cleared_expired = plan.clear_expired
    services.cards_clear_overdue(card_ids=plan.clear_late, kind="late")
    services.cards_clear_overdue(card_ids=plan.clear_expired, kind="expired")
    result.notifications = notify_overdue(late=result.late, expired=result.expired)
    return result
