"""Template filters of the rail's pages: money, milliseconds, tokens and pretty JSON."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django import template
from django.utils import formats

register = template.Library()


@register.filter
def money(value: Decimal | None, places: int = 4) -> str:
    """A cost with enough decimal places to show fractions of a cent (model calls are cheap)."""
    if value is None:
        return "—"
    value = Decimal(value)
    if value and abs(value) < Decimal("0.01"):
        places = max(int(places), 6)
    return formats.number_format(value, decimal_pos=int(places), use_l10n=True, force_grouping=True)


@register.filter
def ms(value: int | None) -> str:
    """Milliseconds as a short duration: 840 ms, 2.4 s, 3 min 5 s, 2 h 10 min."""
    if value is None:
        return "—"
    value = int(value)
    if value < 1000:
        return f"{value} ms"
    seconds = value / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@register.filter
def tokens(value: int | None) -> str:
    return formats.number_format(int(value or 0), use_l10n=True, force_grouping=True)


@register.filter
def pretty_json(value: Any) -> str:
    """Indented JSON for <pre> blocks (autoescaped by the template)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


@register.filter
def offset_ms(moment, start) -> str:
    """+1.2 s: how long after `start` something happened."""
    if moment is None or start is None:
        return ""
    return "+" + ms(max(int((moment - start).total_seconds() * 1000), 0))


@register.filter
def rail_reason(value: Any) -> str:
    """Why the rail routed a step, in the reader's language (see orchestrator.rail.reasons): of a step run
    (from its reason's data, else its sentence), a review task (its run's), or a stored sentence."""
    from orchestrator.rail.reasons import reason_display

    run = getattr(value, "run", None) if hasattr(value, "allowed_decisions") else value
    if hasattr(run, "routing_reason"):
        prose = run.routing_reason or getattr(value, "reason", "")
        return reason_display(prose, run.reason_data)
    return reason_display(value)
