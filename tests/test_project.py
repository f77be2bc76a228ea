"""The project as a whole: the embedded worker, the compose stack, and the files that run it.

These run on a fresh machine (SQLite, no Redis, no Docker engine).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

BASE_DIR = Path(__file__).resolve().parent.parent
SETTINGS = BASE_DIR / "orchestrator" / "settings.py"

# What the test process inherits but an embedded-mode process must not see.
_DEPLOY_VARS = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "REDIS_URL",
    "DEBUG",
    "SECRET_KEY",
    "DJANGO_SETTINGS_MODULE",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
)

_CREATE_CARD = """
import json
import django

django.setup()
from django.core.management import call_command

call_command("migrate", verbosity=0)

from orchestrator.models import Mechanism, Step
from pipes.models import Organization, PhaseEntry
from pipes.services import Actor, card_create
from tests.personas import build_purchase_pipe, good_start_values

org = Organization.objects.create(name="Embedded", slug="embedded")
pipe = build_purchase_pipe(org)
Step.objects.create(  # a phase without steps is closed at once, without the worker
    phase=pipe.phases.get(key="triage"),
    key="note",
    name="Note",
    mechanism=Mechanism.AUTOMATION,
    actions=[{"type": "comment", "text": "Received."}],
)
card = card_create(actor=Actor.system(), pipe=pipe, values=good_start_values())
entry = PhaseEntry.objects.get(card=card)
print(json.dumps({
    "entry": entry.pk,
    "dispatched": entry.dispatched_at is not None,
    "processed": entry.processed_at is not None,
}))
"""


def embedded_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DEPLOY_VARS}
    env["TRILHO_DATA_DIR"] = str(data_dir)
    env["DJANGO_SETTINGS_MODULE"] = "orchestrator.settings"
    return env


def settings_reads() -> set[str]:
    """Names of the environment variables orchestrator/settings.py reads."""
    source = SETTINGS.read_text()
    names = set(re.findall(r'(?:os\.environ\.get|envbool|envint|envlist)\(\s*"([A-Z][A-Z0-9_]*)"', source))
    if "dj_database_url.config(" in source:
        names.add("DATABASE_URL")  # dj_database_url.config() reads it
    return names


def stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    output, _ = process.communicate()
    return output


# ---------------------------------------------------------------- embedded worker


def test_it_runs_a_phase_entry_in_the_embedded_worker_outside_the_request(tmp_path):
    env = embedded_env(tmp_path)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "orchestrator", "worker", "-P", "solo", "-l", "info"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        created = subprocess.run(
            [sys.executable, "-c", _CREATE_CARD],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert created.returncode == 0, created.stderr
        entry = json.loads(created.stdout.strip().splitlines()[-1])
        # The write path only queued the entry: nothing ran inside the "request".
        assert entry["dispatched"] is True
        assert entry["processed"] is False

        from pipes.models import PhaseEntry

        table = PhaseEntry._meta.db_table
        deadline = time.monotonic() + 20
        row = None
        while time.monotonic() < deadline and worker.poll() is None:
            with sqlite3.connect(f"file:{tmp_path / 'trilho.sqlite3'}?mode=ro", uri=True, timeout=5) as db:
                row = db.execute(
                    f"SELECT processed_at, dispatch_count FROM {table} WHERE id = ?", [entry["entry"]]
                ).fetchone()
            if row and row[0]:
                break
            time.sleep(0.2)
    finally:
        log = stop(worker)
    assert row is not None and row[0] is not None, f"the worker did not process the entry; its log:\n{log}"
    assert row[1] == 1
    assert "orchestrator.tasks.run_phase_entry" in log and "succeeded" in log


# ---------------------------------------------------------------- compose stack


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())


def _interpolate(value: str, variables: dict[str, str]) -> str:
    """Resolve compose's ${NAME} and ${NAME:-default}, innermost first, as compose would."""
    pattern = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::-([^${}]*))?\}")
    while pattern.search(value):
        value = pattern.sub(lambda m: variables.get(m[1]) or (m[2] or ""), value)
    return value


def _environment(service: dict, variables: dict[str, str] | None = None) -> dict[str, str]:
    """A service's environment as compose resolves it with `variables` in .env (none by default)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: _interpolate(str(value), variables or {}) for name, value in env.items()}


def test_it_describes_the_production_like_stack(compose):
    services = compose["services"]
    assert set(services) == {
        "postgres",
        "redis",
        "ollama",
        "web",
        "worker",
        "worker-fast",
        "sweeper",
        "beat",
        "rabbitmq",
    }
    # beat's sweeps on their own queue, with a worker of their own (issue #17); RabbitMQ on request
    assert services["sweeper"]["command"][services["sweeper"]["command"].index("-Q") + 1] == "rail-sweep"
    # the fast lane: the queue the app sends quick entries to is the one worker-fast drains, in solo
    # processes with a few messages prefetched; the default worker (no -Q) drains it too
    fast = services["worker-fast"]["command"]
    lane = _environment(services["worker-fast"])["TRILHO_FAST_QUEUE"]
    assert lane == "rail-fast" == _interpolate(fast[fast.index("-Q") + 1], {})
    assert fast[fast.index("-P") + 1] == "solo" and int(fast[fast.index("--prefetch-multiplier") + 1]) > 1
    assert (
        _environment(services["worker"])["TRILHO_FAST_QUEUE"] == lane
        and "-Q" not in services["worker"]["command"]
    )
    assert services["rabbitmq"]["profiles"] == ["rabbitmq"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["ollama"]["image"].startswith("ollama/ollama")
    for name in ("postgres", "redis", "ollama", "web", "worker", "worker-fast"):
        assert "test" in services[name]["healthcheck"], name
    for name in ("web", "worker", "worker-fast", "sweeper", "beat"):
        service = services[name]
        assert "build" in service or "image" in service, name
        assert ".env" in service["env_file"], name
        for dependency, rule in service["depends_on"].items():
            assert dependency in services, (name, dependency)
            assert rule["condition"] in ("service_healthy", "service_started"), (name, dependency)
    assert "gunicorn orchestrator.wsgi" in " ".join(services["web"]["command"])
    assert "migrate" in " ".join(services["web"]["command"])
    assert any(str(port).endswith("8000") for port in services["web"]["ports"])
    assert "worker" in services["worker"]["command"]
    assert "beat" in services["beat"]["command"]
    volumes = compose["volumes"]
    assert any(v.split(":")[0] in volumes for v in services["ollama"]["volumes"])
    assert any(v.split(":")[0] in volumes for v in services["postgres"]["volumes"])


def test_it_points_the_app_at_the_stack_services(compose):
    for name in ("web", "worker", "beat"):
        env = _environment(compose["services"][name])
        assert env["DATABASE_URL"] == "postgres://trilho:trilho@postgres:5432/trilho", name
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0", name
        assert env["OLLAMA_BASE_URL"] == "http://ollama:11434", name


def test_it_lets_env_override_the_wiring(compose):
    env = _environment(
        compose["services"]["worker"],
        {"POSTGRES_PASSWORD": "s3cret", "CELERY_BROKER_URL": "redis://elsewhere:6379/4"},
    )
    assert env["DATABASE_URL"] == "postgres://trilho:s3cret@postgres:5432/trilho"
    assert env["CELERY_BROKER_URL"] == "redis://elsewhere:6379/4"


def test_it_sets_only_variables_the_settings_read(compose):
    read = settings_reads()
    for name in ("web", "worker", "worker-fast", "beat"):
        unknown = set(_environment(compose["services"][name])) - read
        assert not unknown, f"{name} sets variables orchestrator/settings.py never reads: {unknown}"


# Variables in .env.example that are for docker compose itself, not for the app.
COMPOSE_ONLY = {"POSTGRES_PASSWORD", "WEB_CONCURRENCY"}


def test_it_documents_variables_the_settings_read():
    example = (BASE_DIR / ".env.example").read_text()
    names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    unknown = names - settings_reads() - COMPOSE_ONLY
    assert not unknown, f".env.example documents variables nobody reads: {unknown}"
    for required in (
        "SECRET_KEY",
        "DEBUG",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "OLLAMA_BASE_URL",
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "EMAIL_HOST",
        "SECURE_SSL_REDIRECT",
    ):
        assert required in names, required


def test_it_builds_a_non_root_image_that_serves_with_gunicorn():
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    assert dockerfile.startswith("# syntax") or "FROM python:3.11-slim" in dockerfile
    assert re.search(r"^USER (?!root)\S+", dockerfile, flags=re.MULTILINE)
    assert "collectstatic" in dockerfile
    assert "gunicorn" in dockerfile and "orchestrator.wsgi" in dockerfile


# ---------------------------------------------------------------- the two commands


def test_it_runs_the_readme_test_command_in_ci():
    readme = (BASE_DIR / "README.md").read_text()
    ci = (BASE_DIR / ".ci" / "run").read_text()
    assert "make run" in readme and "make test" in readme
    assert re.search(r"^make test$", ci, flags=re.MULTILINE)
    assert "TRILHO_REQUIRE_ALL_GROUPS=1" in ci
    assert "set -euo pipefail" in ci


def test_it_is_apache_licensed():
    assert "Apache License" in (BASE_DIR / "LICENSE").read_text()
    assert "Apache-2.0" in (BASE_DIR / "README.md").read_text()
