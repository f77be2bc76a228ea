"""Template helpers of the rail's designer pages: errors by composite input name, and dict lookups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import template

register = template.Library()


@register.simple_tag
def errs(errors: Mapping[str, list[str]] | None, *parts: Any) -> list[str]:
    """The messages for the input named by `parts` joined with "-": {% errs errors "act" i "field" as e %}."""
    if not errors:
        return []
    return list(errors.get("-".join(str(p) for p in parts), []))


@register.simple_tag
def name(*parts: Any) -> str:
    """An input name from its parts: {% name "act" i "field" %} → act-2-field."""
    return "-".join(str(p) for p in parts)


@register.filter
def get(obj: Any, key: Any) -> Any:
    """obj[key] for a mapping (trying the key as text too), else the attribute `key`; None when missing."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        if key in obj:
            return obj[key]
        return obj.get(str(key))
    return getattr(obj, str(key), None)
