"""The tables. Times are integer milliseconds since the Unix epoch (UTC), identical on SQLite and PostgreSQL.

Two nullable timestamps drive the periodic work and are indexed so a sweep never scans:
`deliveries.next_attempt_ms` (set while another attempt may be needed) and `deliveries.deadline_check_ms`
(set while the deadline still has to be watched); `escalations.next_step_ms` likewise for the ladder.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def _ms(nullable: bool = False, index: bool = False) -> Column[int]:
    return Column(BigInteger, nullable=nullable, index=index)


class AgencyRow(SQLModel, table=True):
    __tablename__ = "agencies"

    id: str = Field(primary_key=True, max_length=64)
    name: str
    kind: str = Field(max_length=32)
    connector: str = Field(max_length=32, default="stream")


class AgencyKeyRow(SQLModel, table=True):
    __tablename__ = "agency_keys"

    agency_id: str = Field(primary_key=True, foreign_key="agencies.id", max_length=64)
    key_id: str = Field(primary_key=True, max_length=128)
    public_key: str = Field(sa_column=Column(Text, nullable=False))  # base64 of the 32 raw bytes
    added_ms: int = Field(sa_column=_ms())
    # Set when the key left the configuration; acknowledgements signed with it are then refused.
    retired_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))


class RecordRow(SQLModel, table=True):
    __tablename__ = "records"
    __table_args__ = (UniqueConstraint("publisher", "request_id", name="uq_records_publisher_request"),)

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, max_length=36)
    request_id: str = Field(max_length=64)
    publisher: str = Field(max_length=64, index=True)
    record_type: str = Field(max_length=128, index=True)
    subject_uscc: str | None = Field(default=None, max_length=18, index=True)
    declaration_number: str | None = Field(default=None, max_length=18, index=True)
    content_type: str = Field(max_length=128)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    digest: str = Field(max_length=64)  # lower-case hex SHA-256 of payload
    accepted_ms: int = Field(sa_column=_ms(index=True))


class DeliveryRow(SQLModel, table=True):
    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "recipient", "next_attempt_ms", "seq"),
        Index("ix_deliveries_deadline_check", "deadline_check_ms"),
    )

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, max_length=36)
    record_id: str = Field(foreign_key="records.id", max_length=36, index=True)
    record_type: str = Field(max_length=128)
    publisher: str = Field(max_length=64)
    recipient: str = Field(max_length=64, index=True)
    state: str = Field(max_length=16)  # PENDING SENT RECEIVED ACCEPTED REJECTED
    required_level: str = Field(max_length=16)  # RECEIVED or BUSINESS
    policy: str = Field(sa_column=Column(Text, nullable=False))  # the route recipient's settings, as JSON
    attempts: int = 0
    created_ms: int = Field(sa_column=_ms())
    next_attempt_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))
    deadline_ms: int = Field(sa_column=_ms())
    deadline_check_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))
    last_attempt_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))
    received_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))
    final_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))
    reason: str = ""
    escalation_id: str | None = Field(default=None, max_length=36)  # the latest case, open or closed
    escalated: bool = False  # a case is open now


class AttemptRow(SQLModel, table=True):
    __tablename__ = "attempts"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(max_length=36, index=True)
    number: int
    connector: str = Field(max_length=32)
    session_id: str = Field(default="", max_length=64)
    sent_ms: int = Field(sa_column=_ms())
    # SENT until the delivery is acknowledged (ACKED) or the recipient asked to wait (DEFERRED).
    outcome: str = Field(default="SENT", max_length=16)
    outcome_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))


class AcknowledgementRow(SQLModel, table=True):
    __tablename__ = "acknowledgements"
    __table_args__ = (UniqueConstraint("delivery_id", "status", name="uq_acknowledgements_delivery_status"),)

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(max_length=36, index=True)
    record_id: str = Field(max_length=36)
    recipient: str = Field(max_length=64)
    status: str = Field(max_length=16)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    ack_time_ms: int = Field(sa_column=_ms())
    key_id: str = Field(max_length=128)
    signature: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    received_ms: int = Field(sa_column=_ms())
    via: str = Field(max_length=32)


class EscalationRow(SQLModel, table=True):
    __tablename__ = "escalations"
    __table_args__ = (Index("ix_escalations_next_step", "next_step_ms"),)

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, max_length=36)
    delivery_id: str = Field(max_length=36, index=True)
    record_id: str = Field(max_length=36)
    record_type: str = Field(max_length=128)
    recipient: str = Field(max_length=64, index=True)
    level: int = 1
    reason: str = Field(max_length=32)  # DEADLINE_EXCEEDED ATTEMPTS_EXHAUSTED REJECTED
    detail: str = ""
    state: str = Field(max_length=16, index=True)  # OPEN RESOLVED CLOSED_BY_ACK
    opened_ms: int = Field(sa_column=_ms())
    next_step_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))
    closed_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))
    resolution: str = ""
    resolved_by: str = ""
    late_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))


class EscalationNoteRow(SQLModel, table=True):
    __tablename__ = "escalation_notes"

    id: int | None = Field(default=None, primary_key=True)
    escalation_id: str = Field(max_length=36, index=True)
    author: str = Field(max_length=128)
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_ms: int = Field(sa_column=_ms())


class AuditEventRow(SQLModel, table=True):
    """Append-only. The Merkle tree and signed checkpoints over these rows are the audit issue's part."""

    __tablename__ = "audit_events"

    seq: int | None = Field(default=None, primary_key=True)
    time_ms: int = Field(sa_column=_ms())
    kind: str = Field(max_length=64, index=True)
    actor: str = Field(max_length=128)
    record_id: str | None = Field(default=None, max_length=36, index=True)
    delivery_id: str | None = Field(default=None, max_length=36)
    escalation_id: str | None = Field(default=None, max_length=36)
    data: str = Field(sa_column=Column(Text, nullable=False))  # canonical JSON
