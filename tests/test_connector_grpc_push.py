"""The gRPC push connector against a real ReceiverService on loopback: the answer is the signed RECEIVED
acknowledgement, the business one follows by AcknowledgeDelivery; down, slow, garbage, abort, back."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from ackhub.client.agency import AgencyClient
from ackhub.connectors.grpc_push import GrpcPushConnector
from ackhub.core.clock import ManualClock
from ackhub.v1 import receiver_service_pb2 as pb
from ackhub.v1 import receiver_service_pb2_grpc as pb_grpc
from ackhub.v1 import types_pb2
from tests.connector_kit import cases, connector_of, delivery_to, hub_with, publish, state, step, stored_acks
from tests.harness import RunningHub
from tests.records import declaration

Behaviour = Callable[[pb.ReceiveDeliveryRequest, Any], pb.ReceiveDeliveryResponse]


class Receiver(pb_grpc.ReceiverServiceServicer):
    """tax's ReceiverService: answers with `behaviour`; keeps every request."""

    def __init__(self) -> None:
        self.signer: AgencyClient | None = None  # tax's SDK client, to sign with tax's key
        self.requests: list[pb.ReceiveDeliveryRequest] = []
        self.behaviour: Behaviour = self.received
        self.release = threading.Event()
        self.server: Any = None

    def received(self, request: pb.ReceiveDeliveryRequest, context: Any) -> pb.ReceiveDeliveryResponse:
        assert self.signer is not None
        ack = self.signer.sign(request.record, request.delivery_id, "RECEIVED")
        return pb.ReceiveDeliveryResponse(acknowledgement=ack)

    def ReceiveDelivery(self, request: pb.ReceiveDeliveryRequest, context: Any) -> pb.ReceiveDeliveryResponse:
        self.requests.append(request)
        return self.behaviour(request, context)

    def start(self, port: int = 0) -> int:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_ReceiverServiceServicer_to_server(self, self.server)
        bound = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.server.start()
        return int(bound)

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.stop(0).wait(5)
            self.server = None


@pytest.fixture(name="push_hub")
def fixture_push_hub(tmp_path: Path, clock: ManualClock) -> Iterator[tuple[RunningHub, Receiver, int]]:
    receiver = Receiver()
    port = receiver.start()
    running = hub_with(
        tmp_path, clock, "tax", "grpc_push", {"target": f"127.0.0.1:{port}", "timeout": "500ms"}
    )
    receiver.signer = running.agency("tax", clock=clock)
    try:
        yield running, receiver, port
    finally:
        receiver.stop()
        running.stop()


def test_push_answer_is_the_received_ack_and_business_ack_follows(
    push_hub: tuple[RunningHub, Receiver, int], clock: ManualClock
) -> None:
    """ReceiveDelivery answers a signed RECEIVED; the agency's ACCEPTED later comes by AcknowledgeDelivery."""
    hub, receiver, _ = push_hub
    receipt = publish(hub, declaration(note="refund"))
    delivery_id = delivery_to(receipt, "tax")
    step(hub, clock, "grpc_push")

    (request,) = receiver.requests
    assert request.delivery_id == delivery_id and request.attempt == 1
    assert request.record.payload == declaration(note="refund") and request.record.digest == receipt.digest
    assert request.required_level == types_pb2.ACK_LEVEL_BUSINESS
    assert state(hub, receipt.record_id, "tax").state == types_pb2.DELIVERY_STATE_RECEIVED

    tax = receiver.signer
    assert tax is not None
    tax.acknowledge(tax.sign(request.record, delivery_id, "ACCEPTED", "refund registered"))
    assert state(hub, receipt.record_id, "tax").state == types_pb2.DELIVERY_STATE_ACCEPTED
    assert stored_acks(hub, delivery_id) == [("ACCEPTED", "unary"), ("RECEIVED", "grpc_push")]


def test_down_slow_garbage_then_back(push_hub: tuple[RunningHub, Receiver, int], clock: ManualClock) -> None:
    """UNAVAILABLE, a deadline, an empty answer and a forged ack are unanswered; the agency's return closes it."""
    hub, receiver, port = push_hub
    receiver.stop()
    receipt = publish(hub)
    delivery_id = delivery_to(receipt, "tax")
    step(hub, clock, "grpc_push")
    assert state(hub, receipt.record_id, "tax").attempt_count == 1

    receiver.release.clear()
    assert receiver.start(port) == port
    push = connector_of(hub, "grpc_push")
    assert isinstance(push, GrpcPushConnector)
    hub.run(push.wait_ready("tax", 10))  # the hub's channel reconnects on its own
    arrived = threading.Event()

    def slow(request: pb.ReceiveDeliveryRequest, context: Any) -> pb.ReceiveDeliveryResponse:
        arrived.set()
        receiver.release.wait(10)
        return receiver.received(request, context)

    receiver.behaviour = slow
    clock.advance(10_000)
    hub.dispatch()  # returns at once: the call runs in the background
    assert arrived.wait(5)
    hub.run(connector_of(hub, "grpc_push").idle())  # the 500 ms deadline passes
    receiver.release.set()

    receiver.behaviour = lambda request, context: pb.ReceiveDeliveryResponse()
    step(hub, clock, "grpc_push", advance_ms=10_000)

    def forged(request: pb.ReceiveDeliveryRequest, context: Any) -> pb.ReceiveDeliveryResponse:
        answer = receiver.received(request, context)
        answer.acknowledgement.signature = base64.b64decode(base64.b64encode(b"\0" * 64))
        return answer

    receiver.behaviour = forged
    step(hub, clock, "grpc_push", advance_ms=10_000)
    assert stored_acks(hub, delivery_id) == []
    assert state(hub, receipt.record_id, "tax").state == types_pb2.DELIVERY_STATE_SENT

    receiver.behaviour = receiver.received
    step(hub, clock, "grpc_push", advance_ms=20_000)
    delivery = state(hub, receipt.record_id, "tax")
    assert delivery.state == types_pb2.DELIVERY_STATE_RECEIVED and delivery.attempt_count == 5
    assert {r.delivery_id for r in receiver.requests} == {delivery_id}


def test_retry_after_and_abort(push_hub: tuple[RunningHub, Receiver, int], clock: ManualClock) -> None:
    """retry_after holds the delivery back; abort_reason stops retrying and opens a case."""
    hub, receiver, _ = push_hub
    wait = Duration()
    wait.FromSeconds(30)
    receiver.behaviour = lambda request, context: pb.ReceiveDeliveryResponse(retry_after=wait)
    receipt = publish(hub)
    delivery_id = delivery_to(receipt, "tax")
    step(hub, clock, "grpc_push")
    step(hub, clock, "grpc_push", advance_ms=20_000)
    assert len(receiver.requests) == 1

    receiver.behaviour = lambda request, context: pb.ReceiveDeliveryResponse(abort_reason="不是我们的企业")
    step(hub, clock, "grpc_push", advance_ms=11_000)
    assert len(receiver.requests) == 2
    assert cases(hub, delivery_id) == [("ABORTED_BY_RECIPIENT", "OPEN")]
    step(hub, clock, "grpc_push", advance_ms=600_000)
    assert len(receiver.requests) == 2
