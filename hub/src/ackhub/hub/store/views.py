"""Plain, mutable copies of rows that the hot paths read with one SELECT and write back with one UPDATE
(ackhub.hub.store.bulk), without an ORM object per row."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(slots=True)
class DeliveryView:
    """The columns of a `deliveries` row (ackhub.hub.store.models DeliveryRow), same names."""

    seq: int
    id: str
    record_id: str
    record_type: str
    publisher: str
    recipient: str
    state: str
    required_level: str
    policy: str
    attempts: int
    created_ms: int
    next_attempt_ms: int | None
    deadline_ms: int
    deadline_check_ms: int | None
    last_attempt_ms: int | None
    received_ms: int | None
    final_ms: int | None
    reason: str
    escalation_id: str | None
    escalated: bool
    closed_ms: int | None
    closed_by: str | None


DELIVERY_COLUMNS = tuple(f.name for f in fields(DeliveryView))
