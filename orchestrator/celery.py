"""The Celery application. Broker from settings: Redis or RabbitMQ in production, an embedded
filesystem transport on a laptop (see settings.CELERY_BROKER_URL).

Queues: steps and everything else on the default queue (settings.CELERY_TASK_DEFAULT_QUEUE,
"celery"); beat's frequent housekeeping (the sweeps, beat's heartbeat) on a queue of its own
(settings.TRILHO_SWEEP_QUEUE, "rail-sweep"), so a backlog of steps never delays a sweep; emails to
people on theirs (settings.TRILHO_MAIL_QUEUE, "mail"); and, when set, the fast lane
(settings.TRILHO_FAST_QUEUE). A worker started without -Q consumes them all
(settings.CELERY_TASK_QUEUES).
"""

import os

from celery import Celery, bootsteps

from orchestrator.brokers import AMQP_SCHEMES

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


# Emails to people (pipes.mailbox): on a queue of their own (settings.TRILHO_MAIL_QUEUE), so one waits
# for the next free worker process, not behind every step queued before it.
MAIL_TASKS = frozenset({"orchestrator.tasks.send_mail"})


def task_route(name, args, kwargs, options, task=None, **kw):
    """settings.CELERY_TASK_ROUTES: the sweeps to the sweep queue and emails to the mail queue, read from
    settings when sent (so a test can point them at queues of its own); everything else to the default
    queue."""
    if name in SWEEP_TASKS or name in MAIL_TASKS:
        from django.conf import settings

        queue = settings.TRILHO_SWEEP_QUEUE if name in SWEEP_TASKS else settings.TRILHO_MAIL_QUEUE
        return {"queue": queue} if queue else None
    return None


class EventLoopTick(bootsteps.StartStopStep):
    """A timer in a worker's event loop: every 50 ms on RabbitMQ, every second on other brokers.

    With no timer due, the loop of a worker on RabbitMQ notices a delivered message late: with one
    message prefetched per process (CELERY_WORKER_PREFETCH_MULTIPLIER = 1, acks_late) a solo worker ran
    9 no-op tasks/s instead of 350-550 with this tick (Celery 5.7, py-amqp 5.4). And a worker told to
    stop (SIGTERM) would notice only after up to 10 s of waiting for the broker, so a container's 10 s
    stop grace period would kill it before it released its leases."""

    requires = ("celery.worker.components:Hub",)

    def start(self, w):
        if w.hub is not None:
            amqp = str(w.app.conf.broker_url or "").startswith(AMQP_SCHEMES)
            w.hub.call_repeatedly(0.05 if amqp else 1.0, _tick)


def _tick() -> None:
    pass


app = Celery("trilho")
app.steps["worker"].add(EventLoopTick)
app.config_from_object("django.conf:settings", namespace="CELERY")
# Each installed app's `tasks` module (orchestrator.inbox.tasks), and those of the orchestrator's packages
# that are not apps: the rail's, the webhooks' (deliver, sweep) and the API's (purge_idempotency).
app.autodiscover_tasks()
app.autodiscover_tasks(["orchestrator.rail", "orchestrator.webhooks", "orchestrator.api"])
