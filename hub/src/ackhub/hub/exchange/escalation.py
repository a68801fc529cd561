"""Escalation cases: opened when a delivery misses its deadline, exhausts its attempts or is rejected;
climbing the route's ladder over time; closed by a late acknowledgement or by an operator.

Each function runs inside the caller's transaction and returns the `Notice` to send once it commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from ackhub.core.ids import new_id
from ackhub.hub.exchange.routing import policy_of
from ackhub.hub.exchange.states import CASE_CLOSED_BY_ACK, CASE_OPEN, CASE_RESOLVED, WITNESS_CASE_TYPE
from ackhub.hub.ledger import log as audit_log
from ackhub.hub.store.models import DeliveryRow, EscalationRow
from ackhub.hub.store.views import DeliveryView


@dataclass(frozen=True)
class Notice:
    """Something people must hear about: `event` is escalation.opened / .stepped / .closed / .resolved."""

    event: str
    case: dict[str, Any]
    targets: list[str] = field(default_factory=list)


def _snapshot(case: EscalationRow) -> dict[str, Any]:
    return {
        "escalation_id": case.id,
        "delivery_id": case.delivery_id,
        "record_id": case.record_id,
        "record_type": case.record_type,
        "recipient": case.recipient,
        "level": case.level,
        "reason": case.reason,
        "detail": case.detail,
        "state": case.state,
        "opened_ms": case.opened_ms,
        "late_ms": case.late_ms,
        "resolution": case.resolution,
    }


def open_case(
    session: Session, delivery: DeliveryRow | DeliveryView, reason: str, detail: str, now_ms: int
) -> Notice:
    ladder = policy_of(delivery.policy).escalation
    case = EscalationRow(
        id=new_id(now_ms),
        delivery_id=delivery.id,
        record_id=delivery.record_id,
        record_type=delivery.record_type,
        recipient=delivery.recipient,
        level=1,
        reason=reason,
        detail=detail,
        state=CASE_OPEN,
        opened_ms=now_ms,
        next_step_ms=now_ms + ladder[1].after if len(ladder) > 1 else None,
    )
    session.add(case)
    delivery.escalated = True  # the caller writes the delivery (attached, or in its own UPDATE)
    delivery.escalation_id = case.id
    audit_log.append(
        session,
        kind="escalation.opened",
        actor="system:hub",
        time_ms=now_ms,
        record_id=delivery.record_id,
        delivery_id=delivery.id,
        escalation_id=case.id,
        data={"reason": reason, "detail": detail, "level": 1},
    )
    return Notice("escalation.opened", _snapshot(case), list(ladder[0].notify))


def open_top_level_case(
    session: Session, reason: str, subject: str, detail: str, now_ms: int, data: dict[str, Any]
) -> Notice:
    """A case about the hub itself rather than a delivery (a witness refusing a checkpoint): no delivery
    and no record, `recipient` naming the subject (e.g. `witness:tax.example/witness`, cut to 64), opened
    at the top of the ladder — it has one rung, so nothing steps it — and seen by headquarters only."""
    case = EscalationRow(
        id=new_id(now_ms),
        delivery_id="",
        record_id="",
        record_type=WITNESS_CASE_TYPE,
        recipient=subject[:64],
        level=1,
        reason=reason,
        detail=detail,
        state=CASE_OPEN,
        opened_ms=now_ms,
        next_step_ms=None,
    )
    session.add(case)
    audit_log.append(
        session,
        kind="escalation.opened",
        actor="system:hub",
        time_ms=now_ms,
        escalation_id=case.id,
        data={"reason": reason, "detail": detail, "level": 1, "top_level": True, **data},
    )
    return Notice("escalation.opened", _snapshot(case), ["log"])


def resolve_top_level_case(
    session: Session, case: EscalationRow, reason: str, actor: str, now_ms: int
) -> Notice:
    """An operator closes a case tied to no delivery."""
    case.state = CASE_RESOLVED
    case.closed_ms = now_ms
    case.next_step_ms = None
    case.resolution = reason
    case.resolved_by = actor
    session.add(case)
    audit_log.append(
        session,
        kind="escalation.resolved",
        actor=actor,
        time_ms=now_ms,
        escalation_id=case.id,
        data={"reason": reason},
    )
    return Notice("escalation.resolved", _snapshot(case), ["log"])


def step_case(session: Session, case: EscalationRow, delivery: DeliveryRow, now_ms: int) -> Notice:
    """Climb one rung; the next rung's time is counted from when the case opened."""
    ladder = policy_of(delivery.policy).escalation
    case.level = min(case.level + 1, len(ladder))
    following = case.level  # index of the rung after the current one
    case.next_step_ms = case.opened_ms + ladder[following].after if following < len(ladder) else None
    session.add(case)
    audit_log.append(
        session,
        kind="escalation.stepped",
        actor="system:hub",
        time_ms=now_ms,
        record_id=case.record_id,
        delivery_id=case.delivery_id,
        escalation_id=case.id,
        data={"level": case.level},
    )
    return Notice("escalation.stepped", _snapshot(case), list(ladder[case.level - 1].notify))


def close_by_ack(
    session: Session, case: EscalationRow, delivery: DeliveryRow | DeliveryView, status: str, now_ms: int
) -> Notice:
    """A late acknowledgement closes the case by itself and records how late it was."""
    ladder = policy_of(delivery.policy).escalation
    case.state = CASE_CLOSED_BY_ACK
    case.closed_ms = now_ms
    case.next_step_ms = None
    case.resolution = f"closed by a {status} acknowledgement"
    case.late_ms = max(0, now_ms - delivery.deadline_ms)
    session.add(case)
    delivery.escalated = False  # the caller writes the delivery
    audit_log.append(
        session,
        kind="escalation.closed_by_ack",
        actor=f"agency:{delivery.recipient}",
        time_ms=now_ms,
        record_id=case.record_id,
        delivery_id=case.delivery_id,
        escalation_id=case.id,
        data={"status": status, "late_ms": case.late_ms},
    )
    return Notice("escalation.closed", _snapshot(case), list(ladder[case.level - 1].notify))


def resolve_case(
    session: Session, case: EscalationRow, delivery: DeliveryRow, reason: str, actor: str, now_ms: int
) -> Notice:
    """An operator closes the case. Automatic retries of the delivery stop; a redelivery restarts them."""
    ladder = policy_of(delivery.policy).escalation
    case.state = CASE_RESOLVED
    case.closed_ms = now_ms
    case.next_step_ms = None
    case.resolution = reason
    case.resolved_by = actor
    session.add(case)
    delivery.escalated = False
    delivery.next_attempt_ms = None
    delivery.deadline_check_ms = None
    session.add(delivery)
    audit_log.append(
        session,
        kind="escalation.resolved",
        actor=actor,
        time_ms=now_ms,
        record_id=case.record_id,
        delivery_id=case.delivery_id,
        escalation_id=case.id,
        data={"reason": reason},
    )
    return Notice("escalation.resolved", _snapshot(case), list(ladder[case.level - 1].notify))
