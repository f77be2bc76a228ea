"""Masking of personal data (PII fields) for people who may not see it.

Every page that shows card values goes through `field_text`, so a PII field never reaches
someone without the pipe's view_pii permission in clear: emails keep their first letters and
top-level domain ("j***@e***.com"), numbers such as phones and ids keep their last four
digits, other text keeps only its first character. A card's title is a copy of its pipe's title
field, so every page that shows titles goes through `title_shown`, which masks them wherever that
field is masked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .fieldtypes import display_value

if TYPE_CHECKING:
    from .models import Field, Pipe

MASK = "***"


def mask_email(text: str) -> str:
    local, _sep, domain = text.rpartition("@")
    host, dot, tld = domain.rpartition(".")
    if not dot:
        host, tld = domain, ""
    masked_host = f"{host[:1]}{MASK}" if host else MASK
    return f"{local[:1]}{MASK}@{masked_host}{'.' + tld if tld else ''}"


def mask_text(text: str) -> str:
    """A masked form of `text` that hints at it without revealing it."""
    text = str(text or "")
    if not text:
        return ""
    if "@" in text and " " not in text.strip():
        return mask_email(text.strip())
    digits = re.sub(r"\D", "", text)
    if len(digits) >= 6 and len(digits) >= len(text.replace(" ", "")) * 0.6:
        return f"{MASK} {digits[-4:]}"
    return f"{text[:1]}{MASK}"


def field_text(field: Field, value: Any, *, can_view_pii: bool) -> str:
    """How `value` of `field` is shown to someone: its display form, masked when it is PII they may not see."""
    shown = display_value(field, value)
    if field.pii and not can_view_pii and shown:
        return mask_text(shown)
    return shown


def title_masked(*, pipe: Pipe, can_view_pii: bool, fields: Iterable[Field] | None = None) -> bool:
    """Whether a viewer sees `pipe`'s card titles masked: its title field is PII they may not see.

    `fields` are the pipe's fields when the caller holds them already; otherwise they are read
    from the pipe (its prefetch when there is one, else one query)."""
    if can_view_pii or not pipe.title_field:
        return False
    fields = pipe.fields.all() if fields is None else fields
    return any(f.key == pipe.title_field and f.pii for f in fields)


def _as_stored(title: str) -> str:
    return title


def title_shown(
    *, pipe: Pipe, can_view_pii: bool, fields: Iterable[Field] | None = None
) -> Callable[[str], str]:
    """How a viewer sees the titles of `pipe`'s cards: a function of a stored title, masking it
    wherever the title field is masked. Decided once per pipe and viewer, applied to every card."""
    return mask_text if title_masked(pipe=pipe, can_view_pii=can_view_pii, fields=fields) else _as_stored
