"""Emails go out from a worker, never from the request that caused them (pipes.mailbox): with the mail
server hung, a requester's submit still answers at once, and the receipt is sent by a real worker, once,
when the server answers again. PostgreSQL, a real broker and worker, a real SMTP server."""

from __future__ import annotations

import time

import pytest

from pipes.choices import MailStatus
from pipes.models import Card, Mail
from tests.mailserver import MailServer
from tests.orchestrator.conftest import wait_for
from tests.pipes.test_portal import form_data, sign_in


def smtp_settings(server: MailServer, **extra) -> dict:
    """The settings that send email to the test's SMTP server, for this process and its workers."""
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": server.port,
        "EMAIL_USE_TLS": False,
        "EMAIL_HOST_USER": "",
        **extra,
    }


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_hung_mail_server_never_holds_a_submit_and_the_worker_sends_the_receipt_once_it_answers(
    client, world, broker_celery, worker_processes, settings
):
    with MailServer() as server:
        smtp = smtp_settings(server, EMAIL_TIMEOUT=30)
        for name, value in smtp.items():  # the web process would wait on this server as long as that
            setattr(settings, name, value)
        settings.TRILHO_MAIL_BY_WORKER = True
        worker_processes("mail", TRILHO_MAIL_BY_WORKER=True, **smtp)
        server.hang()

        sign_in(client, world.requester)
        started = time.monotonic()
        response = client.post(f"/portal/{world.pipe.pk}/new/", form_data())
        took = time.monotonic() - started

        card = Card.objects.get()
        assert response.status_code == 302, response.content.decode()[:500]
        assert took < 2, f"the submit waited {took:.1f} s"
        receipt = Mail.objects.get()
        assert receipt.to == ["requester@example.com"] and card.reference in receipt.subject
        wait_for(
            lambda: Mail.objects.get().status == MailStatus.SENDING, what="the worker taking the receipt"
        )
        assert not server.received  # the worker waits on the server, not the requester

        server.answer()
        wait_for(lambda: Mail.objects.get().status == MailStatus.SENT, what="the receipt sent")
        (received,) = server.received
        assert received.recipients == ["requester@example.com"]
        assert card.reference in received.message["Subject"]
        assert f"/portal/t/{card.tracking_token}/" in received.body


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_an_email_is_sent_by_the_next_free_worker_not_after_the_steps_queued_before_it(
    world, broker_celery, worker_processes, settings
):
    """Emails ride a queue of their own (settings.TRILHO_MAIL_QUEUE), which a worker takes in turn with
    the step queue: with 1,500 step messages queued first, the email goes out while most of them wait."""
    from django.db import transaction

    from orchestrator.rail.dispatch import RUN_PHASE_ENTRY
    from pipes.mailbox import mail_queue

    backlog = 1500
    with broker_celery.app.producer_or_acquire() as producer:
        for _ in range(backlog):  # entries that do not exist: each a quick read for the worker
            broker_celery.app.send_task(RUN_PHASE_ENTRY, args=[2_000_000_000], producer=producer)
    with MailServer() as server:
        smtp = smtp_settings(server)
        for name, value in smtp.items():
            setattr(settings, name, value)
        settings.TRILHO_MAIL_BY_WORKER = True
        with transaction.atomic():
            mail = mail_queue(
                organization_id=world.pipe.organization_id,
                to=["requester@example.com"],
                subject="Your request",
                body="Received.",
            )
        worker_processes("mail-backlog", TRILHO_MAIL_BY_WORKER=True, **smtp)

        wait_for(lambda: server.received, timeout=30, what="the email sent")
        waiting = queue_length(broker_celery)

    assert Mail.objects.get(pk=mail.pk).status == MailStatus.SENT
    assert server.received[0].recipients == ["requester@example.com"]
    assert waiting > backlog // 2, (
        f"the email waited for {backlog - waiting} of the {backlog} steps before it"
    )


def queue_length(broker_celery) -> int:
    """Messages waiting in the test's step queue (0 once Redis dropped the emptied list)."""
    from kombu.exceptions import ChannelError

    with broker_celery.app.connection_for_write() as conn:
        try:
            return conn.default_channel.queue_declare(queue=broker_celery.queue, passive=True).message_count
        except ChannelError:
            return 0
