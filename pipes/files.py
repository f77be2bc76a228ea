"""Checks on uploaded files: size, allowed types, sanitized names and sniffed content.

The declared content type and extension are never trusted: the first bytes decide what a
file is, and an HTML or SVG document renamed to .pdf is refused.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import gettext as _

from .fieldtypes import FieldValueError

# extension → (content type, magic prefixes; empty means "text")
KNOWN_TYPES: dict[str, tuple[str, tuple[bytes, ...]]] = {
    "pdf": ("application/pdf", (b"%PDF-",)),
    "png": ("image/png", (b"\x89PNG\r\n\x1a\n",)),
    "jpg": ("image/jpeg", (b"\xff\xd8\xff",)),
    "jpeg": ("image/jpeg", (b"\xff\xd8\xff",)),
    "gif": ("image/gif", (b"GIF87a", b"GIF89a")),
    "webp": ("image/webp", (b"RIFF",)),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", (b"PK\x03\x04",)),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", (b"PK\x03\x04",)),
    "odt": ("application/vnd.oasis.opendocument.text", (b"PK\x03\x04",)),
    "zip": ("application/zip", (b"PK\x03\x04",)),
    "txt": ("text/plain", ()),
    "csv": ("text/csv", ()),
    "xml": ("application/xml", ()),
}
DEFAULT_ALLOWED = ("pdf", "png", "jpg", "jpeg", "gif", "webp", "docx", "xlsx", "odt", "txt", "csv")
MARKUP = re.compile(rb"<\s*(!doctype\s+html|html|svg|script|body|iframe|object|embed)\b", re.IGNORECASE)


@dataclass(frozen=True)
class InspectedFile:
    name: str
    content_type: str
    size: int
    sha256: str


def safe_filename(name: str) -> str:
    """A plain file name: no path, no control characters, no leading dots, at most 120 characters."""
    name = unicodedata.normalize("NFKC", os.path.basename(name.replace("\\", "/")))
    name = re.sub(r"[^\w.\- ()]+", "_", name).strip(" ._")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    stem = stem[:100] or "file"
    return f"{stem}.{ext[:10].lower()}" if ext else stem


def inspect_upload(upload: UploadedFile, *, config: dict | None = None) -> InspectedFile:
    """Check `upload` against a field's settings (`max_size_mb`, `allowed_types`); raise FieldValueError."""
    config = config or {}
    max_bytes = int(float(config.get("max_size_mb", 0)) * 1024 * 1024) or settings.TRILHO_UPLOAD_MAX_BYTES
    name = safe_filename(upload.name or "file")
    if upload.size > max_bytes:
        raise FieldValueError(
            _("“%(name)s” is %(size).1f MB; the limit is %(limit).1f MB.")
            % {"name": name, "size": upload.size / 1048576, "limit": max_bytes / 1048576}
        )
    if upload.size == 0:
        raise FieldValueError(_("“%(name)s” is empty.") % {"name": name})
    ext = name.rpartition(".")[2].lower() if "." in name else ""
    allowed = [t.lower().lstrip(".") for t in config.get("allowed_types") or DEFAULT_ALLOWED]
    if ext not in allowed or ext not in KNOWN_TYPES:
        raise FieldValueError(
            _("“%(name)s” is not an accepted type. Accepted: %(types)s.")
            % {"name": name, "types": ", ".join(allowed)}
        )
    content_type, magics = KNOWN_TYPES[ext]
    digest = hashlib.sha256()
    upload.seek(0)
    head = upload.read(2048)
    upload.seek(0)
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    if magics and not any(head.startswith(m) for m in magics):
        raise FieldValueError(
            _("“%(name)s” does not look like a %(ext)s file.") % {"name": name, "ext": ext.upper()}
        )
    if not magics and (b"\x00" in head or MARKUP.search(head)):
        raise FieldValueError(
            _("“%(name)s” does not look like a %(ext)s file.") % {"name": name, "ext": ext.upper()}
        )
    return InspectedFile(name=name, content_type=content_type, size=upload.size, sha256=digest.hexdigest())
