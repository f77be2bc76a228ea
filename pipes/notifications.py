"""Notifications to people: in-app rows and an email, for now when someone @mentions them in a comment."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import send_mass_mail
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import Card, Notification

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
    message = _("%(who)s mentioned you on %(ref)s %(title)s") % {
        "who": who,
        "ref": card.reference,
        "title": card.title,
    }
    notifications = Notification.objects.bulk_create(
        [Notification(user=u, card=card, message=message[:500], url=path) for u in recipients]
    )
    link = (base_url or settings.SITE_URL).rstrip("/") + path
    excerpt = text if len(text) <= 1000 else text[:1000] + "…"
    body = _("%(message)s:\n\n%(excerpt)s\n\nOpen the card: %(link)s\n") % {
        "message": message,
        "excerpt": excerpt,
        "link": link,
    }
    send_mass_mail(
        [(message, body, None, [u.email]) for u in recipients if u.email],
        fail_silently=True,
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
