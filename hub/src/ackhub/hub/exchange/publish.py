"""Publishing a record: validate, route, then store the record, one delivery per recipient and the audit
event in one transaction. Idempotent by the publisher's request id."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date

from sqlalchemy import bindparam, select
from sqlmodel import Session

from ackhub.core.errors import AckhubError, AlreadyExists, FieldViolation, InvalidArgument
from ackhub.core.ids import new_id
from ackhub.core.principal import Principal
from ackhub.hub.config import RECORD_TYPE, RouteRecipient
from ackhub.hub.exchange.catalogue import RecordTypeVersion, china_date
from ackhub.hub.exchange.routing import Router
from ackhub.hub.exchange.states import PENDING
from ackhub.hub.exchange.validation import Violations
from ackhub.hub.ledger import log as audit_log
from ackhub.hub.store.bulk import Read, insert_rows, select_rows, table_of
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
    schema_version: int = 0  # of the record type's schema; 0: its first version


@dataclass(frozen=True)
class Deprecation:
    """The schema version a record was published with is deprecated: taken until `end_date` (China
    Standard Time), then refused; `replacement` is the type's current version."""

    record_type: str
    version: int
    end_date: date
    replacement: int


@dataclass(frozen=True)
class Receipt:
    record_id: str
    digest: str
    accepted_ms: int
    deliveries: list[tuple[str, str]]  # (delivery id, recipient)
    replayed: bool
    schema_version: int = 1
    deprecation: Deprecation | None = None


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
    if request.schema_version < 0:
        bad.add(
            "schema_version",
            f"is a version number (1, 2, ...), or 0 for the first; got {request.schema_version}",
        )
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
    return replace(first, replayed=True)


def _deprecation(router: Router, record_type: str, version: int) -> Deprecation | None:
    """What a receipt says about the schema version its record was published with (the same on a replay:
    the catalogue's dates, not the clock)."""
    found = router.catalogue.get(record_type, version)
    current = router.catalogue.current(record_type)
    if found is None or current is None or found.deprecated_until is None:
        return None
    return Deprecation(record_type, version, found.deprecated_until, current.version)


def _check_recipients(version: RecordTypeVersion, recipients: list[RouteRecipient]) -> None:
    """Every recipient of the route takes the record's schema version, or the publish is refused: a
    recipient is never silently left out, and never sent a version it did not say it reads."""
    refusing = [r for r in recipients if r.schema_versions and version.version not in r.schema_versions]
    if refusing:
        takes = "; ".join(
            f"{r.agency} takes version {', '.join(map(str, r.schema_versions))}" for r in refusing
        )
        raise InvalidArgument(
            [
                FieldViolation(
                    "schema_version",
                    f"{version.record_type} version {version.version} is not taken by every recipient "
                    f"({takes}): publish a version they all take",
                )
            ],
            reason="SCHEMA_VERSION_NOT_ROUTED",
        )


_RECORDS = table_of(RecordRow)
_DELIVERIES = table_of(DeliveryRow)
# Built once (see ackhub.hub.store.bulk for why).
_STORED = select(
    _RECORDS.c.id,
    _RECORDS.c.publisher,
    _RECORDS.c.request_id,
    _RECORDS.c.digest,
    _RECORDS.c.accepted_ms,
    _RECORDS.c.record_type,
    _RECORDS.c.schema_version,
).where(  # by publisher, then request ids: a row-value IN (publisher, request_id) makes SQLite scan records
    _RECORDS.c.publisher == bindparam("publisher"),
    _RECORDS.c.request_id.in_(bindparam("request_ids", expanding=True)),
)
_STORED_DELIVERIES = (
    select(_DELIVERIES.c.id, _DELIVERIES.c.recipient, _DELIVERIES.c.record_id)
    .where(_DELIVERIES.c.record_id.in_(bindparam("record_ids", expanding=True)))
    .order_by(_DELIVERIES.c.seq)
)


def receipt_reads(keys: Iterable[tuple[str, str]]) -> list[Read]:
    """The reads that find records stored under these (publisher, request id) pairs: one per publisher,
    its request ids sorted (so that `PublishLane.reads` asks for exactly what the step will)."""
    wanted: dict[str, set[str]] = {}
    for publisher, request_id in keys:
        wanted.setdefault(publisher, set()).add(request_id)
    return [
        (_STORED, {"publisher": publisher, "request_ids": sorted(request_ids)})
        for publisher, request_ids in sorted(wanted.items())
    ]


def reads_ahead(items: list[PublishItem]) -> list[Read]:
    """What `publish_many` will read for `items`, to be read ahead (ackhub.hub.store.batching): the
    earlier uses of their request ids. (An item refused before it is looked up makes the read differ
    from the step's: it is then made again, not answered wrongly.)"""
    return receipt_reads(
        (item.publisher.id, item.request.request_id) for item in items if item.request.request_id
    )


def _stored_receipts(
    session: Session, router: Router, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], Receipt]:
    """Receipts of records already stored under these (publisher, request id) pairs: one query per
    publisher in the batch, and one for the deliveries of what was found."""
    records = [
        row for statement, params in receipt_reads(keys) for row in select_rows(session, statement, params)
    ]
    if not records:
        return {}
    deliveries: dict[str, list[tuple[str, str]]] = {r.id: [] for r in records}
    for delivery_id, recipient, record_id in select_rows(
        session, _STORED_DELIVERIES, {"record_ids": list(deliveries)}
    ):
        deliveries[record_id].append((delivery_id, recipient))
    return {
        (r.publisher, r.request_id): Receipt(
            r.id,
            r.digest,
            r.accepted_ms,
            deliveries[r.id],
            False,
            r.schema_version,
            _deprecation(router, r.record_type, r.schema_version),
        )
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
            version = router.catalogue.version_for(request.record_type, request.schema_version)
            if version is not None:
                _check_recipients(version, recipients)
            content_type = router.catalogue.check_payload(
                request.record_type, request.content_type, request.payload, version
            )
        except AckhubError as refusal:
            answers[index] = refusal
            continue
        # None given: the type's own content type and current version (what the record is stored with).
        number = version.version if version is not None else (request.schema_version or 1)
        if content_type != request.content_type or number != request.schema_version:
            item = replace(item, request=replace(request, content_type=content_type, schema_version=number))
        digest = hashlib.sha256(item.request.payload).hexdigest()
        accepted.append((index, item, recipients, digest, item.request.request_id or new_id(item.now_ms)))
    receipts = _stored_receipts(  # a generated request id (none given) cannot have been used before
        session,
        router,
        {(item.publisher.id, rid) for _, item, _, _, rid in accepted if item.request.request_id},
    )
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
        version = router.catalogue.get(item.request.record_type, item.request.schema_version)
        retired = version and router.catalogue.retired(version, china_date(item.now_ms))
        if retired:  # past its last day: refused for a new record (a retry above got its receipt)
            answers[index] = retired
            continue
        record, its_deliveries = _new_record(router, item, recipients, digest, request_id)
        records.append(record)
        deliveries += its_deliveries
        pairs = [(str(d["id"]), str(d["recipient"])) for d in its_deliveries]
        number = item.request.schema_version
        receipt = Receipt(
            str(record["id"]),
            digest,
            item.now_ms,
            pairs,
            False,
            number,
            _deprecation(router, item.request.record_type, number),
        )
        receipts[(item.publisher.id, request_id)] = answers[index] = receipt
        events.append(
            audit_log.event_row(
                kind="record.published",
                actor=item.publisher.actor,
                time_ms=item.now_ms,
                record_id=receipt.record_id,
                data={
                    "record_type": record["record_type"],
                    "schema_version": number,
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
        "schema_version": request.schema_version,
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
