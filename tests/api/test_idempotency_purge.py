"""Idempotency-Key records are purged daily by Celery beat, on the worker: older than 24 hours go,
recent ones stay (a repeat within the day still gets its first answer)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from orchestrator.api.tasks import purge_idempotency
from orchestrator.models import IdempotencyRecord
from tests.orchestrator.conftest import broker_celery, rail_settings, wait_for, worker  # noqa: F401 - fixtures
from tests.personas import good_start_values

ROOT = Path(__file__).resolve().parents[2]


def cards_url(world) -> str:
    return f"/api/v1/pipes/{world.pipe.pk}/cards"


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_it_purges_records_older_than_a_day_on_the_worker_and_keeps_recent_ones(world, api_as):
    api = api_as(world.member)
    for key in ("old", "recent"):
        response = api.post(cards_url(world), {"values": good_start_values(item=key)}, key=key)
        assert response.status_code == 201
    IdempotencyRecord.objects.filter(key="old").update(created_at=timezone.now() - dt.timedelta(hours=25))
    IdempotencyRecord.objects.filter(key="recent").update(created_at=timezone.now() - dt.timedelta(hours=23))

    purge_idempotency.delay()  # as beat sends it

    wait_for(lambda: not IdempotencyRecord.objects.filter(key="old").exists(), what="the purge")
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["recent"]
    again = api.post(cards_url(world), {"values": good_start_values(item="recent")}, key="recent")
    assert again["Idempotent-Replayed"] == "true"


def test_it_is_scheduled_daily_by_beat():
    schedule = settings.CELERY_BEAT_SCHEDULE["purge-idempotency-keys"]
    assert schedule == {"task": purge_idempotency.name, "schedule": 24 * 3600.0}
    assert purge_idempotency.name == "orchestrator.api.purge_idempotency"


def test_it_is_registered_in_a_worker_started_from_the_project():
    """A worker (`celery -A orchestrator worker`) imports tasks by autodiscovery only: it must find the API's
    purge and the webhooks' tasks, or beat's and outbound's messages would be refused as unregistered."""
    script = (
        "import json, django; django.setup()\n"
        "from orchestrator.celery import app\n"
        "app.loader.import_default_modules()\n"
        "print(json.dumps(sorted(app.tasks)))\n"
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="orchestrator.settings")
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    registered = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert {
        "orchestrator.api.purge_idempotency",
        "orchestrator.webhooks.deliver",
        "orchestrator.webhooks.sweep",
    } <= registered
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in registered
