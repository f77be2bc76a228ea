"""Leases on step runs: short, renewed while a step runs, given back when the worker cannot go on.

A worker holds a run by its claim token until `lease_until` (TRILHO_RAIL_LEASE_SECONDS, 20 s by
default). While it works on the run a heartbeat thread renews the lease every quarter of its length,
so a step that takes longer than the lease is never claimed twice, and a worker that dies stops
renewing: its run is claimed again (by a redelivered message or the stale-lease sweep,
dispatch.stale_leases_sweep) seconds after the kill, not minutes.

A dropped database connection or an unreachable broker is not the step's failure: the run is given
back without counting the attempt (`lease_held`), the connection is reset, and the task comes back
later (tasks.run_phase_entry). Only the step's own errors count against its attempts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from celery.signals import task_postrun, task_prerun
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection
from django.db.models import F
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from ..models import RunStatus, StepRun

log = logging.getLogger(__name__)

# Errors of the infrastructure, not of the step: a lost or refused database connection, a broker that
# cannot be reached. Retried with the connection reset, never a permanent failure.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, BrokerError)


def lease_seconds() -> float:
    return float(getattr(settings, "TRILHO_RAIL_LEASE_SECONDS", 20))


def lease_until(now: datetime) -> datetime:
    return now + timedelta(seconds=lease_seconds())


def heartbeat_seconds() -> float:
    """How often a held lease is renewed: four times per lease, so one late beat never loses it."""
    return max(lease_seconds() / 4, 0.2)


def connection_reset() -> None:
    """Drop this thread's database connection after an infrastructure error; the next query opens a
    new one. Inside a transaction Django refuses to reconnect until it is rolled back, so only outside."""
    if connection.in_atomic_block:
        return
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - a dead connection may fail to close; it is dropped all the same
        connection.connection = None


@task_prerun.connect(dispatch_uid="trilho.rail.connections_checked.pre")
@task_postrun.connect(dispatch_uid="trilho.rail.connections_checked.post")
def connections_checked(sender=None, **kwargs) -> None:
    """Around each task on a worker: drop a connection that broke or outlived CONN_MAX_AGE, keep a
    sound one. Celery's own handling (which closes the connection before and after every task, a new
    PostgreSQL session per step) keeps it for settings.CELERY_DB_REUSE_MAX tasks instead."""
    if sender is None or getattr(sender.request, "is_eager", False):
        return  # an eager call runs inside its caller's connection and transaction
    if kwargs.get("signal") is task_postrun and threading.current_thread() is not threading.main_thread():
        # Tasks run in a thread (an in-process worker, -P threads): nothing would close the thread's
        # connection when the thread ends, so it is closed after each task, as Celery did.
        connection_reset()
        return
    close_old_connections()


# ---------------------------------------------------------------- the runs this process holds

_lock = threading.Lock()
_held: dict[int, str] = {}  # run id → claim token
_heartbeat: threading.Thread | None = None
_heartbeat_pid = 0


@contextmanager
def lease_held(run_id: int, token: str) -> Iterator[None]:
    """Renew the lease on run `run_id` while the block runs. An infrastructure error inside gives the
    run back (pending, the attempt not counted) and is raised again for the task to retry."""
    _hold(run_id, token)
    try:
        yield
    except INFRASTRUCTURE_ERRORS as exc:
        log.warning("step run %s: %s; given back to be retried", run_id, exc.__class__.__name__)
        connection_reset()
        lease_give_back(run_id=run_id, token=token)
        raise
    except (SystemExit, KeyboardInterrupt):  # a worker's cold shutdown: another worker takes it at once
        _lease_end(run_id, token)
        raise
    finally:
        with _lock:
            _held.pop(run_id, None)


def _hold(run_id: int, token: str) -> None:
    global _heartbeat, _heartbeat_pid
    with _lock:
        _held[run_id] = token
        # A forked pool process inherits the registry but not the thread: it starts its own.
        if _heartbeat is None or _heartbeat_pid != os.getpid() or not _heartbeat.is_alive():
            _heartbeat = threading.Thread(target=_beat, name="trilho-lease-heartbeat", daemon=True)
            _heartbeat_pid = os.getpid()
            _heartbeat.start()


def _beat() -> None:
    while True:
        time.sleep(heartbeat_seconds())
        with _lock:
            held = dict(_held)
        if not held:
            continue
        try:
            leases_renew(held)
        except Exception:  # noqa: BLE001 - the next beat tries again; the lease has three more beats
            log.warning("could not renew the leases of step runs %s", sorted(held), exc_info=True)
        finally:
            connection_reset()  # no idle connection per worker between beats, none left on a dead server


def leases_renew(held: dict[int, str]) -> int:
    """Extend the leases this worker still holds; returns how many it does."""
    renewed, until = 0, lease_until(timezone.now())
    for run_id, token in held.items():
        renewed += StepRun.objects.filter(pk=run_id, claim_token=token, status=RunStatus.RUNNING).update(
            lease_until=until
        )
    return renewed


def lease_give_back(*, run_id: int, token: str) -> bool:
    """Put a run this worker holds back to pending, its attempt not counted. False when the database
    is still unreachable: the lease then runs out and the run is claimed again as after a crash."""
    try:
        return bool(
            StepRun.objects.filter(pk=run_id, claim_token=token, status=RunStatus.RUNNING).update(
                status=RunStatus.PENDING,
                claim_token="",
                lease_until=None,
                next_attempt_at=None,
                attempts=F("attempts") - 1,
            )
        )
    except INFRASTRUCTURE_ERRORS:
        connection_reset()
        return False


def leases_release() -> int:
    """A worker shutting down: the leases it holds run out now, so another worker takes its runs at once.
    Then its database connection, kept from task to task (settings.CELERY_DB_REUSE_MAX), is closed."""
    with _lock:
        held = dict(_held)
        _held.clear()
    released = sum(_lease_end(run_id, token) for run_id, token in held.items())
    connection_reset()
    return released


def _lease_end(run_id: int, token: str) -> int:
    try:
        return StepRun.objects.filter(pk=run_id, claim_token=token, status=RunStatus.RUNNING).update(
            lease_until=timezone.now()
        )
    except INFRASTRUCTURE_ERRORS:
        connection_reset()
        return 0
