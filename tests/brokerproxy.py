"""A TCP proxy in front of the test broker (Redis or RabbitMQ), so a test can take the broker down,
bring it back, or freeze it, without touching the server other test runs share.

- down(): nothing listens on the proxy's port and every connection through it is cut, as when the
  broker's process or host is gone; up() listens on the same port again.
- freeze(): connections stay open but nothing is read or answered, and new connections are taken
  by the kernel but never served: what a SIGSTOPped broker or a stalled network looks like to a
  client. thaw() forwards what waited, in order.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit, urlunsplit


class BrokerProxy:
    def __init__(self, broker_url: str):
        parts = urlsplit(broker_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or _default_port(parts.scheme))
        self._parts = parts
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener: socket.socket | None = None
        self.port = 0
        self.up()

    @property
    def url(self) -> str:
        netloc = self._parts.netloc.rsplit("@", 1)
        hostport = f"127.0.0.1:{self.port}"
        netloc = f"{netloc[0]}@{hostport}" if len(netloc) == 2 else hostport
        return urlunsplit(self._parts._replace(netloc=netloc))

    # ------------------------------------------------------------ states

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            _reset(client)
            _close(upstream)

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self.thaw()
        self.down()

    def __enter__(self) -> BrokerProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ forwarding

    def _accept(self, listener: socket.socket) -> None:
        while True:
            self._flowing.wait()
            try:
                client, _ = listener.accept()
            except OSError:
                return  # down()
            if listener is not self._listener:
                _close(client)
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                self._flowing.wait()
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()  # frozen while this chunk was read: it waits for the thaw
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def _default_port(scheme: str) -> int:
    return 6379 if scheme.startswith("redis") else 5672


def _close(s: socket.socket) -> None:
    """Shut down first: a thread blocked in accept() or recv() on it wakes up (close alone does not)."""
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()


def _reset(s: socket.socket) -> None:
    """Cut the connection as a dead broker's host would: the client's next read or write fails."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    _close(s)
