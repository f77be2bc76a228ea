"""How a length of time reads on a page: a short human duration (the governance pages, their template
filter, and anything else that shows how long something took)."""

from __future__ import annotations

from django.utils.translation import gettext as _


def duration_text(seconds: float | None) -> str:
    """A short human duration: 45 min, 3 h 20 min, 2 d 4 h."""
    if seconds is None:
        return "—"
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return _("%(m)d min") % {"m": minutes}
    h, m = divmod(minutes, 60)
    if h < 24:
        return _("%(h)d h %(m)02d min") % {"h": h, "m": m} if m else _("%(h)d h") % {"h": h}
    d, h = divmod(h, 24)
    return _("%(d)d d %(h)d h") % {"d": d, "h": h} if h else _("%(d)d d") % {"d": d}
