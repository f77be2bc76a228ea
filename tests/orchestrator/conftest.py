"""Fixtures of the rail's tests: scripted model servers, an external system, and a pipe with steps."""

from __future__ import annotations

from contextlib import contextmanager
from decimal import Decimal

import pytest

from agents.models import Agent, AllowedHost, Provider
from orchestrator.models import Mechanism, Risk, Step
from pipes.models import PhaseEntry
from tests.modelservers import ExternalSystem, OllamaServer, OpenAIServer


@pytest.fixture
def rail_settings(settings):
    """Short timeouts and no backoff, so failure paths stay fast."""
    settings.TRILHO_MODEL_TIMEOUT_SECONDS = 0.5
    settings.TRILHO_RAIL_RETRY_BASE_SECONDS = 0
    settings.TRILHO_HTTP_ALLOWED_PRIVATE = True  # the test servers listen on loopback
    settings.TRILHO_SECRETS = {"erp_token": "s3cret-token"}
    settings.TRILHO_MODEL_PRICING = {
        "openai/gpt-test": {"input": Decimal("2.00"), "output": Decimal("8.00")},
    }
    settings.TRILHO_LOCAL_COMPUTE_COST_PER_1M = Decimal("0.10")
    settings.TRILHO_BASELINE_MODEL = "openai/gpt-test"
    settings.TRILHO_COST_CURRENCY = "USD"  # the prices' currency: no conversion unless a test sets a rate
    settings.TRILHO_FX_RATES = {}
    return settings


@pytest.fixture
def ollama(rail_settings):
    with OllamaServer() as server:
        rail_settings.OLLAMA_BASE_URL = server.url
        yield server


@pytest.fixture
def openai(rail_settings):
    with OpenAIServer() as server:
        rail_settings.OPENAI_BASE_URL = server.url + "/v1"
        rail_settings.OPENAI_API_KEY = "test-key"
        yield server


@pytest.fixture
def external(world, rail_settings):
    with ExternalSystem() as server:
        AllowedHost.objects.create(organization=world.org, host="127.0.0.1", note="test ERP")
        yield server


def make_agent(pipe, **overrides) -> Agent:
    spec = dict(
        pipe=pipe,
        key="triage",
        name="Triage agent",
        instructions="Classify purchase requests.",
        provider=Provider.OLLAMA,
        model="llama-test",
        escalation_provider=Provider.OPENAI,
        escalation_model="gpt-test",
        readable_fields=["item", "amount", "requester_email", "quote"],
        writable_fields=["category", "cost_center"],
        allowed_phases=["approval", "rejected"],
        decisions=["approve", "reject", "escalate"],
        authority_field="amount",
        authority_limit=Decimal("10000"),
        confidence_threshold=Decimal("0.70"),
    )
    spec.update(overrides)
    return Agent.objects.create(**spec)


def make_step(phase, **overrides) -> Step:
    spec = dict(
        phase=phase,
        position=1,
        key="classify",
        name="Classify the request",
        mechanism=Mechanism.AUTO,
        risk=Risk.MEDIUM,
        on_approve="approval",
        on_reject="rejected",
        max_attempts=2,
    )
    spec.update(overrides)
    return Step.objects.create(**spec)


@pytest.fixture
def stamping_step(world, rail_settings):
    """An automation step in Triage that sets the category: the rail's commonest kind of step."""
    return make_step(
        world.phase("triage"),
        key="stamp",
        name="Stamp",
        mechanism=Mechanism.AUTOMATION,
        actions=[{"type": "set_field", "field": "category", "value": "Hardware"}],
        on_approve="",
        on_reject="",
    )


def drain(rounds: int = 30) -> None:
    """Run every unprocessed phase entry in this process, as a worker would (retries without waiting)."""
    from orchestrator.models import RunStatus, StepRun
    from orchestrator.rail.loop import entry_run

    for _ in range(rounds):
        pending = list(PhaseEntry.objects.filter(processed_at__isnull=True).values_list("pk", flat=True))
        if not pending:
            return
        for entry_id in pending:
            outcome = entry_run(entry_id=entry_id)
            if outcome.retry_in is not None:
                StepRun.objects.filter(entry_id=entry_id, status=RunStatus.PENDING).update(
                    next_attempt_at=None
                )
    raise AssertionError("the rail did not settle")


# ---------------------------------------------------------------- a real broker and worker


def broker_url_for_tests() -> str:
    """The broker of the tests with a real worker: TRILHO_TEST_BROKER_URL (redis://... or
    amqp://... for RabbitMQ), else TRILHO_TEST_REDIS_URL."""
    import os

    return os.environ.get("TRILHO_TEST_BROKER_URL") or os.environ["TRILHO_TEST_REDIS_URL"]


def celery_point(app, *, broker_url: str, queue: str, transport_options: dict | None = None) -> None:
    """Send to and consume from `queue` on `broker_url` (drops connections pooled for the old broker),
    with the transport options settings give that broker (or `transport_options`)."""
    import os

    from orchestrator.brokers import broker_transport_options

    os.environ["CELERY_BROKER_URL"] = broker_url  # Celery reads the environment before its own setting
    app.conf.broker_url = broker_url
    app.conf.broker_transport_options = (
        broker_transport_options(broker_url) if transport_options is None else transport_options
    )
    app.conf.task_default_queue = queue
    app.conf.task_default_routing_key = queue
    from kombu import pools

    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None
    pools.reset()  # kombu keeps producer pools per broker URL, across app resets
    for cached in ("queues", "default_queue", "router"):
        app.amqp.__dict__.pop(cached, None)


@pytest.fixture
def broker_celery(rail_settings):
    """The Celery app on the test broker (Redis or RabbitMQ, broker_url_for_tests), with a step queue and a
    sweep queue of this test's own (other runs share the server)."""
    import os
    import uuid
    from types import SimpleNamespace

    from orchestrator.celery import app

    url = broker_url_for_tests()
    queue = f"trilho-test-{uuid.uuid4().hex[:10]}"
    sweep_queue = f"{queue}-sweep"
    fast_queue = f"{queue}-fast"  # the fast lane's, for a test that sets TRILHO_FAST_QUEUE to it
    mail_queue = f"{queue}-mail"
    rail_settings.TRILHO_SWEEP_QUEUE = sweep_queue  # where the sweeps are routed (orchestrator.celery)
    rail_settings.TRILHO_MAIL_QUEUE = mail_queue  # and the emails
    before = (
        os.environ.get("CELERY_BROKER_URL", ""),
        app.conf.task_default_queue,
        app.conf.task_default_routing_key,
        app.conf.broker_transport_options,
    )
    celery_point(app, broker_url=url, queue=queue)
    transport = app.connection_for_write().transport_cls
    assert transport in ("redis", "amqp", "pyamqp"), transport
    try:
        yield SimpleNamespace(
            app=app,
            url=url,
            queue=queue,
            sweep_queue=sweep_queue,
            fast_queue=fast_queue,
            mail_queue=mail_queue,
            amqp=transport != "redis",
        )
    finally:
        celery_point(app, broker_url=url, queue=queue)  # a test may have pointed it elsewhere
        with app.connection_for_write() as conn:
            for name in (queue, sweep_queue, fast_queue, mail_queue):
                conn.default_channel.queue_delete(name)
        celery_point(app, broker_url=before[0], queue=before[1], transport_options=before[3])
        app.conf.task_default_routing_key = before[2]


@contextmanager
def worker_in_process(app, queues, *, shutdown_timeout: float = 10):
    """Celery's in-process test worker (solo pool) consuming `queues`."""
    from celery.contrib.testing.worker import start_worker

    with start_worker(
        app, pool="solo", perform_ping_check=False, queues=list(queues), shutdown_timeout=shutdown_timeout
    ) as w:
        yield w


@pytest.fixture
def worker(broker_celery):
    """An in-process Celery worker (solo pool) consuming this test's queues."""
    with worker_in_process(
        broker_celery.app,
        [broker_celery.queue, broker_celery.mail_queue, broker_celery.sweep_queue],
        shutdown_timeout=15,
    ) as w:
        yield w


def wait_for(predicate, *, timeout: float = 20.0, interval: float = 0.05, what: str = "the rail"):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class WorkerProcess:
    """A `celery worker` subprocess (solo pool) on the test database and this test's queue."""

    def __init__(self, *, name: str, queues: list[str], broker_url: str, overrides: dict, beat: str = ""):
        import json
        import os
        import subprocess
        import sys
        import threading

        from django.db import connection

        db = connection.settings_dict
        database_url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.orchestrator.worker_settings",
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker_url,
            "TRILHO_TEST_OVERRIDES": json.dumps(
                {"CELERY_TASK_DEFAULT_QUEUE": queues[0], "TRILHO_SWEEP_QUEUE": queues[-1], **overrides}
            ),
        }
        celery = os.path.join(os.path.dirname(sys.executable), "celery")
        self.output: list[str] = []
        self.ready = threading.Event()
        self.terminated = False
        self.process = subprocess.Popen(
            [
                celery,
                "-A",
                "orchestrator",
                "worker",
                "-P",
                "solo",
                "-Q",
                ",".join(queues),
                "-n",
                f"{name}@%h",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "info",
                *(["--beat", "--schedule", beat] if beat else []),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line.rstrip())
            if " ready." in line:
                self.ready.set()

    def wait_ready(self, timeout: float = 30) -> WorkerProcess:
        if not self.ready.wait(timeout):
            raise AssertionError("worker did not start:\n" + "\n".join(self.output[-30:]))
        return self

    def kill(self) -> None:
        import signal

        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> None:
        """Tell the worker to stop (a warm shutdown: it finishes its step and lets go of its leases)."""
        if self.process.poll() is None and not self.terminated:
            self.terminated = True
            self.process.terminate()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(15)
            except Exception:  # noqa: BLE001 - a stuck worker is killed
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def worker_processes(broker_celery):
    """Start worker subprocesses with start(name, **settings); all are stopped after the test. A worker
    consumes this test's step, mail and sweep queues, as a worker without -Q does, or those named by
    `queues` ("step", "mail", "sweep", "fast"; the first is its default queue, the last its sweep queue)."""
    started: list[WorkerProcess] = []
    queue_of = {
        "step": broker_celery.queue,
        "sweep": broker_celery.sweep_queue,
        "fast": broker_celery.fast_queue,
        "mail": broker_celery.mail_queue,
    }

    def start(name: str, *, queues=("step", "mail", "sweep"), beat: str = "", **overrides) -> WorkerProcess:
        w = WorkerProcess(
            name=name,
            queues=[queue_of[q] for q in queues],
            broker_url=broker_celery.url,
            overrides={
                "TRILHO_SWEEP_QUEUE": broker_celery.sweep_queue,
                "TRILHO_MAIL_QUEUE": broker_celery.mail_queue,
                **overrides,
            },
            beat=beat,
        )
        started.append(w)
        return w.wait_ready()

    yield start
    for w in started:  # all told to stop at once: each takes a second or two to let go
        w.terminate()
    for w in started:
        w.stop()
