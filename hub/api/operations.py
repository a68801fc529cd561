"""`ackhub.v1.OperationsService`: operators work escalation cases."""

from __future__ import annotations

from typing import Any, TypeAlias

from hub._proto.ackhub.v1 import operations_service_pb2 as pb
from hub._proto.ackhub.v1 import operations_service_pb2_grpc as pb_grpc
from hub.api import convert
from hub.auth.identity import Authenticator, Principal
from hub.errors import PermissionDenied
from hub.exchange import queries
from hub.exchange.hub import Exchange

Context: TypeAlias = Any  # grpc.aio.ServicerContext; grpc ships no usable types


class OperationsServicer(pb_grpc.OperationsServiceServicer):
    def __init__(self, exchange: Exchange, auth: Authenticator) -> None:
        self.exchange = exchange
        self.auth = auth

    def _operator(self, context: Context) -> Principal:
        caller = self.auth.authenticate(context.invocation_metadata() or ())
        if caller.kind != "operator":
            raise PermissionDenied(
                "only an operator may work escalations",
                reason="OPERATOR_ONLY",
                metadata={"caller": caller.actor},
            )
        return caller

    async def _case(self, escalation_id: str) -> pb.Escalation:
        case, notes = await self.exchange.db.run(queries.get_escalation, self.exchange.db, escalation_id)
        return convert.escalation(case, notes)

    async def ListEscalations(
        self, request: pb.ListEscalationsRequest, context: Context
    ) -> pb.ListEscalationsResponse:
        self._operator(context)
        queries.check_agency_filter("recipient", request.recipient, self.exchange.agency_ids)
        state = convert.CASE_STATE_NAMES.get(request.state, "") if request.state else ""
        page = await self.exchange.db.run(
            queries.list_escalations,
            self.exchange.db,
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
        self._operator(context)
        return pb.GetEscalationResponse(escalation=await self._case(request.escalation_id))

    async def ResolveEscalation(
        self, request: pb.ResolveEscalationRequest, context: Context
    ) -> pb.ResolveEscalationResponse:
        operator = self._operator(context)
        case = await self.exchange.resolve(operator, request.escalation_id, request.reason)
        return pb.ResolveEscalationResponse(escalation=await self._case(case.id))

    async def AddEscalationNote(
        self, request: pb.AddEscalationNoteRequest, context: Context
    ) -> pb.AddEscalationNoteResponse:
        operator = self._operator(context)
        case = await self.exchange.add_note(operator, request.escalation_id, request.text)
        return pb.AddEscalationNoteResponse(escalation=await self._case(case.id))

    async def RedeliverDelivery(
        self, request: pb.RedeliverDeliveryRequest, context: Context
    ) -> pb.RedeliverDeliveryResponse:
        operator = self._operator(context)
        delivery = await self.exchange.redeliver(operator, request.delivery_id)
        return pb.RedeliverDeliveryResponse(delivery=convert.delivery(delivery))
