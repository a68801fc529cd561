"""Stored rows ⇄ protobuf messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from ackhub.core.errors import AckhubError, FieldViolation, InvalidArgument
from ackhub.core.wire import ACK_STATUS_NAMES as ACK_STATUS_NAMES
from ackhub.core.wire import MAX_SECONDS as MAX_SECONDS
from ackhub.core.wire import MIN_SECONDS as MIN_SECONDS
from ackhub.core.wire import in_range
from ackhub.core.wire import level as level
from ackhub.core.wire import record as record
from ackhub.core.wire import timestamp as timestamp
from ackhub.core.wire import whole_ms as whole_ms
from ackhub.hub.store.models import DeliveryRow, EscalationNoteRow, EscalationRow
from ackhub.hub.store.views import DeliveryView
from ackhub.v1 import operations_service_pb2 as ops_pb
from ackhub.v1 import types_pb2 as pb

_STATES = {
    "PENDING": pb.DELIVERY_STATE_PENDING,
    "SENT": pb.DELIVERY_STATE_SENT,
    "RECEIVED": pb.DELIVERY_STATE_RECEIVED,
    "ACCEPTED": pb.DELIVERY_STATE_ACCEPTED,
    "REJECTED": pb.DELIVERY_STATE_REJECTED,
}
STATE_NAMES = {value: name for name, value in _STATES.items()}
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
    "WITNESS_REFUSED": ops_pb.ESCALATION_REASON_WITNESS_REFUSED,
}


def enum_name(names: Mapping[Any, str], value: int) -> str:
    """A request's enum filter as its stored name: "" when unset, the number itself when this version does
    not know it (so the query refuses it, naming the field, instead of ignoring the filter)."""
    return names.get(value, str(value)) if value else ""


def timestamp_ms(stamp: Timestamp, field: str) -> int:
    """Milliseconds of a request's timestamp `field`; outside Timestamp's range it is INVALID_ARGUMENT."""
    if not in_range(stamp):
        raise InvalidArgument(
            [FieldViolation(field, "is not a valid timestamp (years 1 to 9999, nanos 0..999999999)")]
        )
    return stamp.seconds * 1000 + stamp.nanos // 1_000_000


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
