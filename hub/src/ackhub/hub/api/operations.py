"""`ackhub.v1.OperationsService`: operators work escalation cases, within their jurisdiction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar

from google.protobuf.message import Message

from ackhub.core.principal import Principal
from ackhub.hub.api import convert, idempotent
from ackhub.hub.auth import policy
from ackhub.hub.exchange import operations, queries
from ackhub.hub.exchange.escalation import Notice
from ackhub.hub.exchange.hub import Exchange
from ackhub.hub.store import idempotency
from ackhub.v1 import operations_service_pb2 as pb
from ackhub.v1 import operations_service_pb2_grpc as pb_grpc

Context: TypeAlias = Any  # grpc.aio.ServicerContext; grpc ships no usable types
M = TypeVar("M", bound=Message)
T = TypeVar("T")


class OperationsServicer(pb_grpc.OperationsServiceServicer):
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    async def _case(self, caller: Principal, escalation_id: str) -> pb.Escalation:
        """The case if `caller` may see it (NOT_FOUND otherwise, as for a case that does not exist)."""
        case, notes = await self.exchange.db.read(
            queries.get_escalation, self.exchange.db, escalation_id, caller
        )
        return convert.escalation(case, notes)

    async def ListEscalations(
        self, request: pb.ListEscalationsRequest, context: Context
    ) -> pb.ListEscalationsResponse:
        caller = policy.caller()
        queries.check_agency_filter("recipient", request.recipient, self.exchange.agency_ids)
        state = convert.CASE_STATE_NAMES.get(request.state, "") if request.state else ""
        page = await self.exchange.db.read(
            queries.list_escalations,
            self.exchange.db,
            caller,
            state=state,
            recipient=request.recipient,
            min_level=request.min_level,
            size=request.page_size,
            token=request.page_token,
        )
        return pb.ListEscalationsResponse(
            escalations=[convert.escalation(c) for c in page.items], next_page_token=page.next_token
        )

    async def GetEscalation(
        self, request: pb.GetEscalationRequest, context: Context
    ) -> pb.GetEscalationResponse:
        caller = policy.caller()
        return pb.GetEscalationResponse(escalation=await self._case(caller, request.escalation_id))

    async def _once(
        self,
        caller: Principal,
        rpc: str,
        request: Any,
        response_type: type[M],
        change: Callable[[], tuple[M, T]],
    ) -> idempotency.Outcome[M, T]:
        """`change` (on a database thread) and, with a request_id, the record of its answer, committed
        together; a replay answers the first response (ackhub.hub.store.idempotency)."""
        exchange = self.exchange
        return await idempotent.once(
            exchange.db, exchange.clock.now_ms(), caller.actor, rpc, request, response_type, change
        )

    def _case_now(self, caller: Principal, escalation_id: str) -> pb.Escalation:
        case, notes = queries.get_escalation(self.exchange.db, escalation_id, caller)
        return convert.escalation(case, notes)

    async def ResolveEscalation(
        self, request: pb.ResolveEscalationRequest, context: Context
    ) -> pb.ResolveEscalationResponse:
        operator = policy.caller()
        exchange = self.exchange

        def change() -> tuple[pb.ResolveEscalationResponse, list[Notice]]:
            self._case_now(operator, request.escalation_id)  # NOT_FOUND outside the jurisdiction
            case, notices = operations.resolve(
                exchange.db, operator, request.escalation_id, request.reason, exchange.clock.now_ms()
            )
            return pb.ResolveEscalationResponse(escalation=self._case_now(operator, case.id)), notices

        outcome = await self._once(
            operator, "ResolveEscalation", request, pb.ResolveEscalationResponse, change
        )
        if outcome.after:
            await exchange.notifications.dispatch(outcome.after)
        return outcome.response

    async def AddEscalationNote(
        self, request: pb.AddEscalationNoteRequest, context: Context
    ) -> pb.AddEscalationNoteResponse:
        operator = policy.caller()
        exchange = self.exchange

        def change() -> tuple[pb.AddEscalationNoteResponse, bool]:
            self._case_now(operator, request.escalation_id)
            case = operations.add_note(
                exchange.db, operator, request.escalation_id, request.text, exchange.clock.now_ms()
            )
            return pb.AddEscalationNoteResponse(escalation=self._case_now(operator, case.id)), True

        outcome = await self._once(
            operator, "AddEscalationNote", request, pb.AddEscalationNoteResponse, change
        )
        return outcome.response

    async def RedeliverDelivery(
        self, request: pb.RedeliverDeliveryRequest, context: Context
    ) -> pb.RedeliverDeliveryResponse:
        operator = policy.caller()
        exchange = self.exchange

        def change() -> tuple[pb.RedeliverDeliveryResponse, str]:
            queries.check_delivery_visible(exchange.db, operator, request.delivery_id)
            delivery = operations.redeliver(
                exchange.db, operator, request.delivery_id, exchange.clock.now_ms()
            )
            return pb.RedeliverDeliveryResponse(delivery=convert.delivery(delivery)), delivery.recipient

        outcome = await self._once(
            operator, "RedeliverDelivery", request, pb.RedeliverDeliveryResponse, change
        )
        if outcome.after is not None:
            exchange.redelivery_requested(outcome.after)
        return outcome.response
