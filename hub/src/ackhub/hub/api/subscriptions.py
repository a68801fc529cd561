"""`ackhub.v1.SubscriptionService`: protobuf ⇄ the subscription use cases (hub/notifications/)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar

from google.protobuf.message import Message

from ackhub.core.clock import Clock
from ackhub.core.errors import FieldViolation, InvalidArgument
from ackhub.hub.api import convert, idempotent
from ackhub.hub.auth import policy
from ackhub.hub.notifications import subscriptions
from ackhub.hub.notifications.outbox import EVENTS
from ackhub.hub.notifications.subscriptions import EMAIL, WEBHOOK, NewSubscription, Rules
from ackhub.hub.store.db import Database
from ackhub.hub.store.portal_models import NotificationAttemptRow, NotificationRow, SubscriptionRow
from ackhub.v1 import subscription_service_pb2 as pb
from ackhub.v1 import subscription_service_pb2_grpc as pb_grpc

Context: TypeAlias = Any  # grpc.aio.ServicerContext; grpc ships no usable types
M = TypeVar("M", bound=Message)
_CHANNELS = {pb.SUBSCRIPTION_CHANNEL_WEBHOOK: WEBHOOK, pb.SUBSCRIPTION_CHANNEL_EMAIL: EMAIL}
_CHANNEL_VALUES = {name: value for value, name in _CHANNELS.items()}
_EVENTS = {name: pb.SubscriptionEvent.Value(f"SUBSCRIPTION_EVENT_{name}") for name in EVENTS}
_EVENT_NAMES = {value: name for name, value in _EVENTS.items()}
_STATES = {"ACTIVE": pb.SUBSCRIPTION_STATE_ACTIVE, "DISABLED": pb.SUBSCRIPTION_STATE_DISABLED}


def subscription(row: SubscriptionRow, with_secret: bool = False) -> pb.Subscription:
    return pb.Subscription(
        subscription_id=row.id,
        channel=_CHANNEL_VALUES.get(row.channel, pb.SUBSCRIPTION_CHANNEL_UNSPECIFIED),
        target=row.target,
        record_type=row.record_type,
        declaration_number=row.declaration_number,
        events=[_EVENTS[e] for e in row.events.split(",") if e in _EVENTS],
        state=_STATES.get(row.state, pb.SUBSCRIPTION_STATE_UNSPECIFIED),
        disabled_reason=row.disabled_reason,
        signing_secret=row.secret if with_secret else "",
        create_time=convert.timestamp(row.created_ms),
        failing_since_time=convert.timestamp(row.failing_since_ms),
    )


def attempt(row: NotificationAttemptRow, note: NotificationRow | None) -> pb.NotificationAttempt:
    return pb.NotificationAttempt(
        notification_id=row.notification_id,
        event=_EVENTS.get(note.event, pb.SUBSCRIPTION_EVENT_UNSPECIFIED)
        if note
        else pb.SUBSCRIPTION_EVENT_UNSPECIFIED,
        record_id=note.record_id if note else "",
        attempt=row.attempt,
        attempt_time=convert.timestamp(row.time_ms),
        outcome=row.outcome,
        http_status=row.status_code or 0,
        detail=row.detail,
        duration_ms=row.duration_ms,
    )


class SubscriptionServicer(pb_grpc.SubscriptionServiceServicer):
    def __init__(self, db: Database, clock: Clock, rules: Rules) -> None:
        self.db = db
        self.clock = clock
        self.rules = rules

    async def CreateSubscription(
        self, request: pb.CreateSubscriptionRequest, context: Context
    ) -> pb.CreateSubscriptionResponse:
        caller = policy.caller()
        unknown = [
            FieldViolation(f"events[{i}]", f"is one of {', '.join(EVENTS)}")
            for i, e in enumerate(request.events)
            if e not in _EVENT_NAMES
        ]
        if unknown:
            raise InvalidArgument(unknown)
        new = NewSubscription(
            channel=_CHANNELS.get(request.channel, ""),
            target=request.target,
            record_type=request.record_type,
            declaration_number=request.declaration_number,
            events=tuple(_EVENT_NAMES[e] for e in request.events),
            request_id=request.request_id,
        )
        row = await self.db.run(subscriptions.create, self.db, caller, new, self.rules, self.clock.now_ms())
        return pb.CreateSubscriptionResponse(subscription=subscription(row, with_secret=True))

    async def GetSubscription(
        self, request: pb.GetSubscriptionRequest, context: Context
    ) -> pb.GetSubscriptionResponse:
        row = await self.db.read(subscriptions.get, self.db, policy.caller(), request.subscription_id)
        return pb.GetSubscriptionResponse(subscription=subscription(row))

    async def ListSubscriptions(
        self, request: pb.ListSubscriptionsRequest, context: Context
    ) -> pb.ListSubscriptionsResponse:
        rows, token = await self.db.read(
            subscriptions.list_own, self.db, policy.caller(), request.page_size, request.page_token
        )
        return pb.ListSubscriptionsResponse(
            subscriptions=[subscription(r) for r in rows], next_page_token=token
        )

    async def _once(self, rpc: str, request: Any, response_type: type[M], change: Callable[[], M]) -> M:
        """`change` and, with a request_id, the record of its answer, committed together; a replay answers
        the first response (ackhub.hub.store.idempotency)."""
        outcome = await idempotent.once(
            self.db,
            self.clock.now_ms(),
            policy.caller().actor,
            rpc,
            request,
            response_type,
            lambda: (change(), True),
        )
        return outcome.response

    async def DeleteSubscription(
        self, request: pb.DeleteSubscriptionRequest, context: Context
    ) -> pb.DeleteSubscriptionResponse:
        caller = policy.caller()

        def change() -> pb.DeleteSubscriptionResponse:
            subscriptions.remove(self.db, caller, request.subscription_id, self.clock.now_ms())
            return pb.DeleteSubscriptionResponse()

        return await self._once("DeleteSubscription", request, pb.DeleteSubscriptionResponse, change)

    async def EnableSubscription(
        self, request: pb.EnableSubscriptionRequest, context: Context
    ) -> pb.EnableSubscriptionResponse:
        caller = policy.caller()

        def change() -> pb.EnableSubscriptionResponse:
            row = subscriptions.enable(self.db, caller, request.subscription_id, self.clock.now_ms())
            return pb.EnableSubscriptionResponse(subscription=subscription(row))

        return await self._once("EnableSubscription", request, pb.EnableSubscriptionResponse, change)

    async def ListNotificationAttempts(
        self, request: pb.ListNotificationAttemptsRequest, context: Context
    ) -> pb.ListNotificationAttemptsResponse:
        page, token = await self.db.read(
            subscriptions.attempts,
            self.db,
            policy.caller(),
            request.subscription_id,
            request.page_size,
            request.page_token,
        )
        return pb.ListNotificationAttemptsResponse(
            attempts=[attempt(a, n) for a, n in page], next_page_token=token
        )
