"""Receivers for the notification tests: a webhook endpoint (a real HTTP server on loopback that keeps
every request and answers as told) and a mailbox (aiosmtpd, a real SMTP server on loopback)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from ackhub.hub.notifications.send import Pass
from tests.harness import RunningHub


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Endpoint:
    """A webhook receiver: answers each POST with `status(seen)`; keeps every request."""

    status: Callable[[Seen], int] = field(default=lambda seen: 204)
    seen: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> str:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with endpoint.lock:
                    endpoint.seen.append(seen)
                self.send_response(endpoint.status(seen))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/ackhub"

    def requests(self) -> list[Seen]:
        with self.lock:
            return list(self.seen)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class _Keep:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 kept"


class Mailbox:
    """A real SMTP server on a free loopback port; `messages` holds what it accepted."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self._keep = _Keep()
        self._controller = Controller(self._keep, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[Message]:
        return list(self._keep.messages)

    def start(self) -> int:
        self._controller.start()
        return self.port

    def stop(self) -> None:
        self._controller.stop()


def notify(hub: RunningHub) -> Pass:
    """What the scheduled job does: sequence the audit log, then one pass of the notifications."""
    assert hub.server.ledger is not None and hub.server.notifications is not None
    hub.run(hub.server.db.run(hub.server.ledger.sequence))
    return hub.run(hub.server.notifications.run_once())
