"""Notifications of the inbox: in-app rows (pipes.models.Notification) and emails through Django's backend.

Called after commit (transaction.on_commit) by the services, with ids: a mail server that is down never
undoes a decision. Requesters of cards filed through the portal already get the portal's own emails
(status changes and requested corrections, pipes.portal.mail); the inbox emails the other requesters.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from orchestrator.models import ReviewTask
from orchestrator.rail.trace import run_url
from pipes.choices import EventKind
from pipes.mailbox import mail_queue
from pipes.models import Card, Notification
from pipes.portal.mail import PORTAL_REASON
from pipes.roles import pipe_users_with
from pipes.siteaddress import site_url


def task_path(task_id: int) -> str:
    return reverse("inbox:task", args=[task_id])


def task_url(task_id: int) -> str:
    return site_url() + task_path(task_id)


def request_path(card: Card) -> str:
    return reverse("portal:request", args=[card.pk])


def _load(task_id: int) -> ReviewTask | None:
    return (
        ReviewTask.objects.select_related(
            "pipe__organization", "card__pipe", "card__created_by", "run__step", "decided_by"
        )
        .filter(pk=task_id)
        .first()
    )


def _name(user) -> str:
    return user.get_full_name() or user.get_username()


def _email(*, to: Iterable[str], subject: str, template: str, context: dict) -> int:
    """Write one email per address (of the organization of the review, context["task"]) to the mail outbox (pipes.mailbox): sent by a worker once the caller's
    transaction commits, never by the request. Returns how many."""
    addresses = sorted({a for a in to if a})
    if not addresses:
        return 0
    with translation.override(settings.LANGUAGE_CODE):
        body = render_to_string(template, context)
    for address in addresses:
        mail_queue(
            organization_id=context["task"].pipe.organization_id, to=[address], subject=subject, body=body
        )
    return len(addresses)


def _reviewers(task: ReviewTask, *, exclude: Iterable[int] = ()) -> list:
    """Who may take `task`: its assignee, else the pipe's reviewers; never the card's requester."""
    skip = {task.card.created_by_id, *exclude}
    people = [task.assignee] if task.assignee_id else list(pipe_users_with(task.pipe, "review_pipe")[:50])
    return [u for u in people if u is not None and u.pk not in skip]


def _context(task: ReviewTask, **extra) -> dict:
    return {
        "task": task,
        "card": task.card,
        "reference": task.card.reference,
        "pipe_name": task.pipe.name,
        "organization": task.pipe.organization.name,
        "task_url": task_url(task.pk),
        **extra,
    }


def new_task(*, task_id: int) -> None:
    """A review task was created: its reviewers get an email; the rail's in-app notice leads to the inbox."""
    task = _load(task_id)
    if task is None:
        return
    Notification.objects.filter(card_id=task.card_id, url=run_url(task.run), read_at__isnull=True).update(
        url=task_path(task.pk)
    )
    people = _reviewers(task)
    subject = _("[%(ref)s] Review needed: %(question)s") % {
        "ref": task.card.reference,
        "question": task.question,
    }
    _email(
        to=[u.email for u in people],
        subject=subject[:200],
        template="inbox/email/new_task.txt",
        context=_context(task),
    )


def second_approval_needed(*, task_id: int, first_user_id: int) -> None:
    task = _load(task_id)
    if task is None:
        return
    first = get_user_model().objects.filter(pk=first_user_id).first()
    people = _reviewers(task, exclude=[first_user_id])
    message = _("%(ref)s needs a second approval (approved by %(who)s): %(question)s") % {
        "ref": task.card.reference,
        "who": _name(first) if first else "?",
        "question": task.question,
    }
    Notification.objects.bulk_create(
        Notification(user=u, card=task.card, message=message[:500], url=task_path(task.pk)) for u in people
    )
    _email(
        to=[u.email for u in people],
        subject=(_("[%(ref)s] Second approval needed") % {"ref": task.card.reference}),
        template="inbox/email/second_approval.txt",
        context=_context(task, first=_name(first) if first else ""),
    )


def delegated(*, task_id: int, to_user_id: int, by_user_id: int) -> None:
    task = _load(task_id)
    User = get_user_model()
    to_user, by = User.objects.filter(pk=to_user_id).first(), User.objects.filter(pk=by_user_id).first()
    if task is None or to_user is None:
        return
    message = _("%(who)s handed you a review: %(ref)s %(question)s") % {
        "who": _name(by) if by else "?",
        "ref": task.card.reference,
        "question": task.question,
    }
    Notification.objects.create(user=to_user, card=task.card, message=message[:500], url=task_path(task.pk))
    _email(
        to=[to_user.email],
        subject=(_("[%(ref)s] A review was handed to you") % {"ref": task.card.reference}),
        template="inbox/email/delegated.txt",
        context=_context(task, by=_name(by) if by else ""),
    )


def escalated(*, task_id: int, admin_ids: list[int], hours_late: int) -> None:
    task = _load(task_id)
    if task is None:
        return
    admins = get_user_model().objects.filter(pk__in=admin_ids)
    _email(
        to=[u.email for u in admins],
        subject=(_("[%(ref)s] Overdue review escalated to you") % {"ref": task.card.reference}),
        template="inbox/email/escalated.txt",
        context=_context(task, hours_late=hours_late, assignee=_name(task.assignee) if task.assignee else ""),
    )


def portal_emails_requester(card: Card) -> bool:
    """True when the portal already emails this card's requester about moves and corrections."""
    return card.events.filter(kind=EventKind.CREATED, reason=PORTAL_REASON).exists()


def decision_to_requester(*, task_id: int) -> None:
    """Tell the card's requester (in the app, and by email unless the portal does) what was decided."""
    task = _load(task_id)
    if task is None or task.card.created_by is None or task.decided_by_id == task.card.created_by_id:
        return
    requester = task.card.created_by
    labels = {"approve": _("approved"), "reject": _("rejected")}
    message = _("Your request %(ref)s was %(decision)s by %(who)s") % {
        "ref": task.card.reference,
        "decision": labels.get(task.decision, task.decision),
        "who": _name(task.decided_by) if task.decided_by else _("a reviewer"),
    }
    Notification.objects.create(
        user=requester, card=task.card, message=message[:500], url=request_path(task.card)
    )
    if portal_emails_requester(task.card):
        return
    _email(
        to=[task.card.requester_email or requester.email],
        subject=f"[{task.card.reference}] {message}"[:200],
        template="inbox/email/decided.txt",
        context=_context(task, message=message, request_url=site_url() + request_path(task.card)),
    )


def changes_requested(*, task_id: int) -> None:
    """Ask the card's requester for the named fields: in the app, and by email unless the portal does."""
    task = _load(task_id)
    if task is None or task.card.created_by is None:
        return
    card = task.card
    requester = card.created_by
    labels = dict(card.pipe.fields.filter(key__in=card.requested_fields or []).values_list("key", "label"))
    fields = [labels[k] for k in card.requested_fields or [] if k in labels]
    message = _("Please correct your request %(ref)s: %(fields)s") % {
        "ref": card.reference,
        "fields": ", ".join(fields),
    }
    Notification.objects.create(user=requester, card=card, message=message[:500], url=request_path(card))
    if portal_emails_requester(card):
        return
    _email(
        to=[card.requester_email or requester.email],
        subject=(_("[%(ref)s] Please correct your request") % {"ref": card.reference}),
        template="inbox/email/changes_requested.txt",
        context=_context(
            task,
            fields=fields,
            note=task.comment,
            reviewer=_name(task.decided_by) if task.decided_by else "",
            request_url=site_url() + request_path(card),
        ),
    )
