"""HTTP test servers that speak real protocols, scripted per test.

- OllamaServer: the Ollama chat API (POST /api/chat, streamed NDJSON or one JSON object).
- OpenAIServer: the OpenAI chat completions API (POST /v1/chat/completions).
- ExternalSystem: any JSON endpoint an automation calls (an ERP), recording Idempotency-Keys.

Each server answers from a script of replies, in order; when the script runs out it repeats
its `default` reply. Replies: `answer(...)` (a good JSON answer), `low_confidence(...)`,
`malformed()`, `error(500)`, `hang(seconds)` (longer than the client's timeout), `slow(seconds, ...)`.
Every request is recorded (method, path, headers, JSON body) so tests can read the prompt.
The production clients (langchain-ollama, langchain-openai, httpx) talk to these over loopback.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted reply."""

    content: str | None = None  # the model's text (model servers) or a raw body (ExternalSystem)
    status: int = 200
    delay: float = 0.0
    input_tokens: int = 120
    output_tokens: int = 40
    json_body: Any = None  # ExternalSystem: a JSON response body
    hold: threading.Event | None = None  # block until set (or the server stops)


def answer(
    decision: str = "approve",
    values: dict | None = None,
    confidence: float = 0.92,
    reasoning: str = "The request matches the policy.",
    **extra: Any,
) -> Reply:
    body = {"decision": decision, "values": values or {}, "confidence": confidence, "reasoning": reasoning}
    body.update(extra.pop("extra_keys", {}))
    return Reply(content=json.dumps(body), **extra)


def low_confidence(decision: str = "approve", values: dict | None = None, confidence: float = 0.31) -> Reply:
    return answer(decision, values, confidence, reasoning="Not sure; the documents are ambiguous.")


def malformed() -> Reply:
    return Reply(content='{"decision": "approve", "values": {"category": "Hardware"', output_tokens=12)


def error(status: int = 500) -> Reply:
    return Reply(content="internal error", status=status)


def hang(seconds: float = 5.0) -> Reply:
    """No answer for `seconds` (set the client's timeout below it)."""
    return Reply(content=None, delay=seconds)


def slow(seconds: float, *args: Any, **kwargs: Any) -> Reply:
    reply = answer(*args, **kwargs)
    reply.delay = seconds
    return reply


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)


class ScriptedServer:
    """A threaded HTTP server on 127.0.0.1 with a reply script. Use as a context manager."""

    def __init__(self, *replies: Reply, default: Reply | None = None):
        self.script: deque[Reply] = deque(replies)
        self.default = default
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # -- script

    def push(self, *replies: Reply) -> None:
        with self._lock:
            self.script.extend(replies)

    def next_reply(self) -> Reply:
        with self._lock:
            if self.script:
                return self.script.popleft()
        return self.default or Reply(content="no scripted reply", status=599)

    # -- lifecycle

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ScriptedServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                record = Recorded(self.command, self.path, dict(self.headers.items()), body)
                with outer._lock:
                    outer.requests.append(record)
                reply = outer.next_reply()
                if reply.hold is not None:
                    while not reply.hold.is_set() and not outer._stopping.is_set():
                        reply.hold.wait(0.05)
                if reply.delay:
                    outer._stopping.wait(reply.delay)
                if reply.content is None and reply.json_body is None and reply.delay:
                    return  # a hang: the client timed out long ago
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    outer.respond(self, record, reply)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- protocol

    @staticmethod
    def send(
        handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str, **headers: str
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()

    def respond(self, handler: BaseHTTPRequestHandler, record: Recorded, reply: Reply) -> None:
        raise NotImplementedError

    # -- reading what clients sent

    def prompts(self) -> list[str]:
        """The text of every message of every chat request, joined per request."""
        out = []
        for r in self.requests:
            if isinstance(r.body, dict) and isinstance(r.body.get("messages"), list):
                out.append("\n".join(str(m.get("content", "")) for m in r.body["messages"]))
        return out


class OllamaServer(ScriptedServer):
    """Speaks POST /api/chat as Ollama does (NDJSON stream when "stream" is true)."""

    def respond(self, handler, record, reply):
        if record.path.rstrip("/") in ("/api/tags", "/api/version"):
            self.send(handler, 200, b'{"models": [], "version": "0.5.0"}', "application/json")
            return
        if record.path.rstrip("/") != "/api/chat":
            self.send(handler, 404, b'{"error": "not found"}', "application/json")
            return
        if reply.status != 200:
            self.send(
                handler, reply.status, json.dumps({"error": reply.content}).encode(), "application/json"
            )
            return
        model = (record.body or {}).get("model", "test")
        now = "2026-01-01T00:00:00Z"
        final = {
            "model": model,
            "created_at": now,
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "total_duration": 1000,
            "prompt_eval_count": reply.input_tokens,
            "eval_count": reply.output_tokens,
        }
        if (record.body or {}).get("stream", True):
            content = reply.content or ""
            half = len(content) // 2
            lines = [
                {
                    "model": model,
                    "created_at": now,
                    "message": {"role": "assistant", "content": part},
                    "done": False,
                }
                for part in (content[:half], content[half:])
            ]
            body = b"".join(json.dumps(line).encode() + b"\n" for line in [*lines, final])
            self.send(handler, 200, body, "application/x-ndjson")
        else:
            final["message"]["content"] = reply.content or ""
            self.send(handler, 200, json.dumps(final).encode(), "application/json")


class OpenAIServer(ScriptedServer):
    """Speaks POST /v1/chat/completions as OpenAI-compatible servers do."""

    def respond(self, handler, record, reply):
        if not record.path.rstrip("/").endswith("/chat/completions"):
            self.send(handler, 404, b'{"error": {"message": "not found"}}', "application/json")
            return
        if reply.status != 200:
            body = {"error": {"message": reply.content, "type": "server_error", "code": None}}
            self.send(handler, reply.status, json.dumps(body).encode(), "application/json")
            return
        model = (record.body or {}).get("model", "test")
        body = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1767225600,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.content or "", "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": reply.input_tokens,
                "completion_tokens": reply.output_tokens,
                "total_tokens": reply.input_tokens + reply.output_tokens,
            },
        }
        self.send(handler, 200, json.dumps(body).encode(), "application/json")


class ExternalSystem(ScriptedServer):
    """Any JSON endpoint (an ERP): answers the scripted status and JSON; records Idempotency-Keys."""

    def respond(self, handler, record, reply):
        if reply.json_body is not None:
            payload = json.dumps(reply.json_body).encode()
        else:
            payload = (reply.content or "").encode()
        self.send(handler, reply.status, payload, "application/json")

    def idempotency_keys(self) -> list[str | None]:
        return [r.headers.get("Idempotency-Key") for r in self.requests]


def ok(
    json_body: Any = None, *, status: int = 200, delay: float = 0.0, hold: threading.Event | None = None
) -> Reply:
    """An ExternalSystem reply."""
    return Reply(
        json_body=json_body if json_body is not None else {"ok": True}, status=status, delay=delay, hold=hold
    )
