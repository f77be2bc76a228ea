"""The rail's health: beat's last tick and the workers that answer, on the owners' page and in bin/healthcheck."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from orchestrator.models import RailHeartbeat
from orchestrator.rail.health import beat_tick_record, rail_health
from orchestrator.rail.tasks import beat_heartbeat

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def test_it_shows_beat_on_time_to_an_owner(client, world):
    beat_heartbeat()  # the task beat sends, run as a worker runs it
    client.force_login(world.owner)
    page = client.get(reverse("rail:health"))
    assert page.status_code == 200
    text = page.content.decode()
    assert "On time" in text and "Late" not in text


def test_it_says_beat_is_late_in_plain_words(client, world):
    beat_tick_record(at=timezone.now() - timedelta(minutes=4))
    client.force_login(world.owner)
    text = client.get(reverse("rail:health")).content.decode()
    assert "Beat is late: its last tick was 4\xa0minutes ago" in text
    assert rail_health(ping_timeout=0.1).beat_late


def test_it_refuses_the_health_page_to_an_admin_who_owns_no_organization(client, world):
    client.force_login(world.admin)
    assert client.get(reverse("rail:health")).status_code == 403


def test_it_is_late_just_after_three_minutes(world):
    beat_tick_record(at=timezone.now() - timedelta(seconds=170))
    assert not rail_health(ping_timeout=0.1).beat_late
    RailHeartbeat.objects.update(at=timezone.now() - timedelta(seconds=190))
    assert rail_health(ping_timeout=0.1).beat_late


@pytest.mark.postgres  # the script runs in a process of its own, against the test database's server
@pytest.mark.django_db(transaction=True)
def test_it_exits_non_zero_from_bin_healthcheck_when_beat_is_late(world, settings):
    beat_tick_record(at=timezone.now() - timedelta(minutes=5))
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "healthcheck"), "rail"],
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": url, "CELERY_BROKER_URL": "memory://"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert re.search(r"unhealthy: beat is late: its last tick was 3\d\d s ago", done.stderr), done.stderr


def test_it_counts_the_organizations_emails_of_unknown_fate_and_no_one_elses(world):
    """An email a dead worker left being sent (pipes.mailbox) is counted on its organization's page."""
    from pipes.choices import MailStatus
    from pipes.models import Mail, Organization

    other = Organization.objects.get(slug="other")
    for org in (world.org, world.org, other):
        Mail.objects.create(
            organization=org, to=["a@example.com"], subject="?", body=".", status=MailStatus.UNKNOWN
        )
    Mail.objects.create(
        organization=world.org, to=["a@example.com"], subject="ok", body=".", status=MailStatus.SENT
    )

    assert rail_health(ping_timeout=0.1, organization_ids=[world.org.pk]).emails_unknown == 2
    assert rail_health(ping_timeout=0.1, organization_ids=[other.pk]).emails_unknown == 1


def test_it_lists_the_emails_that_did_not_go_out_to_the_owner_and_no_one_elses(
    client, world, rail_settings, django_capture_on_commit_callbacks
):
    """The page names each refused email and each of unknown fate (the outbox's and a step's, linked to
    its run) of the owner's organization in the last 14 days: not those sent, older or another's."""
    from orchestrator.models import EmailOutbox, OutboxStatus
    from pipes.choices import MailStatus
    from pipes.models import Mail, Organization
    from tests.orchestrator.test_email_outbox import email_step, run_the_rail

    now = timezone.now()
    other = Organization.objects.get(slug="other")

    def mail(org, subject, status, *, days=0, minutes=1, error=""):
        Mail.objects.create(
            organization=org,
            to=[f"{subject.lower().replace(' ', '-')}@example.com"],
            subject=subject,
            body=".",
            status=status,
            error=error,
            created_at=now - timedelta(days=days, minutes=minutes),
        )

    mail(world.org, "Receipt refused", MailStatus.FAILED, error="SMTPRecipientsRefused: 550 no such user")
    mail(world.org, "Mention lost", MailStatus.UNKNOWN, minutes=2)
    mail(world.org, "Receipt sent", MailStatus.SENT)
    mail(world.org, "Old refusal", MailStatus.FAILED, days=20)
    mail(other, "Their refusal", MailStatus.FAILED)
    email_step(world)
    run_the_rail(world, django_capture_on_commit_callbacks)
    step_email = EmailOutbox.objects.get()
    EmailOutbox.objects.filter(pk=step_email.pk).update(status=OutboxStatus.UNKNOWN)

    client.force_login(world.owner)
    page = client.get(reverse("rail:health"))
    text = page.content.decode()
    section = text[text.index('data-health="not-sent"') :]

    assert page.status_code == 200
    assert "Receipt refused" in section and "550 no such user" in section
    assert "receipt-refused@example.com" in section
    assert "Mention lost" in section and "May or may not have gone out" in section
    assert step_email.subject in section
    assert reverse("rail:run", args=[step_email.run_id]) in section
    for absent in ("Receipt sent", "Old refusal", "Their refusal"):
        assert absent not in text
    newest_first = [
        s.subject for s in rail_health(ping_timeout=0.1, organization_ids=[world.org.pk]).emails_not_sent
    ]
    assert newest_first == [step_email.subject, "Receipt refused", "Mention lost"]


def test_it_says_no_email_was_refused_or_lost_when_none_was(client, world):
    client.force_login(world.owner)
    text = client.get(reverse("rail:health")).content.decode()
    assert "No email was refused or lost in this period." in text
