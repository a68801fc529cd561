"""The outbox: which notifications are due to which endpoint.

Every change a notification announces — an agency's signed RECEIVED, ACCEPTED or REJECTED, a delivery
escalated — already writes an audit event in the same transaction as the change itself (ackhub.hub.ledger.log).
That event is the outbox entry: it exists exactly when the change committed. The sequencer gives committed
events dense, increasing leaf indexes (0, 1, 2 …, in the order it found them committed), so reading the
log by leaf index from a stored cursor sees every committed event once, and never one that rolled back.

`fan_out` reads the next events after the cursor, finds the subscriptions each concerns (the record's
subject is the subscriber, and its type, declaration and event filters match), and in one transaction
inserts one `notifications` row per (subscription, event) and moves the cursor on. Hub processes sharing a
database take the cursor row's lock in turn, and (subscription_id, leaf_index) is unique besides: an event
is announced once per endpoint. A notification's id — the `webhook-id` — is derived from that pair, so a
repeat of it carries the same id.

Cases between parties (ackhub.hub.cases) about a record are announced as CASE_MESSAGE: a new message and
the case's opening, closing (resolved, withdrawn) and reopening, each with its audit event — the same
matching (the record's subject), the same once-per-endpoint guarantee. A case about a permit decision has
no record and is not announced here (its parties hear through `[cases] party_notifiers`). A new kind of
change is announced by adding its audit event kind to `AUDIT_KINDS`, its event to `EVENTS` and the proto's
`SubscriptionEvent`."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from ackhub.audit.times import to_rfc3339_ms
from ackhub.hub.store.db import Database, is_unique_race
from ackhub.hub.store.models import AuditEventRow, DeliveryRow, RecordRow
from ackhub.hub.store.portal_models import NotificationCursorRow, NotificationRow, SubscriptionRow

CURSOR = "notifications"
CHUNK = 2_000  # audit leaves read per transaction
CASE_MESSAGE = "CASE_MESSAGE"
EVENTS = ("RECEIVED", "ACCEPTED", "REJECTED", "ESCALATED", CASE_MESSAGE)
# a case's audit event kind → its `data.change` in a CASE_MESSAGE notification
CASE_CHANGES = {
    "case.opened": "opened",
    "case.message_added": "message",
    "case.resolved": "resolved",
    "case.withdrawn": "withdrawn",
    "case.reopened": "reopened",
}
# audit event kind → the event a subscription hears of
AUDIT_KINDS = {
    "delivery.received": "RECEIVED",
    "delivery.accepted": "ACCEPTED",
    "delivery.rejected": "REJECTED",
    "escalation.opened": "ESCALATED",
    **dict.fromkeys(CASE_CHANGES, CASE_MESSAGE),
}
PENDING, DELIVERED = "PENDING", "DELIVERED"
ACTIVE, DISABLED = "ACTIVE", "DISABLED"


def notification_id(subscription_id: str, leaf_index: int) -> str:
    """The `webhook-id` of the notification of audit leaf `leaf_index` to `subscription_id`."""
    digest = hashlib.sha256(f"{subscription_id}:{leaf_index}".encode()).hexdigest()[:32]
    return f"msg_{digest}"


def start_cursor(db: Database) -> None:
    """Blocking, at start: a new store's notifications begin after the events already in the tree."""
    try:
        with db.transaction() as session:
            if session.get(NotificationCursorRow, CURSOR) is None:
                newest = session.exec(select(func.max(AuditEventRow.leaf_index))).one()
                session.add(
                    NotificationCursorRow(name=CURSOR, position=(newest + 1) if newest is not None else 0)
                )
    except Exception as error:
        if not is_unique_race(error):  # another process started it first
            raise


def matches(subscription: SubscriptionRow, record: RecordRow, event: str) -> bool:
    if subscription.record_type and subscription.record_type != record.record_type:
        return False
    if subscription.declaration_number and subscription.declaration_number != (
        record.declaration_number or ""
    ):
        return False
    return not subscription.events or event in subscription.events.split(",")


def payload(
    event: str, row: AuditEventRow, record: RecordRow, agency: str, agency_name: str
) -> dict[str, Any]:
    """The notification's body (Standard Webhooks' `type`, `timestamp`, `data`)."""
    data = json.loads(row.data)
    if event == CASE_MESSAGE:
        return case_payload(row, data, record, agency, agency_name)
    reason = (
        str(data.get("detail") or data.get("reason") or "")
        if event == "ESCALATED"
        else str(data.get("reason") or "")
    )
    return {
        "type": f"record.{event.lower()}",
        "timestamp": to_rfc3339_ms(row.time_ms),
        "data": {
            **_about(record, agency, agency_name),
            "event": event,
            "reason": reason,
            "audit_index": row.leaf_index,
        },
    }


def _about(record: RecordRow, agency: str, agency_name: str) -> dict[str, Any]:
    """What every notification's `data` says of the record and the agency concerned."""
    return {
        "record_id": record.id,
        "record_type": record.record_type,
        "declaration_number": record.declaration_number or "",
        "subject_uscc": record.subject_uscc or "",
        "agency": agency,
        "agency_name": agency_name,
    }


def case_payload(
    row: AuditEventRow, data: dict[str, Any], record: RecordRow, agency: str, agency_name: str
) -> dict[str, Any]:
    """A case's change: type `case.message`, `data.change` one of `CASE_CHANGES`'s values. The message's
    text goes with it: the endpoint is the record's own enterprise, a party that reads the thread anyway."""
    change = CASE_CHANGES[row.kind]
    said = {"message": "text", "opened": "title"}.get(change, "reason")  # closing and reopening give a reason
    text = str(data.get(said) or "")
    return {
        "type": "case.message",
        "timestamp": to_rfc3339_ms(row.time_ms),
        "data": {
            "case_id": str(data.get("case_id") or ""),
            "case_kind": str(data.get("case_kind") or ""),
            "change": change,
            "state": str(data.get("state") or ""),
            "author": row.actor,
            "text": text,
            "message_id": str(data.get("message_id") or ""),
            "attachments": [
                {"filename": a.get("filename", ""), "size_bytes": a.get("size_bytes", 0)}
                for a in data.get("attachments") or []
                if isinstance(a, dict)
            ],
            "awaited_party": str(data.get("awaited_party") or ""),
            **_about(record, agency, agency_name),
            "event": CASE_MESSAGE,
            "reason": text,
            "audit_index": row.leaf_index,
        },
    }


def fan_out(db: Database, now_ms: int, agency_names: dict[str, str], chunk: int = CHUNK) -> int:
    """Blocking: announce the next `chunk` audit leaves; returns the notifications made. Call again while
    it returns more than nothing or the cursor moved (`pending_leaves`)."""
    with db.transaction() as session:
        cursor = session.exec(
            select(NotificationCursorRow).where(NotificationCursorRow.name == CURSOR).with_for_update()
        ).first()
        if cursor is None:
            return 0
        start, end = cursor.position, cursor.position + chunk
        in_range = (col(AuditEventRow.leaf_index) >= start, col(AuditEventRow.leaf_index) < end)
        newest = session.exec(select(func.max(AuditEventRow.leaf_index)).where(*in_range)).one()
        if newest is None:
            return 0
        # Which enterprises subscribed at all, first: with none (the usual case for most of a log), the
        # chunk's events and records are not read (reading them took 4.5 % of the time a busy hub held
        # the GIL; docs/performance.md).
        subscribed = set(session.exec(select(SubscriptionRow.uscc).distinct()).all())
        made = 0
        if subscribed:
            rows = list(
                session.exec(
                    select(AuditEventRow)
                    .where(*in_range, col(AuditEventRow.kind).in_(list(AUDIT_KINDS)))
                    .order_by(col(AuditEventRow.leaf_index))
                )
            )
            made = _announce(session, rows, now_ms, agency_names, subscribed)
        cursor.position = newest + 1
        session.add(cursor)
        return made


def _announce(
    session: Session,
    rows: list[AuditEventRow],
    now_ms: int,
    agency_names: dict[str, str],
    subscribed: set[str],
) -> int:
    """Notifications for `rows` to the subscriptions of `subscribed` enterprises they concern."""
    record_ids = sorted({r.record_id for r in rows if r.record_id})
    if not record_ids:
        return 0
    records = {
        r.id: r
        for r in session.exec(
            select(RecordRow).where(
                col(RecordRow.id).in_(record_ids), col(RecordRow.subject_uscc).in_(sorted(subscribed))
            )
        )
    }
    subscribers = sorted({r.subject_uscc for r in records.values() if r.subject_uscc})
    if not subscribers:
        return 0
    subscriptions: dict[str, list[SubscriptionRow]] = {}
    for subscription in session.exec(
        select(SubscriptionRow).where(col(SubscriptionRow.uscc).in_(subscribers))
    ):
        subscriptions.setdefault(subscription.uscc, []).append(subscription)
    if not subscriptions:
        return 0
    delivery_ids = sorted({r.delivery_id for r in rows if r.delivery_id})
    recipients = {
        d.id: d.recipient
        for d in session.exec(select(DeliveryRow).where(col(DeliveryRow.id).in_(delivery_ids)))
    }
    made = 0
    for row in rows:
        record = records.get(row.record_id or "")
        if record is None or not record.subject_uscc:
            continue
        event = AUDIT_KINDS[row.kind]
        agency = recipients.get(row.delivery_id or "", "")
        for subscription in subscriptions.get(record.subject_uscc, []):
            if subscription.created_ms > row.time_ms or not matches(subscription, record, event):
                continue
            assert row.leaf_index is not None
            body = payload(event, row, record, agency, agency_names.get(agency, agency))
            session.add(
                NotificationRow(
                    id=notification_id(subscription.id, row.leaf_index),
                    subscription_id=subscription.id,
                    uscc=subscription.uscc,
                    leaf_index=row.leaf_index,
                    event=event,
                    record_id=record.id,
                    payload=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                    created_ms=now_ms,
                    state=PENDING,
                    next_attempt_ms=now_ms,
                )
            )
            made += 1
    return made


def pending_leaves(db: Database) -> int:
    """Blocking: sequenced audit leaves the outbox has not read yet."""
    with db.transaction() as session:
        cursor = session.get(NotificationCursorRow, CURSOR)
        newest = session.exec(select(func.max(AuditEventRow.leaf_index))).one()
    if cursor is None or newest is None:
        return 0
    return max(0, newest + 1 - cursor.position)
