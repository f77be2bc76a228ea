"""The mail outbox (pipes.mailbox): an email is written with the change it tells of, sent once that
commits and never if it rolls back, at most once, and what a dead sender left behind is settled by the
sweep. Through a real SMTP server (tests/mailserver.py) where the protocol matters."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail as django_mail
from django.db import transaction
from django.utils import timezone

from pipes.choices import MailStatus
from pipes.mailbox import mail_queue, mail_send, mail_sweep
from pipes.models import Mail
from tests.mailserver import MailServer

pytestmark = pytest.mark.django_db


class Rollback(Exception):
    pass


def smtp_to(settings, port: int, timeout: int = 5) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS, settings.EMAIL_HOST_USER, settings.EMAIL_TIMEOUT = False, "", timeout


def test_a_message_goes_out_once_its_transaction_commits_and_never_before(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            written = mail_queue(to=["ana@example.com", " ", "ana@example.com"], subject="Hello", body="Body")
        assert not django_mail.outbox  # written, not sent: the change has not committed yet
    assert [m.to for m in django_mail.outbox] == [["ana@example.com"]]  # each address once
    written.refresh_from_db()
    assert written.status == MailStatus.SENT and written.sent_at is not None
    assert mail_send(mail_id=written.pk) is False and len(django_mail.outbox) == 1  # never twice


def test_a_message_of_a_change_that_rolled_back_is_neither_kept_nor_sent(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(Rollback), transaction.atomic():
        mail_queue(to=["ana@example.com"], subject="Hello", body="Body")
        raise Rollback
    assert not Mail.objects.exists() and not django_mail.outbox


def test_nobody_to_write_to_writes_nothing():
    assert mail_queue(to=["", "  "], subject="Hello", body="Body") is None
    assert not Mail.objects.exists()


def test_it_speaks_smtp_to_a_real_server(settings, django_capture_on_commit_callbacks):
    with MailServer() as server:
        smtp_to(settings, server.port)
        with django_capture_on_commit_callbacks(execute=True):
            mail_queue(to=["rita@example.com"], subject="[PUR-1] A review waits for you", body="Open it.")
    (received,) = server.received
    assert received.recipients == ["rita@example.com"]
    assert received.message["Subject"] == "[PUR-1] A review waits for you"
    assert received.body.strip() == "Open it."
    assert Mail.objects.get().status == MailStatus.SENT


def test_a_message_the_server_refuses_is_recorded_failed_with_why_and_not_sent_again(
    settings, django_capture_on_commit_callbacks
):
    with MailServer() as server:
        port = server.port
    smtp_to(settings, port)  # nothing listens there any more: the connection is refused
    with django_capture_on_commit_callbacks(execute=True):
        written = mail_queue(to=["ana@example.com"], subject="Hello", body="Body")
    written.refresh_from_db()
    assert written.status == MailStatus.FAILED and "ConnectionRefusedError" in written.error
    Mail.objects.filter(pk=written.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    assert mail_sweep() == {"sent": 0, "unknown": 0}


def test_the_sweep_sends_what_was_never_handed_on_and_never_resends_what_a_dead_sender_held(settings):
    settings.TRILHO_EMAIL_SENDING_STALE_SECONDS = 120
    now = timezone.now()
    lost = Mail.objects.create(
        to=["a@example.com"], subject="Lost", body=".", created_at=now - timedelta(minutes=2)
    )
    fresh = Mail.objects.create(to=["b@example.com"], subject="Fresh", body=".")  # its sender is on it
    held = Mail.objects.create(
        to=["c@example.com"],
        subject="Held",
        body=".",
        status=MailStatus.SENDING,
        sending_at=now - timedelta(minutes=10),
        created_at=now - timedelta(minutes=10),
    )

    assert mail_sweep() == {"sent": 1, "unknown": 1}

    assert [m.subject for m in django_mail.outbox] == ["Lost"]
    statuses = dict(Mail.objects.values_list("pk", "status"))
    assert statuses == {lost.pk: MailStatus.SENT, fresh.pk: MailStatus.PENDING, held.pk: MailStatus.UNKNOWN}
    assert mail_sweep() == {"sent": 0, "unknown": 0}  # at most once: the unknown one stays unsent
