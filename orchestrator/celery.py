"""The Celery application. Broker from settings: Redis or RabbitMQ in production, an embedded
filesystem transport on a laptop (see settings.CELERY_BROKER_URL).

Two queues: steps and everything else on the default queue (settings.CELERY_TASK_DEFAULT_QUEUE,
"celery"), and beat's frequent housekeeping (the sweeps, beat's heartbeat) on a queue of its own
(settings.TRILHO_SWEEP_QUEUE, "rail-sweep"), so a backlog of steps never delays a sweep. A worker
started without -Q consumes both (settings.CELERY_TASK_QUEUES).
"""

import os

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")

# Beat's jobs that must run on time whatever the step queue holds: each is short and idempotent.
# Longer jobs (retention, timeline seals, purging idempotency keys) stay on the default queue, where
# they can never hold up a sweep.
SWEEP_TASKS = frozenset(
    {
        "orchestrator.tasks.sweep_phase_entries",
        "orchestrator.tasks.sweep_stale_leases",
        "orchestrator.tasks.sweep_email_outbox",
        "orchestrator.tasks.beat_heartbeat",
        "orchestrator.tasks.mark_late_cards",
        "orchestrator.webhooks.sweep",
        "orchestrator.inbox.tasks.escalate_overdue_reviews",
    }
)


def task_route(name, args, kwargs, options, task=None, **kw):
    """settings.CELERY_TASK_ROUTES: the sweeps to the sweep queue, read from settings when sent (so a
    test can point it at a queue of its own); everything else to the default queue."""
    if name in SWEEP_TASKS:
        from django.conf import settings

        return {"queue": settings.TRILHO_SWEEP_QUEUE}
    return None


class EventLoopTick(bootsteps.StartStopStep):
    """A timer that fires every second in a worker's event loop. With nothing due the loop waits for the
    broker up to 10 s; on RabbitMQ nothing else wakes it, so a worker told to stop (SIGTERM) would notice
    only then, and a container's 10 s stop grace period would kill it before it released its leases."""

    requires = ("celery.worker.components:Hub",)

    def start(self, w):
        if w.hub is not None:
            w.hub.call_repeatedly(1.0, _tick)


def _tick() -> None:
    pass


app = Celery("trilho")
app.steps["worker"].add(EventLoopTick)
app.config_from_object("django.conf:settings", namespace="CELERY")
# Each installed app's `tasks` module (orchestrator.inbox.tasks), and those of the orchestrator's packages
# that are not apps: the rail's, the webhooks' (deliver, sweep) and the API's (purge_idempotency).
app.autodiscover_tasks()
app.autodiscover_tasks(["orchestrator.rail", "orchestrator.webhooks", "orchestrator.api"])
