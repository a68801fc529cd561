"""`ackhub.v1.PermitService`: protobuf ⇄ permit use cases. Every bad field of a request is collected and
refused at once (INVALID_ARGUMENT with one violation per field) before any use case runs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeAlias

from ackhub.core.identifiers import check_declaration_number, check_hs_code
from ackhub.core.permit_document import (
    PermitDocument,
    PermitLine,
    format_quantity,
    parse_date,
    parse_quantity,
)
from ackhub.hub.api import convert
from ackhub.hub.auth import policy
from ackhub.hub.exchange.validation import Violations
from ackhub.hub.permits.drawdown import DrawDownRequest
from ackhub.hub.permits.registration import SignedDocument
from ackhub.hub.permits.service import Permits, PermitView
from ackhub.hub.permits.verify import DeclarationQuery, GoodsQuery, LineVerdict
from ackhub.hub.store import idempotency
from ackhub.hub.store.models import DrawDownRow, PermitRow
from ackhub.v1 import permit_service_pb2 as pb
from ackhub.v1 import permit_service_pb2_grpc as pb_grpc

Context: TypeAlias = Any  # grpc.aio.ServicerContext; grpc ships no usable types
CHINA = timedelta(hours=8)  # permit dates are China Standard Time calendar dates
_REASONS = {name: pb.VerificationReason.Value(f"VERIFICATION_REASON_{name}") for name in (
    "NOT_FOUND", "SIGNATURE_INVALID", "UNKNOWN_ISSUER", "HOLDER_MISMATCH", "WRONG_CUSTOMS_OFFICE", "NOT_YET_VALID",
    "EXPIRED", "REVOKED", "GOODS_NOT_COVERED", "UNIT_MISMATCH", "QUANTITY_EXCEEDED", "USES_EXHAUSTED",
    "ISSUER_UNREACHABLE",
)}  # fmt: skip


def today(now_ms: int) -> date:
    return (datetime.fromtimestamp(now_ms / 1000, tz=UTC) + CHINA).date()


def _date(bad: Violations, field: str, text: str, default: date | None = None) -> date:
    if not text and default is not None:
        return default
    try:
        return parse_date(text)
    except ValueError as exc:
        bad.add(field, "is required (YYYY-MM-DD)" if not text else str(exc))
        return date(1970, 1, 1)


def _quantity(bad: Violations, field: str, text: str) -> int:
    if text.strip().startswith("-"):
        bad.add(field, f"must be more than 0, got {text[:32]!r}")
        return 0
    try:
        value = parse_quantity(text)
    except ValueError as exc:
        bad.add(field, str(exc))
        return 0
    if value <= 0:
        bad.add(field, "must be more than 0")
    return value


def signed_document(message: pb.SignedPermit, bad: Violations) -> SignedDocument:
    content = message.content
    prefix = "permit.content"
    lines = tuple(
        PermitLine(
            line_number=line.line_number,
            hs_code=line.hs_code,
            quantity_milli=_quantity(bad, f"{prefix}.lines[{i}].quantity", line.quantity),
            unit=line.unit,
            bulk=line.bulk,
            origin_criterion=line.origin_criterion,
            description=line.description,
        )
        for i, line in enumerate(content.lines)
    )
    for name in ("number", "kind", "issuer", "holder_uscc"):
        bad.required(f"{prefix}.{name}", getattr(content, name))
    document = PermitDocument(
        number=content.number,
        kind=content.kind,
        issuer=content.issuer,
        version=content.version,
        holder_uscc=content.holder_uscc,
        customs_office=content.customs_office,
        issue_date=_date(bad, f"{prefix}.issue_date", content.issue_date),
        valid_from=_date(bad, f"{prefix}.valid_from", content.valid_from),
        valid_to=_date(bad, f"{prefix}.valid_to", content.valid_to),
        multi_batch=content.multi_batch,
        lines=lines,
        exporter=content.exporter,
        importer=content.importer,
        invoice_number=content.invoice_number,
    )
    bad.required("permit.key_id", message.key_id)
    if not message.signature:
        bad.add("permit.signature", "is required")
    return SignedDocument(document, message.key_id, message.signature)


def signed_message(document: PermitDocument, key_id: str, signature: bytes) -> pb.SignedPermit:
    return pb.SignedPermit(
        content=pb.PermitContent(
            number=document.number,
            kind=document.kind,
            issuer=document.issuer,
            version=document.version,
            holder_uscc=document.holder_uscc,
            customs_office=document.customs_office,
            issue_date=document.issue_date.isoformat(),
            valid_from=document.valid_from.isoformat(),
            valid_to=document.valid_to.isoformat(),
            multi_batch=document.multi_batch,
            lines=[
                pb.PermitLine(
                    line_number=line.line_number,
                    hs_code=line.hs_code,
                    quantity=format_quantity(line.quantity_milli),
                    unit=line.unit,
                    bulk=line.bulk,
                    origin_criterion=line.origin_criterion,
                    description=line.description,
                )
                for line in document.lines
            ],
            exporter=document.exporter,
            importer=document.importer,
            invoice_number=document.invoice_number,
        ),
        key_id=key_id,
        signature=signature,
    )


def permit_message(view: PermitView) -> pb.Permit:
    row = view.row
    return pb.Permit(
        permit_id=row.id if row else "",
        current=signed_message(view.document, view.key_id, view.signature),
        state=pb.PERMIT_STATE_REVOKED if row and row.state == "REVOKED" else pb.PERMIT_STATE_ACTIVE,
        source=pb.PERMIT_SOURCE_PUSHED if row and row.source == "PUSHED" else pb.PERMIT_SOURCE_REGISTRY,
        max_uses=view.max_uses,
        uses=row.uses if row else 0,
        balances=[
            pb.LineBalance(
                line_number=line,
                quantity=format_quantity(quantity),
                drawn=format_quantity(drawn),
                remaining=format_quantity(remaining),
                unit=unit,
            )
            for line, quantity, drawn, remaining, unit in view.balances
        ],
        revoke_time=convert.timestamp(row.revoked_ms) if row else None,
        revoke_reason=row.revoke_reason if row else "",
        versions=[
            pb.PermitVersion(
                version=v.version,
                key_id=v.key_id,
                create_time=convert.timestamp(v.created_ms),
                created_by=v.created_by,
            )
            for v in view.versions
        ],
    )


def _goods(bad: Violations, field: str, line: pb.GoodsLine, item_number: int) -> GoodsQuery:
    if line.item_number < 0:
        bad.add(f"{field}.item_number", "cannot be negative")
    bad.required(f"{field}.permit_number", line.permit_number)
    bad.required(f"{field}.permit_kind", line.permit_kind)
    if bad.required(f"{field}.hs_code", line.hs_code):
        problem = check_hs_code(line.hs_code)
        if problem:
            bad.add(f"{field}.hs_code", problem)
    bad.required(f"{field}.unit", line.unit)
    return GoodsQuery(
        item_number=line.item_number or item_number,
        permit_number=line.permit_number,
        permit_kind=line.permit_kind,
        hs_code=line.hs_code,
        quantity_milli=_quantity(bad, f"{field}.quantity", line.quantity),
        unit=line.unit,
    )


def _parties(bad: Violations, request: Any, now_ms: int, declaration_required: bool) -> tuple[date, str]:
    if bad.required("declarant_uscc", request.declarant_uscc):
        bad.uscc("declarant_uscc", request.declarant_uscc)
    if bad.required("customs_office", request.customs_office) and not (
        len(request.customs_office) == 4 and request.customs_office.isdigit()
    ):
        bad.add("customs_office", f"is 4 digits, got {request.customs_office[:16]!r}")
    declaration = request.declaration_number
    if declaration_required:
        bad.required("declaration_number", declaration)
    if declaration:
        problem = check_declaration_number(declaration)
        if problem:
            bad.add("declaration_number", problem)
    return _date(bad, "date", request.date, today(now_ms)), declaration


def line_result(verdict: LineVerdict) -> pb.LineResult:
    return pb.LineResult(
        item_number=verdict.item_number,
        verdict=pb.VERDICT_VALID if verdict.valid else pb.VERDICT_INVALID,
        reasons=[_REASONS[reason] for reason, _ in verdict.reasons],
        details=[detail for _, detail in verdict.reasons],
        permit_line_number=verdict.permit_line,
        remaining=format_quantity(verdict.remaining_milli) if verdict.remaining_milli is not None else "",
        uses_left=verdict.uses_left,
        permit_version=verdict.permit_version,
        check_id=verdict.check_id,
    )


def draw_down_message(draw: DrawDownRow, kind: str, number: str) -> pb.DrawDown:
    return pb.DrawDown(
        draw_down_id=draw.id,
        permit_number=number,
        permit_kind=kind,
        permit_line_number=draw.line_number,
        declaration_number=draw.declaration_number,
        item_number=draw.item_number,
        quantity=format_quantity(draw.quantity_milli),
        unit=draw.unit,
        counted_use=draw.counted_use,
        released=draw.state == "RELEASED",
        create_time=convert.timestamp(draw.created_ms),
        release_time=convert.timestamp(draw.released_ms),
        usage_record_id=draw.usage_record_id,
        release_record_id=draw.release_record_id,
    )


def _check_request_id(request_id: str) -> None:
    """An optional request_id is a UUID (AIP-155)."""
    if request_id:
        bad = Violations()
        bad.uuid("request_id", request_id)
        bad.raise_if_any()


class PermitServicer(pb_grpc.PermitServiceServicer):
    def __init__(self, permits: Permits) -> None:
        self.permits = permits

    def _signed(self, request: Any) -> SignedDocument:
        bad = Violations()
        if request.request_id:
            bad.uuid("request_id", request.request_id)
        if not request.HasField("permit"):
            bad.add("permit", "is required")
            bad.raise_if_any()
        signed = signed_document(request.permit, bad)
        bad.raise_if_any()
        return signed

    async def _view(self, kind: str, number: str) -> pb.Permit:
        return permit_message(await self.permits.get(kind, number))

    async def CreatePermit(
        self, request: pb.CreatePermitRequest, context: Context
    ) -> pb.CreatePermitResponse:
        caller = policy.caller()
        signed = self._signed(request)
        permit, replayed = await self.permits.create(caller, signed, request.request_id)
        return pb.CreatePermitResponse(permit=await self._view(permit.kind, permit.number), replayed=replayed)

    async def AmendPermit(self, request: pb.AmendPermitRequest, context: Context) -> pb.AmendPermitResponse:
        caller = policy.caller()
        signed = self._signed(request)
        permit, replayed = await self.permits.amend(caller, signed, request.request_id)
        return pb.AmendPermitResponse(permit=await self._view(permit.kind, permit.number), replayed=replayed)

    async def RevokePermit(
        self, request: pb.RevokePermitRequest, context: Context
    ) -> pb.RevokePermitResponse:
        caller = policy.caller()
        _check_request_id(request.request_id)
        permits = self.permits

        def change() -> tuple[pb.RevokePermitResponse, PermitRow]:
            permit = permits.revoke(caller, request.kind, request.number, request.reason)
            view = permits.stored(permit.kind, permit.number)
            assert view is not None  # just revoked, in this transaction
            return pb.RevokePermitResponse(permit=permit_message(view)), permit

        outcome = await permits.db.run(
            idempotency.once,
            permits.db,
            idempotency.key_of(caller.actor, "RevokePermit", request.request_id, request),
            pb.RevokePermitResponse,
            change,
            permits.clock.now_ms(),
        )
        if outcome.after is not None:
            permits.revoked(outcome.after)
        return outcome.response

    async def GetPermit(self, request: pb.GetPermitRequest, context: Context) -> pb.GetPermitResponse:
        caller = policy.caller()
        bad = Violations()
        bad.required("kind", request.kind)
        bad.required("number", request.number)
        bad.raise_if_any()
        permit = await self._view(request.kind, request.number)
        policy.require_holder(caller, permit.current.content.holder_uscc)
        return pb.GetPermitResponse(permit=permit)

    def _known_kind(self, bad: Violations, field: str, kind: str) -> None:
        if kind and self.permits.issuers.kind(kind) is None:
            known = ", ".join(sorted(self.permits.issuers.adapters.permit_kinds))
            bad.add(field, f"unknown permit kind {kind!r} (known: {known})")

    async def VerifyPermit(
        self, request: pb.VerifyPermitRequest, context: Context
    ) -> pb.VerifyPermitResponse:
        caller = policy.caller()
        bad = Violations()
        day, declaration = _parties(bad, request, self.permits.clock.now_ms(), declaration_required=False)
        policy.require_holder(caller, request.declarant_uscc)
        if not request.HasField("line"):
            bad.add("line", "is required")
            bad.raise_if_any()
        goods = _goods(bad, "line", request.line, 1)
        self._known_kind(bad, "line.permit_kind", goods.permit_kind)
        bad.raise_if_any()
        query = DeclarationQuery(request.declarant_uscc, request.customs_office, day, declaration, (goods,))
        [verdict] = await self.permits.verify(caller, query)
        return pb.VerifyPermitResponse(result=line_result(verdict))

    async def VerifyDeclaration(
        self, request: pb.VerifyDeclarationRequest, context: Context
    ) -> pb.VerifyDeclarationResponse:
        caller = policy.caller()
        bad = Violations()
        day, declaration = _parties(bad, request, self.permits.clock.now_ms(), declaration_required=False)
        policy.require_holder(caller, request.declarant_uscc)
        if not request.lines:
            bad.add("lines", "at least one goods line")
        goods = []
        for index, line in enumerate(request.lines):
            goods.append(_goods(bad, f"lines[{index}]", line, index + 1))
            self._known_kind(bad, f"lines[{index}].permit_kind", line.permit_kind)
        items = [g.item_number for g in goods]
        if len(set(items)) != len(items):
            bad.add("lines", "item numbers must be unique within the declaration")
        bad.raise_if_any()
        query = DeclarationQuery(
            request.declarant_uscc, request.customs_office, day, declaration, tuple(goods)
        )
        verdicts = await self.permits.verify(caller, query)
        return pb.VerifyDeclarationResponse(
            verdict=pb.VERDICT_VALID if all(v.valid for v in verdicts) else pb.VERDICT_INVALID,
            results=[line_result(v) for v in verdicts],
        )

    async def DrawDownPermit(
        self, request: pb.DrawDownPermitRequest, context: Context
    ) -> pb.DrawDownPermitResponse:
        caller = policy.caller()
        bad = Violations()
        if bad.required("request_id", request.request_id):
            bad.uuid("request_id", request.request_id)
        day, declaration = _parties(bad, request, self.permits.clock.now_ms(), declaration_required=True)
        if not request.HasField("line"):
            bad.add("line", "is required")
            bad.raise_if_any()
        goods = _goods(bad, "line", request.line, 1)
        self._known_kind(bad, "line.permit_kind", goods.permit_kind)
        bad.raise_if_any()
        draw, permit, replayed = await self.permits.draw_down(
            caller,
            DrawDownRequest(
                request.request_id,
                request.declarant_uscc,
                request.customs_office,
                day.isoformat(),
                declaration,
                goods,
            ),
        )
        return pb.DrawDownPermitResponse(
            draw_down=draw_down_message(draw, permit.kind, permit.number), replayed=replayed
        )

    async def ReleaseDrawDown(
        self, request: pb.ReleaseDrawDownRequest, context: Context
    ) -> pb.ReleaseDrawDownResponse:
        caller = policy.caller()
        _check_request_id(request.request_id)
        permits = self.permits

        def change() -> tuple[pb.ReleaseDrawDownResponse, tuple[DrawDownRow, PermitRow, bool]]:
            draw, permit, already = permits.release(caller, request.draw_down_id, request.reason)
            response = pb.ReleaseDrawDownResponse(
                draw_down=draw_down_message(draw, permit.kind, permit.number), already_released=already
            )
            return response, (draw, permit, already)

        outcome = await permits.db.run(
            idempotency.once,
            permits.db,
            idempotency.key_of(caller.actor, "ReleaseDrawDown", request.request_id, request),
            pb.ReleaseDrawDownResponse,
            change,
            permits.clock.now_ms(),
        )
        if outcome.after is not None:
            permits.released(*outcome.after)
        return outcome.response
