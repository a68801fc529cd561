"""The signed webhook connector against a real HTTP server on loopback: the hub's signature, the agency's
signed receipt, and an agency that is down, slow, answers garbage, asks to wait, aborts, and comes back."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ackhub.connectors.webhook import WebhookConnector, signed_text
from ackhub.core.clock import ManualClock
from ackhub.v1 import operations_service_pb2 as ops
from ackhub.v1 import types_pb2
from tests.connector_kit import (
    cases,
    connector_of,
    delivery_to,
    hub_with,
    publish,
    signed_ack,
    state,
    step,
    stored_acks,
)
from tests.harness import RunningHub
from tests.records import declaration

Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Seen:
    headers: dict[str, str]
    body: bytes


@dataclass
class Agency:
    """fx's webhook endpoint: answers each POST with `behaviour(seen)`; keeps every request."""

    clock: ManualClock
    behaviour: Callable[[Seen], Reply] = field(default=lambda seen: (500, {}, b""))
    seen: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    def start(self, port: int = 0) -> int:
        agency = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                seen = Seen({k.lower(): v for k, v in self.headers.items()}, body)
                agency.seen.append(seen)
                status, headers, content = agency.behaviour(seen)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.server.server_address[1]

    def stop(self) -> None:
        if self.server is not None:
            self.release.set()
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def receipt(self, seen: Seen, status: str = "RECEIVED") -> Reply:
        """A 200 carrying fx's signed receipt for the delivery in `seen`."""
        envelope = json.loads(seen.body)
        record = envelope["record"]
        ack = signed_ack(
            "fx", envelope["delivery_id"], record["record_id"], record["digest"], status, self.clock.now_ms()
        )
        body = {k: ack[k] for k in ("status", "reason", "key_id", "time", "signature")}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


@pytest.fixture(name="fx")
def fixture_fx(clock: ManualClock) -> Iterator[Agency]:
    agency = Agency(clock)
    agency.start()
    try:
        yield agency
    finally:
        agency.stop()


@pytest.fixture(name="hook_hub")
def fixture_hook_hub(tmp_path: Path, clock: ManualClock, fx: Agency) -> Iterator[RunningHub]:
    assert fx.server is not None
    url = f"http://127.0.0.1:{fx.server.server_address[1]}/ackhub"
    running = hub_with(tmp_path, clock, "fx", "webhook", {"url": url, "timeout": "500ms"})
    try:
        yield running
    finally:
        running.stop()


def test_post_is_signed_by_the_hub_and_the_signed_receipt_is_stored(
    hook_hub: RunningHub, clock: ManualClock, fx: Agency
) -> None:
    """The POST carries the record and a signature the hub's key verifies; fx's 2xx receipt closes it."""
    fx.behaviour = fx.receipt
    receipt = publish(hook_hub, declaration(note="外汇 核销"))
    delivery_id = delivery_to(receipt, "fx")
    step(hook_hub, clock, "webhook")

    (seen,) = fx.seen
    assert seen.headers["ackhub-delivery-id"] == delivery_id
    connector = connector_of(hook_hub, "webhook")
    assert isinstance(connector, WebhookConnector)
    assert seen.headers["ackhub-key-id"] == connector.hub_key_id
    scheme, _, signature = seen.headers["ackhub-signature"].partition("=")
    assert scheme == "ed25519"
    connector.hub_key.public_key().verify(  # raises InvalidSignature if wrong
        base64.b64decode(signature),
        signed_text(delivery_id, seen.headers["ackhub-timestamp"], seen.body),
    )
    envelope = json.loads(seen.body)
    assert base64.b64decode(envelope["record"]["payload_base64"]) == declaration(note="外汇 核销")
    assert envelope["record"]["digest"] == receipt.digest and envelope["attempt"] == 1
    assert state(hook_hub, receipt.record_id, "fx").state == types_pb2.DELIVERY_STATE_RECEIVED
    assert stored_acks(hook_hub, delivery_id) == [("RECEIVED", "webhook")]
    assert connector.in_flight("fx") == 0


def test_down_slow_and_garbage_are_retried_until_the_agency_comes_back(
    hook_hub: RunningHub, clock: ManualClock, fx: Agency
) -> None:
    """Refused connection, a timeout, non-JSON, a forged receipt: each is unanswered; then a good one closes."""
    assert fx.server is not None
    port = fx.server.server_address[1]
    fx.stop()  # down
    receipt = publish(hook_hub)
    delivery_id = delivery_to(receipt, "fx")
    step(hook_hub, clock, "webhook")
    assert state(hook_hub, receipt.record_id, "fx").attempt_count == 1

    fx.start(port)  # back, but slow: holds the request until released (the hub gives up after 500 ms)
    fx.release.clear()
    arrived = threading.Event()

    def slow(seen: Seen) -> Reply:
        arrived.set()
        fx.release.wait(10)
        return fx.receipt(seen)

    fx.behaviour = slow
    clock.advance(10_000)
    hook_hub.dispatch()  # returns while the agency still holds the request: the dispatcher is not blocked
    assert arrived.wait(5)
    assert connector_of(hook_hub, "webhook").in_flight("fx") == 1
    hook_hub.run(connector_of(hook_hub, "webhook").idle())  # the 500 ms timeout
    fx.release.set()
    assert state(hook_hub, receipt.record_id, "fx").state == types_pb2.DELIVERY_STATE_SENT

    fx.behaviour = lambda seen: (200, {"Content-Type": "text/html"}, b"<html>maintenance</html>")
    step(hook_hub, clock, "webhook", advance_ms=10_000)

    def forged(seen: Seen) -> Reply:
        status, headers, body = fx.receipt(seen)
        return status, headers, body.replace(b'"status": "RECEIVED"', b'"status": "ACCEPTED"')

    fx.behaviour = forged
    step(hook_hub, clock, "webhook", advance_ms=10_000)
    assert state(hook_hub, receipt.record_id, "fx").state == types_pb2.DELIVERY_STATE_SENT
    assert stored_acks(hook_hub, delivery_id) == []
    assert cases(hook_hub, delivery_id) == [("ATTEMPTS_EXHAUSTED", "OPEN")], "escalated, still retrying"

    fx.behaviour = fx.receipt
    step(hook_hub, clock, "webhook", advance_ms=20_000)
    delivery = state(hook_hub, receipt.record_id, "fx")
    assert delivery.state == types_pb2.DELIVERY_STATE_RECEIVED and delivery.attempt_count == 5
    assert [s.headers["ackhub-delivery-id"] for s in fx.seen] == [delivery_id] * 4, "same id every time"
    assert cases(hook_hub, delivery_id) == [("ATTEMPTS_EXHAUSTED", "CLOSED_BY_ACK")]


def test_retry_after_is_honoured_and_abort_stops_retries_with_a_case(
    hook_hub: RunningHub, clock: ManualClock, fx: Agency
) -> None:
    """503 with Retry-After holds the delivery back that long; an "abort" answer escalates and stops it."""
    fx.behaviour = lambda seen: (503, {"Retry-After": "30"}, b"")
    receipt = publish(hook_hub)
    delivery_id = delivery_to(receipt, "fx")
    step(hook_hub, clock, "webhook")
    step(hook_hub, clock, "webhook", advance_ms=20_000)
    assert len(fx.seen) == 1, "nothing is sent during the 30 s the agency asked for"

    fx.behaviour = lambda seen: (422, {"Content-Type": "application/json"}, b'{"abort": "unknown exporter"}')
    step(hook_hub, clock, "webhook", advance_ms=11_000)
    assert len(fx.seen) == 2
    assert cases(hook_hub, delivery_id) == [("ABORTED_BY_RECIPIENT", "OPEN")]
    listed = hook_hub.operations_stub.ListEscalations(
        ops.ListEscalationsRequest(recipient="fx"), metadata=hook_hub.as_operator()
    ).escalations
    assert [c.reason for c in listed] == [ops.ESCALATION_REASON_ABORTED_BY_RECIPIENT], "operators see why"
    delivery = state(hook_hub, receipt.record_id, "fx")
    assert delivery.state == types_pb2.DELIVERY_STATE_SENT and not delivery.HasField("next_attempt_time")

    step(hook_hub, clock, "webhook", advance_ms=600_000)
    assert len(fx.seen) == 2, "an aborted delivery is not retried by itself"
