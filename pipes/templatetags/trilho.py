"""Template filters of the board: people, relative times, field values (masked) and mentions."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections import OrderedDict

from django import template
from django.conf import settings
from django.http import QueryDict
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from pipes.masking import field_text

register = template.Library()


@register.filter
def display_name(user) -> str:
    if user is None:
        return ""
    return user.get_full_name() or user.get_username()


@register.filter
def initials(user) -> str:
    """Up to two letters standing for a person: "Ana Souza" → "AS", "ana" → "AN"."""
    name = display_name(user) if not isinstance(user, str) else user
    parts = [p for p in re.split(r"[\s._\-]+", name) if p]
    if not parts:
        return "?"
    if len(parts) == 1:
        return parts[0][:2].upper()
    return (parts[0][0] + parts[-1][0]).upper()


def _span(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return _("less than a minute")
    if minutes < 60:
        return ngettext("%(n)d min", "%(n)d min", minutes) % {"n": minutes}
    hours = minutes // 60
    if hours < 48:
        return ngettext("%(n)d h", "%(n)d h", hours) % {"n": hours}
    days = hours // 24
    if days < 60:
        return ngettext("%(n)d day", "%(n)d days", days) % {"n": days}
    return ngettext("%(n)d month", "%(n)d months", days // 30) % {"n": days // 30}


@register.filter
def reltime(moment: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """“5 min ago”, “in 3 h”."""
    if not moment:
        return ""
    now = now or timezone.now()
    delta = (now - moment).total_seconds()
    if abs(delta) < 60:
        return _("just now")
    if delta > 0:
        return _("%(span)s ago") % {"span": _span(delta)}
    return _("in %(span)s") % {"span": _span(-delta)}


@register.filter
def since(moment: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """How long since `moment`, without "ago": “3 days”."""
    if not moment:
        return ""
    return _span(((now or timezone.now()) - moment).total_seconds())


@register.filter
def hours(value: int | None) -> str:
    """An SLA in hours, as people say it: 24 → “24 h”, 72 → “3 days”."""
    if not value:
        return ""
    if value >= 48 and value % 24 == 0:
        return ngettext("%(n)d day", "%(n)d days", value // 24) % {"n": value // 24}
    return ngettext("%(n)d h", "%(n)d h", value) % {"n": value}


@register.simple_tag
def field_display(field, value, can_view_pii: bool) -> str:
    """A card value as shown to this viewer (masked when PII they may not see)."""
    return field_text(field, value, can_view_pii=can_view_pii)


MENTION = re.compile(r"(?<![\w@.])@([\w.\-+]{1,150})")


@register.filter
def mentionize(text: str) -> SafeString:
    """Escaped text with @mentions highlighted and line breaks kept."""
    escaped = escape(text or "")
    highlighted = MENTION.sub(lambda m: f'<span class="mention">@{m.group(1)}</span>', escaped)
    return mark_safe(highlighted.replace("\n", "<br>"))  # noqa: S308 - escaped above


@register.filter
def local_input(moment: dt.datetime | None) -> str:
    """A datetime as a datetime-local input value in the current time zone."""
    if not moment:
        return ""
    return timezone.localtime(moment).strftime("%Y-%m-%dT%H:%M")


@register.filter
def iso_input(value: str | None) -> str:
    """A stored ISO datetime string as a datetime-local input value in the current time zone."""
    if not value:
        return ""
    from django.utils.dateparse import parse_datetime

    moment = parse_datetime(value)
    return local_input(moment) if moment else ""


@register.filter
def filesize(size: int) -> str:
    size = int(size or 0)
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / 1048576:.1f} MB"


@register.simple_tag
def with_params(filters, **extra) -> str:
    """The board's filter query string with `extra` set (empty values removed), starting with “?” if any."""
    query = QueryDict(mutable=True)
    params = {**(filters.as_params() if filters else {}), **{k: str(v) for k, v in extra.items()}}
    query.update({k: v for k, v in params.items() if v not in ("", "None")})
    encoded = query.urlencode()
    return f"?{encoded}" if encoded else ""


@register.filter
def is_image(card_file) -> bool:
    return card_file.content_type in ("image/png", "image/jpeg", "image/gif", "image/webp")


@register.filter
def contains(container, item) -> bool:
    try:
        return item in container
    except TypeError:
        return False


# ---------------------------------------------------------------- a process-local fragment cache

_FRAGMENTS: OrderedDict[tuple, tuple[float, str]] = OrderedDict()
_FRAGMENTS_LOCK = threading.Lock()
FRAGMENT_MAX = 5000
FRAGMENT_TTL = 600.0


def fragment_cached(key: tuple, render) -> str:
    """`render()`'s HTML, kept in this process under `key` (LRU of FRAGMENT_MAX, FRAGMENT_TTL seconds)."""
    if settings.DEBUG:  # template edits show at once while developing
        return render()
    now = time.monotonic()
    with _FRAGMENTS_LOCK:
        hit = _FRAGMENTS.get(key)
        if hit is not None and hit[0] > now:
            _FRAGMENTS.move_to_end(key)
            return hit[1]
    html = render()
    with _FRAGMENTS_LOCK:
        _FRAGMENTS[key] = (now + FRAGMENT_TTL, html)
        _FRAGMENTS.move_to_end(key)
        while len(_FRAGMENTS) > FRAGMENT_MAX:
            _FRAGMENTS.popitem(last=False)
    return html


class LocalCacheNode(template.Node):
    def __init__(self, nodelist, parts):
        self.nodelist = nodelist
        self.parts = parts

    def render(self, context):
        key = tuple(str(part.resolve(context)) for part in self.parts)
        return fragment_cached(key, lambda: self.nodelist.render(context))


@register.tag
def localcache(parser, token):
    """{% localcache part part … %}…{% endlocalcache %}: the fragment cached in this process, keyed on the parts.

    Board tiles are rendered for every viewer on every board load and change only with their card:
    keyed on the card's id and `updated_at` stamp, a tile is rendered once per process (LRU of
    5,000, 10 minutes). Kept in process memory on purpose: a shared cache (Redis) would cost a
    network round trip per tile, more than rendering it."""
    parts = [parser.compile_filter(bit) for bit in token.split_contents()[1:]]
    if not parts:
        raise template.TemplateSyntaxError("localcache needs at least one key part")
    nodelist = parser.parse(("endlocalcache",))
    parser.delete_first_token()
    return LocalCacheNode(nodelist, parts)
