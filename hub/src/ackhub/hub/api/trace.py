"""`ackhub.v1.TraceService`: enterprises trace their own records and download delivery proofs."""

from __future__ import annotations

from typing import Any, TypeAlias

from ackhub.hub.api import convert
from ackhub.hub.auth import policy
from ackhub.hub.exchange import trace
from ackhub.hub.ledger import proof
from ackhub.hub.ledger.ledger import AuditLedger
from ackhub.hub.store.db import Database
from ackhub.v1 import trace_service_pb2 as pb
from ackhub.v1 import trace_service_pb2_grpc as pb_grpc

Context: TypeAlias = Any  # grpc.aio.ServicerContext; grpc ships no usable types
_KINDS = {
    name: getattr(pb, f"TIMELINE_EVENT_KIND_{name}")
    for name in (*trace.TIMELINE_KINDS.values(), trace.CLOSED_KIND)
}


class TraceServicer(pb_grpc.TraceServiceServicer):
    def __init__(self, db: Database, ledger: AuditLedger, agency_names: dict[str, str]) -> None:
        self.db = db
        self.ledger = ledger
        self.agency_names = agency_names

    async def ListRecords(self, request: pb.ListRecordsRequest, context: Context) -> pb.ListRecordsResponse:
        caller = policy.caller()
        page = await self.db.read(
            trace.list_records,
            self.db,
            caller,
            declaration_number=request.declaration_number,
            record_type=request.record_type,
            start_ms=convert.timestamp_ms(request.start_time, "start_time")
            if request.HasField("start_time")
            else None,
            end_ms=convert.timestamp_ms(request.end_time, "end_time")
            if request.HasField("end_time")
            else None,
            state=convert.enum_name(convert.STATE_NAMES, request.state),
            closure=convert.enum_name(convert.CLOSURE_NAMES, request.closure),
            size=request.page_size,
            token=request.page_token,
        )
        return pb.ListRecordsResponse(
            records=[
                pb.TracedRecord(
                    record=convert.record(r, with_payload=False),
                    deliveries=[convert.delivery(d) for d in ds],
                )
                for r, ds in page.items
            ],
            next_page_token=page.next_token,
        )

    async def TraceRecord(self, request: pb.TraceRecordRequest, context: Context) -> pb.TraceRecordResponse:
        caller = policy.caller()
        traced = await self.db.read(trace.trace_record, self.db, caller, request.record_id)
        return pb.TraceRecordResponse(
            record=convert.record(traced.record, with_payload=False),
            recipients=[
                pb.RecipientTimeline(
                    agency_id=d.recipient,
                    agency_name=self.agency_names.get(d.recipient, d.recipient),
                    delivery=convert.delivery(d),
                    events=[
                        pb.TimelineEvent(
                            event_time=convert.timestamp(e.time_ms),
                            kind=_KINDS[e.kind],
                            actor=e.actor,
                            detail=e.detail,
                            reason=e.reason,
                            audit_seq=e.audit_seq,
                        )
                        for e in traced.timelines[d.id]
                    ],
                )
                for d in traced.deliveries
            ],
        )

    async def GetDeliveryProof(
        self, request: pb.GetDeliveryProofRequest, context: Context
    ) -> pb.GetDeliveryProofResponse:
        caller = policy.caller()
        document = await self.db.run(proof.build, self.ledger, caller, request.record_id)
        return pb.GetDeliveryProofResponse(document=proof.dumps(document))
