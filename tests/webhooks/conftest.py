"""Fixtures of the webhooks' tests: a receiver on loopback that checks signatures the way docs/api.md
tells integrators to, and remembers event ids to recognise a duplicate."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agents.models import AllowedHost
from orchestrator.models import OutboundWebhook
from tests.orchestrator.conftest import broker_celery, rail_settings, worker  # noqa: F401 - fixtures


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float
    signature_ok: bool
    duplicate: bool

    @property
    def json(self):
        return json.loads(self.body)


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    """The receiver's check, as docs/api.md shows it in Python."""
    timestamp = headers.get("Trilho-Webhook-Timestamp", "")
    given = headers.get("Trilho-Webhook-Signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = "v1=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, part.strip()) for part in given.split(","))


class Receiver:
    """An HTTP server on 127.0.0.1 answering webhook posts with scripted statuses (then 200)."""

    def __init__(self, secret: str = ""):
        self.secret = secret
        self.statuses: deque[int] = deque()
        self.received: list[Received] = []
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = dict(self.headers.items())
                with receiver.lock:
                    event_id = headers.get("Trilho-Webhook-Id", "")
                    status = receiver.statuses.popleft() if receiver.statuses else 200
                    duplicate = status < 300 and event_id in receiver.seen
                    if status < 300:
                        receiver.seen.add(event_id)
                    receiver.received.append(
                        Received(
                            headers, body, time.monotonic(), verify(receiver.secret, headers, body), duplicate
                        )
                    )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/trilho"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook_settings(settings):
    settings.TRILHO_HTTP_ALLOWED_PRIVATE = True  # the receiver listens on loopback
    settings.TRILHO_WEBHOOK_RETRY_BASE_SECONDS = 10
    settings.TRILHO_WEBHOOK_MAX_ATTEMPTS = 5
    settings.TRILHO_WEBHOOK_DISABLE_AFTER = 20
    return settings


@pytest.fixture
def receiver(world, hook_settings):
    """The receiver, an allowed host of Acme, and an outbound webhook of the purchase pipe pointing at it."""
    AllowedHost.objects.create(organization=world.org, host="127.0.0.1", note="test receiver")
    hook = OutboundWebhook.objects.create(pipe=world.pipe, name="ERP", url="http://placeholder")
    with Receiver(secret=hook.secret) as server:
        OutboundWebhook.objects.filter(pk=hook.pk).update(url=server.url)
        server.hook = OutboundWebhook.objects.get(pk=hook.pk)
        yield server
