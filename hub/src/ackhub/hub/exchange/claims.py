"""Claiming due deliveries for sending: one transaction marks them SENT, records the attempt and sets
when the next one is due. On PostgreSQL, `FOR UPDATE SKIP LOCKED` lets several hubs claim side by side."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from sqlalchemy import bindparam, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from ackhub.core.connector import Outbound, OutboundRecord
from ackhub.hub.exchange.escalation import Notice, open_case
from ackhub.hub.exchange.retry import attempt_wait_ms
from ackhub.hub.exchange.routing import policy_of
from ackhub.hub.exchange.states import ABORTED_BY_RECIPIENT, ATTEMPTS_EXHAUSTED, SENT
from ackhub.hub.ledger import log as audit_log
from ackhub.hub.store.bulk import (
    Read,
    execute_many,
    insert_rows,
    prefetch,
    select_rows,
    table_of,
    update_rows,
)
from ackhub.hub.store.db import Database
from ackhub.hub.store.models import AttemptRow, DeliveryRow, RecordRow


@dataclass(frozen=True)
class Claim:
    outbound: list[Outbound]
    notices: list[Notice]
    # When each earlier attempt that these repeat was sent (those attempts went unanswered).
    unanswered_sent_ms: list[int]
    # Set when the claim took everything due (fewer than its limit): when the recipient's next delivery
    # falls due, as the claim's transaction saw it (None: nothing waits for another attempt).
    next_due_ms: int | None = None


@dataclass(frozen=True)
class ClaimRequest:
    """Room for `limit` more deliveries to `recipient` on one connector channel."""

    recipient: str
    limit: int
    now_ms: int
    connector: str
    session_id: str


# Built once (see ackhub.hub.store.bulk for why). Plain rows, not ORM objects: a claim is on the hot path.
_D = table_of(DeliveryRow)
_R = table_of(RecordRow)
_DUE_DELIVERY = (
    "id",
    "record_id",
    "state",
    "attempts",
    "policy",
    "escalated",
    "escalation_id",
    "last_attempt_ms",
    "required_level",
)
# The due deliveries with their records, in one statement (a claim is for one recipient, and a record has
# one delivery per recipient, so no record comes twice); the lock is on the deliveries only.
_DUE = (
    core_select(
        *(_D.c[name] for name in _DUE_DELIVERY),
        *(_R.c[name].label(f"r_{name}") for name in OutboundRecord.__slots__),
    )
    .join(_R, _R.c.id == _D.c.record_id)
    .where(_D.c.recipient == bindparam("recipient"), _D.c.next_attempt_ms <= bindparam("now_ms"))
    .order_by(_D.c.next_attempt_ms, _D.c.seq)
    .limit(bindparam("limit"))
    .with_for_update(of=_D, skip_locked=True)
)
# The recipient's next due time after a claim took all that was due: one step down ix_deliveries_due.
_NEXT_DUE = (
    core_select(_D.c.next_attempt_ms)
    .where(_D.c.recipient == bindparam("recipient"), _D.c.next_attempt_ms > bindparam("now_ms"))
    .order_by(_D.c.next_attempt_ms)
    .limit(1)
)
_BY_ID = select(DeliveryRow).where(col(DeliveryRow.id) == bindparam("id"))
_ATTEMPTS = table_of(AttemptRow)
_CLOSE_ATTEMPTS = (
    update(_ATTEMPTS)
    .where(
        _ATTEMPTS.c.delivery_id == bindparam("d"),
        _ATTEMPTS.c.number == bindparam("n"),
        _ATTEMPTS.c.outcome == "SENT",
    )
    .values(outcome=bindparam("outcome"), outcome_ms=bindparam("t"))
)


@dataclass
class _ClaimWrites:
    """What the claims of one transaction write, in one statement per table for all of them."""

    changes: list[dict[str, object]] = field(default_factory=list)
    attempts: list[dict[str, object]] = field(default_factory=list)
    events: list[dict[str, object]] = field(default_factory=list)

    def write(self, session: Session) -> None:
        update_rows(session, DeliveryRow, self.changes)
        insert_rows(session, AttemptRow, self.attempts)
        audit_log.append_rows(session, self.events)


def claim_many(session: Session, requests: list[ClaimRequest], rng: random.Random) -> list[Claim]:
    """Several claims inside the caller's transaction (the group commit's claim lane): each reads its
    recipient's due deliveries, and the changes of claims for different recipients are written together
    (on PostgreSQL each statement is a round trip; with a claim for each of two recipients, six writes
    became three). A claim for a recipient already claimed for writes what came before first, so that
    it does not take the same deliveries again."""
    writes = _ClaimWrites()
    claimed: set[str] = set()
    claims = []
    prefetch(session, _reads_ahead(requests))
    for request in requests:
        if request.recipient in claimed:  # a second slot of the same agency must see the first's claims
            writes.write(session)
            writes, claimed = _ClaimWrites(), set()
        claimed.add(request.recipient)
        claims.append(_claim(session, request, rng, writes))
    writes.write(session)
    return claims


def _reads_ahead(requests: list[ClaimRequest]) -> list[Read]:
    """The reads of the first claim for each recipient (later ones must see what the first wrote), and
    when its next delivery falls due (needed when the claim takes all that is due: cheap to read anyway),
    read together (ackhub.hub.store.bulk.prefetch): on PostgreSQL one round trip instead of two a claim."""
    reads: list[Read] = []
    seen: set[str] = set()
    for request in requests:
        if request.limit > 0 and request.recipient not in seen:
            seen.add(request.recipient)
            reads.append((_DUE, _due_params(request)))
            reads.append((_NEXT_DUE, {"recipient": request.recipient, "now_ms": request.now_ms}))
    return reads


def _due_params(request: ClaimRequest) -> dict[str, object]:
    return {"recipient": request.recipient, "now_ms": request.now_ms, "limit": request.limit}


def claim(session: Session, request: ClaimRequest, rng: random.Random) -> Claim:
    """Mark the recipient's oldest due deliveries SENT (oldest first, so a backlog goes out in order when
    the recipient comes back), record the attempts and when the next one is due."""
    (one,) = claim_many(session, [request], rng)
    return one


def _claim(session: Session, request: ClaimRequest, rng: random.Random, writes: _ClaimWrites) -> Claim:
    if request.limit <= 0:
        return Claim([], [], [])
    now_ms = request.now_ms
    due = select_rows(session, _DUE, _due_params(request))
    next_due_ms = None
    if len(due) < request.limit:  # after this claim, nothing is due before the next retry
        after = select_rows(session, _NEXT_DUE, {"recipient": request.recipient, "now_ms": now_ms})
        next_due_ms = after[0].next_attempt_ms if after else None
    if not due:
        return Claim([], [], [], next_due_ms)
    outbound: list[Outbound] = []
    notices: list[Notice] = []
    unanswered: list[int] = []
    changes, attempts, events = writes.changes, writes.attempts, writes.events
    for delivery in due:
        policy = policy_of(delivery.policy)
        escalated, escalation_id = delivery.escalated, delivery.escalation_id
        if delivery.state == SENT and delivery.last_attempt_ms is not None:
            unanswered.append(delivery.last_attempt_ms)
        if delivery.attempts == policy.retry.max_attempts and not escalated:
            row = session.exec(_BY_ID, params={"id": delivery.id}).one()
            detail = f"{delivery.attempts} attempts went unacknowledged"
            notices.append(open_case(session, row, ATTEMPTS_EXHAUSTED, detail, now_ms))
            escalated, escalation_id = row.escalated, row.escalation_id
        number = delivery.attempts + 1
        next_attempt_ms = now_ms + attempt_wait_ms(policy.retry, number, escalated, rng)
        changes.append(
            {
                "key_id": delivery.id,
                "attempts": number,
                "state": SENT,
                "last_attempt_ms": now_ms,
                "next_attempt_ms": next_attempt_ms,
                "escalated": escalated,
                "escalation_id": escalation_id,
            }
        )
        attempts.append(
            {
                "delivery_id": delivery.id,
                "number": number,
                "connector": request.connector,
                "session_id": request.session_id,
                "sent_ms": now_ms,
                "outcome": "SENT",
                "outcome_ms": None,
            }
        )
        events.append(
            audit_log.event_row(
                kind="delivery.attempt",
                actor="system:hub",
                time_ms=now_ms,
                record_id=delivery.record_id,
                delivery_id=delivery.id,
                data={"attempt": number, "connector": request.connector, "session": request.session_id},
            )
        )
        outbound.append(
            Outbound(
                delivery.id,
                number,
                OutboundRecord(*delivery[len(_DUE_DELIVERY) :]),
                request.recipient,
                delivery.required_level,
                next_attempt_ms,
            )
        )
    if len(due) < request.limit:  # the attempts just made are due again too
        next_due_ms = min(t for t in (next_due_ms, *(o.expires_ms for o in outbound)) if t is not None)
    return Claim(outbound, notices, unanswered, next_due_ms)


def close_attempts(session: Session, outcome: str, ends: list[dict[str, object]]) -> None:
    """Record how attempts ended, each still open one given as {"d": delivery id, "n": attempt number,
    "t": when}: one executemany UPDATE, no read."""
    execute_many(session, _CLOSE_ATTEMPTS, [{**end, "outcome": outcome} for end in ends])


def close_attempt(session: Session, delivery: DeliveryRow, outcome: str, now_ms: int) -> None:
    """Record how the delivery's latest attempt ended, if it is still open."""
    close_attempts(session, outcome, [{"d": delivery.id, "n": delivery.attempts, "t": now_ms}])


def _awaiting_attempt(session: Session, delivery_id: str, recipient: str) -> DeliveryRow | None:
    """The recipient's delivery, locked, if it still waits for another attempt."""
    delivery = session.exec(
        select(DeliveryRow)
        .where(DeliveryRow.id == delivery_id, DeliveryRow.recipient == recipient)
        .with_for_update()
    ).first()
    return delivery if delivery is not None and delivery.next_attempt_ms is not None else None


def _recipient_said(
    session: Session, delivery: DeliveryRow, outcome: str, kind: str, data: dict[str, object], now_ms: int
) -> None:
    """Close the open attempt with the recipient's answer and audit it."""
    session.add(delivery)
    close_attempt(session, delivery, outcome, now_ms)
    audit_log.append(
        session,
        kind=kind,
        actor=f"agency:{delivery.recipient}",
        time_ms=now_ms,
        record_id=delivery.record_id,
        delivery_id=delivery.id,
        data=data,
    )


def defer(db: Database, delivery_id: str, recipient: str, until_ms: int, now_ms: int) -> bool:
    """The recipient asked to hold one delivery back: its next attempt waits until `until_ms`."""
    with db.transaction() as session:
        delivery = _awaiting_attempt(session, delivery_id, recipient)
        if delivery is None:
            return False
        delivery.next_attempt_ms = until_ms
        _recipient_said(session, delivery, "DEFERRED", "delivery.deferred", {"until_ms": until_ms}, now_ms)
        return True


def abort(db: Database, delivery_id: str, recipient: str, reason: str, now_ms: int) -> Notice | None:
    """The recipient's system said "abort" (it will never take this delivery as sent): stop retrying and
    put the delivery before people as an escalation case. An operator's redelivery starts it again."""
    with db.transaction() as session:
        delivery = _awaiting_attempt(session, delivery_id, recipient)
        if delivery is None:
            return None
        delivery.next_attempt_ms = None
        _recipient_said(session, delivery, "ABORTED", "delivery.aborted", {"reason": reason}, now_ms)
        if delivery.escalated:
            return None
        return open_case(
            session, delivery, ABORTED_BY_RECIPIENT, reason or "aborted by the recipient", now_ms
        )
