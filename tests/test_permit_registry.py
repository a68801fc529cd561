"""On-demand lookup in the issuer's registry: a real HTTP registry on loopback serving licences in the
licensing system's own format; answers cached for a configured time on the injected clock; an unreachable
registry is the reason ISSUER_UNREACHABLE, never a crash."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ackhub.adapters.commerce import licence_to_native
from ackhub.core.clock import ManualClock
from ackhub.core.permit_document import PermitDocument
from ackhub.v1 import permit_service_pb2 as pb
from ackhub.v1 import permit_service_pb2_grpc as pb_grpc
from tests.harness import RunningHub, key_id, private_key, start_hub
from tests.permit_data import NOW_MS, draw_request, goods, licence, permit_config, reasons, verify_request

CUSTOMS = (("x-ackhub-agency", "customs"),)


class Registry:
    """The licensing system's registry: GET /licences/<number> → 200 JSON or 404."""

    def __init__(self) -> None:
        self.licences: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                registry.requests.append(self.path)
                number = self.path.rsplit("/", 1)[-1]
                body = registry.licences.get(number)
                self.send_response(200 if body else 404)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body or {"error": "no such licence"}).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, document: PermitDocument, signer: str = "commerce") -> None:
        signature = private_key(signer).sign(document.canonical_text(key_id("commerce")))
        self.licences[document.number] = licence_to_native(document, key_id("commerce"), signature)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(name="registry")
def fixture_registry() -> Iterator[Registry]:
    registry = Registry()
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture(name="clock")
def fixture_clock() -> ManualClock:
    return ManualClock(NOW_MS)


def _hub(database_url: str, clock: ManualClock, url: str) -> RunningHub:
    return start_hub(database_url, clock=clock, edit=lambda config: permit_config(config, url))


def test_never_pushed_licence_is_looked_up_and_cached(
    database_url: str, clock: ManualClock, registry: Registry
) -> None:
    """A licence only in the registry verifies VALID; the answer is reused for a minute of the hub's clock,
    then asked again; an unknown number is NOT_FOUND (and that answer is cached too)."""
    registry.publish(licence())
    hub = _hub(database_url, clock, registry.url)
    try:
        stub = pb_grpc.PermitServiceStub(hub.channel)
        assert reasons(stub.VerifyPermit(verify_request(), metadata=CUSTOMS).result) == []
        assert reasons(stub.VerifyPermit(verify_request(), metadata=CUSTOMS).result) == []
        assert registry.requests == ["/api/licences/26-AA-204966"]
        shown = stub.GetPermit(
            pb.GetPermitRequest(kind="commerce.import_licence", number="26-AA-204966"), metadata=CUSTOMS
        )
        assert shown.permit.source == pb.PERMIT_SOURCE_REGISTRY and len(registry.requests) == 1
        clock.advance(61_000)
        assert reasons(stub.VerifyPermit(verify_request(), metadata=CUSTOMS).result) == []
        assert len(registry.requests) == 2
        missing = verify_request(goods(number="26-AA-000404"))
        assert reasons(stub.VerifyPermit(missing, metadata=CUSTOMS).result) == ["NOT_FOUND"]
        assert reasons(stub.VerifyPermit(missing, metadata=CUSTOMS).result) == ["NOT_FOUND"]
        assert len(registry.requests) == 3
    finally:
        hub.stop()


def test_registry_answer_with_a_wrong_signature_is_signature_invalid(
    database_url: str, clock: ManualClock, registry: Registry
) -> None:
    """A registry answer is checked like a pushed permit: signed by another key, it is SIGNATURE_INVALID."""
    registry.publish(licence(), signer="tax")
    hub = _hub(database_url, clock, registry.url)
    try:
        stub = pb_grpc.PermitServiceStub(hub.channel)
        assert reasons(stub.VerifyPermit(verify_request(), metadata=CUSTOMS).result) == ["SIGNATURE_INVALID"]
    finally:
        hub.stop()


def test_draw_down_imports_the_registry_licence(
    database_url: str, clock: ManualClock, registry: Registry
) -> None:
    """Drawing down a licence known only to the registry stores it (source REGISTRY) and draws on it."""
    registry.publish(licence())
    hub = _hub(database_url, clock, registry.url)
    try:
        stub = pb_grpc.PermitServiceStub(hub.channel)
        drawn = stub.DrawDownPermit(draw_request(goods(quantity="4")), metadata=CUSTOMS)
        assert drawn.draw_down.quantity == "4"
        shown = stub.GetPermit(
            pb.GetPermitRequest(kind="commerce.import_licence", number="26-AA-204966"), metadata=CUSTOMS
        ).permit
        assert shown.source == pb.PERMIT_SOURCE_REGISTRY and shown.balances[0].remaining == "96"
    finally:
        hub.stop()


def test_unreachable_registry_is_issuer_unreachable(database_url: str, clock: ManualClock) -> None:
    """With nothing listening at the registry's address, verification answers ISSUER_UNREACHABLE and a
    draw-down is refused with that reason; nothing crashes and nothing is cached."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hub = _hub(database_url, clock, f"http://127.0.0.1:{port}")
    try:
        stub = pb_grpc.PermitServiceStub(hub.channel)
        result = stub.VerifyPermit(verify_request(), metadata=CUSTOMS).result
        assert reasons(result) == ["ISSUER_UNREACHABLE"] and "commerce" in result.details[0]
        import grpc

        from tests.harness import error_details

        with pytest.raises(grpc.RpcError) as refused:
            stub.DrawDownPermit(draw_request(), metadata=CUSTOMS)
        assert error_details(refused.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "ISSUER_UNREACHABLE")
    finally:
        hub.stop()
