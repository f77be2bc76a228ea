"""Celery tasks of the outbound webhooks. Thin: take an id, call outbound."""

from __future__ import annotations

from celery import shared_task

from .outbound import DELIVER, deliver_later, deliveries_sweep, delivery_attempt


# Not acks_late: an attempt whose worker dies is leased, and the sweep sends it again after the lease.
@shared_task(name=DELIVER, acks_late=False, ignore_result=True)
def deliver(delivery_id: int) -> None:
    """One attempt at a delivery; a failed one is sent again after its backoff."""
    delay = delivery_attempt(delivery_id=delivery_id)
    if delay is not None:
        deliver_later(delivery_id, delay)


@shared_task(name="orchestrator.webhooks.sweep", ignore_result=True, expires=25)
def sweep(older_than_seconds: int = 30) -> int:
    """Send due deliveries nobody attempted (the broker was down). Returns how many were sent."""
    return deliveries_sweep(older_than_seconds=older_than_seconds)
