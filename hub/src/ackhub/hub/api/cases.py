"""`ackhub.v1.CaseService`: proto ⇄ `hub.cases` and nothing else; `CaseBook` does the work."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, TypeAlias

from ackhub.hub.api import convert
from ackhub.hub.auth import policy
from ackhub.hub.cases import CaseBook, CaseFilter, CaseView, NewAttachment, PermitCheckSubject, RecordSubject
from ackhub.hub.cases.views import Subject
from ackhub.v1 import case_service_pb2 as pb
from ackhub.v1 import case_service_pb2_grpc as pb_grpc

Context: TypeAlias = Any  # grpc.aio.ServicerContext; grpc ships no usable types

KIND_NAMES = {
    pb.CASE_KIND_NOT_RECEIVED: "NOT_RECEIVED",
    pb.CASE_KIND_CONTENT_DISPUTE: "CONTENT_DISPUTE",
    pb.CASE_KIND_REJECTION_APPEAL: "REJECTION_APPEAL",
    pb.CASE_KIND_OTHER: "OTHER",
}
KIND_VALUES = {name: value for value, name in KIND_NAMES.items()}
STATE_NAMES = {
    pb.CASE_STATE_OPEN: "OPEN",
    pb.CASE_STATE_AWAITING_PARTY: "AWAITING_PARTY",
    pb.CASE_STATE_RESOLVED: "RESOLVED",
    pb.CASE_STATE_WITHDRAWN: "WITHDRAWN",
}
STATE_VALUES = {name: value for value, name in STATE_NAMES.items()}


def _attachments(items: Any) -> list[NewAttachment]:
    return [NewAttachment(a.filename, a.content_type, a.content) for a in items]


def _name(names: Mapping[Any, str], value: int) -> str:
    """The enum's name; an unknown number passes through as text, which validation refuses by field."""
    return names.get(value, str(value)) if value else ""


def evidence(data: dict[str, Any]) -> pb.CaseEvidence:
    """The stored evidence JSON (ackhub.hub.cases.evidence) as the proto message."""
    answer = pb.CaseEvidence(summary=data.get("summary", ""))
    for d in data.get("deliveries") or []:
        answer.deliveries.append(
            pb.DeliveryEvidence(
                delivery_id=d["delivery_id"],
                recipient=d["recipient"],
                state=d["state"],
                acknowledgements=[
                    pb.AcknowledgementEvidence(
                        status=a["status"],
                        key_id=a["key_id"],
                        ack_time=convert.timestamp(a["ack_ms"]),
                        receive_time=convert.timestamp(a["received_ms"]),
                        reason=a["reason"],
                        signature=base64.b64decode(a["signature"]),
                    )
                    for a in d["acknowledgements"]
                ],
                attempts=[
                    pb.AttemptEvidence(
                        number=t["number"],
                        connector=t["connector"],
                        send_time=convert.timestamp(t["sent_ms"]),
                        outcome=t["outcome"],
                    )
                    for t in d["attempts"]
                ],
            )
        )
    if data.get("delivery_proof"):
        answer.delivery_proof = json.dumps(data["delivery_proof"], indent=2, ensure_ascii=False).encode()
    permit = data.get("permit")
    if permit:
        answer.permit.CopyFrom(
            pb.PermitEvidence(
                check_id=permit["check_id"],
                kind=permit["kind"],
                number=permit["number"],
                verdict=permit["verdict"],
                reasons=permit["reasons"],
                issuer=permit["issuer"],
                permit_document=permit["permit_document"],
                permit_key_id=permit["permit_key_id"],
                permit_signature=base64.b64decode(permit["permit_signature"]),
                issuer_keys=[pb.IssuerKeyEvidence(**k) for k in permit["issuer_keys"]],
                signature_problem=permit["signature_problem"],
                declaration_number=permit["declaration_number"],
                declarant_uscc=permit["declarant_uscc"],
                check_time=convert.timestamp(permit["check_ms"]),
            )
        )
    return answer


def case(view: CaseView) -> pb.Case:
    answer = pb.Case(
        case_id=view.id,
        kind=KIND_VALUES[view.kind],
        state=STATE_VALUES[view.state],
        title=view.title,
        opened_by=view.opened_by,
        open_time=convert.timestamp(view.opened_ms),
        awaited_party=view.awaited_party,
        respond_by_time=convert.timestamp(view.respond_by_ms),
        level=view.level,
        parties=[pb.CaseParty(party=p.party, role=p.role) for p in view.parties],
        evidence=evidence(view.evidence),
        messages=[
            pb.CaseMessage(
                message_id=m.id,
                author=m.author,
                text=m.text,
                attachments=[
                    pb.CaseAttachment(
                        filename=a.filename,
                        content_type=a.content_type,
                        size_bytes=a.size_bytes,
                        sha256=a.sha256,
                    )
                    for a in m.attachments
                ],
                create_time=convert.timestamp(m.created_ms),
                audit_seq=m.audit_seq,
            )
            for m in view.messages
        ],
        history=[
            pb.CaseHistoryEntry(
                kind=h.kind,
                actor=h.actor,
                detail=h.detail,
                event_time=convert.timestamp(h.time_ms),
                audit_seq=h.audit_seq,
            )
            for h in view.history
        ],
        close_reason=view.close_reason,
        closed_by=view.closed_by,
        close_time=convert.timestamp(view.closed_ms),
        reopen_until_time=convert.timestamp(view.reopen_until_ms),
        declaration_number=view.declaration_number,
        subject_uscc=view.subject_uscc,
    )
    if view.record_id:
        answer.record.CopyFrom(pb.RecordSubject(record_id=view.record_id, delivery_id=view.delivery_id))
    if view.check_id:
        answer.permit_check.CopyFrom(pb.PermitCheckSubject(check_id=view.check_id))
    return answer


class CaseServicer(pb_grpc.CaseServiceServicer):
    def __init__(self, book: CaseBook) -> None:
        self.book = book

    async def OpenCase(self, request: pb.OpenCaseRequest, context: Context) -> pb.OpenCaseResponse:
        subject: Subject | None = None
        which = request.WhichOneof("subject")
        if which == "record":
            r = request.record
            subject = RecordSubject(r.record_id, r.delivery_id, r.recipient)
        elif which == "permit_check":
            subject = PermitCheckSubject(request.permit_check.check_id)
        answer = await self.book.open(
            policy.caller(),
            _name(KIND_NAMES, request.kind),
            subject,
            title=request.title,
            text=request.text,
            attachments=_attachments(request.attachments),
            request_id=request.request_id,
        )
        return pb.OpenCaseResponse(case=case(answer.case), replayed=answer.replayed)

    async def GetCase(self, request: pb.GetCaseRequest, context: Context) -> pb.GetCaseResponse:
        return pb.GetCaseResponse(case=case(await self.book.get(policy.caller(), request.case_id)))

    async def ListCases(self, request: pb.ListCasesRequest, context: Context) -> pb.ListCasesResponse:
        page = await self.book.list_cases(
            policy.caller(),
            CaseFilter(
                kind=_name(KIND_NAMES, request.kind),
                state=_name(STATE_NAMES, request.state),
                party=request.party,
                record_id=request.record_id,
            ),
            request.page_size,
            request.page_token,
        )
        return pb.ListCasesResponse(cases=[case(v) for v in page.cases], next_page_token=page.next_token)

    async def AddCaseMessage(
        self, request: pb.AddCaseMessageRequest, context: Context
    ) -> pb.AddCaseMessageResponse:
        answer = await self.book.add_message(
            policy.caller(),
            request.case_id,
            request.text,
            _attachments(request.attachments),
            await_party=request.await_party,
            request_id=request.request_id,
        )
        return pb.AddCaseMessageResponse(
            case=case(answer.case), message_id=answer.message_id, replayed=answer.replayed
        )

    async def ResolveCase(self, request: pb.ResolveCaseRequest, context: Context) -> pb.ResolveCaseResponse:
        answer = await self.book.resolve(
            policy.caller(), request.case_id, request.resolution, request_id=request.request_id
        )
        return pb.ResolveCaseResponse(case=case(answer.case), replayed=answer.replayed)

    async def WithdrawCase(
        self, request: pb.WithdrawCaseRequest, context: Context
    ) -> pb.WithdrawCaseResponse:
        answer = await self.book.withdraw(
            policy.caller(), request.case_id, request.reason, request_id=request.request_id
        )
        return pb.WithdrawCaseResponse(case=case(answer.case), replayed=answer.replayed)

    async def ReopenCase(self, request: pb.ReopenCaseRequest, context: Context) -> pb.ReopenCaseResponse:
        answer = await self.book.reopen(
            policy.caller(), request.case_id, request.reason, request_id=request.request_id
        )
        return pb.ReopenCaseResponse(case=case(answer.case), replayed=answer.replayed)

    async def AddCaseParty(
        self, request: pb.AddCasePartyRequest, context: Context
    ) -> pb.AddCasePartyResponse:
        answer = await self.book.add_party(
            policy.caller(),
            request.case_id,
            request.party,
            await_party=request.await_party,
            request_id=request.request_id,
        )
        return pb.AddCasePartyResponse(case=case(answer.case), replayed=answer.replayed)
