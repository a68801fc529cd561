"""What operators do to escalation cases and deliveries: resolve, annotate, redeliver."""

from __future__ import annotations

from sqlmodel import Session, select

from ackhub.core.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from ackhub.core.principal import Principal
from ackhub.hub.exchange.escalation import Notice, resolve_case, resolve_top_level_case
from ackhub.hub.exchange.states import CASE_OPEN, FINAL, PENDING, RECEIVED
from ackhub.hub.ledger import log as audit_log
from ackhub.hub.store.db import Database
from ackhub.hub.store.models import DeliveryRow, EscalationNoteRow, EscalationRow

MAX_TEXT = 4000


def _required_text(field: str, text: str) -> str:
    cleaned = text.strip()
    if not cleaned:
        raise InvalidArgument([FieldViolation(field, "is required")])
    if len(cleaned) > MAX_TEXT:
        raise InvalidArgument([FieldViolation(field, f"is {len(cleaned)} characters; at most {MAX_TEXT}")])
    return cleaned


def _case(session: Session, escalation_id: str) -> EscalationRow:
    case = session.exec(
        select(EscalationRow).where(EscalationRow.id == escalation_id).with_for_update()
    ).first()
    if case is None:
        raise NotFound("escalation", escalation_id)
    return case


def _delivery(session: Session, delivery_id: str) -> DeliveryRow:
    delivery = session.exec(
        select(DeliveryRow).where(DeliveryRow.id == delivery_id).with_for_update()
    ).first()
    if delivery is None:
        raise NotFound("delivery", delivery_id)
    return delivery


def resolve(
    db: Database, operator: Principal, escalation_id: str, reason: str, now_ms: int
) -> tuple[EscalationRow, list[Notice]]:
    reason = _required_text("reason", reason)
    with db.transaction() as session:
        case = _case(session, escalation_id)
        if case.state != CASE_OPEN:
            if case.resolution == reason and case.resolved_by == operator.actor:
                return case, []  # the same resolution again: a retried call
            raise FailedPrecondition(
                f"escalation {escalation_id!r} is already {case.state}",
                reason="ESCALATION_CLOSED",
                metadata={"escalation_id": escalation_id, "state": case.state},
            )
        if not case.delivery_id:  # a top-level case (a witness's refusal): no delivery to settle
            return case, [resolve_top_level_case(session, case, reason, operator.actor, now_ms)]
        notice = resolve_case(
            session, case, _delivery(session, case.delivery_id), reason, operator.actor, now_ms
        )
        return case, [notice]


def add_note(db: Database, author: Principal, escalation_id: str, text: str, now_ms: int) -> EscalationRow:
    text = _required_text("text", text)
    with db.transaction() as session:
        case = _case(session, escalation_id)
        session.add(
            EscalationNoteRow(escalation_id=case.id, author=author.actor, text=text, created_ms=now_ms)
        )
        audit_log.append(
            session,
            kind="escalation.note_added",
            actor=author.actor,
            time_ms=now_ms,
            record_id=case.record_id,
            delivery_id=case.delivery_id,
            escalation_id=case.id,
            data={"text": text},
        )
        return case


def redeliver(db: Database, operator: Principal, delivery_id: str, now_ms: int) -> DeliveryRow:
    """Due now, whatever its backoff. A delivery the agency already holds or closed is refused."""
    if not delivery_id:
        raise InvalidArgument([FieldViolation("delivery_id", "is required")])
    with db.transaction() as session:
        delivery = _delivery(session, delivery_id)
        if delivery.state in FINAL or delivery.state == RECEIVED:
            raise FailedPrecondition(
                f"delivery {delivery_id!r} is {delivery.state}: the recipient already has it",
                reason="DELIVERY_ALREADY_RECEIVED",
                metadata={"delivery_id": delivery_id, "state": delivery.state},
            )
        delivery.next_attempt_ms = now_ms
        if delivery.attempts == 0:
            delivery.state = PENDING
        session.add(delivery)
        audit_log.append(
            session,
            kind="delivery.redelivery_requested",
            actor=operator.actor,
            time_ms=now_ms,
            record_id=delivery.record_id,
            delivery_id=delivery.id,
            data={"attempts_so_far": delivery.attempts},
        )
        return delivery
