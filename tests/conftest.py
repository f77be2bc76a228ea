"""Shared fixtures and the test-group policy.

Groups that need a service run when it is configured or found and are otherwise skipped
with a plain summary at the end. With TRILHO_REQUIRE_ALL_GROUPS=1 (set by .ci/run) a
skipped test fails the run instead.

`make test` spreads the tests over pytest-xdist workers (`-n 3 --dist loadgroup`). Each worker has
a test database (the worker id and its pid in the name) and a data directory of its own; a
worker's skipped tests reach the controller's report, so the policy above holds under xdist.
The tests of the `redis` group share one xdist group: they run one after another on a single
worker, as they start Celery workers and time brokers, leases and beat. Their queues are named
per test, so one Redis database serves every run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Unit tests dispatch phase entries into memory; Redis-marked tests use a real broker.
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
# The tests' files (uploads, timeline seals) go under var/test, never into the var/ of `make run`; each
# xdist worker (gw0, gw1, ...) has a directory of its own in it. The controller sets the variable before it
# starts the workers, which inherit it; the worker subprocesses some tests start inherit a worker's.
_DATA_DIR = os.environ.setdefault(
    "TRILHO_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", "var", "test")
)
if os.environ.get("PYTEST_XDIST_WORKER"):
    _DATA_DIR = os.environ["TRILHO_DATA_DIR"] = os.path.join(_DATA_DIR, os.environ["PYTEST_XDIST_WORKER"])

GROUPS = {
    "postgres": "set DATABASE_URL=postgres://postgres@127.0.0.1:5432/trilho (PostgreSQL running)",
    "redis": "set TRILHO_TEST_REDIS_URL=redis://127.0.0.1:6379/15 (Redis running); the same tests run on"
    " RabbitMQ with TRILHO_TEST_BROKER_URL=amqp://guest:guest@127.0.0.1:5672// as well",
    "e2e": "install Chromium (apt-get install chromium) so /usr/bin/chromium exists",
}


def _database_is_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


def _chromium_path() -> str | None:
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")


def _available(group: str) -> bool:
    if group == "postgres":
        return _database_is_postgres()
    if group == "redis":
        broker = os.environ.get("TRILHO_TEST_BROKER_URL") or os.environ.get("TRILHO_TEST_REDIS_URL")
        return bool(broker) and _database_is_postgres()
    if group == "e2e":
        return _chromium_path() is not None
    return True


def pytest_configure(config):
    """pytest-django loads the settings before this file is read: the paths they derived from
    TRILHO_DATA_DIR are pointed at this process's directory here, before any test runs."""
    from django.conf import settings

    data_dir = Path(_DATA_DIR).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    settings.DATA_DIR = data_dir
    settings.MEDIA_ROOT = data_dir / "media"
    settings.TRILHO_TIMELINE_SEAL_DIR = str(data_dir / "seals")
    # No worker drains the unit tests' broker: emails of the outbox (pipes.mailbox) are sent in this
    # process once their transaction commits. tests/test_mailbox.py hands them to a real worker.
    settings.TRILHO_MAIL_BY_WORKER = False


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith("tests/e2e/"):
            item.add_marker(pytest.mark.e2e)
        if item.get_closest_marker("redis"):
            item.add_marker(pytest.mark.xdist_group("real-workers"))
        for group in GROUPS:
            if item.get_closest_marker(group) and not _available(group):
                item.add_marker(pytest.mark.skip(reason=f"group '{group}' not enabled: {GROUPS[group]}"))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons = " ".join(str(getattr(report, "longrepr", "")) for report in skipped)
    missing = sorted(g for g in GROUPS if not _available(g) and f"group '{g}' not enabled" in reasons)
    terminalreporter.write_sep("=", "test groups that did not run")
    for group in missing:
        terminalreporter.write_line(f"- {group}: to run it, {GROUPS[group]}")
    if os.environ.get("TRILHO_REQUIRE_ALL_GROUPS") == "1":
        terminalreporter.write_line(
            f"{len(skipped)} test(s) skipped but TRILHO_REQUIRE_ALL_GROUPS=1: failing the run"
        )


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and os.environ.get("TRILHO_REQUIRE_ALL_GROUPS") == "1" and session.exitstatus == 0:
        session.exitstatus = 1


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """A test database of this run's own, so several runs on one PostgreSQL server never collide."""
    from pytest_django.fixtures import _set_suffix_to_test_databases

    if _database_is_postgres():
        _set_suffix_to_test_databases(suffix=f"p{os.getpid()}")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Personas are created in every test; the production hasher is deliberately slow."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _language_restored():
    """A request in Portuguese leaves Portuguese active in this thread: the next test must not inherit it."""
    from django.utils import translation

    before = translation.get_language()
    yield
    translation.activate(before)


@pytest.fixture(autouse=True)
def _cache_cleared():
    """What a test's requests remembered (a pipe's webhooks, the inbox badge) never reaches the next one:
    on SQLite a rolled-back test's ids are given out again."""
    from django.core.cache import cache

    cache.clear()
    yield


class Clock:
    """django.utils.timezone.now, frozen at a moment the test moves by hand."""

    def __init__(self, monkeypatch, start):
        self.now = start
        monkeypatch.setattr("django.utils.timezone.now", lambda: self.now)

    def set(self, moment) -> None:
        self.now = moment

    def advance(self, **delta):
        import datetime as dt

        self.now += dt.timedelta(**delta)
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """A frozen clock at Monday 2 March 2026, 12:00 UTC (09:00 in São Paulo)."""
    import datetime as dt

    return Clock(monkeypatch, dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC))


@pytest.fixture
def world(db):
    from tests.personas import build_world

    return build_world()


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT
