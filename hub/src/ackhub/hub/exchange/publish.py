"""Publishing a record: validate, route, then store the record, one delivery per recipient and the audit
event in one transaction. Idempotent by the publisher's request id."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace

from sqlalchemy import bindparam, select
from sqlmodel import Session

from ackhub.core.errors import AckhubError, AlreadyExists
from ackhub.core.ids import new_id
from ackhub.core.principal import Principal
from ackhub.hub.config import RECORD_TYPE, RouteRecipient
from ackhub.hub.exchange.routing import Router
from ackhub.hub.exchange.states import PENDING
from ackhub.hub.exchange.validation import Violations
from ackhub.hub.ledger import log as audit_log
from ackhub.hub.store.bulk import insert_rows, select_rows, table_of
from ackhub.hub.store.models import DeliveryRow, RecordRow

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


@dataclass(frozen=True)
class PublishItem:
    publisher: Principal
    request: PublishRequest
    now_ms: int


def _replayed(first: Receipt, request_id: str, digest: str) -> Receipt:
    """The answer to a request whose id was already used: the first receipt, or ALREADY_EXISTS."""
    if first.digest != digest:
        raise AlreadyExists(
            f"request {request_id!r} was already used for a record with digest sha256:{first.digest}; "
            f"this payload has digest sha256:{digest}",
            reason="REQUEST_ID_REUSED",
            metadata={
                "request_id": request_id,
                "record_id": first.record_id,
                "stored_digest": f"sha256:{first.digest}",
                "request_digest": f"sha256:{digest}",
            },
        )
    return Receipt(first.record_id, first.digest, first.accepted_ms, first.deliveries, replayed=True)


_RECORDS = table_of(RecordRow)
_DELIVERIES = table_of(DeliveryRow)
# Built once (see hub/store/bulk.py for why).
_STORED = select(
    _RECORDS.c.id, _RECORDS.c.publisher, _RECORDS.c.request_id, _RECORDS.c.digest, _RECORDS.c.accepted_ms
).where(  # by publisher, then request ids: a row-value IN (publisher, request_id) makes SQLite scan records
    _RECORDS.c.publisher == bindparam("publisher"),
    _RECORDS.c.request_id.in_(bindparam("request_ids", expanding=True)),
)
_STORED_DELIVERIES = (
    select(_DELIVERIES.c.id, _DELIVERIES.c.recipient, _DELIVERIES.c.record_id)
    .where(_DELIVERIES.c.record_id.in_(bindparam("record_ids", expanding=True)))
    .order_by(_DELIVERIES.c.seq)
)


def _stored_receipts(session: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Receipt]:
    """Receipts of records already stored under these (publisher, request id) pairs: one query per
    publisher in the batch, and one for the deliveries of what was found."""
    wanted: dict[str, list[str]] = {}
    for publisher, request_id in keys:
        wanted.setdefault(publisher, []).append(request_id)
    records = [
        row
        for publisher, request_ids in wanted.items()
        for row in select_rows(session, _STORED, {"publisher": publisher, "request_ids": request_ids})
    ]
    if not records:
        return {}
    deliveries: dict[str, list[tuple[str, str]]] = {r.id: [] for r in records}
    for delivery_id, recipient, record_id in select_rows(
        session, _STORED_DELIVERIES, {"record_ids": list(deliveries)}
    ):
        deliveries[record_id].append((delivery_id, recipient))
    return {
        (r.publisher, r.request_id): Receipt(r.id, r.digest, r.accepted_ms, deliveries[r.id], False)
        for r in records
    }


def publish_many(
    session: Session, router: Router, items: list[PublishItem], max_payload: int
) -> list[Receipt | AckhubError]:
    """Inside the caller's transaction, in order; each answer is a receipt or that item's refusal, raised
    before it wrote anything. Earlier uses of the request ids are found in two queries for the batch, and
    the records, deliveries and audit events are written in one INSERT each."""
    answers: list[Receipt | AckhubError | None] = [None] * len(items)
    accepted: list[tuple[int, PublishItem, list[RouteRecipient], str, str]] = []
    for index, item in enumerate(items):
        try:
            validate(item.request, max_payload)
            recipients = router.recipients(item.request.record_type, item.publisher.id)
            request = item.request  # the payload against its type's schema, before anything is stored
            content_type = router.catalogue.check_payload(
                request.record_type, request.content_type, request.payload
            )
        except AckhubError as refusal:
            answers[index] = refusal
            continue
        if content_type != request.content_type:  # none given: the type's own
            item = replace(item, request=replace(request, content_type=content_type))
        digest = hashlib.sha256(item.request.payload).hexdigest()
        accepted.append((index, item, recipients, digest, item.request.request_id or new_id(item.now_ms)))
    receipts = _stored_receipts(session, {(item.publisher.id, rid) for _, item, _, _, rid in accepted})
    records: list[dict[str, object]] = []
    deliveries: list[dict[str, object]] = []
    events: list[dict[str, object]] = []
    for index, item, recipients, digest, request_id in accepted:
        first = receipts.get((item.publisher.id, request_id))
        if first is not None:  # stored earlier, or earlier in this batch
            try:
                answers[index] = _replayed(first, request_id, digest)
            except AckhubError as refusal:
                answers[index] = refusal
            continue
        record, its_deliveries = _new_record(router, item, recipients, digest, request_id)
        records.append(record)
        deliveries += its_deliveries
        pairs = [(str(d["id"]), str(d["recipient"])) for d in its_deliveries]
        receipt = Receipt(str(record["id"]), digest, item.now_ms, pairs, False)
        receipts[(item.publisher.id, request_id)] = answers[index] = receipt
        events.append(
            audit_log.event_row(
                kind="record.published",
                actor=item.publisher.actor,
                time_ms=item.now_ms,
                record_id=receipt.record_id,
                data={
                    "record_type": record["record_type"],
                    "digest": f"sha256:{digest}",
                    "request_id": request_id,
                    "subject_uscc": record["subject_uscc"],
                    "declaration_number": record["declaration_number"],
                    "deliveries": {recipient: delivery_id for delivery_id, recipient in pairs},
                },
            )
        )
    if records:
        insert_rows(session, RecordRow, records)  # before the deliveries: their foreign key
        insert_rows(session, DeliveryRow, deliveries)
        audit_log.append_rows(session, events)
    return [answer for answer in answers if answer is not None]


def _new_record(
    router: Router, item: PublishItem, recipients: list[RouteRecipient], digest: str, request_id: str
) -> tuple[dict[str, object], list[dict[str, object]]]:
    """The row of the record and one row per recipient's delivery, every column given."""
    request, now_ms = item.request, item.now_ms
    record_id = new_id(now_ms)
    record: dict[str, object] = {
        "id": record_id,
        "request_id": request_id,
        "publisher": item.publisher.id,
        "record_type": request.record_type,
        "subject_uscc": request.subject_uscc or None,
        "declaration_number": request.declaration_number or None,
        "content_type": request.content_type or "application/octet-stream",
        "payload": request.payload,
        "digest": digest,
        "accepted_ms": now_ms,
    }
    deliveries: list[dict[str, object]] = [
        {
            "id": new_id(now_ms),
            "record_id": record_id,
            "record_type": request.record_type,
            "publisher": item.publisher.id,
            "recipient": recipient.agency,
            "state": PENDING,
            "required_level": recipient.ack_level,
            "policy": router.terms_json(recipient),
            "attempts": 0,
            "created_ms": now_ms,
            "next_attempt_ms": now_ms,
            "deadline_ms": now_ms + recipient.deadline,
            "deadline_check_ms": now_ms + recipient.deadline,
            "last_attempt_ms": None,
            "received_ms": None,
            "final_ms": None,
            "reason": "",
            "escalation_id": None,
            "escalated": False,
        }
        for recipient in recipients
    ]
    return record, deliveries


def publish(
    session: Session,
    router: Router,
    publisher: Principal,
    request: PublishRequest,
    now_ms: int,
    max_payload: int,
) -> Receipt:
    """One record inside the caller's transaction (for use cases that publish as part of their own
    change, such as a permit draw-down). Refusals are raised before anything is written."""
    (answer,) = publish_many(session, router, [PublishItem(publisher, request, now_ms)], max_payload)
    if isinstance(answer, AckhubError):
        raise answer
    return answer
