"""Attaching files to a card that already exists."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils.translation import gettext as _

from ..choices import EventKind
from ..files import inspect_upload
from ..models import Card, CardFile
from .actors import Actor
from .common import (
    _announce_change,
    _check_update,
    _check_work,
    _event,
    _lock,
    _PipeSchema,
    _store_files,
    _touch,
)
from .errors import CardError

# ---------------------------------------------------------------- attaching files


def card_attach_files(
    *,
    actor: Actor,
    card: Card,
    uploads: Sequence[UploadedFile],
    field_key: str = "",
    expected_version: int | None = None,
) -> list[CardFile]:
    """Attach files to the card, to an attachment field when `field_key` is given."""
    saved: list[str] = []
    try:
        with transaction.atomic():
            card = _lock(card, expected_version)
            schema = _PipeSchema(card.pipe, card.design_stamp)
            if field_key:
                _check_update(actor, card, schema, [field_key])
            else:
                _check_work(actor, card, _("attach files"))
            errors: dict[str, list[str]] = {}
            if field_key:
                existing = list(card.values.get(field_key) or [])
                f = schema.fields.get(field_key)
                if f is not None and existing and not (f.config or {}).get("multiple"):
                    existing = []  # a single-file field: the new file replaces the old one
                stored = _store_files(
                    card=card, schema=schema, actor=actor, uploads={field_key: uploads}, errors=errors
                )
            else:
                stored = {}
                for upload in uploads:
                    try:
                        info = inspect_upload(upload)
                    except Exception as exc:  # noqa: BLE001 - FieldValueError
                        errors.setdefault("files", []).append(str(exc))
                        continue
                    card_file = CardFile(
                        card=card,
                        name=info.name,
                        size=info.size,
                        content_type=info.content_type,
                        sha256=info.sha256,
                        uploaded_by=actor.user,
                    )
                    card_file.file.save(info.name, upload, save=False)
                    card_file.save()
                    stored.setdefault("", []).append(card_file)
            if errors:
                raise CardError(errors, fields=schema.labels(errors))
            new_files = [cf for cfs in stored.values() for cf in cfs]
            saved += [cf.file.name for cf in new_files]
            changes = {}
            if field_key:
                after = existing + [cf.pk for cf in new_files]
                changes[field_key] = {"before": card.values.get(field_key), "after": after}
                card.values[field_key] = after
            _event(
                card,
                actor,
                EventKind.FILE_ADDED,
                {
                    "files": [
                        {"id": cf.pk, "name": cf.name, "sha256": cf.sha256, "size": cf.size}
                        for cf in new_files
                    ],
                    "changes": changes,
                },
                field_keys=changes,
            )
            _touch(card, "values")
            _announce_change(card, EventKind.FILE_ADDED, changes)
    except BaseException:
        from django.core.files.storage import default_storage

        for name in saved:
            default_storage.delete(name)
        raise
    return new_files
