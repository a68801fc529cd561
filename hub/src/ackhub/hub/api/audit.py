"""`ackhub.v1.AuditService`: checkpoints, inclusion and consistency proofs, and the events themselves.

Checkpoints and consistency proofs reveal nothing but hashes: any authenticated caller may have them.
Events (alone or with an inclusion proof) and fresh checkpoints are for operators.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, TypeAlias

from sqlmodel import col, select

from ackhub.audit.checkpoint import Checkpoint
from ackhub.hub.api import convert
from ackhub.hub.auth import policy
from ackhub.hub.exchange.queries import Page
from ackhub.hub.ledger.ledger import AuditLedger, cosignature_lines
from ackhub.hub.pagination import decode_token, encode_token, page_size
from ackhub.hub.store.models import AuditEventRow
from ackhub.v1 import audit_service_pb2 as pb
from ackhub.v1 import audit_service_pb2_grpc as pb_grpc

Context: TypeAlias = Any  # grpc.aio.ServicerContext; grpc ships no usable types


def checkpoint(cp: Checkpoint, cosignatures: Sequence[str] = ()) -> pb.Checkpoint:
    return pb.Checkpoint(
        origin=cp.origin,
        tree_size=cp.tree_size,
        root_hash=cp.root_hash,
        sign_time=convert.timestamp(cp.time_ms),
        key_id=cp.key_id,
        public_key=base64.b64decode(cp.public_key),
        signature=cp.signature,
        note=cp.note().decode(),
        signed_note=cp.signed_note(cosignatures),
    )


def event(row: AuditEventRow, leaf_data: bytes = b"") -> pb.AuditEvent:
    return pb.AuditEvent(
        seq=row.seq or 0,
        leaf_index=row.leaf_index,
        event_time=convert.timestamp(row.time_ms),
        kind=row.kind,
        actor=row.actor,
        record_id=row.record_id or "",
        delivery_id=row.delivery_id or "",
        escalation_id=row.escalation_id or "",
        data_json=row.data,
        leaf_hash=row.leaf_hash or b"",
        leaf_data=leaf_data,
    )


def list_events(ledger: AuditLedger, request: pb.ListAuditEventsRequest) -> Page[AuditEventRow]:
    """Blocking. Newest first by `seq`."""
    start = convert.timestamp_ms(request.start_time, "start_time") if request.HasField("start_time") else None
    end = convert.timestamp_ms(request.end_time, "end_time") if request.HasField("end_time") else None
    filters: dict[str, object] = {
        "kind": request.kind,
        "record": request.record_id,
        "delivery": request.delivery_id,
        "actor": request.actor,
        "start": start,
        "end": end,
    }
    limit = page_size(request.page_size)
    after = decode_token(request.page_token, filters)
    query = select(AuditEventRow)
    for column, value in (
        (AuditEventRow.kind, request.kind),
        (AuditEventRow.record_id, request.record_id),
        (AuditEventRow.delivery_id, request.delivery_id),
        (AuditEventRow.actor, request.actor),
    ):
        if value:
            query = query.where(column == value)
    if start is not None:
        query = query.where(col(AuditEventRow.time_ms) >= start)
    if end is not None:
        query = query.where(col(AuditEventRow.time_ms) < end)
    if after is not None:
        query = query.where(col(AuditEventRow.seq) < after)
    with ledger.db.transaction() as session:
        rows = list(session.exec(query.order_by(col(AuditEventRow.seq).desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_token(rows[-1].seq or 0, filters) if more else "")


class AuditServicer(pb_grpc.AuditServiceServicer):
    def __init__(self, ledger: AuditLedger) -> None:
        self.ledger = ledger

    async def _cosigned(self, cp: Checkpoint) -> pb.Checkpoint:
        """The checkpoint with the witnesses' cosignatures received so far in its signed note."""

        def lines() -> list[str]:
            with self.ledger.db.transaction() as session:
                return cosignature_lines(session, cp.tree_size)

        return checkpoint(cp, await self.ledger.db.run(lines))

    async def GetCheckpoint(
        self, request: pb.GetCheckpointRequest, context: Context
    ) -> pb.GetCheckpointResponse:
        if request.fresh:
            policy.require_staff(policy.caller(), "sign a fresh checkpoint")
            cp = await self.ledger.db.run(self.ledger.checkpoint)
        else:
            cp = await self.ledger.db.run(self.ledger.get_checkpoint, request.tree_size)
        return pb.GetCheckpointResponse(checkpoint=await self._cosigned(cp))

    async def GetInclusionProof(
        self, request: pb.GetInclusionProofRequest, context: Context
    ) -> pb.GetInclusionProofResponse:
        found = await self.ledger.db.run(self.ledger.inclusion, request.leaf_index, request.tree_size)
        return pb.GetInclusionProofResponse(
            event=event(found.event, found.leaf_data),
            audit_path=found.audit_path,
            checkpoint=await self._cosigned(found.checkpoint),
        )

    async def GetConsistencyProof(
        self, request: pb.GetConsistencyProofRequest, context: Context
    ) -> pb.GetConsistencyProofResponse:
        proof, old, new = await self.ledger.db.run(
            self.ledger.consistency, request.first_tree_size, request.second_tree_size
        )
        return pb.GetConsistencyProofResponse(
            proof=proof,
            first_checkpoint=await self._cosigned(old),
            second_checkpoint=await self._cosigned(new),
        )

    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: Context
    ) -> pb.ListAuditEventsResponse:
        page = await self.ledger.db.run(list_events, self.ledger, request)
        return pb.ListAuditEventsResponse(
            events=[event(r) for r in page.items], next_page_token=page.next_token
        )
