"""The inbox's subscriptions: every new review task gets an inbox item, and its reviewers an email; a
person's erasure scrubs their values from sign-offs and delegation notes, and their export carries them
with each review (through the rail's orchestrator.rail.privacy.register_review_export)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from orchestrator.models import ReviewTask
from orchestrator.rail.privacy import register_review_export, scrub_rows
from pipes.governance import erasure_patterns, person_erasing

from . import notify
from .models import ReviewDelegation, ReviewSignoff
from .services import inbox_item_open

log = logging.getLogger(__name__)


@receiver(post_save, sender=ReviewTask, dispatch_uid="inbox.review_task_created")
def on_review_task_created(sender, instance: ReviewTask, created: bool, raw: bool = False, **kwargs) -> None:
    if not created or raw:
        return
    try:
        with transaction.atomic():
            inbox_item_open(task=instance)
    except Exception:  # noqa: BLE001 - the rail's handover must not fail because of the inbox
        log.exception("could not open the inbox item of review task %s; the beat task retries", instance.pk)
    task_id = instance.pk
    transaction.on_commit(lambda: notify.new_task(task_id=task_id))


@receiver(person_erasing, dispatch_uid="inbox.person_erasing")
def on_person_erasing(sender, card_ids: list[int], identifiers: list[str], **kwargs) -> None:
    """Scrub the erased values from the sign-offs and delegation notes of those cards' reviews, inside the
    erasure's transaction (the rail scrubs the reviews themselves, orchestrator.rail.privacy)."""
    patterns = erasure_patterns(identifiers)
    if not patterns or not card_ids:
        return
    scrub_rows(ReviewSignoff.objects.filter(task__card_id__in=card_ids), ("comment", "values"), patterns)
    scrub_rows(ReviewDelegation.objects.filter(task__card_id__in=card_ids), ("note",), patterns)


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


def review_export(task_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The sign-offs and delegations of each review, for a person's export (in the order they were made)."""
    parts: dict[int, dict[str, Any]] = {pk: {"signoffs": [], "delegations": []} for pk in task_ids}
    for s in ReviewSignoff.objects.filter(task_id__in=task_ids).order_by("created_at", "pk"):
        parts[s.task_id]["signoffs"].append(
            {
                "decision": s.decision,
                "comment": s.comment,
                "values": s.values,
                "edited_keys": s.edited_keys,
                "at": _iso(s.created_at),
            }
        )
    for d in ReviewDelegation.objects.filter(task_id__in=task_ids).order_by("created_at", "pk"):
        parts[d.task_id]["delegations"].append({"note": d.note, "at": _iso(d.created_at)})
    return parts


register_review_export(review_export)
