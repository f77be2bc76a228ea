"""A small SMTP server for tests: it speaks the protocol Django's SMTP backend uses (EHLO or HELO, MAIL,
RCPT, DATA, RSET, NOOP, QUIT; no TLS, no login) and keeps each message it accepts. `hang()` makes it
accept connections and say nothing until `answer()`: a mail server that has stopped responding."""

from __future__ import annotations

import socketserver
import threading
from dataclasses import dataclass, field
from email import message_from_string
from email.message import Message


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: Message = field(repr=False)

    @property
    def body(self) -> str:
        payload = self.message.get_payload(decode=True)
        return payload.decode("utf-8") if isinstance(payload, bytes) else str(payload)


class MailServer:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._answering = threading.Event()
        self._answering.set()
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                if not server._answering.wait(60):
                    return
                self._say("220 trilho-test ESMTP")
                sender, recipients = "", []
                while line := self.rfile.readline():
                    command = line.decode("ascii", "replace").strip()
                    verb = command[:4].upper()
                    if verb == "EHLO":
                        self._say("250-trilho-test", "250 8BITMIME")
                    elif verb in ("HELO", "RSET", "NOOP"):
                        self._say("250 OK")
                    elif verb == "MAIL":
                        sender, recipients = command.split(":", 1)[1].strip(" <>"), []
                        self._say("250 OK")
                    elif verb == "RCPT":
                        recipients.append(command.split(":", 1)[1].strip(" <>"))
                        self._say("250 OK")
                    elif verb == "DATA":
                        self._say("354 End data with <CR><LF>.<CR><LF>")
                        lines = []
                        while (data := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                            lines.append(data.decode("utf-8", "replace").rstrip("\r\n"))
                        text = "\n".join(line[1:] if line.startswith("..") else line for line in lines)
                        server.received.append(Received(sender, recipients, message_from_string(text)))
                        self._say("250 OK: queued")
                    elif verb == "QUIT":
                        self._say("221 Bye")
                        return
                    else:
                        self._say("502 Command not implemented")

            def _say(self, *lines: str) -> None:
                self.wfile.write("".join(f"{line}\r\n" for line in lines).encode("ascii"))

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> MailServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._answering.set()
        self._server.shutdown()
        self._server.server_close()

    def hang(self) -> None:
        """Accept connections but say nothing, as a mail server that stopped responding."""
        self._answering.clear()

    def answer(self) -> None:
        self._answering.set()
