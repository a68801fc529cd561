"""Draw-down and release: atomic, idempotent, and reported back to the issuer.

Race-free: the permit row is locked before anything is read (`SELECT ... FOR UPDATE` on PostgreSQL; on
SQLite the hub's one database thread runs one transaction at a time), and the idempotency check runs
under that lock, so two retries of one request cannot both draw. Each draw-down and release publishes a
usage record to the issuer in the same transaction (`hub.exchange.publish`), so the record and its
deliveries commit with the change, and appends an audit event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlmodel import Session, select

from ackhub.audit.times import to_rfc3339_ms
from ackhub.core.errors import AlreadyExists, FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from ackhub.core.ids import new_id
from ackhub.core.permit_document import format_quantity
from ackhub.core.principal import Principal
from ackhub.hub.auth import policy
from ackhub.hub.exchange.publish import PublishRequest, publish
from ackhub.hub.exchange.routing import Router
from ackhub.hub.ledger import log as audit_log
from ackhub.hub.permits.issuers import Issuers
from ackhub.hub.permits.registration import SignedDocument, create
from ackhub.hub.permits.registry import Lookup
from ackhub.hub.permits.verify import GoodsQuery, NeedsLookup, evaluate, snapshot_of
from ackhub.hub.store.models import DrawDownRow, PermitLineRow, PermitRow


@dataclass(frozen=True)
class DrawDownRequest:
    request_id: str
    declarant_uscc: str
    customs_office: str
    day_iso: str
    declaration_number: str
    goods: GoodsQuery


@dataclass(frozen=True)
class Usage:
    """Where usage records go: the router, and the agency that publishes them."""

    router: Router
    publisher: Principal
    max_payload: int


def _refuse(verdict_reasons: list[tuple[str, str]], permit: PermitRow) -> FailedPrecondition:
    first = verdict_reasons[0][0]
    return FailedPrecondition(
        f"{permit.kind} {permit.number}: " + "; ".join(d for _, d in verdict_reasons),
        reason=first,
        metadata={
            "reasons": ",".join(r for r, _ in verdict_reasons),
            "permit_id": permit.id,
            "kind": permit.kind,
            "number": permit.number,
        },
    )


def _publish_usage(
    session: Session,
    usage: Usage,
    issuers: Issuers,
    permit: PermitRow,
    draw: DrawDownRow,
    action: str,
    request_id: str,
    now_ms: int,
) -> str:
    issuer = issuers.get(permit.issuer)
    record_type = issuer.adapter.usage_record_type() if issuer is not None else None
    if record_type is None:
        raise FailedPrecondition(
            f"issuer {permit.issuer!r} has no adapter to report usage to",
            reason="UNKNOWN_ISSUER",
            metadata={"issuer": permit.issuer},
        )
    payload = record_type.to_native(
        {
            "action": action,
            "number": permit.number,
            "kind": permit.kind,
            "declaration_number": draw.declaration_number,
            "item_number": draw.item_number,
            "hs_code": draw.hs_code,
            "quantity": format_quantity(draw.quantity_milli),
            "unit": draw.unit,
            "customs_office": permit.customs_office,
            "draw_down_id": draw.id,
            "time": to_rfc3339_ms(now_ms),
        }
    )
    receipt = publish(
        session,
        usage.router,
        usage.publisher,
        PublishRequest(
            request_id=request_id,
            record_type=record_type.name,
            subject_uscc=permit.holder_uscc,
            declaration_number=draw.declaration_number,
            content_type=record_type.content_type,
            payload=payload,
        ),
        now_ms,
        usage.max_payload,
    )
    return receipt.record_id


def _same(draw: DrawDownRow, request: DrawDownRequest, permit_id: str) -> bool:
    goods = request.goods
    return (
        draw.permit_id,
        draw.declaration_number,
        draw.item_number,
        draw.hs_code,
        draw.quantity_milli,
        draw.unit,
    ) == (
        permit_id,
        request.declaration_number,
        goods.item_number,
        goods.hs_code,
        goods.quantity_milli,
        goods.unit,
    )


def draw_down(
    session: Session,
    caller: Principal,
    request: DrawDownRequest,
    issuers: Issuers,
    usage: Usage,
    lookup: Lookup | None,
    can_look_up: bool,
    now_ms: int,
) -> tuple[DrawDownRow, PermitRow, bool] | NeedsLookup:
    """(draw-down, permit, replayed); refusals are raised (the transaction then rolls back)."""
    goods = request.goods
    permit = session.exec(
        select(PermitRow)
        .where(PermitRow.kind == goods.permit_kind, PermitRow.number == goods.permit_number)
        .with_for_update()
    ).first()
    if permit is None:
        if lookup is None and can_look_up:
            return NeedsLookup(((goods.permit_kind, goods.permit_number),))
        if lookup is not None and lookup.answer is not None:
            answer = lookup.answer
            permit, _ = create(
                session,
                caller,
                SignedDocument(answer.document, answer.key_id, answer.signature),
                "",
                issuers,
                now_ms,
                source="REGISTRY",
            )
            session.flush()
        elif lookup is not None and lookup.unreachable:
            raise FailedPrecondition(
                f"{goods.permit_kind} {goods.permit_number} is not registered and its issuer's registry is "
                f"unreachable: {lookup.unreachable}",
                reason="ISSUER_UNREACHABLE",
                metadata={"kind": goods.permit_kind, "number": goods.permit_number},
            )
        else:
            raise NotFound("permit", f"{goods.permit_kind}:{goods.permit_number}")

    replay = session.exec(
        select(DrawDownRow).where(
            DrawDownRow.requested_by == caller.actor, DrawDownRow.request_id == request.request_id
        )
    ).first()
    if replay is not None:
        if not _same(replay, request, permit.id):
            raise AlreadyExists(
                f"request {request.request_id!r} already drew down for another goods line",
                reason="REQUEST_ID_REUSED",
                metadata={"request_id": request.request_id, "draw_down_id": replay.id},
            )
        return replay, permit, True

    snapshot = snapshot_of(session, permit)
    verdict = evaluate(
        snapshot,
        request.declarant_uscc,
        request.customs_office,
        date.fromisoformat(request.day_iso),
        request.declaration_number,
        goods,
        issuers,
    )
    if verdict.reasons:
        raise _refuse(verdict.reasons, permit)
    line = session.exec(
        select(PermitLineRow).where(
            PermitLineRow.permit_id == permit.id, PermitLineRow.line_number == verdict.permit_line
        )
    ).one()
    line.drawn_milli += goods.quantity_milli
    session.add(line)
    counted = request.declaration_number not in snapshot.declarations
    if counted:
        permit.uses += 1
    permit.updated_ms = now_ms
    session.add(permit)
    draw = DrawDownRow(
        id=new_id(now_ms),
        request_id=request.request_id,
        requested_by=caller.actor,
        permit_id=permit.id,
        line_number=line.line_number,
        declaration_number=request.declaration_number,
        item_number=goods.item_number,
        hs_code=goods.hs_code,
        quantity_milli=goods.quantity_milli,
        unit=goods.unit,
        counted_use=counted,
        state="DRAWN",
        created_ms=now_ms,
        usage_record_id="",
    )
    draw.usage_record_id = _publish_usage(session, usage, issuers, permit, draw, "DRAW", draw.id, now_ms)
    session.add(draw)
    audit_log.append(
        session,
        kind="permit.drawn_down",
        actor=caller.actor,
        time_ms=now_ms,
        record_id=draw.usage_record_id,
        data={
            "draw_down_id": draw.id,
            "permit_id": permit.id,
            "kind": permit.kind,
            "number": permit.number,
            "line": line.line_number,
            "declaration_number": draw.declaration_number,
            "item_number": draw.item_number,
            "quantity": format_quantity(draw.quantity_milli),
            "unit": draw.unit,
            "counted_use": counted,
            "request_id": request.request_id,
        },
    )
    return draw, permit, False


def release(
    session: Session,
    caller: Principal,
    draw_down_id: str,
    reason: str,
    issuers: Issuers,
    usage: Usage,
    now_ms: int,
) -> tuple[DrawDownRow, PermitRow, bool]:
    """(draw-down, permit, already released). The quantity, and the use if the declaration holds no other
    draw-down on the permit, go back."""
    bad: list[FieldViolation] = []
    if not draw_down_id:
        bad.append(FieldViolation("draw_down_id", "is required"))
    if not reason.strip():
        bad.append(FieldViolation("reason", "say why the draw-down is given back"))
    if bad:
        raise InvalidArgument(bad)
    found = session.exec(select(DrawDownRow.permit_id).where(DrawDownRow.id == draw_down_id)).first()
    if found is None:
        raise NotFound("draw_down", draw_down_id)
    permit = session.exec(select(PermitRow).where(PermitRow.id == found).with_for_update()).one()
    draw = session.exec(
        select(DrawDownRow).where(DrawDownRow.id == draw_down_id).execution_options(populate_existing=True)
    ).one()
    policy.require_releaser(caller, draw.requested_by, draw_down_id)
    if draw.state == "RELEASED":
        return draw, permit, True
    line = session.exec(
        select(PermitLineRow).where(
            PermitLineRow.permit_id == permit.id, PermitLineRow.line_number == draw.line_number
        )
    ).first()
    if line is not None:
        line.drawn_milli -= draw.quantity_milli
        session.add(line)
    draw.state, draw.released_ms, draw.release_reason, draw.released_by = (
        "RELEASED",
        now_ms,
        reason,
        caller.actor,
    )
    session.add(draw)
    session.flush()
    others = session.exec(
        select(DrawDownRow.id).where(
            DrawDownRow.permit_id == permit.id,
            DrawDownRow.declaration_number == draw.declaration_number,
            DrawDownRow.state == "DRAWN",
        )
    ).first()
    if others is None:
        permit.uses = max(permit.uses - 1, 0)
    permit.updated_ms = now_ms
    session.add(permit)
    draw.release_record_id = _publish_usage(
        session, usage, issuers, permit, draw, "RELEASE", new_id(now_ms), now_ms
    )
    session.add(draw)
    audit_log.append(
        session,
        kind="permit.draw_down_released",
        actor=caller.actor,
        time_ms=now_ms,
        record_id=draw.release_record_id,
        data={
            "draw_down_id": draw.id,
            "permit_id": permit.id,
            "quantity": format_quantity(draw.quantity_milli),
            "use_returned": others is None,
            "reason": reason,
        },
    )
    return draw, permit, False
