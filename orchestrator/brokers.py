"""What a broker connection needs so that a hung or absent broker never hangs a web request, per
transport: Redis (redis://, rediss://) or RabbitMQ (amqp://, amqps://, pyamqp://).

settings.CELERY_BROKER_TRANSPORT_OPTIONS comes from here; so do the options the reliability tests
give the brokers they stop and freeze. No Django import: settings imports this module.
"""

from __future__ import annotations

# At most one quick retry of a failed connection: the phase entry stays in the outbox and beat's
# sweep sends it later, so waiting longer only delays the answer.
RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}

REDIS_SCHEMES = ("redis://", "rediss://", "sentinel://")
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")


def broker_transport_options(url: str, *, timeout: float = 1.0) -> dict:
    """Transport options for the broker at `url`, with connect and socket timeouts of `timeout` seconds.

    Redis: socket timeouts on every call. RabbitMQ: the connection's own timeout
    (CELERY_BROKER_CONNECTION_TIMEOUT) covers the TCP connect and the AMQP handshake; a read or a write
    on an open connection gets half of `timeout`, because a call that times out is followed by the
    connection's polite close, which waits for the broker too."""
    if url.startswith(REDIS_SCHEMES):
        return {**RETRY, "socket_connect_timeout": timeout, "socket_timeout": timeout}
    if url.startswith(AMQP_SCHEMES):
        return {**RETRY, "read_timeout": timeout / 2, "write_timeout": timeout / 2}
    return {}
