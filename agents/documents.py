"""Text of card attachments an agent may read: PDF (pypdf), plain text and CSV.

Extraction runs on a worker, never in a web request: a small compressed PDF can expand into
megabytes of content streams that take minutes to interpret. It stops at limits on pages,
characters, time and decompressed bytes per stream (settings TRILHO_DOCUMENT_*), stores the text
with the file (DocumentText) and records which limits cut it, so a preview and a prompt can say so.

Each file read is returned with its name and the sha256 of the bytes actually read, so the
trace records exactly what the model consumed. Other types are listed as skipped.
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from pipes.models import CardFile

from .models import DocumentText

TEXT_TYPES = {"text/plain", "text/csv"}

# Why an extraction was cut short (DocumentText.cuts, Document.cuts).
CUT_PAGES = "pages"  # the file has more pages than the limit
CUT_CHARS = "chars"  # the text ran over the character limit
CUT_TIME = "time"  # the time limit ran out
CUT_STREAM = "stream"  # a page's content decompressed past the per-stream limit; that page was skipped
CUT_PAGE = "page"  # a page could not be read; it was skipped


@dataclass(frozen=True)
class Limits:
    """How much of one file an extraction may read."""

    pages: int
    chars: int
    seconds: float
    stream_bytes: int

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            pages=settings.TRILHO_DOCUMENT_MAX_PAGES,
            chars=settings.TRILHO_AGENT_MAX_DOCUMENT_CHARS,
            seconds=settings.TRILHO_DOCUMENT_MAX_SECONDS,
            stream_bytes=settings.TRILHO_DOCUMENT_MAX_STREAM_BYTES,
        )


@dataclass(frozen=True)
class Extraction:
    """What one extraction read, and which limits cut it."""

    text: str
    cuts: tuple[str, ...] = ()
    skipped: str = ""
    pages_read: int = 0
    pages_total: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Document:
    """An attachment as a model sees it."""

    file_id: int
    name: str
    sha256: str
    text: str
    truncated: bool
    skipped: str = ""  # why no text was read, if none was
    cuts: tuple[str, ...] = ()  # which extraction limits cut the text (CUT_*)
    pages_read: int = 0
    pages_total: int = 0

    def trace(self) -> dict:
        return {
            "id": self.file_id,
            "name": self.name,
            "sha256": self.sha256,
            "chars": len(self.text),
            "truncated": self.truncated,
            **({"cuts": list(self.cuts)} if self.cuts else {}),
            **({"skipped": self.skipped} if self.skipped else {}),
        }


def document_kind(card_file: CardFile) -> str:
    """ "pdf", "text", or "" when the file is not read as text."""
    ext = card_file.name.rpartition(".")[2].lower()
    if card_file.content_type == "application/pdf" or ext == "pdf":
        return "pdf"
    if card_file.content_type in TEXT_TYPES or ext in ("txt", "csv"):
        return "text"
    return ""


class _OutOfTime(Exception):
    pass


def _pdf_extract(data: bytes, limits: Limits, deadline: float) -> Extraction:
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import LimitReachedError

    def visitor(*args) -> None:
        # Called before each content-stream operator: the time limit holds inside a page, too.
        if time.monotonic() > deadline:
            raise _OutOfTime

    cap = limits.stream_bytes
    parts: list[str] = []
    cuts: list[str] = []
    chars = pages_read = 0
    # Every decoder stops at `cap` decompressed bytes; a bigger stream raises LimitReachedError.
    with apply_configuration(
        zlib_maximum_output_length=cap,
        lzw_maximum_output_length=cap,
        run_length_maximum_output_length=cap,
        brotli_maximum_output_length=cap,
        jbig2_maximum_output_length=cap,
        array_based_stream_maximum_output_length=cap,
        stream_decoding_work_maximum_length=cap,
    ):
        reader = PdfReader(io.BytesIO(data))
        pages = reader.pages
        total = len(pages)
        for index in range(min(total, limits.pages)):
            if time.monotonic() > deadline:
                cuts.append(CUT_TIME)
                break
            try:
                text = pages[index].extract_text(visitor_operand_before=visitor) or ""
            except _OutOfTime:
                cuts.append(CUT_TIME)
                break
            except LimitReachedError:
                cuts.append(CUT_STREAM)
                continue
            except Exception:  # noqa: BLE001 - one broken page is skipped, the others are read
                cuts.append(CUT_PAGE)
                continue
            pages_read += 1
            parts.append(text)
            chars += len(text) + 1
            if chars > limits.chars:
                if index + 1 < total:  # pages left unread (a too-long text is cut by text_extract)
                    cuts.append(CUT_CHARS)
                break
        else:
            if total > limits.pages:
                cuts.append(CUT_PAGES)
    return Extraction("\n".join(parts), tuple(dict.fromkeys(cuts)), "", pages_read, total)


def text_extract(data: bytes, *, kind: str, limits: Limits) -> Extraction:
    """The text of `data` (a "pdf" or "text" file) within `limits`; never raises for a broken file."""
    started = time.monotonic()
    try:
        if kind == "pdf":
            extraction = _pdf_extract(data, limits, started + limits.seconds)
        elif kind == "text":
            extraction = Extraction(data[: limits.chars * 4 + 4].decode("utf-8", errors="replace"))
        else:
            return Extraction("", skipped="type not readable as text")
    except Exception as exc:  # noqa: BLE001 - a broken file is skipped, never fatal
        return Extraction("", skipped=f"unreadable: {exc.__class__.__name__}")
    cuts = list(extraction.cuts)
    text = extraction.text
    if len(text) > limits.chars or (kind == "text" and len(data) > limits.chars * 4 + 4):
        text = text[: limits.chars]
        cuts.append(CUT_CHARS)
    return Extraction(
        text,
        tuple(dict.fromkeys(cuts)),
        "",
        extraction.pages_read,
        extraction.pages_total,
        round(time.monotonic() - started, 3),
    )


def document_extract(card_file: CardFile, *, limits: Limits | None = None) -> DocumentText:
    """Read `card_file` and store its text (within `limits`). Worker only: this may take seconds."""
    limits = limits or Limits.from_settings()
    with card_file.file.open("rb") as handle:
        data = handle.read()
    extraction = text_extract(data, kind=document_kind(card_file), limits=limits)
    row = DocumentText(
        card_file=card_file,
        status=DocumentText.Status.DONE,
        sha256=hashlib.sha256(data).hexdigest(),
        text=extraction.text,
        truncated=bool(extraction.cuts),
        cuts=list(extraction.cuts),
        skipped=extraction.skipped,
        pages_read=extraction.pages_read,
        pages_total=extraction.pages_total,
        seconds=extraction.seconds,
        extracted_at=timezone.now(),
    )
    # An upsert: two workers extracting the same file at once store the same row, no IntegrityError.
    DocumentText.objects.bulk_create(
        [row],
        update_conflicts=True,
        unique_fields=["card_file"],
        update_fields=[
            "status", "sha256", "text", "truncated", "cuts", "skipped",
            "pages_read", "pages_total", "seconds", "extracted_at",
        ],
    )  # fmt: skip
    return DocumentText.objects.get(card_file=card_file)


def document_text_stored(card_file: CardFile) -> DocumentText | None:
    """The text extracted from `card_file`, if a worker has stored it (never extracts)."""
    row = DocumentText.objects.filter(card_file=card_file, status=DocumentText.Status.DONE).first()
    if row is None or (card_file.sha256 and row.sha256 != card_file.sha256):
        return None
    return row


def document_text_request(card_file: CardFile) -> bool:
    """Mark `card_file` as waiting for extraction; True when a worker should be sent to it now.

    False when the text is stored, the type has none, or a request is already out and recent
    (not older than a few extraction time limits: an older one was lost and is sent again)."""
    if not document_kind(card_file):
        return False
    now = timezone.now()
    row, created = DocumentText.objects.get_or_create(card_file=card_file, defaults={"requested_at": now})
    if created:
        return True
    if row.status == DocumentText.Status.DONE and (not card_file.sha256 or row.sha256 == card_file.sha256):
        return False
    stale = now - timedelta(seconds=settings.TRILHO_DOCUMENT_MAX_SECONDS * 3 + 60)
    if row.status == DocumentText.Status.PENDING and row.requested_at > stale:
        return False
    DocumentText.objects.filter(pk=row.pk).update(status=DocumentText.Status.PENDING, requested_at=now)
    return True


def document_read(card_file: CardFile, *, max_chars: int | None = None) -> Document:
    """The text of one attachment as stored by a worker, extracted now if it was not (worker only),
    and truncated to `max_chars` (default settings.TRILHO_AGENT_MAX_DOCUMENT_CHARS)."""
    limit = max_chars or settings.TRILHO_AGENT_MAX_DOCUMENT_CHARS
    if not document_kind(card_file):
        return Document(
            card_file.pk, card_file.name, card_file.sha256, "", False, skipped="type not readable as text"
        )
    row = document_text_stored(card_file) or document_extract(card_file)
    cuts = tuple(row.cuts)
    if len(row.text) > limit and CUT_CHARS not in cuts:
        cuts += (CUT_CHARS,)
    return Document(
        card_file.pk,
        card_file.name,
        row.sha256,
        row.text[:limit],
        bool(cuts),
        skipped=row.skipped,
        cuts=cuts,
        pages_read=row.pages_read,
        pages_total=row.pages_total,
    )


def cut_notes(document: Document | DocumentText) -> list[str]:
    """Why the text of `document` is incomplete, one sentence per limit that cut it (translated)."""
    notes = []
    for cut in document.cuts:
        if cut == CUT_PAGES:
            notes.append(
                _("Only the first %(read)d of %(total)d pages were read.")
                % {"read": document.pages_read, "total": document.pages_total}
            )
        elif cut == CUT_CHARS:
            chars = len(document.text)
            notes.append(
                ngettext(
                    "Only the first %(chars)d character was kept.",
                    "Only the first %(chars)d characters were kept.",
                    chars,
                )
                % {"chars": chars}
            )
        elif cut == CUT_TIME:
            notes.append(
                _("Extraction stopped at its time limit, after %(read)d of %(total)d pages.")
                % {"read": document.pages_read, "total": document.pages_total}
            )
        elif cut == CUT_STREAM:
            notes.append(
                _("Pages whose content expands past %(mb)s MB were skipped.")
                % {"mb": f"{settings.TRILHO_DOCUMENT_MAX_STREAM_BYTES / 1_000_000:g}"}
            )
        elif cut == CUT_PAGE:
            notes.append(_("Pages that could not be read were skipped."))
    return notes


def cut_summary(document: Document) -> str:
    """Why `document` is incomplete, in English (prompts and traces are written in English); "" if whole."""
    with translation.override("en"):
        return " ".join(cut_notes(document))
