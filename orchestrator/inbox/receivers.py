"""The inbox's subscriptions: every new review task gets an inbox item, and its reviewers an email."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from orchestrator.models import ReviewTask

from . import notify
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
