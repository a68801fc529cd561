"""Publishing a record: validate, route, then store the record, one delivery per recipient and the audit
event in one transaction. Idempotent by the publisher's request id."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from sqlmodel import Session, select

from audit import log as audit_log
from hub.auth.identity import Principal
from hub.config import RECORD_TYPE
from hub.errors import AlreadyExists
from hub.exchange.routing import Router
from hub.exchange.states import PENDING
from hub.exchange.validation import Violations
from hub.ids import new_id
from hub.store.models import DeliveryRow, RecordRow

_RECORD_TYPE = re.compile(RECORD_TYPE)


@dataclass(frozen=True)
class PublishRequest:
    request_id: str
    record_type: str
    subject_uscc: str
    declaration_number: str
    content_type: str
    payload: bytes


@dataclass(frozen=True)
class Receipt:
    record_id: str
    digest: str
    accepted_ms: int
    deliveries: list[tuple[str, str]]  # (delivery id, recipient)
    replayed: bool


def validate(request: PublishRequest, max_payload_bytes: int) -> None:
    bad = Violations()
    if request.request_id:
        bad.uuid("request_id", request.request_id)
    if bad.required("record_type", request.record_type) and (
        len(request.record_type) > 128 or not _RECORD_TYPE.match(request.record_type)
    ):
        bad.add(
            "record_type",
            f"must be dotted lower-case words such as 'customs.export_declaration.released', "
            f"got {request.record_type[:64]!r}",
        )
    if request.subject_uscc:
        bad.uscc("subject_uscc", request.subject_uscc)
    if request.declaration_number:
        bad.declaration_number("declaration_number", request.declaration_number)
    if request.content_type:
        bad.content_type("content_type", request.content_type)
    if not request.payload:
        bad.add("payload", "is required and cannot be empty")
    elif len(request.payload) > max_payload_bytes:
        bad.add("payload", f"is {len(request.payload)} bytes; at most {max_payload_bytes} are allowed")
    bad.raise_if_any()


def _receipt_of(session: Session, record: RecordRow, replayed: bool) -> Receipt:
    deliveries = session.exec(
        select(DeliveryRow.id, DeliveryRow.recipient)
        .where(DeliveryRow.record_id == record.id)
        .order_by(
            DeliveryRow.seq  # type: ignore[arg-type]
        )
    ).all()
    return Receipt(record.id, record.digest, record.accepted_ms, [(d, r) for d, r in deliveries], replayed)


def _replay(session: Session, publisher: str, request_id: str, digest: str) -> Receipt | None:
    existing = session.exec(
        select(RecordRow).where(RecordRow.publisher == publisher, RecordRow.request_id == request_id)
    ).first()
    if existing is None:
        return None
    if existing.digest != digest:
        raise AlreadyExists(
            f"request {request_id!r} was already used for a record with digest sha256:{existing.digest}; "
            f"this payload has digest sha256:{digest}",
            reason="REQUEST_ID_REUSED",
            metadata={
                "request_id": request_id,
                "record_id": existing.id,
                "stored_digest": f"sha256:{existing.digest}",
                "request_digest": f"sha256:{digest}",
            },
        )
    return _receipt_of(session, existing, replayed=True)


def publish(
    session: Session,
    router: Router,
    publisher: Principal,
    request: PublishRequest,
    now_ms: int,
    max_payload: int,
) -> Receipt:
    """Inside the caller's transaction. Every refusal is raised before anything is written."""
    validate(request, max_payload)
    recipients = router.recipients(request.record_type, publisher.id)
    digest = hashlib.sha256(request.payload).hexdigest()
    request_id = request.request_id or new_id(now_ms)
    replay = _replay(session, publisher.id, request_id, digest)
    if replay is not None:
        return replay
    record = RecordRow(
        id=new_id(now_ms),
        request_id=request_id,
        publisher=publisher.id,
        record_type=request.record_type,
        subject_uscc=request.subject_uscc or None,
        declaration_number=request.declaration_number or None,
        content_type=request.content_type or "application/octet-stream",
        payload=request.payload,
        digest=digest,
        accepted_ms=now_ms,
    )
    session.add(record)
    session.flush()  # the deliveries' foreign key needs the record row first
    deliveries = [
        DeliveryRow(
            id=new_id(now_ms),
            record_id=record.id,
            record_type=record.record_type,
            publisher=publisher.id,
            recipient=recipient.agency,
            state=PENDING,
            required_level=recipient.ack_level,
            policy=recipient.model_dump_json(),
            created_ms=now_ms,
            next_attempt_ms=now_ms,
            deadline_ms=now_ms + recipient.deadline,
            deadline_check_ms=now_ms + recipient.deadline,
        )
        for recipient in recipients
    ]
    session.add_all(deliveries)
    audit_log.append(
        session,
        kind="record.published",
        actor=publisher.actor,
        time_ms=now_ms,
        record_id=record.id,
        data={
            "record_type": record.record_type,
            "digest": f"sha256:{digest}",
            "request_id": request_id,
            "subject_uscc": record.subject_uscc,
            "declaration_number": record.declaration_number,
            "deliveries": {d.recipient: d.id for d in deliveries},
        },
    )
    return Receipt(record.id, digest, now_ms, [(d.id, d.recipient) for d in deliveries], False)
