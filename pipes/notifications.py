"""Notifications to people: in-app rows and an email, when someone @mentions them in a comment and when a
card they work on or administer goes late or expires (SLA marks). The portal's emails to requesters are in
pipes.portal.mail, the reviewer inbox's in orchestrator.inbox.notify. Every email goes through the mail
outbox (pipes.mailbox): written with the change, sent by a worker after it commits."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from .mailbox import mail_queue
from .masking import title_shown
from .models import Card, Field, Notification
from .roles import pipe_access, pipe_users_with
from .siteaddress import site_url

MENTION = re.compile(r"(?<![\w@.])@([\w.\-+]{1,150})")


def mentioned_users(*, text: str, people: Iterable[AbstractBaseUser]) -> list[AbstractBaseUser]:
    """The people among `people` whose username is @mentioned in `text` (case-insensitive)."""
    wanted = {m.rstrip(".").lower() for m in MENTION.findall(text or "")}
    return [u for u in people if u.get_username().lower() in wanted]


def notify_mentions(
    *,
    card: Card,
    author: AbstractBaseUser,
    users: Sequence[AbstractBaseUser],
    text: str,
    path: str,
    base_url: str = "",
) -> list[Notification]:
    """Tell each mentioned person (but the author) in the app and by email, with a link back to the card."""
    recipients = [u for u in users if u.pk != author.pk]
    if not recipients:
        return []
    who = author.get_full_name() or author.get_username()

    def message_for(user: AbstractBaseUser) -> str:
        # The title is masked for a recipient who may not see the pipe's PII title field.
        can_view_pii = pipe_access(user=user, pipe=card.pipe).can_view_pii
        return _("%(who)s mentioned you on %(ref)s %(title)s") % {
            "who": who,
            "ref": card.reference,
            "title": title_shown(pipe=card.pipe, can_view_pii=can_view_pii)(card.title),
        }

    messages = {u.pk: message_for(u) for u in recipients}
    notifications = Notification.objects.bulk_create(
        [Notification(user=u, card=card, message=messages[u.pk][:500], url=path) for u in recipients]
    )
    link = (base_url or site_url()).rstrip("/") + path
    excerpt = text if len(text) <= 1000 else text[:1000] + "…"

    def body(message: str) -> str:
        return _("%(message)s:\n\n%(excerpt)s\n\nOpen the card: %(link)s\n") % {
            "message": message,
            "excerpt": excerpt,
            "link": link,
        }

    for u in recipients:
        if u.email:
            mail_queue(
                organization_id=card.pipe.organization_id,
                to=[u.email],
                subject=messages[u.pk][:200],
                body=body(messages[u.pk]),
            )
    return notifications


def notifications_unread(*, user: AbstractBaseUser, limit: int = 8) -> list[Notification]:
    return list(
        Notification.objects.filter(user=user, read_at__isnull=True)
        .select_related("card")
        .order_by("-created_at")[:limit]
    )


def notifications_mark_read(*, user: AbstractBaseUser, card: Card) -> int:
    """Mark the user's notifications about `card` read (they opened it)."""
    return Notification.objects.filter(user=user, card=card, read_at__isnull=True).update(
        read_at=timezone.now()
    )


def _card_path(card: Card) -> str:
    return reverse("card_detail", args=[card.pipe_id, card.pk])


def notify_overdue(*, late: list[int], expired: list[int]) -> int:
    """Tell each card's assignees and its pipe's admins that it is late or expired, in the app and by email
    (after commit). Returns how many in-app notifications it wrote (pipes.governance.sla_mark_late calls it)."""
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
    notes = []
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
                    "link": site_url() + path,
                }
                mail_queue(
                    organization_id=pipe.organization_id, to=[user.email], subject=message[:200], body=body
                )
    Notification.objects.bulk_create(notes)
    return len(notes)
