"""Template tags of the inbox: file kinds on its pages, and the nav badge on every page."""

from __future__ import annotations

import logging

from django import template
from django.core.cache import cache

from ..selectors import inbox_waiting_count

register = template.Library()
log = logging.getLogger(__name__)

# How old the nav badge may be outside the inbox. Counting costs some 4 ms of CPU and a query
# on every page (building the count is most of it); the inbox's own pages always count afresh.
BADGE_SECONDS = 15

KINDS = {
    "pdf": "PDF",
    "png": "IMG",
    "jpg": "IMG",
    "jpeg": "IMG",
    "gif": "IMG",
    "webp": "IMG",
    "txt": "TXT",
    "csv": "CSV",
    "docx": "DOC",
    "odt": "DOC",
    "xlsx": "XLS",
}


@register.filter
def file_kind(name: str) -> str:
    """A short tag for a file by its extension: "quote.pdf" → "PDF"."""
    ext = str(name or "").rpartition(".")[2].lower()
    return KINDS.get(ext, "FILE")


@register.simple_tag(takes_context=True)
def inbox_badge_count(context) -> int:
    """How many reviews wait for the signed-in person: exact on the inbox's pages, elsewhere at
    most BADGE_SECONDS old."""
    user = getattr(context.get("request"), "user", None)
    if user is None or not user.is_authenticated:
        return 0
    key = f"inbox.badge.{user.pk}"
    count = None
    if context.get("nav_active") != "inbox":
        try:
            count = cache.get(key)
        except Exception:  # noqa: BLE001 - a cache that is down must not take the page with it
            log.warning("inbox badge: cache unavailable", exc_info=True)
    if count is None:
        count = inbox_waiting_count(user=user)
        try:
            cache.set(key, count, BADGE_SECONDS)
        except Exception:  # noqa: BLE001
            log.warning("inbox badge: cache unavailable", exc_info=True)
    return count
