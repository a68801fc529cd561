"""Enterprises' subscriptions: make, read, delete, re-enable, and read their delivery log. Shared by the
gRPC service (ackhub.hub.api.subscriptions) and the portal. The owner is always the caller's USCC: another
enterprise's subscription is NOT_FOUND, like one that does not exist. A refused request stores nothing.
Every change is audited (`subscription.*` events, never the signing secret)."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from ackhub.core.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, PermissionDenied
from ackhub.core.ids import new_id
from ackhub.core.principal import Principal
from ackhub.hub.exchange.validation import Violations
from ackhub.hub.ledger import log as audit_log
from ackhub.hub.notifications.outbox import ACTIVE, DISABLED, EVENTS, PENDING
from ackhub.hub.notifications.targets import check_email, check_webhook_url
from ackhub.hub.pagination import decode_token, encode_token, page_size
from ackhub.hub.store.db import Database
from ackhub.hub.store.portal_models import NotificationAttemptRow, NotificationRow, SubscriptionRow

WEBHOOK, EMAIL = "WEBHOOK", "EMAIL"
CHANNELS = (WEBHOOK, EMAIL)
MAX_PER_ENTERPRISE = 50


@dataclass(frozen=True)
class NewSubscription:
    channel: str  # WEBHOOK or EMAIL
    target: str
    record_type: str = ""
    declaration_number: str = ""
    events: tuple[str, ...] = ()
    request_id: str = ""


@dataclass(frozen=True)
class Rules:
    """What the deployment allows: whether it is secure (no private webhook targets, no plain http),
    whether it can send e-mail, and which record types are routed."""

    secure: bool
    can_email: bool
    record_types: frozenset[str]


def owner(caller: Principal) -> str:
    if caller.kind != "enterprise":
        raise PermissionDenied(
            f"only an enterprise manages subscriptions, not a {caller.kind}",
            reason="ENTERPRISE_ONLY",
            metadata={"caller": caller.actor},
        )
    return caller.id


def check(new: NewSubscription, rules: Rules) -> None:
    """InvalidArgument naming every bad field; nothing is looked up or stored."""
    bad = Violations()
    target = new.target.strip()
    if new.channel not in CHANNELS:
        bad.add("channel", "is required: WEBHOOK or EMAIL")
    elif not target:
        bad.add("target", "is required: the webhook's https URL or the e-mail address")
    elif new.channel == WEBHOOK:
        why = check_webhook_url(target, rules.secure)
        if why:
            bad.add("target", why)
    else:
        why = check_email(target)
        if why:
            bad.add("target", why)
        elif not rules.can_email:
            bad.add("channel", "this hub sends no e-mail ([notifications] smtp_host is not set)")
    if new.record_type and new.record_type not in rules.record_types:
        bad.add("record_type", f"no route carries records of type {new.record_type[:128]!r}")
    if new.declaration_number:
        bad.declaration_number("declaration_number", new.declaration_number)
    for i, event in enumerate(new.events):
        if event not in EVENTS:
            bad.add(f"events[{i}]", f"is one of {', '.join(EVENTS)}")
    if len(set(new.events)) != len(new.events):
        bad.add("events", "names an event twice")
    if new.request_id and len(new.request_id) > 64:
        bad.add("request_id", "is longer than 64 characters")
    bad.raise_if_any()


def create(
    db: Database, caller: Principal, new: NewSubscription, rules: Rules, now_ms: int
) -> SubscriptionRow:
    """Blocking. The new subscription (with its secret), or the one an earlier identical request made."""
    uscc = owner(caller)
    check(new, rules)
    with db.transaction() as session:
        if new.request_id:
            earlier = session.exec(
                select(SubscriptionRow).where(
                    SubscriptionRow.uscc == uscc, SubscriptionRow.request_id == new.request_id
                )
            ).first()
            if earlier is not None:
                return earlier
        count = session.exec(select(func.count()).where(SubscriptionRow.uscc == uscc)).one()
        if count >= MAX_PER_ENTERPRISE:
            raise FailedPrecondition(
                f"an enterprise has at most {MAX_PER_ENTERPRISE} subscriptions; delete one first",
                reason="TOO_MANY_SUBSCRIPTIONS",
                metadata={"limit": str(MAX_PER_ENTERPRISE)},
            )
        secret = "whsec_" + base64.b64encode(os.urandom(24)).decode() if new.channel == WEBHOOK else ""
        row = SubscriptionRow(
            id=new_id(now_ms),
            uscc=uscc,
            channel=new.channel,
            target=new.target.strip(),
            record_type=new.record_type,
            declaration_number=new.declaration_number,
            events=",".join(new.events),
            secret=secret,
            state=ACTIVE,
            created_ms=now_ms,
            updated_ms=now_ms,
            request_id=new.request_id or None,
        )
        session.add(row)
        _audit(session, "subscription.created", caller, row, now_ms)
    return row


def shown_target(target: str) -> str:
    """A webhook URL without its query and fragment (they may hold a receiver's token) for the audit log;
    an e-mail address as it is."""
    return target.split("?", 1)[0].split("#", 1)[0]


def _audit(session: Session, kind: str, caller: Principal, row: SubscriptionRow, now_ms: int) -> None:
    audit_log.append(
        session,
        kind=kind,
        actor=caller.actor,
        time_ms=now_ms,
        data={
            "subscription_id": row.id,
            "uscc": row.uscc,
            "channel": row.channel,
            "target": shown_target(row.target),
            "record_type": row.record_type,
            "declaration_number": row.declaration_number,
            "events": row.events,
            "state": row.state,
        },
    )


def _own(session: Session, uscc: str, subscription_id: str) -> SubscriptionRow:
    if not subscription_id:
        raise InvalidArgument([FieldViolation("subscription_id", "is required")])
    row = session.get(SubscriptionRow, subscription_id[:40])
    if row is None or row.uscc != uscc:
        raise NotFound("subscription", subscription_id[:64])
    return row


def get(db: Database, caller: Principal, subscription_id: str) -> SubscriptionRow:
    uscc = owner(caller)
    with db.transaction() as session:
        return _own(session, uscc, subscription_id)


def list_own(db: Database, caller: Principal, size: int, token: str) -> tuple[list[SubscriptionRow], str]:
    """Newest first; the token is an offset (an enterprise has at most MAX_PER_ENTERPRISE)."""
    uscc = owner(caller)
    limit = page_size(size)
    offset = decode_token(token, {"who": uscc}) or 0
    with db.transaction() as session:
        rows = list(
            session.exec(
                select(SubscriptionRow)
                .where(SubscriptionRow.uscc == uscc)
                .order_by(col(SubscriptionRow.created_ms).desc(), col(SubscriptionRow.id).desc())
                .offset(offset)
                .limit(limit + 1)
            )
        )
    more = len(rows) > limit
    return rows[:limit], encode_token(offset + limit, {"who": uscc}) if more else ""


def remove(db: Database, caller: Principal, subscription_id: str, now_ms: int) -> None:
    uscc = owner(caller)
    with db.transaction() as session:
        row = _own(session, uscc, subscription_id)
        # its notifications and their delivery log go with it
        connection = session.connection()
        connection.execute(delete(NotificationRow).where(col(NotificationRow.subscription_id) == row.id))
        connection.execute(
            delete(NotificationAttemptRow).where(col(NotificationAttemptRow.subscription_id) == row.id)
        )
        session.delete(row)
        _audit(session, "subscription.deleted", caller, row, now_ms)


def enable(db: Database, caller: Principal, subscription_id: str, now_ms: int) -> SubscriptionRow:
    """Active again; its waiting notifications are due now."""
    uscc = owner(caller)
    with db.transaction() as session:
        row = _own(session, uscc, subscription_id)
        if row.state == DISABLED:
            row.state = ACTIVE
            row.disabled_reason = ""
            row.failing_since_ms = None
            row.updated_ms = now_ms
            session.add(row)
            for waiting in session.exec(
                select(NotificationRow).where(
                    NotificationRow.subscription_id == row.id, NotificationRow.state == PENDING
                )
            ):
                waiting.next_attempt_ms = now_ms
                session.add(waiting)
            _audit(session, "subscription.enabled", caller, row, now_ms)
        return row


def attempts(
    db: Database, caller: Principal, subscription_id: str, size: int, token: str
) -> tuple[list[tuple[NotificationAttemptRow, NotificationRow | None]], str]:
    """The delivery log of one of the caller's subscriptions, newest first."""
    uscc = owner(caller)
    limit = page_size(size)
    filters: dict[str, object] = {"who": uscc, "subscription": subscription_id}
    after = decode_token(token, filters)
    with db.transaction() as session:
        row = _own(session, uscc, subscription_id)
        query = select(NotificationAttemptRow).where(NotificationAttemptRow.subscription_id == row.id)
        if after is not None:
            query = query.where(col(NotificationAttemptRow.id) < after)
        found = list(session.exec(query.order_by(col(NotificationAttemptRow.id).desc()).limit(limit + 1)))
        more = len(found) > limit
        found = found[:limit]
        ids = sorted({a.notification_id for a in found})
        notes = {
            n.id: n for n in session.exec(select(NotificationRow).where(col(NotificationRow.id).in_(ids)))
        }
    page = [(a, notes.get(a.notification_id)) for a in found]
    return page, encode_token(found[-1].id or 0, filters) if more else ""
