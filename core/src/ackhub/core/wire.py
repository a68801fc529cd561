"""The exchange's messages on the wire ⇄ what plugins handle: one conversion for the hub's API and for the
connectors that speak gRPC to agencies."""

from __future__ import annotations

from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from ackhub.core.connector import AckInput
from ackhub.v1 import types_pb2 as pb

ACK_STATUS_NAMES = {
    pb.ACK_STATUS_RECEIVED: "RECEIVED",
    pb.ACK_STATUS_ACCEPTED: "ACCEPTED",
    pb.ACK_STATUS_REJECTED: "REJECTED",
}


class RecordLike(Protocol):
    """A stored record as a connector or the API sees it."""

    @property
    def id(self) -> str: ...
    @property
    def record_type(self) -> str: ...
    @property
    def publisher(self) -> str: ...
    @property
    def subject_uscc(self) -> str | None: ...
    @property
    def declaration_number(self) -> str | None: ...
    @property
    def content_type(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def digest(self) -> str: ...
    @property
    def accepted_ms(self) -> int: ...
    @property
    def schema_version(self) -> int: ...


def timestamp(ms: int | None) -> Timestamp | None:
    if ms is None:
        return None
    stamp = Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
MIN_SECONDS, MAX_SECONDS = -62_135_596_800, 253_402_300_799


def in_range(stamp: Timestamp) -> bool:
    return MIN_SECONDS <= stamp.seconds <= MAX_SECONDS and 0 <= stamp.nanos <= 999_999_999


def whole_ms(stamp: Timestamp) -> int | None:
    """Milliseconds of a timestamp that is set and carries no sub-millisecond part; otherwise None."""
    if (stamp.seconds == 0 and stamp.nanos == 0) or not in_range(stamp):
        return None
    if stamp.nanos % 1_000_000:
        return None
    return stamp.seconds * 1000 + stamp.nanos // 1_000_000


def level(required_level: str) -> pb.AckLevel.ValueType:
    return pb.ACK_LEVEL_RECEIVED if required_level == "RECEIVED" else pb.ACK_LEVEL_BUSINESS


def record(row: RecordLike, with_payload: bool = True) -> pb.Record:
    return pb.Record(
        record_id=row.id,
        record_type=row.record_type,
        publisher=row.publisher,
        subject_uscc=row.subject_uscc or "",
        declaration_number=row.declaration_number or "",
        content_type=row.content_type,
        payload=row.payload if with_payload else b"",
        digest=f"sha256:{row.digest}",
        accept_time=timestamp(row.accepted_ms),
        schema_version=row.schema_version,
    )


def ack_input(message: pb.Acknowledgement) -> AckInput:
    """An acknowledgement as received, before any check (the exchange checks it)."""
    return AckInput(
        delivery_id=message.delivery_id,
        record_id=message.record_id,
        digest=message.digest,
        recipient=message.recipient,
        key_id=message.key_id,
        status=ACK_STATUS_NAMES.get(message.status, ""),
        reason=message.reason,
        time_ms=whole_ms(message.ack_time) if message.HasField("ack_time") else None,
        signature=message.signature,
    )
