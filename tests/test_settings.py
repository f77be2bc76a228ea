"""Settings read from the environment: the embedded default, production values, loud errors.

Each test imports orchestrator.settings in a fresh Python process with a controlled
environment, because settings are read once per process.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent

# What the test process inherits but a settings check must not see (tests/conftest.py sets some).
_SETTINGS_VARS = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "REDIS_URL",
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_PRELOAD",
    "STATIC_ROOT",
    "MEDIA_ROOT",
    "EMAIL_HOST",
    "EMAIL_PORT",
    "DJANGO_SETTINGS_MODULE",
    "DJANGO_ALLOW_ASYNC_UNSAFE",  # set by tests/e2e/conftest.py; check --deploy rightly rejects it
)

_READ_SETTINGS = """
import json
from orchestrator import settings as s
print(json.dumps({
    "DEBUG": s.DEBUG,
    "DATABASE": {k: s.DATABASES["default"].get(k) for k in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "CONN_MAX_AGE")},
    "CELERY_BROKER_URL": s.CELERY_BROKER_URL,
    "BROKER_OPTIONS": getattr(s, "CELERY_BROKER_TRANSPORT_OPTIONS", None),
    "CELERY_TASK_ALWAYS_EAGER": s.CELERY_TASK_ALWAYS_EAGER,
    "ALLOWED_HOSTS": s.ALLOWED_HOSTS,
    "SECURE_SSL_REDIRECT": s.SECURE_SSL_REDIRECT,
    "SESSION_COOKIE_SECURE": s.SESSION_COOKIE_SECURE,
    "CSRF_COOKIE_SECURE": s.CSRF_COOKIE_SECURE,
    "SECURE_HSTS_SECONDS": s.SECURE_HSTS_SECONDS,
    "STATICFILES_BACKEND": s.STORAGES["staticfiles"]["BACKEND"],
    "EMAIL_BACKEND": s.EMAIL_BACKEND,
}))
"""


def clean_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SETTINGS_VARS}
    env["TRILHO_DATA_DIR"] = str(data_dir)
    env.update(overrides)
    return env


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )


def read_settings(data_dir: Path, **overrides: str) -> dict:
    result = run_python(_READ_SETTINGS, clean_env(data_dir, **overrides))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def production_env(data_dir: Path) -> dict[str, str]:
    return clean_env(
        data_dir,
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="trilho.example.com",
    )


def test_it_defaults_to_sqlite_in_the_data_dir(tmp_path):
    s = read_settings(tmp_path)
    assert s["DEBUG"] is True
    assert s["DATABASE"]["ENGINE"] == "django.db.backends.sqlite3"
    assert s["DATABASE"]["NAME"] == str(tmp_path / "trilho.sqlite3")


def test_it_reads_postgresql_from_database_url(tmp_path):
    s = read_settings(tmp_path, DATABASE_URL="postgres://trilho:s3cret@db.internal:6543/trilho_prod")
    assert s["DATABASE"] == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "trilho_prod",
        "USER": "trilho",
        "PASSWORD": "s3cret",
        "HOST": "db.internal",
        "PORT": 6543,
        "CONN_MAX_AGE": 60,
    }


def test_it_reads_the_connection_age_as_an_integer(tmp_path):
    s = read_settings(tmp_path, DATABASE_URL="postgres://u@h/db", DATABASE_CONN_MAX_AGE="0")
    assert s["DATABASE"]["CONN_MAX_AGE"] == 0


def test_it_uses_the_filesystem_transport_under_the_data_dir_by_default(tmp_path):
    s = read_settings(tmp_path)
    assert s["CELERY_BROKER_URL"] == "filesystem://"
    queue = tmp_path / "broker" / "queue"
    assert s["BROKER_OPTIONS"]["data_folder_in"] == str(queue)
    assert s["BROKER_OPTIONS"]["data_folder_out"] == str(queue)
    assert queue.is_dir() and (tmp_path / "broker" / "processed").is_dir()
    assert s["CELERY_TASK_ALWAYS_EAGER"] is False


def test_it_uses_redis_when_celery_broker_url_is_set(tmp_path):
    s = read_settings(tmp_path, CELERY_BROKER_URL="redis://cache.internal:6379/2")
    assert s["CELERY_BROKER_URL"] == "redis://cache.internal:6379/2"
    assert s["BROKER_OPTIONS"] == {
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.2,
        "socket_connect_timeout": 1.0,
        "socket_timeout": 1.0,
    }  # fail fast (a hung broker never holds a request), sweep later
    assert not (tmp_path / "broker").exists()


def test_it_falls_back_to_redis_url_for_the_broker(tmp_path):
    s = read_settings(tmp_path, REDIS_URL="redis://cache.internal:6379/0")
    assert s["CELERY_BROKER_URL"] == "redis://cache.internal:6379/0"


@pytest.mark.parametrize("value", ["perhaps", "2", "enabled"])
def test_it_rejects_a_boolean_it_cannot_read(tmp_path, value):
    result = run_python(_READ_SETTINGS, clean_env(tmp_path, DEBUG=value))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"DEBUG must be a boolean (true/false), got {value!r}" in result.stderr


@pytest.mark.parametrize("value", ["yes", "on", "1", "TRUE"])
def test_it_reads_the_usual_spellings_of_true(tmp_path, value):
    assert read_settings(tmp_path, DEBUG=value)["DEBUG"] is True


def test_it_rejects_an_integer_it_cannot_read(tmp_path):
    result = run_python(_READ_SETTINGS, clean_env(tmp_path, EMAIL_PORT="smtp"))
    assert result.returncode != 0
    assert "EMAIL_PORT must be an integer, got 'smtp'" in result.stderr


def test_it_refuses_to_run_without_a_secret_key_when_debug_is_off(tmp_path):
    result = run_python(_READ_SETTINGS, clean_env(tmp_path, DEBUG="false"))
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_it_is_strict_when_debug_is_off(tmp_path):
    env = production_env(tmp_path)
    s = read_settings(tmp_path, **{k: env[k] for k in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")})
    assert s["DEBUG"] is False
    assert s["ALLOWED_HOSTS"] == ["trilho.example.com"]
    assert s["SECURE_SSL_REDIRECT"] is True
    assert s["SESSION_COOKIE_SECURE"] is True and s["CSRF_COOKIE_SECURE"] is True
    assert s["SECURE_HSTS_SECONDS"] == 31536000
    assert s["STATICFILES_BACKEND"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"


def test_it_lets_a_plain_http_deployment_turn_the_https_settings_off(tmp_path):
    env = production_env(tmp_path)
    s = read_settings(
        tmp_path,
        **{k: env[k] for k in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")},
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        SECURE_HSTS_SECONDS="0",
    )
    assert s["SECURE_SSL_REDIRECT"] is False
    assert s["SESSION_COOKIE_SECURE"] is False and s["CSRF_COOKIE_SECURE"] is False
    assert s["SECURE_HSTS_SECONDS"] == 0


def test_it_sends_email_over_smtp_only_when_a_host_is_set(tmp_path):
    assert read_settings(tmp_path)["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"
    smtp = read_settings(tmp_path, EMAIL_HOST="smtp.example.com")
    assert smtp["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"


def test_it_passes_check_deploy_with_production_settings(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
