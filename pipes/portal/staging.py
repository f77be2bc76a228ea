"""A holding area for uploads of a portal form that came back with errors.

Browsers cannot re-fill a file input, so files that passed their checks are kept in default
storage under "portal-staging/<stamp>-<random>/<field key>/<sha prefix>/<name>" until the form
is submitted, and the page carries a signed reference to that folder in a hidden input.
Folders older than a day are swept away.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import time
from dataclasses import dataclass

from django.core import signing
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile

from ..files import InspectedFile

log = logging.getLogger(__name__)

ROOT = "portal-staging"
MAX_AGE_SECONDS = 24 * 3600
SIGNING_SALT = "pipes.portal.staging"
SWEEP_EVERY_SECONDS = 3600


@dataclass(frozen=True)
class StagedFile:
    """One kept upload: `ref` names it within its field (for "remove")."""

    field_key: str
    ref: str
    name: str
    size: int
    path: str


def _new_token() -> str:
    return f"{int(time.time())}-{secrets.token_urlsafe(18)}"


def _token_age(token: str) -> float | None:
    stamp, _sep, _rest = token.partition("-")
    return time.time() - int(stamp) if stamp.isdigit() else None


def _listdir(path: str) -> tuple[list[str], list[str]]:
    try:
        return default_storage.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return [], []


def _delete_tree(prefix: str) -> None:
    dirs, files = _listdir(prefix)
    for name in files:
        default_storage.delete(f"{prefix}/{name}")
    for name in dirs:
        _delete_tree(f"{prefix}/{name}")
    with contextlib.suppress(NotImplementedError):  # a file system storage leaves empty folders behind
        shutil.rmtree(default_storage.path(prefix), ignore_errors=True)


class Staging:
    """The kept uploads of one form being filled in (by one person, or by one anonymous browser)."""

    def __init__(self, token: str, owner_id: int | None):
        self.token = token
        self.owner_id = owner_id

    @classmethod
    def open(cls, signed: str | None, *, owner_id: int | None) -> Staging:
        """The staging area named by `signed` (from the page), or a fresh one when it is missing or stale."""
        if signed:
            try:
                data = signing.loads(signed, salt=SIGNING_SALT, max_age=MAX_AGE_SECONDS)
            except signing.BadSignature:
                data = None
            if isinstance(data, dict) and data.get("u") == owner_id and isinstance(data.get("t"), str):
                return cls(data["t"], owner_id)
        return cls(_new_token(), owner_id)

    @property
    def signed(self) -> str:
        return signing.dumps({"t": self.token, "u": self.owner_id}, salt=SIGNING_SALT)

    @property
    def root(self) -> str:
        return f"{ROOT}/{self.token}"

    def keep(self, *, field_key: str, upload: UploadedFile, info: InspectedFile) -> StagedFile:
        """Store an upload that passed `inspect_upload` (a second copy of the same file is kept once)."""
        ref = info.sha256[:16]
        folder = f"{self.root}/{field_key}/{ref}"
        _dirs, existing = _listdir(folder)
        for name in existing:
            default_storage.delete(f"{folder}/{name}")
        upload.seek(0)
        path = default_storage.save(f"{folder}/{info.name}", upload)
        return StagedFile(field_key=field_key, ref=ref, name=info.name, size=info.size, path=path)

    def files(self, field_key: str) -> list[StagedFile]:
        kept = []
        refs, _files = _listdir(f"{self.root}/{field_key}")
        for ref in sorted(refs):
            folder = f"{self.root}/{field_key}/{ref}"
            _dirs, names = _listdir(folder)
            for name in names[:1]:
                path = f"{folder}/{name}"
                kept.append(
                    StagedFile(
                        field_key=field_key, ref=ref, name=name, size=default_storage.size(path), path=path
                    )
                )
        return kept

    def remove(self, *, field_key: str, ref: str) -> None:
        if not ref.isalnum():
            return
        _delete_tree(f"{self.root}/{field_key}/{ref}")

    def clear_field(self, field_key: str) -> None:
        _delete_tree(f"{self.root}/{field_key}")

    def as_uploads(self, field_key: str) -> list[UploadedFile]:
        """The kept files of a field as UploadedFile objects, as the services take them. Close them after use."""
        uploads = []
        for staged in self.files(field_key):
            handle = default_storage.open(staged.path, "rb")
            uploads.append(UploadedFile(file=handle, name=staged.name, size=staged.size))
        return uploads

    def discard(self) -> None:
        _delete_tree(self.root)


def staging_sweep(*, max_age_seconds: int = MAX_AGE_SECONDS, force: bool = False) -> int:
    """Delete staging folders older than `max_age_seconds`; runs at most once an hour unless forced.

    Returns how many folders were removed."""
    if not force and not cache.add("pipes.portal.staging.sweep", 1, SWEEP_EVERY_SECONDS):
        return 0
    removed = 0
    tokens, _files = _listdir(ROOT)
    for token in tokens:
        age = _token_age(token)
        if age is None or age > max_age_seconds:
            try:
                _delete_tree(f"{ROOT}/{token}")
                removed += 1
            except OSError:
                log.exception("could not remove staged uploads %s", token)
    return removed
