"""Tracing records for enterprises: their own records (by the USCC in their token) and each record's
timeline per recipient, read from the audit log. An enterprise asking for another's record hears NOT_FOUND,
exactly as for a record that does not exist; operators see the records of their jurisdiction
(ackhub.hub.auth.policy)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, text
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from ackhub.core.errors import FieldViolation, InvalidArgument, NotFound
from ackhub.core.principal import Principal
from ackhub.hub.auth import policy
from ackhub.hub.exchange.queries import Page
from ackhub.hub.exchange.states import (
    CLOSED,
    DELIVERY_STATES,
    LEVEL_RECEIVED,
    OPEN,
    RECEIVED,
    check_closure_filter,
)
from ackhub.hub.exchange.validation import Violations
from ackhub.hub.pagination import decode_token, encode_token, page_size
from ackhub.hub.store.db import Database
from ackhub.hub.store.models import (
    IN_RARE_DELIVERY_STATE,
    RARE_DELIVERY_STATES,
    AuditEventRow,
    DeliveryRow,
    RecordRow,
)

RARE_READ = 20_000  # deliveries in a rare state read at most, before checking the caller's records instead
# audit event kind → timeline kind (names of TimelineEventKind without the prefix); others are not shown
TIMELINE_KINDS = {
    "record.published": "PUBLISHED",
    "delivery.attempt": "ATTEMPT",
    "delivery.received": "RECEIVED",
    "delivery.accepted": "ACCEPTED",
    "delivery.rejected": "REJECTED",
    "escalation.opened": "ESCALATED",
    "escalation.stepped": "ESCALATION_STEPPED",
    "escalation.resolved": "ESCALATION_RESOLVED",
    "escalation.closed_by_ack": "ESCALATION_CLOSED_BY_ACK",
    "delivery.redelivery_requested": "REDELIVERY_REQUESTED",
    "delivery.deferred": "DEFERRED",
    "delivery.aborted": "ABORTED",
    # Cases between parties about the record (hub/cases/): shown on the delivery they are about, or on
    # every recipient's timeline when they are about the whole record.
    "case.opened": "CASE_OPENED",
    "case.message_added": "CASE_MESSAGE",
    "case.resolved": "CASE_RESOLVED",
    "case.withdrawn": "CASE_WITHDRAWN",
    "case.reopened": "CASE_REOPENED",
    "case.deadline_missed": "CASE_ESCALATED",
    "case.stepped": "CASE_ESCALATED",
}
CLOSED_KIND = "CLOSED"  # not an audit event: shown after the acknowledgement that closed the delivery


@dataclass(frozen=True)
class TimelineEntry:
    time_ms: int
    kind: str
    actor: str
    detail: str
    reason: str
    audit_seq: int


@dataclass(frozen=True)
class Traced:
    record: RecordRow
    deliveries: list[DeliveryRow]
    timelines: dict[str, list[TimelineEntry]]  # delivery id → entries, oldest first


def visible_record(session: Session, caller: Principal, record_id: str) -> RecordRow:
    """The record if the caller may see it; NotFound, the same answer, when it may not or it is absent."""
    if not record_id:
        raise InvalidArgument([FieldViolation("record_id", "is required")])
    record = session.exec(select(RecordRow).where(RecordRow.id == record_id)).first()
    if record is None or policy.visible_deliveries(caller, record, ()) is None:
        raise NotFound("record", record_id)
    return record


def deliveries_of(session: Session, record_ids: list[str]) -> dict[str, list[DeliveryRow]]:
    found: dict[str, list[DeliveryRow]] = {r: [] for r in record_ids}
    for delivery in session.exec(
        select(DeliveryRow).where(col(DeliveryRow.record_id).in_(record_ids)).order_by(col(DeliveryRow.seq))
    ):
        found[delivery.record_id].append(delivery)
    return found


def list_records(
    db: Database,
    caller: Principal,
    *,
    declaration_number: str,
    record_type: str,
    start_ms: int | None,
    end_ms: int | None,
    state: str,
    size: int,
    token: str,
    closure: str = "",
) -> Page[tuple[RecordRow, list[DeliveryRow]]]:
    bad = Violations()
    if declaration_number:
        bad.declaration_number("declaration_number", declaration_number)
    if state and state not in DELIVERY_STATES:
        bad.add("state", f"unknown state {state!r}")
    contradiction = check_closure_filter(state, closure, same_delivery=False)
    if contradiction:
        bad.add("closure", contradiction)
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        bad.add("end_time", "must be after start_time")
    bad.raise_if_any()
    filters: dict[str, object] = {
        "who": caller.actor,
        "declaration": declaration_number,
        "type": record_type,
        "start": start_ms,
        "end": end_ms,
        "state": state,
        "closure": closure,
    }
    limit = page_size(size)
    after = decode_token(token, filters)
    query = select(RecordRow).where(policy.record_clause(caller))
    if declaration_number:
        # Through the declaration number's index, whatever else the caller's clause could use: without
        # statistics SQLite would walk all of an enterprise's records by its USCC instead.
        same_number = select(RecordRow.seq).where(RecordRow.declaration_number == declaration_number)
        query = query.where(col(RecordRow.seq).in_(same_number))
    if record_type:
        query = query.where(RecordRow.record_type == record_type)
    if start_ms is not None:
        query = query.where(col(RecordRow.accepted_ms) >= start_ms)
    if end_ms is not None:
        query = query.where(col(RecordRow.accepted_ms) < end_ms)
    if after is not None:
        query = query.where(col(RecordRow.seq) < after)
    if closure:
        query = query.where(_closure_clause(closure))
    query = query.order_by(col(RecordRow.seq).desc()).limit(limit + 1)
    with db.transaction() as session:
        if state:
            query = query.where(_in_state(session, state))
        records = list(session.exec(query))
        more = len(records) > limit
        records = records[:limit]
        deliveries = deliveries_of(session, [r.id for r in records])
    return Page(
        [(r, deliveries[r.id]) for r in records],
        encode_token(records[-1].seq or 0, filters) if more else "",
    )


def _in_state(session: Session, state: str) -> ColumnElement[bool]:
    """SQL: the record has a delivery in `state`. For a rare state, when at most `RARE_READ` deliveries are
    in it, from those deliveries (through their partial index); otherwise checked per candidate record,
    newest first until the page is full, through the deliveries' record_id index (`LIMIT 1` keeps
    PostgreSQL from turning it into a join over every delivery). Neither reads the whole table."""
    if state in RARE_DELIVERY_STATES:
        rare = select(DeliveryRow.record_id).where(DeliveryRow.state == state, text(IN_RARE_DELIVERY_STATE))
        counted = session.exec(select(func.count()).select_from(rare.limit(RARE_READ + 1).subquery())).one()
        if counted <= RARE_READ:
            if session.get_bind().dialect.name == "postgresql":
                # A reused (generic) plan assumes an average enterprise's few records and walks all of
                # the caller's instead, slow for a big exporter: plan this transaction with the values.
                session.connection().execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
            # by seq, so SQLite looks each one up rather than testing every record of the caller
            theirs = aliased(RecordRow)
            seqs = select(theirs.seq).where(col(theirs.id).in_(rare))
            return col(RecordRow.seq).in_(seqs)
    in_state = select(DeliveryRow.seq).where(
        DeliveryRow.record_id == RecordRow.id, DeliveryRow.state == state
    )
    return in_state.limit(1).exists()


def _closure_clause(closure: str) -> ColumnElement[bool]:
    """SQL: the record has an open delivery (OPEN), or none (CLOSED). The open ones are found through
    their partial index, a few however many are stored; for CLOSED each candidate record is checked,
    newest first until the page is full, through the deliveries' record_id index."""
    still_open = aliased(DeliveryRow)
    if closure == OPEN:
        # by seq, as in _in_state, so SQLite looks each one up rather than testing every record
        theirs = aliased(RecordRow)
        open_records = select(still_open.record_id).where(col(still_open.closed_ms).is_(None))
        return col(RecordRow.seq).in_(select(theirs.seq).where(col(theirs.id).in_(open_records)))
    assert closure == CLOSED
    return ~(
        select(still_open.seq)
        .where(still_open.record_id == RecordRow.id, col(still_open.closed_ms).is_(None))
        .limit(1)
        .exists()
    )


def _entry(event: AuditEventRow) -> TimelineEntry:
    data = json.loads(event.data)
    kind = TIMELINE_KINDS[event.kind]
    reason = str(data.get("reason") or "")
    detail = {
        "PUBLISHED": f"published by {event.actor.removeprefix('agency:')}, digest {data.get('digest', '')}",
        "ATTEMPT": f"attempt {data.get('attempt')} sent via {data.get('connector')}",
        "RECEIVED": "the recipient's system acknowledged receipt",
        "ACCEPTED": "the recipient accepted it" + (f": {reason}" if reason else ""),
        "REJECTED": f"the recipient rejected it: {reason}",
        "ESCALATED": f"escalated ({data.get('reason')}): {data.get('detail', '')}",
        "ESCALATION_STEPPED": f"escalation climbed to level {data.get('level')}",
        "ESCALATION_RESOLVED": f"escalation resolved: {reason}",
        "ESCALATION_CLOSED_BY_ACK": f"escalation closed by a late {data.get('status')} acknowledgement",
        "REDELIVERY_REQUESTED": "an operator asked for it to be sent again",
        "DEFERRED": "the recipient asked the hub to wait before sending again",
        "ABORTED": f"the recipient's system refused to take it: {reason}",
    }.get(kind) or f"case {data.get('case_id')} ({data.get('case_kind')}): {data.get('detail', '')}"
    if kind == "ESCALATED":
        reason = str(data.get("detail") or "")
    return TimelineEntry(event.time_ms, kind, event.actor, detail, reason, event.seq or 0)


def trace_record(db: Database, caller: Principal, record_id: str) -> Traced:
    with db.transaction() as session:
        record = visible_record(session, caller, record_id)
        deliveries = deliveries_of(session, [record.id])[record.id]
        events = list(
            session.exec(
                select(AuditEventRow)
                .where(AuditEventRow.record_id == record.id)
                .order_by(col(AuditEventRow.seq))
            )
        )
    # An acknowledgement and the case it opens or closes share a transaction and a time, but the case's
    # event is appended first; a reader expects the cause before the effect.
    ranks = {kind: rank for rank, kind in enumerate(TIMELINE_KINDS)}
    shown = sorted(
        (e for e in events if e.kind in TIMELINE_KINDS),
        key=lambda e: (e.time_ms, ranks[e.kind], e.seq or 0),
    )
    published = [_entry(e) for e in shown if e.kind == "record.published"]
    timelines = {
        d.id: published
        + _with_closure(
            d,
            [
                e
                for e in shown
                if e.delivery_id == d.id or (e.delivery_id is None and e.kind.startswith("case."))
            ],
        )
        for d in deliveries
    }
    return Traced(record, deliveries, timelines)


def closure_detail(required_level: str, closed_by: str) -> str:
    """Why the delivery counts as done, in one line."""
    if closed_by == RECEIVED:
        return "closed: RECEIVED is enough on this route"
    if required_level == LEVEL_RECEIVED:
        return f"closed: {closed_by}, a business answer closes any route"
    return f"closed: {closed_by}, the business answer this route requires"


def _with_closure(delivery: DeliveryRow, events: list[AuditEventRow]) -> list[TimelineEntry]:
    """The delivery's entries, with a CLOSED entry right after the acknowledgement that closed it."""
    entries = [_entry(e) for e in events]
    if delivery.closed_ms is None or not delivery.closed_by:
        return entries
    closing = f"delivery.{delivery.closed_by.lower()}"
    at = next((i for i, e in enumerate(events) if e.kind == closing), None)
    seq = (events[at].seq or 0) if at is not None else 0
    closed = TimelineEntry(
        delivery.closed_ms,
        CLOSED_KIND,
        "system:hub",
        closure_detail(delivery.required_level, delivery.closed_by),
        "",
        seq,
    )
    if at is None:  # the closing event was not found (it should be): by time
        at = max((i for i, e in enumerate(entries) if e.time_ms <= delivery.closed_ms), default=-1)
    entries.insert(at + 1, closed)
    return entries
