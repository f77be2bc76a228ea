"""Notifications to people: in-app rows and an email, for now when someone @mentions them in a comment."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import send_mass_mail
from django.utils import timezone
from django.utils.translation import gettext as _

from .masking import title_shown
from .models import Card, Notification
from .roles import pipe_access

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
    link = (base_url or settings.SITE_URL).rstrip("/") + path
    excerpt = text if len(text) <= 1000 else text[:1000] + "…"

    def body(message: str) -> str:
        return _("%(message)s:\n\n%(excerpt)s\n\nOpen the card: %(link)s\n") % {
            "message": message,
            "excerpt": excerpt,
            "link": link,
        }

    send_mass_mail(
        [(messages[u.pk], body(messages[u.pk]), None, [u.email]) for u in recipients if u.email],
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
