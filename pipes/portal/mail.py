"""Emails to requesters: when a request is submitted (reference and tracking link), and when the
status requesters see changes (a card moved to a phase with another requester status).

Written to the mail outbox (pipes.mailbox) and sent by a worker after commit, through Django's email
backend (console by default, SMTP when EMAIL_HOST is set). The status
email listens to pipes.hooks.card_changed; importing this module connects it (PipesConfig.ready
should import it so workers that never load the URLconf send it too).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from .. import hooks
from ..choices import EventKind
from ..fieldtypes import is_filled
from ..mailbox import mail_queue
from ..models import Card
from ..siteaddress import site_url
from .selectors import requester_editable_fields, requester_status

log = logging.getLogger(__name__)

# The reason recorded on cards filed through the portal; status emails go to those requesters only
# (cards made on the board or by integrations carry their creator's address but are not requests).
PORTAL_REASON = "Submitted through the request portal"


def tracking_url(card: Card) -> str:
    return site_url() + reverse("portal:tracking", args=[card.tracking_token])


def request_url(card: Card) -> str:
    """The requester's own page of the card (signed-in requesters), else the tracking page."""
    if card.created_by_id:
        return site_url() + reverse("portal:request", args=[card.pk])
    return tracking_url(card)


def _send(card: Card, subject: str, template: str, context: dict) -> bool:
    if not card.requester_email:
        return False
    body = render_to_string(
        template,
        {
            "card": card,
            "reference": card.reference,
            "pipe_name": card.pipe.name,
            "organization": card.pipe.organization.name,
            "tracking_url": tracking_url(card),
            "request_url": request_url(card),
            **context,
        },
    )
    # Sent by a worker once the change commits (pipes.mailbox): a slow mail server never holds the
    # requester's submit, nor a person's move of the card.
    written = mail_queue(
        organization_id=card.pipe.organization_id, to=[card.requester_email], subject=subject, body=body
    )
    return written is not None


def send_submission_email(card: Card) -> bool:
    """Tell the requester their request arrived: reference, status and tracking link."""
    with translation.override(settings.LANGUAGE_CODE):
        subject = _("[%(ref)s] We received your request") % {"ref": card.reference}
        return _send(card, subject, "portal/email/submitted.txt", {"status": requester_status(card.phase)})


def send_status_email(card: Card, *, status: str) -> bool:
    with translation.override(settings.LANGUAGE_CODE):
        subject = _("[%(ref)s] Your request is now: %(status)s") % {"ref": card.reference, "status": status}
        needed = [
            f.label for f in requester_editable_fields(card) if not is_filled(f, card.values.get(f.key))
        ]
        return _send(card, subject, "portal/email/status.txt", {"status": status, "needed": needed})


def send_changes_requested_email(card: Card) -> bool:
    """Ask a signed-in requester to correct the fields the team named (their note is in the email)."""
    asked = (
        card.events.filter(kind=EventKind.COMMENTED, payload__has_key="requested_fields")
        .order_by("-seq")
        .first()
    )
    labels = dict(card.pipe.fields.filter(key__in=card.requested_fields or []).values_list("key", "label"))
    with translation.override(settings.LANGUAGE_CODE):
        subject = _("[%(ref)s] Please correct your request") % {"ref": card.reference}
        context = {
            "status": requester_status(card.phase),
            "fields": [labels[k] for k in card.requested_fields or [] if k in labels],
            "note": (asked.payload or {}).get("text", "") if asked else "",
        }
        return _send(card, subject, "portal/email/changes_requested.txt", context)


def on_card_changed(sender, *, card_id: int, kind: str, **kwargs) -> None:
    """Tell the requester of a portal request when the status they see changes, or changes are asked of them."""
    if kind not in (EventKind.MOVED, "changes_requested"):
        return
    try:
        known = kwargs.get("requester_email")  # the write path says it; other senders may not
        if known is not None and not known:
            return  # no one to tell (most board moves), and no query to learn it
        if (
            known is None
            and not Card.objects.filter(pk=card_id).values_list("requester_email", flat=True).first()
        ):
            return
        card = Card.objects.select_related("pipe__organization", "phase").filter(pk=card_id).first()
        if card is None or not card.requester_email:
            return
        if not card.events.filter(kind=EventKind.CREATED, reason=PORTAL_REASON).exists():
            return
        if card.created_by_id and card.requested_fields:
            # Asked to correct fields (perhaps sent back a phase too): one email says both, once per ask.
            if kind == "changes_requested" and cache.add(
                f"pipes.portal_mail.asked.{card.pk}.{card.event_count}", 1, 3600
            ):
                send_changes_requested_email(card)
            return
        if kind != EventKind.MOVED:
            return
        moved = card.events.filter(kind=EventKind.MOVED).order_by("-seq").first()
        if moved is None or not cache.add(f"pipes.portal_mail.moved.{card.pk}.{moved.seq}", 1, 3600):
            return  # several moves committed together announce themselves once each: tell the last one once
        phases = {p.key: p for p in card.pipe.phases.all()}
        source = phases.get((moved.payload or {}).get("from"))
        target = phases.get((moved.payload or {}).get("to"), card.phase)
        status = requester_status(target)
        if source is not None and requester_status(source) == status:
            return  # an internal step: the requester's view did not change
        send_status_email(card, status=status)
    except Exception:
        log.exception("status email for card %s failed", card_id)


hooks.card_changed.connect(on_card_changed, dispatch_uid="pipes.portal_mail.status")
