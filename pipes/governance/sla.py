"""SLA marks: `sla_mark_late` marks cards over their phase's SLA ("late") or their pipe's deadline
("expired"), records it on each card's timeline (pipes.services.card_mark_overdue), notifies assignees and
pipe admins, and announces it (hooks.card_changed kind "late"/"expired") so the rail can run steps. The
rail's beat runs it every minute; `sla_preview` tells what a run would do without doing it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mass_mail
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import services
from ..masking import title_shown
from ..models import (
    Card,
    Field,
    Notification,
    Phase,
    Pipe,
)
from ..roles import pipe_users_with

log = logging.getLogger(__name__)

SLA_ACTOR_NAME = "SLA monitor"
# ---------------------------------------------------------------- SLA marks


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
    result.notifications = _notify_overdue(late=result.late, expired=result.expired)
    return result


def _card_path(card: Card) -> str:
    return reverse("card_detail", args=[card.pipe_id, card.pk])


def _notify_overdue(*, late: list[int], expired: list[int]) -> int:
    """Tell each card's assignees and its pipe's admins, in the app and by email (after commit)."""
    marks = [(pk, "late") for pk in late] + [(pk, "expired") for pk in expired]
    if not marks:
        return 0
    cards = {
        c.pk: c
        for c in Card.objects.filter(pk__in={pk for pk, _k in marks})
        .select_related("pipe", "phase")
        .prefetch_related("assignees")
    }
    admins: dict[int, list] = {}
    pii_readers: dict[int, set[int]] = {}
    pipe_fields: dict[int, list[Field]] = {}
    notes, mails = [], []
    for card_id, kind in marks:
        card = cards[card_id]
        pipe = card.pipe
        if pipe.pk not in admins:
            admins[pipe.pk] = list(pipe_users_with(pipe, "administer_pipe"))
            pii_readers[pipe.pk] = set(pipe_users_with(pipe, "view_pii").values_list("pk", flat=True))
            pipe_fields[pipe.pk] = list(pipe.fields.all())
        people = {u.pk: u for u in [*card.assignees.all(), *admins[pipe.pk]] if u.is_active}
        for user in people.values():
            title = title_shown(
                pipe=pipe, can_view_pii=user.pk in pii_readers[pipe.pk], fields=pipe_fields[pipe.pk]
            )(card.title)
            if kind == "late":
                message = _("%(ref)s %(title)s is late: it passed the %(hours)s h SLA of %(phase)s.") % {
                    "ref": card.reference,
                    "title": title,
                    "hours": card.phase.sla_hours,
                    "phase": card.phase.name,
                }
            else:
                message = _(
                    "%(ref)s %(title)s expired: it is open past the %(days)s-day deadline of %(pipe)s."
                ) % {
                    "ref": card.reference,
                    "title": title,
                    "days": pipe.expiration_days,
                    "pipe": pipe.name,
                }
            path = _card_path(card)
            notes.append(Notification(user=user, card=card, message=message[:500], url=path))
            if user.email:
                body = _("%(message)s\n\nOpen the card: %(link)s\n") % {
                    "message": message,
                    "link": settings.SITE_URL.rstrip("/") + path,
                }
                mails.append((message[:200], body, None, [user.email]))
    Notification.objects.bulk_create(notes)
    if mails:
        transaction.on_commit(lambda: _send(mails))
    return len(notes)


def _send(mails: list[tuple]) -> None:
    try:
        send_mass_mail(mails, fail_silently=False)
    except Exception:  # noqa: BLE001 - a mail outage must not undo the marks; the in-app notes stand
        log.warning("could not send %d SLA emails", len(mails), exc_info=True)
