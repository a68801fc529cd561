"""`AgencyClient`: publish records, and run a subscription that hands each delivery to a handler and
answers with a signed acknowledgement.

    client = AgencyClient("127.0.0.1:7443", "tax", key_id="tax-2026-01", private_key=key)
    client.publish("tax.refund_registration.acknowledged", b"...", subject_uscc="91110000600037341L")
    client.subscribe(lambda d: Verdict.accept("registered"))   # runs until client.close()
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from ackhub.audit.acks import AckFields, load_private_key, sign_ack
from ackhub.client.headers import AGENCY_HEADER
from ackhub.v1 import exchange_service_pb2 as pb
from ackhub.v1 import exchange_service_pb2_grpc as pb_grpc
from ackhub.v1 import types_pb2

_STATUS = {
    "RECEIVED": types_pb2.ACK_STATUS_RECEIVED,
    "ACCEPTED": types_pb2.ACK_STATUS_ACCEPTED,
    "REJECTED": types_pb2.ACK_STATUS_REJECTED,
}


class Clock(Protocol):
    """Where acknowledgement times come from (the hub's `ackhub.core.clock.ManualClock` fits, for tests)."""

    def now_ms(self) -> int: ...


class _WallClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    attempt: int
    record: types_pb2.Record
    business_ack_required: bool


@dataclass(frozen=True)
class Verdict:
    """What the handler decided. `None` from a handler means: say nothing (the hub will retry)."""

    status: str
    reason: str = ""
    retry_after_ms: int = 0

    @classmethod
    def received(cls) -> Verdict:
        return cls("RECEIVED")

    @classmethod
    def accept(cls, reason: str = "") -> Verdict:
        return cls("ACCEPTED", reason)

    @classmethod
    def reject(cls, reason: str) -> Verdict:
        return cls("REJECTED", reason)

    @classmethod
    def later(cls, retry_after_ms: int) -> Verdict:
        return cls("", retry_after_ms=retry_after_ms)


Handler = Callable[[Delivery], Verdict | list[Verdict] | None]


_MAX_BATCH = 256  # acknowledgements per stream message
_END = pb.SubscribeRequest()  # marks the end of the outgoing queue met while gathering a batch


@dataclass(frozen=True)
class Publication:
    """One record for `AgencyClient.publish_many`."""

    record_type: str
    payload: bytes
    subject_uscc: str = ""
    declaration_number: str = ""
    content_type: str = "application/json"
    request_id: str = ""  # empty: a new UUID; reuse one to make a retry idempotent
    schema_version: int = 0  # of the record type's schema; 0: its first version


class AgencyClient:
    def __init__(
        self,
        target: str,
        agency_id: str,
        *,
        key_id: str = "",
        private_key: Ed25519PrivateKey | None = None,
        clock: Clock | None = None,
        channel: grpc.Channel | None = None,
    ) -> None:
        self.agency_id = agency_id
        self.key_id = key_id
        self.private_key = private_key
        self.clock = clock or _WallClock()
        self.channel = channel or grpc.insecure_channel(target)
        self.stub = pb_grpc.ExchangeServiceStub(self.channel)
        self.metadata = ((AGENCY_HEADER, agency_id),)
        self._outgoing: queue.Queue[pb.SubscribeRequest | None] | None = None
        self._call: Any = None  # the open Subscribe call, to cancel it
        # Every AckResult the hub sent; drain it, or it grows with each acknowledgement.
        self.results: queue.Queue[pb.AckResult] = queue.Queue()
        # Acknowledgements sent on a stream whose result has not come back: sent again on the next
        # stream, so an acknowledgement lost with a dropped stream or a crashed hub is not lost for good.
        self._unconfirmed: dict[tuple[str, int], types_pb2.Acknowledgement] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @classmethod
    def from_key_file(
        cls, target: str, agency_id: str, key_id: str, key_file: str | Path, **options: Any
    ) -> AgencyClient:
        """A client signing with the private key in `key_file` (PEM PKCS#8, as `ackhub keys generate` writes,
        or the hex of the 32-byte seed)."""
        key = load_private_key(Path(key_file).read_text(encoding="utf-8"))
        return cls(target, agency_id, key_id=key_id, private_key=key, **options)

    # -- publishing ---------------------------------------------------------------------------------
    def publish(
        self,
        record_type: str,
        payload: bytes,
        *,
        subject_uscc: str = "",
        declaration_number: str = "",
        content_type: str = "application/json",
        request_id: str | None = None,
        schema_version: int = 0,
        timeout: float = 10,
    ) -> pb.Receipt:
        """`schema_version`: of the record type's schema the payload follows; 0 for the first one. A
        deprecated version is in `receipt.deprecation` (log it: it will be refused after its end date)."""
        response = self.stub.PublishRecord(
            pb.PublishRecordRequest(
                request_id=request_id or str(uuid.uuid4()),
                record_type=record_type,
                subject_uscc=subject_uscc,
                declaration_number=declaration_number,
                content_type=content_type,
                payload=payload,
                schema_version=schema_version,
            ),
            metadata=self.metadata,
            timeout=timeout,
        )
        receipt: pb.Receipt = response.receipt
        return receipt

    def publish_many(
        self, publications: Sequence[Publication], *, timeout: float = 30
    ) -> list[pb.PublishResult]:
        """Up to 500 records in one call, each answered in order with its receipt (`result.receipt`) or
        its own refusal (`result.error`, code and reason as PublishRecord would have raised them)."""
        response = self.stub.PublishRecords(
            pb.PublishRecordsRequest(
                records=[
                    pb.PublishRecordRequest(
                        request_id=p.request_id or str(uuid.uuid4()),
                        record_type=p.record_type,
                        subject_uscc=p.subject_uscc,
                        declaration_number=p.declaration_number,
                        content_type=p.content_type,
                        payload=p.payload,
                        schema_version=p.schema_version,
                    )
                    for p in publications
                ]
            ),
            metadata=self.metadata,
            timeout=timeout,
        )
        return list(response.results)

    # -- acknowledging ------------------------------------------------------------------------------
    def sign(
        self, record: types_pb2.Record, delivery_id: str, status: str, reason: str = ""
    ) -> types_pb2.Acknowledgement:
        """A signed acknowledgement of `record` as delivered under `delivery_id`."""
        if self.private_key is None:
            raise ValueError("this client has no private key to sign acknowledgements with")
        now = self.clock.now_ms()
        fields = AckFields(
            delivery_id,
            record.record_id,
            record.digest.removeprefix("sha256:"),
            self.agency_id,
            self.key_id,
            status,
            reason,
            now,
        )
        stamp = Timestamp()
        stamp.FromMilliseconds(now)
        return types_pb2.Acknowledgement(
            delivery_id=delivery_id,
            record_id=record.record_id,
            digest=record.digest,
            recipient=self.agency_id,
            key_id=self.key_id,
            status=_STATUS[status],
            reason=reason,
            ack_time=stamp,
            signature=sign_ack(self.private_key, fields),
        )

    def acknowledge(
        self, ack: types_pb2.Acknowledgement, timeout: float = 10
    ) -> pb.AcknowledgeDeliveryResponse:
        """Unary acknowledgement, for agencies that do not keep a stream."""
        return self.stub.AcknowledgeDelivery(  # type: ignore[no-any-return]
            pb.AcknowledgeDeliveryRequest(acknowledgement=ack), metadata=self.metadata, timeout=timeout
        )

    # -- subscribing --------------------------------------------------------------------------------
    def subscribe(
        self, handler: Handler, window: int = 0, on_open: Callable[[str], None] | None = None
    ) -> None:
        """Blocks, handing each delivery to `handler` and answering on the stream, until `close()` or the
        stream ends. Raises `grpc.RpcError` when the hub refuses or drops the stream."""
        outgoing: queue.Queue[pb.SubscribeRequest | None] = queue.Queue()
        outgoing.put(
            pb.SubscribeRequest(open=pb.SubscribeOpen(agency_id=self.agency_id, window=window, batches=True))
        )
        with self._lock:
            for ack in self._unconfirmed.values():  # sent on an earlier stream, never confirmed
                outgoing.put(pb.SubscribeRequest(acknowledgement=ack))
        self._outgoing = outgoing

        batching = threading.Event()  # set once the hub said it takes batches

        def requests() -> Iterator[pb.SubscribeRequest]:
            held: pb.SubscribeRequest | None = None
            while True:
                item, held = (held, None) if held is not None else (outgoing.get(), None)
                if item is None:
                    return
                if not (batching.is_set() and item.WhichOneof("kind") == "acknowledgement"):
                    yield item
                    continue
                # Every acknowledgement already waiting goes in one message.
                acks = [item.acknowledgement]
                while len(acks) < _MAX_BATCH:
                    try:
                        following = outgoing.get_nowait()
                    except queue.Empty:
                        break
                    if following is not None and following.WhichOneof("kind") == "acknowledgement":
                        acks.append(following.acknowledgement)
                    else:
                        held = following if following is not None else _END
                        break
                if len(acks) == 1:
                    yield item
                else:
                    yield pb.SubscribeRequest(acknowledgements=pb.AcknowledgementBatch(acknowledgements=acks))
                if held is _END:
                    return

        call = self.stub.Subscribe(requests(), metadata=self.metadata)
        self._call = call
        try:
            for response in call:
                kind = response.WhichOneof("kind")
                if kind == "opened":
                    if response.opened.batches:
                        batching.set()
                    if on_open is not None:
                        on_open(response.opened.session_id)
                elif kind == "ack_result":
                    self._confirmed(response.ack_result)
                elif kind == "ack_results":
                    for result in response.ack_results.results:
                        self._confirmed(result)
                elif kind == "delivery":
                    self._handle(handler, response.delivery, outgoing)
                elif kind == "deliveries":
                    for message in response.deliveries.deliveries:
                        self._handle(handler, message, outgoing)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                raise
        finally:
            outgoing.put(None)

    def _confirmed(self, result: pb.AckResult) -> None:
        with self._lock:  # stored or refused: either way, sending it again would not help
            self._unconfirmed.pop((result.delivery_id, result.status), None)
        self.results.put(result)

    def _handle(
        self, handler: Handler, message: pb.DeliveryMessage, outgoing: queue.Queue[pb.SubscribeRequest | None]
    ) -> None:
        delivery = Delivery(
            message.delivery_id,
            message.attempt,
            message.record,
            message.required_level == types_pb2.ACK_LEVEL_BUSINESS,
        )
        answer = handler(delivery)
        verdicts = answer if isinstance(answer, list) else [answer] if answer is not None else []
        for verdict in verdicts:
            if verdict.retry_after_ms:
                wait = Duration()
                wait.FromMilliseconds(verdict.retry_after_ms)
                outgoing.put(
                    pb.SubscribeRequest(
                        retry_after=pb.RetryAfter(delivery_id=message.delivery_id, retry_after=wait)
                    )
                )
            else:
                ack = self.sign(message.record, message.delivery_id, verdict.status, verdict.reason)
                with self._lock:
                    self._unconfirmed[(ack.delivery_id, ack.status)] = ack
                outgoing.put(pb.SubscribeRequest(acknowledgement=ack))

    def subscribe_forever(
        self, handler: Handler, window: int = 0, first_wait: float = 0.5, max_wait: float = 30.0
    ) -> None:
        """`subscribe`, reconnecting with exponential backoff whenever the stream breaks, until `close()`.
        Unconfirmed acknowledgements are sent again on each new stream."""
        wait = first_wait
        while not self._closed.is_set():
            try:
                self.subscribe(handler, window, on_open=lambda _session: None)
                wait = first_wait
            except grpc.RpcError as error:
                if error.code() in (
                    grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.INVALID_ARGUMENT,
                ):
                    raise  # reconnecting cannot fix these
                wait = min(wait * 2, max_wait)
            self._closed.wait(wait)

    def send(self, request: pb.SubscribeRequest) -> None:
        """Put a raw message on the open stream (for callers that answer outside the handler)."""
        if self._outgoing is None:
            raise RuntimeError("no open subscription")
        self._outgoing.put(request)

    def stop_subscription(self) -> None:
        if self._call is not None:
            self._call.cancel()

    def close(self) -> None:
        self._closed.set()
        self.stop_subscription()
        self.channel.close()


def start_subscription(client: AgencyClient, handler: Handler, window: int = 0) -> threading.Thread:
    """Run `client.subscribe` on a daemon thread; returns once the hub has opened the stream."""
    opened = threading.Event()
    thread = threading.Thread(
        target=client.subscribe,
        args=(handler, window, lambda _session: opened.set()),
        daemon=True,
        name=f"subscribe-{client.agency_id}",
    )
    thread.start()
    if not opened.wait(10):
        raise TimeoutError(f"the hub did not open a stream for {client.agency_id!r} within 10 s")
    return thread
