"""The nav badge: how many review tasks wait for the signed-in person, on every page."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from .selectors import inbox_waiting_count


def inbox_badge(request: HttpRequest) -> dict:
    """`inbox_count`, counted (one query) only when a template shows it."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"inbox_count": SimpleLazyObject(lambda: inbox_waiting_count(user=user))}
