"""Reading records, deliveries and escalation cases, limited to what the caller may see: an agency its
own publications and what is addressed to it; an operator its jurisdiction (rules: ackhub.hub.auth.policy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import func
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from ackhub.core.errors import FieldViolation, InvalidArgument, NotFound
from ackhub.core.principal import SYSTEM, Principal
from ackhub.hub.auth import policy
from ackhub.hub.exchange.states import CLOSED, DELIVERY_STATES, OPEN, check_closure_filter
from ackhub.hub.pagination import decode_token, encode_token, page_size
from ackhub.hub.store.db import Database
from ackhub.hub.store.models import DeliveryRow, EscalationNoteRow, EscalationRow, RecordRow

T = TypeVar("T")
Row = TypeVar("Row", DeliveryRow, EscalationRow)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_token: str


def get_record(db: Database, caller: Principal, record_id: str) -> tuple[RecordRow, list[DeliveryRow]]:
    if not record_id:
        raise InvalidArgument([FieldViolation("record_id", "is required")])
    with db.transaction() as session:
        record = session.exec(select(RecordRow).where(RecordRow.id == record_id)).first()
        if record is None:
            raise NotFound("record", record_id)
        deliveries = list(
            session.exec(
                select(DeliveryRow).where(DeliveryRow.record_id == record_id).order_by(col(DeliveryRow.seq))
            )
        )
    visible = policy.visible_deliveries(caller, record, deliveries)
    if visible is None:
        raise NotFound("record", record_id)  # the same answer as for a record that does not exist
    return record, visible


def _newest_first(
    db: Database, query: SelectOfScalar[Row], seq: Any, size: int, token: str, filters: dict[str, object]
) -> Page[Row]:
    """One page of `query`, by descending `seq`, continuing after the page `token` ended."""
    limit = page_size(size)
    after = decode_token(token, filters)
    query = query.order_by(seq.desc()).limit(limit + 1)
    if after is not None:
        query = query.where(seq < after)
    with db.transaction() as session:
        rows = list(session.exec(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_token(getattr(rows[-1], "seq", 0) or 0, filters) if more else "")


def check_agency_filter(field: str, agency: str, known: set[str]) -> None:
    """A filter naming an agency that does not exist is a mistake worth saying, not an empty page."""
    if agency and agency not in known:
        raise InvalidArgument([FieldViolation(field, f"unknown agency {agency[:64]!r}")])


def list_deliveries(
    db: Database,
    caller: Principal,
    *,
    record_id: str,
    recipient: str,
    state: str,
    size: int,
    token: str,
    closure: str = "",
) -> Page[DeliveryRow]:
    """`closure` is OPEN, CLOSED or "" for both; with a `state` it contradicts, INVALID_ARGUMENT."""
    if state and state not in DELIVERY_STATES:
        raise InvalidArgument([FieldViolation("state", f"unknown state {state!r}")])
    contradiction = check_closure_filter(state, closure)
    if contradiction:
        raise InvalidArgument([FieldViolation("closure", contradiction)])
    filters: dict[str, object] = {
        "record": record_id,
        "recipient": recipient,
        "state": state,
        "closure": closure,
        "who": caller.actor,
    }
    query = select(DeliveryRow).where(policy.delivery_clause(caller))
    if record_id:
        query = query.where(DeliveryRow.record_id == record_id)
    if recipient:
        query = query.where(DeliveryRow.recipient == recipient)
    if state:
        query = query.where(DeliveryRow.state == state)
    if closure == OPEN:
        # Through the partial index of open deliveries, by seq: SQLite would otherwise walk every
        # delivery newest first (or every one of the recipient's) to find the few still open.
        still_open = aliased(DeliveryRow)
        open_seqs = select(still_open.seq).where(col(still_open.closed_ms).is_(None))
        if recipient:
            open_seqs = open_seqs.where(still_open.recipient == recipient)
        query = query.where(col(DeliveryRow.seq).in_(open_seqs))
    elif closure == CLOSED:
        query = query.where(col(DeliveryRow.closed_ms).is_not(None))
    return _newest_first(db, query, col(DeliveryRow.seq), size, token, filters)


def list_escalations(
    db: Database, caller: Principal, *, state: str, recipient: str, min_level: int, size: int, token: str
) -> Page[EscalationRow]:
    filters: dict[str, object] = {
        "state": state,
        "recipient": recipient,
        "min_level": min_level,
        "who": caller.actor,
    }
    query = select(EscalationRow).where(policy.escalation_clause(caller))
    if state:
        query = query.where(EscalationRow.state == state)
    if recipient:
        query = query.where(EscalationRow.recipient == recipient)
    if min_level:
        query = query.where(col(EscalationRow.level) >= min_level)
    return _newest_first(db, query, col(EscalationRow.seq), size, token, filters)


def check_delivery_visible(db: Database, caller: Principal, delivery_id: str) -> None:
    """NotFound unless the delivery exists and `caller` may see it."""
    if not delivery_id:
        raise InvalidArgument([FieldViolation("delivery_id", "is required")])
    query = select(DeliveryRow.id).where(DeliveryRow.id == delivery_id, policy.delivery_clause(caller))
    with db.transaction() as session:
        if session.exec(query).first() is None:
            raise NotFound("delivery", delivery_id)


def get_escalation(
    db: Database, escalation_id: str, caller: Principal = SYSTEM
) -> tuple[EscalationRow, list[EscalationNoteRow]]:
    if not escalation_id:
        raise InvalidArgument([FieldViolation("escalation_id", "is required")])
    with db.transaction() as session:
        case = session.exec(
            select(EscalationRow).where(EscalationRow.id == escalation_id, policy.escalation_clause(caller))
        ).first()
        if case is None:
            raise NotFound("escalation", escalation_id)
        notes = list(
            session.exec(
                select(EscalationNoteRow)
                .where(EscalationNoteRow.escalation_id == escalation_id)
                .order_by(col(EscalationNoteRow.id))
            )
        )
        return case, notes


def counts_by_state(db: Database) -> dict[str, int]:
    with db.transaction() as session:
        rows = session.exec(select(DeliveryRow.state, func.count()).group_by(DeliveryRow.state)).all()
    return {state: count for state, count in rows}


def open_case_count(db: Database) -> int:
    with db.transaction() as session:
        return int(session.exec(select(func.count()).where(EscalationRow.state == "OPEN")).one())
