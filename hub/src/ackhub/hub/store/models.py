"""The tables. Times are integer milliseconds since the Unix epoch (UTC), identical on SQLite and PostgreSQL.

Two nullable timestamps drive the periodic work and are indexed so a sweep never scans:
`deliveries.next_attempt_ms` (set while another attempt may be needed) and `deliveries.deadline_check_ms`
(set while the deadline still has to be watched); `escalations.next_step_ms` likewise for the ladder.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, LargeBinary, SmallInteger, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from ackhub.hub.exchange.states import OPEN_CLAUSE


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
    __table_args__ = (
        UniqueConstraint("publisher", "request_id", name="uq_records_publisher_request"),
        # An enterprise's records, newest first (TraceService.ListRecords), without reading all of them.
        Index("ix_records_subject_uscc_seq", "subject_uscc", "seq"),
    )

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, max_length=36)
    request_id: str = Field(max_length=64)
    publisher: str = Field(max_length=64, index=True)
    record_type: str = Field(max_length=128, index=True)
    subject_uscc: str | None = Field(default=None, max_length=18)
    declaration_number: str | None = Field(default=None, max_length=18, index=True)
    content_type: str = Field(max_length=128)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    digest: str = Field(max_length=64)  # lower-case hex SHA-256 of payload
    accepted_ms: int = Field(sa_column=_ms(index=True))
    # The version of the record type's schema the payload was checked against (records stored before
    # versions were recorded were all version 1: the only one any type had).
    schema_version: int = Field(
        default=1, sa_column=Column(SmallInteger, nullable=False, server_default=text("1"))
    )


# Delivery states that stay rare however many records are stored (in flight, or rejected): indexed by
# state so ListRecords can filter by them without walking a big enterprise's records (ackhub.hub.exchange.trace).
RARE_DELIVERY_STATES = ("PENDING", "SENT", "REJECTED")
IN_RARE_DELIVERY_STATE = "state IN ('PENDING', 'SENT', 'REJECTED')"


class DeliveryRow(SQLModel, table=True):
    __tablename__ = "deliveries"
    __table_args__ = (
        # Partial: a closed delivery (no next attempt, no deadline to watch) leaves these indexes, so they
        # hold the open deliveries only, however many are stored (migration 0007).
        Index(
            "ix_deliveries_due",
            "recipient",
            "next_attempt_ms",
            "seq",
            sqlite_where=text("next_attempt_ms IS NOT NULL"),
            postgresql_where=text("next_attempt_ms IS NOT NULL"),
        ),
        Index(
            "ix_deliveries_deadline_check",
            "deadline_check_ms",
            sqlite_where=text("deadline_check_ms IS NOT NULL"),
            postgresql_where=text("deadline_check_ms IS NOT NULL"),
        ),
        Index(
            "ix_deliveries_rare_state",
            "state",
            "record_id",
            sqlite_where=text(IN_RARE_DELIVERY_STATE),
            postgresql_where=text(IN_RARE_DELIVERY_STATE),
        ),
        # The open deliveries: per agency, their count, the oldest and those past their deadline
        # (`/metrics`, the console's backlog) from this index alone (migration 0006).
        Index(
            "ix_deliveries_open",
            "recipient",
            "created_ms",
            "deadline_ms",
            sqlite_where=text(OPEN_CLAUSE),
            postgresql_where=text(OPEN_CLAUSE),
        ),
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
    # Set once, by the acknowledgement that closed the delivery (ackhub.hub.exchange.states): its status
    # (RECEIVED ACCEPTED REJECTED) and the hub's time of it. Both NULL while the delivery is open.
    closed_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))
    closed_by: str | None = Field(default=None, max_length=16)


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
    # Lookups by delivery use the unique index (it starts with delivery_id; a one-column index beside it
    # was one more page written per stored acknowledgement: migration 0005).
    __table_args__ = (UniqueConstraint("delivery_id", "status", name="uq_acknowledgements_delivery_status"),)

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(max_length=36)
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
    __table_args__ = (
        Index(
            "ix_escalations_next_step",
            "next_step_ms",
            sqlite_where=text("next_step_ms IS NOT NULL"),
            postgresql_where=text("next_step_ms IS NOT NULL"),
        ),
    )

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
    """Append-only; each event becomes a leaf of the audit Merkle tree (see ackhub.hub.ledger.log)."""

    __tablename__ = "audit_events"

    seq: int | None = Field(default=None, primary_key=True)
    time_ms: int = Field(sa_column=_ms())
    kind: str = Field(max_length=64, index=True)
    actor: str = Field(max_length=128)
    record_id: str | None = Field(default=None, max_length=36, index=True)
    delivery_id: str | None = Field(default=None, max_length=36)
    escalation_id: str | None = Field(default=None, max_length=36)
    data: str = Field(sa_column=Column(Text, nullable=False))  # canonical JSON
    # Set by the sequencer (ackhub.hub.ledger.log) once the event is a leaf of the Merkle tree: dense from 0.
    leaf_index: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True, unique=True))
    leaf_hash: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class AuditCheckpointRow(SQLModel, table=True):
    """A signed statement of the audit tree: its size and root hash (ackhub.audit.checkpoint)."""

    __tablename__ = "audit_checkpoints"

    tree_size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    time_ms: int = Field(sa_column=_ms())
    origin: str = Field(max_length=128)
    key_id: str = Field(max_length=64)
    public_key: str = Field(max_length=64)  # base64 of the 32 raw Ed25519 bytes
    signature: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class AuditCosignatureRow(SQLModel, table=True):
    """A witness's cosignature of the checkpoint of `tree_size` leaves: its C2SP tlog-cosignature signature
    line, as the witness answered it (ackhub.hub.witnesses)."""

    __tablename__ = "audit_cosignatures"

    tree_size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    witness: str = Field(primary_key=True, max_length=128)  # the witness's key name
    line: str = Field(sa_column=Column(Text, nullable=False))  # "— <name> <base64>\n"
    cosigned_ms: int = Field(sa_column=_ms())  # the cosignature's own timestamp
    received_ms: int = Field(sa_column=_ms())


class AuditWitnessRow(SQLModel, table=True):
    """What the hub last heard from each configured witness (shown in the console)."""

    __tablename__ = "audit_witnesses"

    name: str = Field(primary_key=True, max_length=128)
    # The size of the last checkpoint the witness cosigned (or said it holds, when it refused).
    tree_size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    state: str = Field(max_length=16)  # COSIGNED, REFUSED, UNREACHABLE
    detail: str = Field(sa_column=Column(Text, nullable=False))
    failures: int = 0  # consecutive failed attempts
    updated_ms: int = Field(sa_column=_ms())


class AuditTreeNodeRow(SQLModel, table=True):
    """The hash of a complete, aligned subtree of the audit tree — leaves [position * 2^level,
    (position + 1) * 2^level) — for the levels ackhub.hub.ledger.tree stores (multiples of its STRIDE)."""

    __tablename__ = "audit_tree_nodes"
    __table_args__ = {"sqlite_with_rowid": False}

    level: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    position: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


# -- permits (docs/permits.md). Quantities are integer thousandths of their unit; dates `YYYY-MM-DD` text.


class PermitRow(SQLModel, table=True):
    """A permit's current version. Draw-downs lock this row (`FOR UPDATE` on PostgreSQL)."""

    __tablename__ = "permits"
    __table_args__ = (UniqueConstraint("kind", "number", name="uq_permits_kind_number"),)

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, max_length=36)
    number: str = Field(max_length=64)
    kind: str = Field(max_length=64)
    issuer: str = Field(max_length=64, index=True)
    holder_uscc: str = Field(max_length=18, index=True)
    customs_office: str = Field(max_length=4)  # empty: any office
    version: int
    issue_date: str = Field(max_length=10)
    valid_from: str = Field(max_length=10)
    valid_to: str = Field(max_length=10)
    multi_batch: bool
    max_uses: int
    uses: int = 0  # declarations currently drawing on the permit
    tolerance_permille: int
    state: str = Field(max_length=16)  # ACTIVE REVOKED
    source: str = Field(max_length=16)  # PUSHED REGISTRY
    key_id: str = Field(max_length=128)
    signature: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    document: str = Field(sa_column=Column(Text, nullable=False))  # the current version, as JSON
    created_ms: int = Field(sa_column=_ms())
    updated_ms: int = Field(sa_column=_ms())
    revoked_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))
    revoke_reason: str = ""


class PermitVersionRow(SQLModel, table=True):
    """Every version ever registered, with the issuer's signature: the permit's history."""

    __tablename__ = "permit_versions"
    __table_args__ = (UniqueConstraint("permit_id", "version", name="uq_permit_versions_permit_version"),)

    id: int | None = Field(default=None, primary_key=True)
    permit_id: str = Field(max_length=36, index=True)
    version: int
    request_id: str = Field(default="", max_length=64)
    document: str = Field(sa_column=Column(Text, nullable=False))  # JSON
    key_id: str = Field(max_length=128)
    signature: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_ms: int = Field(sa_column=_ms())
    created_by: str = Field(max_length=128)


class PermitLineRow(SQLModel, table=True):
    """A goods line of the current version and how much of it is drawn."""

    __tablename__ = "permit_lines"
    __table_args__ = (UniqueConstraint("permit_id", "line_number", name="uq_permit_lines_permit_line"),)

    id: int | None = Field(default=None, primary_key=True)
    permit_id: str = Field(max_length=36, index=True)
    line_number: int
    hs_code: str = Field(max_length=13)
    quantity_milli: int = Field(sa_column=Column(BigInteger, nullable=False))
    unit: str = Field(max_length=16)
    bulk: bool = False
    drawn_milli: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class DrawDownRow(SQLModel, table=True):
    __tablename__ = "permit_draw_downs"
    __table_args__ = (UniqueConstraint("requested_by", "request_id", name="uq_permit_draw_downs_request"),)

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, max_length=36)
    request_id: str = Field(max_length=64)
    requested_by: str = Field(max_length=128)
    permit_id: str = Field(max_length=36, index=True)
    line_number: int
    declaration_number: str = Field(max_length=18, index=True)
    item_number: int
    hs_code: str = Field(max_length=13)
    quantity_milli: int = Field(sa_column=Column(BigInteger, nullable=False))
    unit: str = Field(max_length=16)
    counted_use: bool
    state: str = Field(max_length=16)  # DRAWN RELEASED
    created_ms: int = Field(sa_column=_ms())
    released_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))
    release_reason: str = ""
    released_by: str = Field(default="", max_length=128)
    usage_record_id: str = Field(max_length=36)
    release_record_id: str = Field(default="", max_length=36)


class PermitCheckRow(SQLModel, table=True):
    """One verified goods line: what was asked, by whom, and the verdict."""

    __tablename__ = "permit_checks"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, max_length=36)
    time_ms: int = Field(sa_column=_ms(index=True))
    actor: str = Field(max_length=128)
    kind: str = Field(max_length=64)
    number: str = Field(max_length=64, index=True)
    permit_id: str | None = Field(default=None, max_length=36)
    permit_version: int | None = None
    declarant_uscc: str = Field(max_length=18)
    customs_office: str = Field(max_length=4)
    declaration_number: str = Field(default="", max_length=18)
    item_number: int
    hs_code: str = Field(max_length=13)
    quantity_milli: int = Field(sa_column=Column(BigInteger, nullable=False))
    unit: str = Field(max_length=16)
    check_date: str = Field(max_length=10)
    verdict: str = Field(max_length=16)  # VALID INVALID
    reasons: str = Field(sa_column=Column(Text, nullable=False))  # comma-separated reason names


class HubProcessRow(SQLModel, table=True):
    """A running hub process sharing this database (ackhub.hub.store.cluster): registered at start, its
    heartbeat renewed every sweep interval, removed at a clean stop. Processes whose heartbeat is recent
    are the deployment: they must run the same routes and agencies."""

    __tablename__ = "hub_processes"

    id: str = Field(primary_key=True, max_length=36)
    host: str = Field(max_length=255)
    pid: int
    listen: str = Field(max_length=255)
    started_ms: int = Field(sa_column=_ms())
    heartbeat_ms: int = Field(sa_column=_ms())
    config_digest: str = Field(max_length=64)  # SHA-256 of `config` (hex)
    config: str = Field(sa_column=Column(Text, nullable=False))  # canonical JSON of what must agree
    # JSON, renewed with each heartbeat: {"streams": {agency: open streams}, "breakers": {agency: state}}
    status: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class AgencyActivityRow(SQLModel, table=True):
    """When each agency was last seen (ackhub.hub.store.activity): written with the processes'
    heartbeats, so that no transaction of the exchange waits for these rows."""

    __tablename__ = "agency_activity"

    agency: str = Field(primary_key=True, max_length=64)
    last_ack_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))
    last_publish_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))


class HubSecretRow(SQLModel, table=True):
    """Secrets every process of one deployment shares (the console's session key): made by whichever
    process needs one first."""

    __tablename__ = "hub_secrets"

    name: str = Field(primary_key=True, max_length=64)
    value: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_ms: int = Field(sa_column=_ms())


class IdempotentRequestRow(SQLModel, table=True):
    """One mutating call made with a `request_id` (AIP-155): the digest of what was asked and the response
    that was answered, so that the same request again gets the same answer and another request under the
    same id is refused (ackhub.hub.store.idempotency). Written in the transaction of the change itself."""

    __tablename__ = "idempotent_requests"

    caller: str = Field(primary_key=True, max_length=160)  # the principal's actor, e.g. "operator:alice"
    rpc: str = Field(primary_key=True, max_length=64)  # the method name, e.g. "ResolveEscalation"
    request_id: str = Field(primary_key=True, max_length=64)
    request_digest: str = Field(max_length=64)  # hex SHA-256 of the request without its request_id
    response: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # the serialized response
    created_ms: int = Field(sa_column=_ms(index=True))


# The cases' tables live in their own module; imported here so that one metadata holds every table.
from ackhub.hub.store import cases as _cases  # noqa: E402,F401
from ackhub.hub.store import portal_models  # noqa: E402, F401  (the portal's tables, on the same metadata)
