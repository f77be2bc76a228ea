"""Beat's sweeps go to a queue of their own (orchestrator/celery.py), so a backlog of steps never delays
them, and emails to theirs; every other task goes to the default queue, and a worker started without -Q
consumes them all."""

from __future__ import annotations

from django.conf import settings

from orchestrator.celery import MAIL_TASKS, SWEEP_TASKS, app


def queue_of(name: str) -> str:
    return app.amqp.router.route({}, name)["queue"].name


def test_every_sweep_is_a_registered_task_on_beats_schedule_routed_to_the_sweep_queue():
    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    for name in SWEEP_TASKS:
        assert name in app.tasks, f"{name} is not a registered task"
        assert name in scheduled, f"{name} is not on beat's schedule"
        assert queue_of(name) == settings.TRILHO_SWEEP_QUEUE == "rail-sweep"


def test_steps_and_the_long_nightly_jobs_stay_on_the_default_queue():
    for name in (
        "orchestrator.tasks.run_phase_entry",
        "orchestrator.tasks.extract_document",
        "orchestrator.tasks.apply_retention",
        "orchestrator.tasks.seal_timeline",
        "orchestrator.api.purge_idempotency",
    ):
        assert queue_of(name) == settings.CELERY_TASK_DEFAULT_QUEUE == "celery"


def test_emails_to_people_go_to_the_mail_queue_and_to_the_default_one_when_it_is_unset(settings):
    app.loader.import_default_modules()
    assert "orchestrator.tasks.send_mail" in MAIL_TASKS
    assert set(app.tasks) >= MAIL_TASKS
    assert queue_of("orchestrator.tasks.send_mail") == settings.TRILHO_MAIL_QUEUE == "mail"
    settings.TRILHO_MAIL_QUEUE = ""
    assert queue_of("orchestrator.tasks.send_mail") == settings.CELERY_TASK_DEFAULT_QUEUE


def test_beats_heartbeat_rides_the_sweep_queue_so_health_says_late_when_nobody_consumes_it():
    assert "orchestrator.tasks.beat_heartbeat" in SWEEP_TASKS


def test_a_worker_without_q_consumes_every_queue_each_bound_by_its_own_name():
    queues = {q.name: q.routing_key for q in settings.CELERY_TASK_QUEUES}
    assert queues == {"celery": "celery", "rail-sweep": "rail-sweep", "mail": "mail"}
