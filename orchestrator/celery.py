"""The Celery application. Broker from settings: Redis in production, an embedded
filesystem transport on a laptop (see settings.CELERY_BROKER_URL)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")

app = Celery("trilho")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Each installed app's `tasks` module (orchestrator.inbox.tasks), and those of the orchestrator's packages
# that are not apps: the rail's, the webhooks' (deliver, sweep) and the API's (purge_idempotency).
app.autodiscover_tasks()
app.autodiscover_tasks(["orchestrator.rail", "orchestrator.webhooks", "orchestrator.api"])
