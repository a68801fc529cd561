"""Stored rows ⇄ protobuf messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from hub._proto.ackhub.v1 import operations_service_pb2 as ops_pb
from hub._proto.ackhub.v1 import types_pb2 as pb
from hub.errors import AckhubError, FieldViolation, InvalidArgument
from hub.exchange.claims import OutboundRecord
from hub.exchange.states import LEVEL_RECEIVED
from hub.store.models import DeliveryRow, EscalationNoteRow, EscalationRow, RecordRow
from hub.store.views import DeliveryView

_STATES = {
    "PENDING": pb.DELIVERY_STATE_PENDING,
    "SENT": pb.DELIVERY_STATE_SENT,
    "RECEIVED": pb.DELIVERY_STATE_RECEIVED,
    "ACCEPTED": pb.DELIVERY_STATE_ACCEPTED,
    "REJECTED": pb.DELIVERY_STATE_REJECTED,
}
STATE_NAMES = {value: name for name, value in _STATES.items()}
ACK_STATUS_NAMES = {
    pb.ACK_STATUS_RECEIVED: "RECEIVED",
    pb.ACK_STATUS_ACCEPTED: "ACCEPTED",
    pb.ACK_STATUS_REJECTED: "REJECTED",
}
ACK_STATUS_VALUES = {name: value for value, name in ACK_STATUS_NAMES.items()}
CLOSURE_NAMES = {pb.DELIVERY_CLOSURE_OPEN: "OPEN", pb.DELIVERY_CLOSURE_CLOSED: "CLOSED"}
_CASE_STATES = {
    "OPEN": ops_pb.ESCALATION_STATE_OPEN,
    "RESOLVED": ops_pb.ESCALATION_STATE_RESOLVED,
    "CLOSED_BY_ACK": ops_pb.ESCALATION_STATE_CLOSED_BY_ACK,
}
CASE_STATE_NAMES = {value: name for name, value in _CASE_STATES.items()}
_CASE_REASONS = {
    "DEADLINE_EXCEEDED": ops_pb.ESCALATION_REASON_DEADLINE_EXCEEDED,
    "ATTEMPTS_EXHAUSTED": ops_pb.ESCALATION_REASON_ATTEMPTS_EXHAUSTED,
    "REJECTED": ops_pb.ESCALATION_REASON_REJECTED,
    "ABORTED_BY_RECIPIENT": ops_pb.ESCALATION_REASON_ABORTED_BY_RECIPIENT,
}


def enum_name(names: Mapping[Any, str], value: int) -> str:
    """A request's enum filter as its stored name: "" when unset, the number itself when this version does
    not know it (so the query refuses it, naming the field, instead of ignoring the filter)."""
    return names.get(value, str(value)) if value else ""


def timestamp(ms: int | None) -> Timestamp | None:
    if ms is None:
        return None
    stamp = Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
MIN_SECONDS, MAX_SECONDS = -62_135_596_800, 253_402_300_799


def _in_range(stamp: Timestamp) -> bool:
    return MIN_SECONDS <= stamp.seconds <= MAX_SECONDS and 0 <= stamp.nanos <= 999_999_999


def timestamp_ms(stamp: Timestamp, field: str) -> int:
    """Milliseconds of a request's timestamp `field`; outside Timestamp's range it is INVALID_ARGUMENT."""
    if not _in_range(stamp):
        raise InvalidArgument(
            [FieldViolation(field, "is not a valid timestamp (years 1 to 9999, nanos 0..999999999)")]
        )
    return stamp.seconds * 1000 + stamp.nanos // 1_000_000


def whole_ms(stamp: Timestamp) -> int | None:
    """Milliseconds of a timestamp that is set and carries no sub-millisecond part; otherwise None."""
    if (stamp.seconds == 0 and stamp.nanos == 0) or not _in_range(stamp):
        return None
    if stamp.nanos % 1_000_000:
        return None
    return stamp.seconds * 1000 + stamp.nanos // 1_000_000


def level(required_level: str) -> pb.AckLevel.ValueType:
    return pb.ACK_LEVEL_RECEIVED if required_level == LEVEL_RECEIVED else pb.ACK_LEVEL_BUSINESS


def record(row: RecordRow | OutboundRecord, with_payload: bool = True) -> pb.Record:
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


def delivery(row: DeliveryRow | DeliveryView) -> pb.Delivery:
    return pb.Delivery(
        delivery_id=row.id,
        record_id=row.record_id,
        record_type=row.record_type,
        recipient=row.recipient,
        state=_STATES[row.state],
        required_level=level(row.required_level),
        attempt_count=row.attempts,
        create_time=timestamp(row.created_ms),
        next_attempt_time=timestamp(row.next_attempt_ms),
        deadline_time=timestamp(row.deadline_ms),
        last_attempt_time=timestamp(row.last_attempt_ms),
        received_time=timestamp(row.received_ms),
        final_time=timestamp(row.final_ms),
        reason=row.reason,
        escalation_id=row.escalation_id or "",
        closed=row.closed_ms is not None,
        close_time=timestamp(row.closed_ms),
        closed_by=ACK_STATUS_VALUES.get(row.closed_by or "", pb.ACK_STATUS_UNSPECIFIED),
    )


def escalation(row: EscalationRow, notes: list[EscalationNoteRow] | None = None) -> ops_pb.Escalation:
    lateness = None
    if row.late_ms is not None:
        lateness = Duration()
        lateness.FromMilliseconds(row.late_ms)
    return ops_pb.Escalation(
        escalation_id=row.id,
        delivery_id=row.delivery_id,
        record_id=row.record_id,
        record_type=row.record_type,
        recipient=row.recipient,
        level=row.level,
        reason=_CASE_REASONS[row.reason],
        detail=row.detail,
        state=_CASE_STATES[row.state],
        open_time=timestamp(row.opened_ms),
        next_step_time=timestamp(row.next_step_ms),
        close_time=timestamp(row.closed_ms),
        resolution=row.resolution,
        resolved_by=row.resolved_by,
        lateness=lateness,
        notes=[
            ops_pb.EscalationNote(author=n.author, text=n.text, create_time=timestamp(n.created_ms))
            for n in notes or []
        ],
    )


def error_detail(error: AckhubError) -> pb.ErrorDetail:
    """A refusal carried inside an answer (a batch's per-item result, a stream's AckResult)."""
    return pb.ErrorDetail(
        code=grpc.StatusCode[error.code].value[0],
        message=error.message,
        reason=error.reason,
        metadata=error.metadata,
    )
