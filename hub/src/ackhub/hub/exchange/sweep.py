"""The periodic sweep's two jobs that touch the store: deliveries past their deadline open a case, and
open cases whose next rung is due climb the ladder. Both find their rows through an index on a nullable
timestamp, so the cost follows the work due, not the size of the tables."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select

from ackhub.hub.exchange.escalation import Notice, open_case, step_case
from ackhub.hub.exchange.states import CASE_OPEN, DEADLINE_EXCEEDED
from ackhub.hub.store.db import Database
from ackhub.hub.store.models import DeliveryRow, EscalationRow

BATCH = 500


@dataclass(frozen=True)
class SweepResult:
    deadlines: int
    steps: int
    notices: list[Notice]


def sweep_deadlines(db: Database, now_ms: int, limit: int = BATCH) -> tuple[int, list[Notice]]:
    with db.transaction() as session:
        late = session.exec(
            select(DeliveryRow)
            .where(col(DeliveryRow.deadline_check_ms) <= now_ms)
            .order_by(col(DeliveryRow.deadline_check_ms))
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        notices: list[Notice] = []
        for delivery in late:
            delivery.deadline_check_ms = None
            session.add(delivery)
            if not delivery.escalated:
                detail = (
                    f"no closing acknowledgement by the deadline "
                    f"({delivery.state} after {delivery.attempts} attempts)"
                )
                notices.append(open_case(session, delivery, DEADLINE_EXCEEDED, detail, now_ms))
        return len(late), notices


def sweep_ladder(db: Database, now_ms: int, limit: int = BATCH) -> tuple[int, list[Notice]]:
    with db.transaction() as session:
        due = session.exec(
            select(EscalationRow)
            .where(col(EscalationRow.next_step_ms) <= now_ms, EscalationRow.state == CASE_OPEN)
            .order_by(col(EscalationRow.next_step_ms))
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not due:
            return 0, []
        deliveries = {
            d.id: d
            for d in session.exec(
                select(DeliveryRow).where(col(DeliveryRow.id).in_({c.delivery_id for c in due}))
            )
        }
        notices = [step_case(session, case, deliveries[case.delivery_id], now_ms) for case in due]
        return len(due), notices


def sweep(db: Database, now_ms: int) -> SweepResult:
    """Blocking: runs both jobs until nothing is due (in batches, each its own transaction)."""
    deadlines = steps = 0
    notices: list[Notice] = []
    while True:
        count, found = sweep_deadlines(db, now_ms)
        deadlines += count
        notices += found
        if count < BATCH:
            break
    while True:
        count, found = sweep_ladder(db, now_ms)
        steps += count
        notices += found
        if count < BATCH:
            break
    return SweepResult(deadlines, steps, notices)
