"""Template filters of the governance pages: shares, durations, bars."""

from __future__ import annotations

from django import template

from ..durations import duration_text

register = template.Library()


@register.filter
def pct(value: float | None) -> str:
    """A share 0..1 as a percentage with one decimal ("—" when there is none)."""
    if value is None:
        return "—"
    return f"{value * 100:.1f}%"


@register.filter
def pct_width(value: float | None) -> str:
    """A share 0..1 as a CSS width class step (0..100 by 5), so no inline style is needed."""
    if value is None:
        return "0"
    return str(int(round(value * 20)) * 5)


@register.filter
def duration(seconds: float | None) -> str:
    return duration_text(seconds)


@register.filter
def share_tone(value: float | None) -> str:
    """good / fair / poor for a share of work within SLA."""
    if value is None:
        return "none"
    if value >= 0.9:
        return "good"
    if value >= 0.7:
        return "fair"
    return "poor"
