"""Celery tasks of the inbox. Thin: the beat runs the escalation sweep every minute."""

from __future__ import annotations

from celery import shared_task


@shared_task(ignore_result=True)
def escalate_overdue_reviews() -> int:
    """Open inbox items the signal missed, then escalate open tasks past their due time. Returns how many escalated."""
    from .services import inbox_escalate_overdue, inbox_open_missing

    inbox_open_missing()
    return inbox_escalate_overdue()
