"""The witness over HTTP (standard library only): `POST <prefix>/add-checkpoint` (C2SP tlog-witness),
`GET <prefix>/checkpoint?origin=<origin>` (the last checkpoint cosigned for a log, for a verifier's trust
anchor), `GET /metrics` (Prometheus text) and `GET /healthz`."""

from __future__ import annotations

import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ackhub.client.witness.service import MAX_REQUEST_BYTES, Answer, Witness


class _Handler(BaseHTTPRequestHandler):
    server: WitnessHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, as the protocol recommends

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are counted in /metrics; alarms are logged by the witness

    def _send(self, answer: Answer) -> None:
        data = answer.body.encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path != self.server.prefix + "/add-checkpoint":
            self.close_connection = True  # its body is left unread: the connection cannot be reused
            self._send(Answer(404, "not found\n"))
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            self._send(Answer(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required\n"))
            return
        if length < 0 or length > MAX_REQUEST_BYTES:
            self.close_connection = True
            self._send(Answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"at most {MAX_REQUEST_BYTES} bytes\n"))
            return
        self._send(self.server.witness.add_checkpoint(self.rfile.read(length)))

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        witness = self.server.witness
        if url.path == "/metrics":
            self._send(Answer(200, witness.metrics(), "text/plain; version=0.0.4"))
        elif url.path == "/healthz":
            self._send(Answer(200, "ok\n"))
        elif url.path == self.server.prefix + "/checkpoint":
            origin = parse_qs(url.query).get("origin", [""])[0]
            note = witness.latest(origin) if origin in witness.logs else None
            self._send(Answer(200, note) if note else Answer(404, f"no checkpoint of log {origin!r}\n"))
        else:
            self._send(Answer(404, "not found\n"))


class WitnessHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], witness: Witness, prefix: str = "") -> None:
        super().__init__(address, _Handler)
        self.witness = witness
        self.prefix = prefix.rstrip("/")

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="witness-http", daemon=True)
        thread.start()
        return thread
