"""The tables of the enterprise portal and its notifications (migration 0010): rate-limit buckets shared by
every hub process, enterprises' subscriptions, the notifications due to each subscription (the per-endpoint
outbox) with their delivery log, and how far the audit log has been read for them."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def _ms(nullable: bool = False, index: bool = False) -> Column[int]:
    return Column(BigInteger, nullable=nullable, index=index)


class RateBucketRow(SQLModel, table=True):
    """A token bucket per client address and purpose (`signin:203.0.113.9`). A bucket idle long enough to
    be full again says nothing and is deleted: the table holds only the clients seen lately."""

    __tablename__ = "rate_buckets"

    key: str = Field(primary_key=True, max_length=200)
    tokens: float = Field(sa_column=Column(Float, nullable=False))
    updated_ms: int = Field(sa_column=_ms(index=True))


class SubscriptionRow(SQLModel, table=True):
    """An enterprise's wish to hear of changes to its records, through one endpoint."""

    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("uscc", "request_id", name="uq_subscriptions_request"),)

    id: str = Field(primary_key=True, max_length=40)
    uscc: str = Field(max_length=18, index=True)
    channel: str = Field(max_length=16)  # WEBHOOK or EMAIL
    target: str = Field(sa_column=Column(Text, nullable=False))  # the https URL or the e-mail address
    record_type: str = Field(default="", max_length=128)  # "" = every type
    declaration_number: str = Field(default="", max_length=32)  # "" = every declaration
    events: str = Field(default="", max_length=200)  # comma-separated event names; "" = every event
    secret: str = Field(sa_column=Column(Text, nullable=False))  # whsec_… for a webhook; "" for e-mail
    state: str = Field(max_length=16)  # ACTIVE or DISABLED
    disabled_reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    failing_since_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))
    created_ms: int = Field(sa_column=_ms())
    updated_ms: int = Field(sa_column=_ms())
    request_id: str | None = Field(default=None, max_length=64)


class NotificationRow(SQLModel, table=True):
    """One event due to one subscription: sent until delivered; its id is the `webhook-id`, the same on
    every attempt. (subscription, audit leaf) is unique: an event is announced once per endpoint."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("subscription_id", "leaf_index", name="uq_notifications_event"),
        Index("ix_notifications_due", "next_attempt_ms"),
    )

    id: str = Field(primary_key=True, max_length=40)
    subscription_id: str = Field(max_length=40)
    uscc: str = Field(max_length=18)
    leaf_index: int = Field(sa_column=Column(BigInteger, nullable=False))
    event: str = Field(max_length=32)
    record_id: str = Field(max_length=64)
    payload: str = Field(sa_column=Column(Text, nullable=False))  # the JSON body, exactly as sent
    created_ms: int = Field(sa_column=_ms())
    state: str = Field(max_length=16)  # PENDING or DELIVERED
    attempts: int = 0
    next_attempt_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    delivered_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False))


class NotificationAttemptRow(SQLModel, table=True):
    """The delivery log an enterprise reads: every attempt at every notification, and its outcome."""

    __tablename__ = "notification_attempts"

    id: int | None = Field(default=None, primary_key=True)
    notification_id: str = Field(max_length=40, index=True)
    subscription_id: str = Field(max_length=40, index=True)
    attempt: int
    time_ms: int = Field(sa_column=_ms())
    outcome: str = Field(max_length=16)  # DELIVERED, FAILED, REFUSED
    status_code: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    detail: str = Field(sa_column=Column(Text, nullable=False))
    duration_ms: int = 0


class NotificationCursorRow(SQLModel, table=True):
    """The next audit leaf the notifications have not looked at yet."""

    __tablename__ = "notification_cursor"

    name: str = Field(primary_key=True, max_length=32)
    position: int = Field(sa_column=Column(BigInteger, nullable=False))
