"""Text of card attachments an agent may read: PDF (pypdf), plain text and CSV.

Each file read is returned with its name and the sha256 of the bytes actually read, so the
trace records exactly what the model consumed. Other types are listed as skipped.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from django.conf import settings

from pipes.models import CardFile

TEXT_TYPES = {"text/plain", "text/csv"}


@dataclass(frozen=True)
class Document:
    """An attachment as a model sees it."""

    file_id: int
    name: str
    sha256: str
    text: str
    truncated: bool
    skipped: str = ""  # why no text was read, if none was

    def trace(self) -> dict:
        return {
            "id": self.file_id,
            "name": self.name,
            "sha256": self.sha256,
            "chars": len(self.text),
            "truncated": self.truncated,
            **({"skipped": self.skipped} if self.skipped else {}),
        }


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return "\n".join((page.extract_text() or "") for page in reader.pages)


def document_read(card_file: CardFile, *, max_chars: int | None = None) -> Document:
    """The text of one attachment, truncated to `max_chars` (settings.TRILHO_AGENT_MAX_DOCUMENT_CHARS)."""
    limit = max_chars or getattr(settings, "TRILHO_AGENT_MAX_DOCUMENT_CHARS", 20000)
    with card_file.file.open("rb") as handle:
        data = handle.read()
    digest = hashlib.sha256(data).hexdigest()
    name = card_file.name
    ext = name.rpartition(".")[2].lower()
    try:
        if card_file.content_type == "application/pdf" or ext == "pdf":
            text = _pdf_text(data)
        elif card_file.content_type in TEXT_TYPES or ext in ("txt", "csv"):
            text = data.decode("utf-8", errors="replace")
        else:
            return Document(card_file.pk, name, digest, "", False, skipped="type not readable as text")
    except Exception as exc:  # noqa: BLE001 - a broken file is skipped, never fatal
        return Document(
            card_file.pk, name, digest, "", False, skipped=f"unreadable: {exc.__class__.__name__}"
        )
    return Document(card_file.pk, name, digest, text[:limit], len(text) > limit)
