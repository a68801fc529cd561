"""What the console's pages show, read from the store within the operator's jurisdiction (the clauses of
ackhub.hub.auth.policy). Every function is blocking: run it with `Database.run`."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field

from sqlalchemy import case, func, or_
from sqlmodel import Session, col, select

from ackhub.audit.acks import AckFields, load_public_key, verify_ack
from ackhub.core.principal import Principal
from ackhub.hub.auth import policy
from ackhub.hub.auth.identity import HEADQUARTERS
from ackhub.hub.exchange.states import ACCEPTED, CASE_OPEN, REJECTED
from ackhub.hub.exchange.trace import Traced, trace_record
from ackhub.hub.store.activity import Seen, last_seen
from ackhub.hub.store.db import Database
from ackhub.hub.store.models import (
    AcknowledgementRow,
    AgencyKeyRow,
    AttemptRow,
    AuditCheckpointRow,
    AuditEventRow,
    AuditWitnessRow,
    DeliveryRow,
    DrawDownRow,
    EscalationRow,
    PermitCheckRow,
    PermitRow,
    PermitVersionRow,
    RecordRow,
)

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
FEED_KINDS = (
    "record.published",
    "delivery.received",
    "delivery.accepted",
    "delivery.rejected",
    "escalation.opened",
    "escalation.stepped",
    "escalation.resolved",
    "escalation.closed_by_ack",
    "escalation.note_added",
    "delivery.redelivery_requested",
)


# What a delivery's state means to an operator; the console colours and words it by this, in both languages.
ACCEPTED_MEANING, REJECTED_MEANING, WAITING, CLOSED_MEANING = "accepted", "rejected", "waiting", "closed"


def meaning(state: str, closed: bool) -> str:
    """accepted (green), rejected (red), waiting for the acknowledgement the route requires (amber), or
    closed without a business answer, i.e. RECEIVED on a RECEIVED route (grey)."""
    if state == ACCEPTED:
        return ACCEPTED_MEANING
    if state == REJECTED:
        return REJECTED_MEANING
    return CLOSED_MEANING if closed else WAITING


@dataclass(frozen=True)
class OpenDeliveries:
    """An agency's open deliveries: how many, when the oldest was created, how many are past deadline."""

    count: int
    oldest_ms: int
    past_deadline: int


def open_deliveries(session: Session, who: Principal, now_ms: int) -> dict[str, OpenDeliveries]:
    """Per recipient, read through the partial index of open deliveries (ix_deliveries_open): its cost
    follows the backlog, not the number of deliveries stored."""
    rows = session.exec(
        select(
            DeliveryRow.recipient,
            func.count(),
            func.min(DeliveryRow.created_ms),
            func.sum(case((col(DeliveryRow.deadline_ms) < now_ms, 1), else_=0)),
        )
        .where(col(DeliveryRow.closed_ms).is_(None), policy.delivery_clause(who))
        .group_by(DeliveryRow.recipient)
    ).all()
    return {
        recipient: OpenDeliveries(int(count), int(oldest), int(late or 0))
        for recipient, count, oldest, late in rows
    }


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(q * len(sorted_values) + 0.5)))
    return float(sorted_values[rank - 1])


@dataclass(frozen=True)
class Overview:
    per_minute: list[int]  # 60 values, oldest first
    states: dict[tuple[str, bool], int]  # (state, closed) → deliveries
    backlog: dict[str, int]  # agency → open deliveries
    latency: dict[str, tuple[float, float, float]]  # agency → p50, p95, p99 (ms)
    open_cases: dict[str, int]  # agency → open cases
    cases_by_level: dict[int, int]


def overview(db: Database, who: Principal, now_ms: int) -> Overview:
    start = now_ms - HOUR_MS
    with db.transaction() as session:
        minutes = session.exec(
            select(col(RecordRow.accepted_ms)).where(
                policy.record_clause(who), col(RecordRow.accepted_ms) >= start
            )
        ).all()
        closed = col(DeliveryRow.closed_ms).is_not(None)
        states = session.exec(
            select(DeliveryRow.state, closed, func.count())
            .where(policy.delivery_clause(who))
            .group_by(DeliveryRow.state, closed)
        ).all()
        backlog = {agency: found.count for agency, found in open_deliveries(session, who, now_ms).items()}
        acks = session.exec(
            select(AcknowledgementRow.recipient, AcknowledgementRow.received_ms, DeliveryRow.created_ms)
            .join(DeliveryRow, col(DeliveryRow.id) == col(AcknowledgementRow.delivery_id))
            .where(policy.delivery_clause(who), col(AcknowledgementRow.received_ms) >= start)
            .order_by(col(AcknowledgementRow.received_ms).desc())
            .limit(50_000)
        ).all()
        cases = session.exec(
            select(EscalationRow.recipient, EscalationRow.level).where(
                policy.escalation_clause(who), EscalationRow.state == CASE_OPEN
            )
        ).all()
    per_minute = [0] * 60
    for accepted in minutes:
        per_minute[min(59, max(0, (accepted - start) // MINUTE_MS))] += 1
    samples: dict[str, list[int]] = {}
    for recipient, received, created in acks:
        samples.setdefault(recipient, []).append(max(0, received - created))
    latency = {}
    for agency, values in sorted(samples.items()):
        values.sort()
        latency[agency] = (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99))
    open_cases: dict[str, int] = {}
    by_level: dict[int, int] = {}
    for recipient, level in cases:
        open_cases[recipient] = open_cases.get(recipient, 0) + 1
        by_level[level] = by_level.get(level, 0) + 1
    return Overview(
        per_minute,
        {(state, bool(done)): int(count) for state, done, count in states},
        dict(sorted(backlog.items())),
        latency,
        dict(sorted(open_cases.items())),
        dict(sorted(by_level.items())),
    )


# --- the live feed ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedEvent:
    seq: int
    time_ms: int
    kind: str
    actor: str
    record_id: str
    record_type: str
    publisher: str
    delivery_id: str
    detail: str


def latest_seq(db: Database) -> int:
    with db.transaction() as session:
        return int(session.exec(select(func.max(AuditEventRow.seq))).one() or 0)


def feed_events(
    db: Database, who: Principal, after_seq: int, agency: str, record_type: str, limit: int = 200
) -> list[FeedEvent]:
    """Feed-worthy audit events with `seq > after_seq` that `who` may see, oldest first."""
    query = (
        select(AuditEventRow, RecordRow.record_type, RecordRow.publisher)
        .join(RecordRow, col(RecordRow.id) == col(AuditEventRow.record_id))
        .where(
            col(AuditEventRow.seq) > after_seq,
            col(AuditEventRow.kind).in_(FEED_KINDS),
            policy.record_clause(who),
        )
    )
    if agency:
        addressed = select(DeliveryRow.id).where(DeliveryRow.recipient == agency)
        query = query.where(
            or_(col(RecordRow.publisher) == agency, col(AuditEventRow.delivery_id).in_(addressed))
        )
    if record_type:
        query = query.where(RecordRow.record_type == record_type)
    query = query.order_by(col(AuditEventRow.seq)).limit(limit)
    with db.transaction() as session:
        rows = session.exec(query).all()
    found = []
    for event, rtype, publisher in rows:
        data = json.loads(event.data)
        detail = str(data.get("reason") or data.get("text") or data.get("status") or "")
        found.append(
            FeedEvent(
                event.seq or 0,
                event.time_ms,
                event.kind,
                event.actor,
                event.record_id or "",
                rtype,
                publisher,
                event.delivery_id or "",
                detail[:200],
            )
        )
    return found


# --- one record -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AckView:
    status: str
    time_ms: int
    key_id: str
    via: str
    reason: str
    signature: str  # valid | invalid | unknown_key


@dataclass(frozen=True)
class RecordView:
    traced: Traced
    attempts: dict[str, list[AttemptRow]]
    acks: dict[str, list[AckView]]
    inclusion: dict[str, int]  # signed | sequenced | pending → events
    checkpoint_size: int


def record_view(db: Database, who: Principal, record_id: str) -> RecordView:
    """The record's timelines (ackhub.hub.exchange.trace) with attempts, checked acknowledgements and how much
    of its audit trail is covered by a signed checkpoint. NotFound outside the jurisdiction."""
    traced = trace_record(db, who, record_id)
    ids = [d.id for d in traced.deliveries]
    with db.transaction() as session:
        attempts = session.exec(
            select(AttemptRow).where(col(AttemptRow.delivery_id).in_(ids)).order_by(col(AttemptRow.id))
        ).all()
        acks = session.exec(
            select(AcknowledgementRow)
            .where(col(AcknowledgementRow.delivery_id).in_(ids))
            .order_by(col(AcknowledgementRow.id))
        ).all()
        keys = {
            (k.agency_id, k.key_id): k.public_key
            for k in session.exec(
                select(AgencyKeyRow).where(col(AgencyKeyRow.agency_id).in_({a.recipient for a in acks}))
            )
        }
        leaves = session.exec(
            select(AuditEventRow.leaf_index).where(AuditEventRow.record_id == record_id)
        ).all()
        size = session.exec(select(func.max(AuditCheckpointRow.tree_size))).one() or 0
    by_delivery: dict[str, list[AttemptRow]] = {i: [] for i in ids}
    for attempt in attempts:
        by_delivery[attempt.delivery_id].append(attempt)
    ack_views: dict[str, list[AckView]] = {i: [] for i in ids}
    for ack in acks:
        ack_views[ack.delivery_id].append(_ack_view(traced, ack, keys.get((ack.recipient, ack.key_id))))
    inclusion = {"signed": 0, "sequenced": 0, "pending": 0}
    for leaf in leaves:
        inclusion["pending" if leaf is None else "signed" if leaf < size else "sequenced"] += 1
    return RecordView(traced, by_delivery, ack_views, inclusion, int(size))


def _ack_view(traced: Traced, ack: AcknowledgementRow, public_key: str | None) -> AckView:
    status = "unknown_key"
    if public_key is not None:
        fields = AckFields(
            ack.delivery_id,
            ack.record_id,
            traced.record.digest,
            ack.recipient,
            ack.key_id,
            ack.status,
            ack.reason,
            ack.ack_time_ms,
        )
        status = "valid" if verify_ack(load_public_key(public_key), fields, ack.signature) else "invalid"
    return AckView(ack.status, ack.received_ms, ack.key_id, ack.via, ack.reason, status)


# --- agencies, permits, audit -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AgencyView:
    id: str
    name: str
    kind: str
    connector: str
    last_seen_ms: int | None
    backlog: OpenDeliveries  # its open deliveries
    fingerprints: list[tuple[str, str, bool]] = field(default_factory=list)  # key id, fingerprint, retired


def fingerprint(public_key_b64: str) -> str:
    """SHA-256 of the raw key bytes, first 16 hex digits in groups of four."""
    digest = hashlib.sha256(base64.b64decode(public_key_b64)).hexdigest()[:16]
    return ":".join(digest[i : i + 4] for i in range(0, 16, 4))


def agencies(
    db: Database,
    who: Principal,
    configured: list[tuple[str, str, str, str]],
    now_ms: int,
    unwritten: Seen | None = None,
) -> list[AgencyView]:
    """`unwritten`: what the rendering process saw since its last heartbeat (ackhub.hub.store.activity)."""
    with db.transaction() as session:
        backlog = open_deliveries(session, who, now_ms)
        seen = last_seen(session, unwritten or {})
        keys = session.exec(select(AgencyKeyRow).order_by(col(AgencyKeyRow.added_ms))).all()
    prints: dict[str, list[tuple[str, str, bool]]] = {}
    for key in keys:
        prints.setdefault(key.agency_id, []).append(
            (key.key_id, fingerprint(key.public_key), key.retired_ms is not None)
        )
    views = []
    for agency_id, name, kind, connector in configured:
        views.append(
            AgencyView(
                agency_id,
                name,
                kind,
                connector,
                seen.get(agency_id),
                backlog.get(agency_id, OpenDeliveries(0, now_ms, 0)),
                prints.get(agency_id, []),
            )
        )
    return views


@dataclass(frozen=True)
class PermitResult:
    permit: PermitRow
    versions: list[PermitVersionRow]
    checks: list[PermitCheckRow]
    draw_downs: list[DrawDownRow]


def permits(db: Database, who: Principal, number: str) -> list[PermitResult]:
    """Permits with this number the operator may see: headquarters all; an office or district the permits
    valid at its offices (and those valid at any office), with the draw-downs of its declarations."""
    results = []
    with db.transaction() as session:
        rows = session.exec(select(PermitRow).where(PermitRow.number == number.strip())).all()
        for row in rows:
            if not _permit_visible(who, row.customs_office):
                continue
            versions = session.exec(
                select(PermitVersionRow)
                .where(PermitVersionRow.permit_id == row.id)
                .order_by(col(PermitVersionRow.version))
            ).all()
            checks = [
                c
                for c in session.exec(
                    select(PermitCheckRow)
                    .where(PermitCheckRow.permit_id == row.id)
                    .order_by(col(PermitCheckRow.seq).desc())
                    .limit(200)
                ).all()
                if policy.in_jurisdiction(who, c.declaration_number or c.customs_office)
            ]
            draws = [
                d
                for d in session.exec(
                    select(DrawDownRow).where(DrawDownRow.permit_id == row.id).order_by(col(DrawDownRow.seq))
                ).all()
                if policy.in_jurisdiction(who, d.declaration_number)
            ]
            results.append(PermitResult(row, list(versions), checks, draws))
    return results


def _permit_visible(who: Principal, office: str) -> bool:
    if who.kind == "administrator" or who.jurisdiction == HEADQUARTERS or not office:
        return True
    return office.startswith(who.jurisdiction) or who.jurisdiction.startswith(office)


def checkpoints(db: Database, limit: int = 10) -> list[AuditCheckpointRow]:
    with db.transaction() as session:
        return list(
            session.exec(
                select(AuditCheckpointRow).order_by(col(AuditCheckpointRow.tree_size).desc()).limit(limit)
            ).all()
        )


@dataclass(frozen=True)
class WitnessView:
    name: str
    url: str
    state: str  # COSIGNED, REFUSED, UNREACHABLE or PENDING (nothing heard yet)
    tree_size: int
    detail: str
    updated_ms: int | None


def witnesses(db: Database, configured: list[tuple[str, str]]) -> list[WitnessView]:
    """Each configured witness (name, url) with what the hub last heard from it (ackhub.hub.witnesses)."""
    with db.transaction() as session:
        rows = {row.name: row for row in session.exec(select(AuditWitnessRow))}
    views = []
    for name, url in configured:
        row = rows.get(name)
        views.append(
            WitnessView(name, url, row.state, row.tree_size, row.detail, row.updated_ms)
            if row is not None
            else WitnessView(name, url, "PENDING", 0, "", None)
        )
    return views


def audit_events(db: Database, who: Principal, limit: int = 50) -> list[AuditEventRow]:
    """The newest audit events: an operator outside headquarters sees those of its records only."""
    query = select(AuditEventRow)
    if not policy.in_jurisdiction(who, ""):
        query = query.where(
            col(AuditEventRow.record_id).in_(select(RecordRow.id).where(policy.record_clause(who)))
        )
    with db.transaction() as session:
        return list(session.exec(query.order_by(col(AuditEventRow.seq).desc()).limit(limit)).all())
