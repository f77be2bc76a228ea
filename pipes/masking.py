"""Masking of personal data (PII fields) for people who may not see it.

Every page that shows card values goes through `field_text`, so a PII field never reaches
someone without the pipe's view_pii permission in clear: emails keep their first letters and
top-level domain ("j***@e***.com"), numbers such as phones and ids keep their last four
digits, other text keeps only its first character.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .fieldtypes import display_value

if TYPE_CHECKING:
    from .models import Field

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
