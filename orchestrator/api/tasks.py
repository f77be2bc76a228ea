"""Celery tasks of the API. Thin: call a service."""

from __future__ import annotations

from celery import shared_task

from .idempotency import idempotency_records_purge


@shared_task(name="orchestrator.api.purge_idempotency", ignore_result=True, expires=3600)
def purge_idempotency() -> int:
    """Delete Idempotency-Key records past their 24 hours (beat sends this daily). Returns how many."""
    return idempotency_records_purge()
