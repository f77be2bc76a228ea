"""Template filters of the inbox's pages."""

from __future__ import annotations

from django import template

register = template.Library()

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
