"""What the crash tests share: publishers that retry with the same request id across a hub's death,
recipients that reconnect and resend what the hub never confirmed, and checks of the store afterwards."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from sqlalchemy import Engine
from sqlmodel import Session, select

from ackhub.client.agency import AgencyClient, Delivery
from ackhub.hub.api.convert import ACK_STATUS_NAMES
from ackhub.hub.store.models import AcknowledgementRow, DeliveryRow, RecordRow
from ackhub.v1 import exchange_service_pb2 as pb
from ackhub.v1 import types_pb2
from tests.harness import base_config, key_id, private_key
from tests.process_hub import FAST_RECONNECT, free_port
from tests.records import declaration

TYPE = "customs.export_declaration.released"
PUBLISHER = "customs"
# What each recipient answers, and the delivery state that answer closes it in.
ANSWERS = {"tax": ("RECEIVED", "ACCEPTED"), "fx": ("RECEIVED",)}
CLOSED = {"tax": "ACCEPTED", "fx": "RECEIVED"}
# A hub that is going away or not back yet; anything else is a real refusal.
GONE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def crash_config(database_url: str) -> dict[str, Any]:
    """`base_config` on a free port, with quick sweeps and retries so redelivery after restart is prompt.
    The circuit breaker is kept out of the way: attempts left unanswered by the crash (and retries that
    outrun acknowledgements on a busy machine) would otherwise pause deliveries for whole cooldowns."""
    config = base_config(database_url)
    config["server"]["listen"] = f"127.0.0.1:{free_port()}"
    config["server"]["sweep_interval"] = "100ms"
    config["breaker"]["failure_threshold"] = 1000
    for route in config["routes"]:
        for recipient in route["recipients"]:
            recipient["retry"] = {
                **recipient["retry"],
                "first_interval": "300ms",
                "max_interval": "1s",
                "jitter": 0.0,
            }
    return config


def reconnecting_client(target: str, agency: str) -> AgencyClient:
    channel = grpc.insecure_channel(target, options=FAST_RECONNECT)
    return AgencyClient(
        target, agency, key_id=key_id(agency), private_key=private_key(agency), channel=channel
    )


def wait_until(condition: Callable[[], bool], timeout: float, describe: Callable[[], str]) -> None:
    """Poll `condition` every 50 ms; fail with `describe()` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {describe()}")
        time.sleep(0.05)


@dataclass
class Publish:
    request_id: str
    payload: bytes
    receipt: pb.Receipt | None = None  # the hub's answer, once one came back
    failures: int = 0  # attempts that raised before the answer came


class Publishers:
    """Threads publishing one record after another; a publish that raises because the hub is gone is
    retried with the same request id once the hub is back."""

    def __init__(self, client: AgencyClient, hub_up: threading.Event, count: int = 3) -> None:
        self.client = client
        self.hub_up = hub_up
        self.no_more = threading.Event()
        self.abandon = threading.Event()  # the test is over: stop retrying
        self.items: list[Publish] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True, name=f"publish-{i}")
            for i in range(count)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def receipted(self) -> int:
        with self._lock:
            return sum(1 for item in self.items if item.receipt is not None)

    def _run(self, index: int) -> None:
        number = 0
        while not self.no_more.is_set():
            payload = declaration(note=f"publisher {index}, number {number}")
            item = Publish(str(uuid.uuid4()), payload)
            number += 1
            with self._lock:
                self.items.append(item)
            if not self._publish(item):
                return

    def _publish(self, item: Publish) -> bool:
        deadline = time.monotonic() + 25
        while True:
            try:
                receipt = self.client.publish(
                    TYPE,
                    item.payload,
                    subject_uscc="91110000600037341L",
                    request_id=item.request_id,
                    timeout=5,
                )
            except grpc.RpcError as error:
                code = error.code()
                if code not in GONE or time.monotonic() > deadline or self.abandon.is_set():
                    with self._lock:
                        self.errors.append(f"{item.request_id}: {code} {error}")
                    return False
                with self._lock:
                    item.failures += 1
                # Not acknowledged to us: it may or may not be stored. Same request id once the hub is back.
                self.hub_up.wait(20)
                time.sleep(0.05)  # the channel may still be reconnecting
                continue
            with self._lock:
                item.receipt = receipt
            return True

    def stop(self, timeout: float = 30) -> None:
        self.no_more.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "a publisher did not finish its last publish"


class Recipient:
    """A subscription that reconnects whenever the stream breaks and answers each delivery with signed
    acknowledgements; what the hub has not confirmed yet is sent again on the next stream, as an agency's
    system would, so an acknowledgement that died with the hub is not lost on the agency's side either.
    (The SDK's `subscribe` alone does not: a business acknowledgement that dies with the hub after the
    RECEIVED before it was stored is never asked for again, and the delivery waits for its deadline.)
    An unconfirmed acknowledgement goes at most once per stream: a redelivery that overtook it is not
    answered twice on the same stream."""

    def __init__(self, client: AgencyClient, statuses: tuple[str, ...]) -> None:
        self.client = client
        self.statuses = statuses
        self.stopping = threading.Event()
        self.pending: dict[tuple[str, str], types_pb2.Acknowledgement] = {}
        self.confirmed: list[tuple[str, str]] = []  # (delivery id, status) of every AckResult with ok
        # (delivery id, status) → signature of the acknowledgement the hub said it stored (ok, not duplicate).
        self.stored: dict[tuple[str, str], bytes] = {}
        self.stored_twice: list[tuple[str, str]] = []
        self.refused: list[pb.AckResult] = []
        self.stream_errors: list[grpc.StatusCode] = []
        self.opened = 0  # streams opened; the current one's number
        self._sent_on: dict[tuple[str, str], int] = {}  # unconfirmed ack → stream it last went on
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"subscribe-{client.agency_id}")

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.client.subscribe(self._handle, on_open=self._on_open)
            except grpc.RpcError as error:
                with self._lock:
                    self.stream_errors.append(error.code())
            if not self.stopping.is_set():
                time.sleep(0.05)  # before dialling again

    def _handle(self, delivery: Delivery) -> None:
        for status in self.statuses:
            key = (delivery.delivery_id, status)
            reason = "registered" if status == "ACCEPTED" else ""
            with self._lock:
                ack = self.pending.get(key)
                if ack is not None and self._sent_on.get(key) == self.opened:
                    continue  # already on this stream, its answer not read yet
                if ack is None:
                    ack = self.client.sign(delivery.record, delivery.delivery_id, status, reason)
                    self.pending[key] = ack
                self._sent_on[key] = self.opened
            self.client.send(pb.SubscribeRequest(acknowledgement=ack))

    def _on_open(self, _session_id: str) -> None:
        self.drain()
        with self._lock:
            self.opened += 1
            unconfirmed = list(self.pending.values())
            self._sent_on = dict.fromkeys(self.pending, self.opened)
        for ack in unconfirmed:
            self.client.send(pb.SubscribeRequest(acknowledgement=ack))

    def drain(self) -> None:
        """Take the hub's AckResults off the client's queue."""
        while True:
            try:
                result = self.client.results.get_nowait()
            except queue.Empty:
                return
            key = (result.delivery_id, ACK_STATUS_NAMES[result.status])
            with self._lock:
                if result.ok:
                    self.confirmed.append(key)
                    sent = self.pending.pop(key, None)
                    self._sent_on.pop(key, None)
                    if not result.duplicate:
                        # The first ok for a key answers the only message sent for it until then.
                        if key in self.stored or sent is None:
                            self.stored_twice.append(key)
                        else:
                            self.stored[key] = sent.signature
                else:
                    self.refused.append(result)

    def confirmed_count(self) -> int:
        self.drain()
        with self._lock:
            return len(self.confirmed)

    def unconfirmed(self) -> int:
        self.drain()
        with self._lock:
            return len(self.pending)

    def stop(self, timeout: float = 10) -> bool:
        """End the subscription; False if its thread did not finish in time."""
        if not self.stopping.is_set():
            self.stopping.set()
            deadline = time.monotonic() + timeout
            while self._thread.is_alive() and time.monotonic() < deadline:
                self.client.stop_subscription()
                self._thread.join(0.1)
            self.drain()
            self.client.close()
        return not self._thread.is_alive()


def open_deliveries(engine: Engine, record_ids: set[str]) -> list[tuple[str, str, str]]:
    """(record id, recipient, state) of the deliveries of `record_ids` not yet closed, plus a line per
    record that has no delivery for some recipient."""
    with Session(engine) as session:
        rows = session.exec(select(DeliveryRow.record_id, DeliveryRow.recipient, DeliveryRow.state)).all()
    seen = {(record_id, recipient) for record_id, recipient, _ in rows}
    missing = [(r, a, "MISSING") for r in record_ids for a in CLOSED if (r, a) not in seen]
    return missing + [
        (record_id, recipient, state)
        for record_id, recipient, state in rows
        if record_id in record_ids and state != CLOSED[recipient]
    ]


def check_nothing_lost(
    engine: Engine, receipts: dict[str, pb.Receipt], recipients: dict[str, Recipient]
) -> Counter[tuple[str, str]]:
    """The store, read directly with the hubs stopped: every receipted record exactly once, one delivery
    per recipient closed as its route requires, and every acknowledgement stored once — each one a
    recipient was told was stored, the very one it sent. Returns the acknowledgements per key."""
    # The store, read directly with the hub stopped.
    with Session(engine) as session:
        records = session.exec(
            select(RecordRow.id, RecordRow.publisher, RecordRow.request_id, RecordRow.digest)
        ).all()
        deliveries = session.exec(
            select(DeliveryRow.id, DeliveryRow.record_id, DeliveryRow.recipient, DeliveryRow.state)
        ).all()
        acks = session.exec(
            select(AcknowledgementRow.delivery_id, AcknowledgementRow.status, AcknowledgementRow.signature)
        ).all()

    # Every record exactly once, and every stored record is one whose publish was answered.
    per_request = Counter((publisher, request_id) for _, publisher, request_id, _ in records)
    assert [key for key, n in per_request.items() if n > 1] == []
    assert {request_id: (record_id, f"sha256:{digest}") for record_id, _, request_id, digest in records} == {
        request_id: (receipt.record_id, receipt.digest) for request_id, receipt in receipts.items()
    }

    # One delivery per recipient, the one named in the receipt, closed as the route requires.
    per_recipient = Counter((record_id, recipient) for _, record_id, recipient, _ in deliveries)
    assert [key for key, n in per_recipient.items() if n > 1] == []
    assert {(d, r) for d, _, r, _ in deliveries} == {
        (ref.delivery_id, ref.recipient) for receipt in receipts.values() for ref in receipt.deliveries
    }
    assert {state for _, _, recipient, state in deliveries if recipient == "tax"} == {"ACCEPTED"}
    assert {state for _, _, recipient, state in deliveries if recipient == "fx"} == {"RECEIVED"}

    # Every acknowledgement stored once; every one the hub confirmed is there; nothing else is.
    per_ack = Counter((delivery_id, status) for delivery_id, status, _ in acks)
    assert [key for key, n in per_ack.items() if n > 1] == []
    expected = {
        (delivery_id, status) for delivery_id, _, recipient, _ in deliveries for status in ANSWERS[recipient]
    }
    assert set(per_ack) == expected
    signatures = {(delivery_id, status): signature for delivery_id, status, signature in acks}
    for agency, recipient in recipients.items():
        assert set(recipient.confirmed) <= set(signatures), agency
        # Not merely some acknowledgement of that delivery and status: the very one the hub confirmed.
        replaced = [key for key, signature in recipient.stored.items() if signatures[key] != signature]
        assert replaced == [], f"{agency}: confirmed acknowledgements lost and stored anew: {replaced[:5]}"
        assert recipient.stored_twice == [], f"{agency}: stored (not duplicate) twice"

    return per_ack
