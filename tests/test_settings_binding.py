"""PostgreSQL's statements bound on the server and prepared when repeated (TRILHO_DB_SERVER_SIDE_BINDING,
TRILHO_DB_PREPARE_THRESHOLD): on by default, off or without prepared statements by setting (pgbouncer
before 1.21), never for SQLite. Read in a fresh process as tests/test_settings.py does."""

from __future__ import annotations

import json

import pytest

from tests.test_settings import clean_env, run_python

_READ_OPTIONS = """
import json
from orchestrator import settings as s
print(json.dumps(s.DATABASES["default"].get("OPTIONS", {})))
"""

POSTGRES = "postgres://u:p@db.example:5432/trilho"


def options(tmp_path, **overrides: str) -> dict:
    result = run_python(_READ_OPTIONS, clean_env(tmp_path, **overrides))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_postgresql_binds_on_the_server_and_prepares_repeated_statements_by_default(tmp_path):
    read = options(tmp_path, DATABASE_URL=POSTGRES)
    assert read["server_side_binding"] is True
    assert read["prepare_threshold"] == 5


@pytest.mark.parametrize("value", ["off", "none"])
def test_prepared_statements_can_be_turned_off_for_an_old_pgbouncer(tmp_path, value):
    read = options(tmp_path, DATABASE_URL=POSTGRES, TRILHO_DB_PREPARE_THRESHOLD=value)
    assert read["server_side_binding"] is True
    assert read["prepare_threshold"] is None


def test_the_prepare_threshold_is_read_as_an_integer(tmp_path):
    assert options(tmp_path, DATABASE_URL=POSTGRES, TRILHO_DB_PREPARE_THRESHOLD="2")["prepare_threshold"] == 2


def test_binding_on_the_client_as_django_does_by_setting(tmp_path):
    read = options(tmp_path, DATABASE_URL=POSTGRES, TRILHO_DB_SERVER_SIDE_BINDING="false")
    assert "server_side_binding" not in read and "prepare_threshold" not in read


def test_sqlite_takes_none_of_it(tmp_path):
    read = options(tmp_path)
    assert "server_side_binding" not in read and "prepare_threshold" not in read
