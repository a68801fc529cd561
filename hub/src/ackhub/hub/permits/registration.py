"""Issuers register permits: create (version 1), amend (a new version; every version is kept), revoke.

Each runs inside the caller's transaction, refuses before writing anything, and appends an audit event.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from ackhub.core.errors import AlreadyExists, FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from ackhub.core.ids import new_id
from ackhub.core.permit_document import PermitDocument, to_json
from ackhub.core.principal import Principal
from ackhub.hub.auth import policy
from ackhub.hub.ledger import log as audit_log
from ackhub.hub.permits.issuers import Issuers
from ackhub.hub.store.models import PermitLineRow, PermitRow, PermitVersionRow


@dataclass(frozen=True)
class SignedDocument:
    document: PermitDocument
    key_id: str
    signature: bytes


def check_content(signed: SignedDocument, issuers: Issuers, caller: Principal | None) -> None:
    """The content rules of the permit's kind, the issuer, the caller's right to register for it and the
    signature: every problem as an INVALID_ARGUMENT field violation (`permit.content.*`)."""
    document = signed.document
    bad: list[FieldViolation] = []
    prefix = "permit.content"
    found = issuers.kind(document.kind)
    issuer = issuers.get(document.issuer)
    if found is None:
        known = ", ".join(sorted(issuers.adapters.permit_kinds)) or "none"
        bad.append(
            FieldViolation(f"{prefix}.kind", f"unknown permit kind {document.kind!r} (known: {known})")
        )
    if issuer is None:
        bad.append(FieldViolation(f"{prefix}.issuer", f"unknown issuer {document.issuer!r}"))
    elif found is not None and issuer.adapter is not found[0]:
        bad.append(
            FieldViolation(f"{prefix}.kind", f"issuer {document.issuer!r} does not issue {document.kind!r}")
        )
    if found is not None:
        bad.extend(FieldViolation(f"{prefix}.{v.field}", v.description) for v in found[1].validate(document))
    bad.extend(FieldViolation(f"{prefix}.{name}", why) for name, why in document.text_problems())
    if bad:
        raise InvalidArgument(bad)
    assert issuer is not None and found is not None
    if caller is not None:
        policy.require_issuer(caller, issuer.config.agency_id, issuer.id)
    problem = issuer.adapter.check_signature(document, signed.key_id, signed.signature, issuer.keys)
    if problem:
        raise InvalidArgument(
            [FieldViolation("permit.signature", problem)],
            reason="SIGNATURE_INVALID",
        )


def _write_version(
    session: Session,
    permit: PermitRow,
    signed: SignedDocument,
    issuers: Issuers,
    request_id: str,
    actor: str,
    now_ms: int,
) -> None:
    document = signed.document
    found = issuers.kind(document.kind)
    assert found is not None
    rules = found[1].rules(document)
    permit.version = document.version
    permit.holder_uscc = document.holder_uscc
    permit.customs_office = document.customs_office
    permit.issue_date = document.issue_date.isoformat()
    permit.valid_from = document.valid_from.isoformat()
    permit.valid_to = document.valid_to.isoformat()
    permit.multi_batch = document.multi_batch
    permit.max_uses = rules.max_uses
    permit.tolerance_permille = rules.tolerance_permille
    permit.key_id = signed.key_id
    permit.signature = signed.signature
    permit.document = to_json(document)
    permit.updated_ms = now_ms
    session.add(permit)
    session.add(
        PermitVersionRow(
            permit_id=permit.id,
            version=document.version,
            request_id=request_id,
            document=permit.document,
            key_id=signed.key_id,
            signature=signed.signature,
            created_ms=now_ms,
            created_by=actor,
        )
    )
    existing = {
        line.line_number: line
        for line in session.exec(select(PermitLineRow).where(PermitLineRow.permit_id == permit.id))
    }
    for line in document.lines:
        row = existing.pop(line.line_number, None) or PermitLineRow(
            permit_id=permit.id,
            line_number=line.line_number,
            drawn_milli=0,
            hs_code="",
            quantity_milli=0,
            unit="",
        )
        row.hs_code, row.quantity_milli, row.unit, row.bulk = (
            line.hs_code,
            line.quantity_milli,
            line.unit,
            line.bulk,
        )
        session.add(row)
    for gone in existing.values():
        session.delete(gone)


def _find(session: Session, kind: str, number: str, lock: bool = False) -> PermitRow | None:
    query = select(PermitRow).where(PermitRow.kind == kind, PermitRow.number == number)
    return session.exec(query.with_for_update() if lock else query).first()


def create(
    session: Session,
    caller: Principal,
    signed: SignedDocument,
    request_id: str,
    issuers: Issuers,
    now_ms: int,
    source: str = "PUSHED",
) -> tuple[PermitRow, bool]:
    """(the permit, replayed). The same signed version again is a replay; other content is ALREADY_EXISTS."""
    document = signed.document
    if document.version != 1:
        raise InvalidArgument([FieldViolation("permit.content.version", "a new permit is version 1")])
    check_content(signed, issuers, caller if source == "PUSHED" else None)
    existing = _find(session, document.kind, document.number)
    if existing is not None:
        first = session.exec(
            select(PermitVersionRow).where(
                PermitVersionRow.permit_id == existing.id, PermitVersionRow.version == 1
            )
        ).one()
        if first.document == to_json(document) and first.signature == signed.signature:
            return existing, True
        raise AlreadyExists(
            f"{document.kind} {document.number!r} is already registered with other content; amend it instead",
            reason="PERMIT_EXISTS",
            metadata={"kind": document.kind, "number": document.number, "permit_id": existing.id},
        )
    permit = PermitRow(
        id=new_id(now_ms),
        number=document.number,
        kind=document.kind,
        issuer=document.issuer,
        holder_uscc="",
        customs_office="",
        version=1,
        issue_date="",
        valid_from="",
        valid_to="",
        multi_batch=False,
        max_uses=1,
        uses=0,
        tolerance_permille=0,
        state="ACTIVE",
        source=source,
        key_id="",
        signature=b"",
        document="",
        created_ms=now_ms,
        updated_ms=now_ms,
    )
    _write_version(session, permit, signed, issuers, request_id, caller.actor, now_ms)
    audit_log.append(
        session,
        kind="permit.created" if source == "PUSHED" else "permit.imported",
        actor=caller.actor,
        time_ms=now_ms,
        data={
            "permit_id": permit.id,
            "kind": document.kind,
            "number": document.number,
            "issuer": document.issuer,
            "holder_uscc": document.holder_uscc,
            "key": signed.key_id,
            "request_id": request_id,
        },
    )
    return permit, False


def amend(
    session: Session,
    caller: Principal,
    signed: SignedDocument,
    request_id: str,
    issuers: Issuers,
    now_ms: int,
) -> tuple[PermitRow, bool]:
    """A new version (current + 1). Quantities already drawn stay drawn on lines that keep their number."""
    document = signed.document
    check_content(signed, issuers, caller)
    permit = _find(session, document.kind, document.number, lock=True)
    if permit is None:
        raise NotFound("permit", f"{document.kind}:{document.number}")
    if permit.issuer != document.issuer:
        raise InvalidArgument(
            [FieldViolation("permit.content.issuer", f"the permit's issuer is {permit.issuer!r}")]
        )
    same = session.exec(
        select(PermitVersionRow).where(
            PermitVersionRow.permit_id == permit.id, PermitVersionRow.version == document.version
        )
    ).first()
    if same is not None and same.document == to_json(document) and same.signature == signed.signature:
        return permit, True
    if document.version != permit.version + 1:
        raise FailedPrecondition(
            f"the permit is at version {permit.version}; an amendment is version {permit.version + 1}",
            reason="VERSION_CONFLICT",
            metadata={"current_version": str(permit.version), "request_version": str(document.version)},
        )
    if permit.state == "REVOKED":
        raise FailedPrecondition(
            f"{document.kind} {document.number!r} is revoked",
            reason="PERMIT_REVOKED",
            metadata={"permit_id": permit.id},
        )
    _write_version(session, permit, signed, issuers, request_id, caller.actor, now_ms)
    audit_log.append(
        session,
        kind="permit.amended",
        actor=caller.actor,
        time_ms=now_ms,
        data={
            "permit_id": permit.id,
            "version": document.version,
            "key": signed.key_id,
            "request_id": request_id,
        },
    )
    return permit, False


def revoke(
    session: Session, caller: Principal, kind: str, number: str, reason: str, issuers: Issuers, now_ms: int
) -> PermitRow:
    bad: list[FieldViolation] = []
    if not kind:
        bad.append(FieldViolation("kind", "is required"))
    if not number:
        bad.append(FieldViolation("number", "is required"))
    if not reason.strip():
        bad.append(FieldViolation("reason", "say why the permit is revoked"))
    if bad:
        raise InvalidArgument(bad)
    permit = _find(session, kind, number, lock=True)
    if permit is None:
        raise NotFound("permit", f"{kind}:{number}")
    issuer = issuers.get(permit.issuer)
    allowed = issuer.config.agency_id if issuer is not None else permit.issuer
    policy.require_issuer(caller, allowed, permit.issuer, "revoke")
    if permit.state == "REVOKED":
        return permit
    permit.state, permit.revoked_ms, permit.revoke_reason, permit.updated_ms = (
        "REVOKED",
        now_ms,
        reason,
        now_ms,
    )
    session.add(permit)
    audit_log.append(
        session,
        kind="permit.revoked",
        actor=caller.actor,
        time_ms=now_ms,
        data={"permit_id": permit.id, "kind": kind, "number": number, "reason": reason},
    )
    return permit


def history(session: Session, permit_id: str) -> list[PermitVersionRow]:
    return list(
        session.exec(
            select(PermitVersionRow)
            .where(PermitVersionRow.permit_id == permit_id)
            .order_by(col(PermitVersionRow.version))
        )
    )


def lines(session: Session, permit_id: str) -> list[PermitLineRow]:
    return list(
        session.exec(
            select(PermitLineRow)
            .where(PermitLineRow.permit_id == permit_id)
            .order_by(col(PermitLineRow.line_number))
        )
    )
