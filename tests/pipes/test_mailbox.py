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
from pipes.governance import subject_erase
from pipes.mailbox import mail_queue, mail_send, mail_sweep
from pipes.models import Mail, Organization
from pipes.services import Actor, card_create
from tests.mailserver import MailServer
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db


class Rollback(Exception):
    pass


@pytest.fixture
def org(world):
    return world.org


def smtp_to(settings, port: int, timeout: int = 5) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS, settings.EMAIL_HOST_USER, settings.EMAIL_TIMEOUT = False, "", timeout


def test_a_message_goes_out_once_its_transaction_commits_and_never_before(
    org, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            written = mail_queue(
                organization_id=org.pk,
                to=["ana@example.com", " ", "ana@example.com"],
                subject="Hello",
                body="Body",
            )
        assert not django_mail.outbox  # written, not sent: the change has not committed yet
    assert [m.to for m in django_mail.outbox] == [["ana@example.com"]]  # each address once
    written.refresh_from_db()
    assert written.status == MailStatus.SENT and written.sent_at is not None
    assert mail_send(mail_id=written.pk) is False and len(django_mail.outbox) == 1  # never twice


def test_a_message_of_a_change_that_rolled_back_is_neither_kept_nor_sent(
    org, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(Rollback), transaction.atomic():
        mail_queue(organization_id=org.pk, to=["ana@example.com"], subject="Hello", body="Body")
        raise Rollback
    assert not Mail.objects.exists() and not django_mail.outbox


def test_nobody_to_write_to_writes_nothing(org):
    assert mail_queue(organization_id=org.pk, to=["", "  "], subject="Hello", body="Body") is None
    assert not Mail.objects.exists()


def test_it_speaks_smtp_to_a_real_server(org, settings, django_capture_on_commit_callbacks):
    with MailServer() as server:
        smtp_to(settings, server.port)
        with django_capture_on_commit_callbacks(execute=True):
            mail_queue(
                organization_id=org.pk,
                to=["rita@example.com"],
                subject="[PUR-1] A review waits for you",
                body="Open it.",
            )
    (received,) = server.received
    assert received.recipients == ["rita@example.com"]
    assert received.message["Subject"] == "[PUR-1] A review waits for you"
    assert received.body.strip() == "Open it."
    assert Mail.objects.get().status == MailStatus.SENT


def test_a_message_the_server_refuses_is_recorded_failed_with_why_and_not_sent_again(
    org, settings, django_capture_on_commit_callbacks
):
    with MailServer() as server:
        port = server.port
    smtp_to(settings, port)  # nothing listens there any more: the connection is refused
    with django_capture_on_commit_callbacks(execute=True):
        written = mail_queue(organization_id=org.pk, to=["ana@example.com"], subject="Hello", body="Body")
    written.refresh_from_db()
    assert written.status == MailStatus.FAILED and "ConnectionRefusedError" in written.error
    Mail.objects.filter(pk=written.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    assert mail_sweep() == {"sent": 0, "unknown": 0, "purged": 0}


def test_the_sweep_sends_what_was_never_handed_on_and_never_resends_what_a_dead_sender_held(org, settings):
    settings.TRILHO_EMAIL_SENDING_STALE_SECONDS = 120
    now = timezone.now()
    lost = Mail.objects.create(
        organization=org,
        to=["a@example.com"],
        subject="Lost",
        body=".",
        created_at=now - timedelta(minutes=2),
    )
    fresh = Mail.objects.create(
        organization=org, to=["b@example.com"], subject="Fresh", body="."
    )  # being handed on
    held = Mail.objects.create(
        organization=org,
        to=["c@example.com"],
        subject="Held",
        body=".",
        status=MailStatus.SENDING,
        sending_at=now - timedelta(minutes=10),
        created_at=now - timedelta(minutes=10),
    )

    assert mail_sweep() == {"sent": 1, "unknown": 1, "purged": 0}

    assert [m.subject for m in django_mail.outbox] == ["Lost"]
    statuses = dict(Mail.objects.values_list("pk", "status"))
    assert statuses == {lost.pk: MailStatus.SENT, fresh.pk: MailStatus.PENDING, held.pk: MailStatus.UNKNOWN}
    assert mail_sweep() == {
        "sent": 0,
        "unknown": 0,
        "purged": 0,
    }  # at most once: the unknown one stays unsent


def test_settled_messages_are_deleted_after_the_days_kept_and_waiting_ones_never(org, settings):
    settings.TRILHO_MAIL_KEEP_DAYS = 30
    long_ago = timezone.now() - timedelta(days=31)
    old_sent = Mail.objects.create(
        organization=org,
        to=["a@example.com"],
        subject="Old",
        body=".",
        status=MailStatus.SENT,
        created_at=long_ago,
    )
    recent = Mail.objects.create(
        organization=org, to=["b@example.com"], subject="Recent", body=".", status=MailStatus.SENT
    )
    old_waiting = Mail.objects.create(
        organization=org, to=["c@example.com"], subject="Waiting", body=".", created_at=long_ago
    )

    counts = mail_sweep()

    assert counts["purged"] == 1 and not Mail.objects.filter(pk=old_sent.pk).exists()
    assert Mail.objects.get(pk=recent.pk).status == MailStatus.SENT
    assert Mail.objects.get(pk=old_waiting.pk).status == MailStatus.SENT  # sent by the sweep, not deleted


def test_an_erasure_deletes_the_organizations_messages_that_name_the_person_and_no_other(world):
    person = "joana.secreta@example.com"
    card = card_create(
        actor=Actor.for_user(world.requester),
        pipe=world.pipe,
        values=good_start_values(requester_email=person),
    )
    to_her = Mail.objects.create(
        organization=world.org, to=[person], subject="[PUR-1] Received", body="Hello"
    )
    about_her = Mail.objects.create(
        organization=world.org, to=["admin@example.com"], subject="Mention", body=f"{person} asked again"
    )
    unrelated = Mail.objects.create(
        organization=world.org, to=["admin@example.com"], subject="Other", body="-"
    )
    other_org = Organization.objects.get(slug="other")
    elsewhere = Mail.objects.create(organization=other_org, to=[person], subject="Their own", body="-")

    subject_erase(user=world.admin, organization=world.org, identifier=person)

    assert not Mail.objects.filter(pk__in=[to_her.pk, about_her.pk]).exists()
    assert Mail.objects.filter(pk__in=[unrelated.pk, elsewhere.pk]).count() == 2  # another tenant's stays
    card.refresh_from_db()
    assert person not in str(card.values)


def test_a_hung_mail_server_holds_the_sweep_for_its_budget_and_one_timeout_not_for_every_message(
    org, settings
):
    """The sweep runs on the sweep queue beside the rail's sweeps: with the mail server hung, it stops
    sending once its budget is spent (one send's timeout past it at most) and leaves the rest pending
    for the next sweep, rather than waiting out a timeout for each message."""
    import time

    settings.TRILHO_MAIL_SWEEP_SECONDS = 0.5
    old = timezone.now() - timedelta(minutes=2)
    for i in range(5):
        Mail.objects.create(
            organization=org, to=[f"p{i}@example.com"], subject="Late", body=".", created_at=old
        )
    with MailServer() as server:
        smtp_to(settings, server.port, timeout=1)
        server.hang()
        started = time.monotonic()
        counts = mail_sweep()
        took = time.monotonic() - started

    assert counts["sent"] == 0
    assert took < 3, f"the sweep waited {took:.1f} s on a hung mail server"
    statuses = sorted(Mail.objects.values_list("status", flat=True))
    assert statuses.count(MailStatus.FAILED) == 1  # the one it tried: timed out, recorded, not retried
    assert statuses.count(MailStatus.PENDING) == 4  # the next sweep's
