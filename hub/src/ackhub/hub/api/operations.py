"""`ackhub.v1.OperationsService`: operators work escalation cases, within their jurisdiction."""

from __future__ import annotations

from typing import Any, TypeAlias

from ackhub.core.principal import Principal
from ackhub.hub.api import convert
from ackhub.hub.auth import policy
from ackhub.hub.exchange import queries
from ackhub.hub.exchange.hub import Exchange
from ackhub.v1 import operations_service_pb2 as pb
from ackhub.v1 import operations_service_pb2_grpc as pb_grpc

Context: TypeAlias = Any  # grpc.aio.ServicerContext; grpc ships no usable types


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

    async def ResolveEscalation(
        self, request: pb.ResolveEscalationRequest, context: Context
    ) -> pb.ResolveEscalationResponse:
        operator = policy.caller()
        await self._case(operator, request.escalation_id)
        case = await self.exchange.resolve(operator, request.escalation_id, request.reason)
        return pb.ResolveEscalationResponse(escalation=await self._case(operator, case.id))

    async def AddEscalationNote(
        self, request: pb.AddEscalationNoteRequest, context: Context
    ) -> pb.AddEscalationNoteResponse:
        operator = policy.caller()
        await self._case(operator, request.escalation_id)
        case = await self.exchange.add_note(operator, request.escalation_id, request.text)
        return pb.AddEscalationNoteResponse(escalation=await self._case(operator, case.id))

    async def RedeliverDelivery(
        self, request: pb.RedeliverDeliveryRequest, context: Context
    ) -> pb.RedeliverDeliveryResponse:
        operator = policy.caller()
        await self.exchange.db.run(
            queries.check_delivery_visible, self.exchange.db, operator, request.delivery_id
        )
        delivery = await self.exchange.redeliver(operator, request.delivery_id)
        return pb.RedeliverDeliveryResponse(delivery=convert.delivery(delivery))
