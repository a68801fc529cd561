"""Acknowledgements: check the recipient's signature against its registered key, then move the delivery
along `PENDING → SENT → RECEIVED → ACCEPTED | REJECTED` and keep the signed acknowledgement as proof."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import bindparam
from sqlalchemy import select as core_select
from sqlmodel import Session, select

from ackhub.audit.acks import ACK_STATUSES
from ackhub.core.connector import AckInput
from ackhub.core.errors import (
    AckhubError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from ackhub.core.principal import Principal
from ackhub.hub.exchange.claims import close_attempts
from ackhub.hub.exchange.escalation import Notice, close_by_ack, open_case
from ackhub.hub.exchange.states import FINAL, RECEIVED, REJECTED, REJECTED_BY_RECIPIENT, closes
from ackhub.hub.exchange.validation import Violations
from ackhub.hub.ledger import log as audit_log
from ackhub.hub.store.bulk import Read, changes_of, insert_rows, select_rows, table_of, update_rows
from ackhub.hub.store.models import AcknowledgementRow, DeliveryRow, EscalationRow, RecordRow
from ackhub.hub.store.views import DELIVERY_COLUMNS, DeliveryView

FIELD = "acknowledgement"
MAX_REASON = 2000
CLOCK_SKEW_MS = 5 * 60_000
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class AckOutcome:
    delivery: DeliveryView
    duplicate: bool
    notices: list[Notice]


def validate(ack: AckInput, now_ms: int) -> None:
    bad = Violations()
    for name in ("delivery_id", "record_id", "recipient", "key_id"):
        value = getattr(ack, name)
        if bad.required(f"{FIELD}.{name}", value):
            bad.max_length(f"{FIELD}.{name}", value, 128)
    if not _DIGEST.match(ack.digest):
        bad.add(f"{FIELD}.digest", "must be 'sha256:' followed by 64 lower-case hex digits")
    if ack.status not in ACK_STATUSES:
        bad.add(f"{FIELD}.status", "must be RECEIVED, ACCEPTED or REJECTED")
    if "\n" in ack.reason or "\r" in ack.reason:
        bad.add(f"{FIELD}.reason", "cannot contain line breaks")
    bad.max_length(f"{FIELD}.reason", ack.reason, MAX_REASON)
    if ack.status == REJECTED and not ack.reason.strip():
        bad.add(f"{FIELD}.reason", "is required when the status is REJECTED")
    if ack.time_ms is None:
        bad.add(f"{FIELD}.ack_time", "is required and must be a whole number of milliseconds")
    elif ack.time_ms > now_ms + CLOCK_SKEW_MS:
        bad.add(f"{FIELD}.ack_time", "is more than 5 minutes ahead of the hub's clock")
    if len(ack.signature) != 64:
        bad.add(f"{FIELD}.signature", f"an Ed25519 signature is 64 bytes, got {len(ack.signature)}")
    bad.raise_if_any()


def _check_against(
    ack: AckInput, delivery: DeliveryView, digest: str, caller: Principal, signature: AckhubError | None
) -> None:
    """The acknowledgement against its stored delivery; then the signature check's outcome (made before
    the transaction, see ackhub.hub.exchange.signatures)."""
    if caller.kind != "agency" or caller.id != delivery.recipient or ack.recipient != delivery.recipient:
        raise PermissionDenied(
            f"delivery {delivery.id!r} is addressed to {delivery.recipient!r}; "
            f"{caller.actor!r} cannot acknowledge it as {ack.recipient!r}",
            reason="NOT_RECIPIENT",
            metadata={
                "delivery_id": delivery.id,
                "recipient": delivery.recipient,
                "caller": caller.actor,
                "ack_recipient": ack.recipient,
            },
        )
    if ack.record_id != delivery.record_id:
        raise InvalidArgument(
            [
                FieldViolation(
                    f"{FIELD}.record_id", f"delivery {delivery.id!r} carries record {delivery.record_id!r}"
                )
            ],
            reason="RECORD_MISMATCH",
        )
    if ack.digest != f"sha256:{digest}":
        raise InvalidArgument(
            [FieldViolation(f"{FIELD}.digest", f"the record's digest is sha256:{digest}")],
            reason="DIGEST_MISMATCH",
        )
    if signature is not None:
        raise signature


def _apply(session: Session, delivery: DeliveryView, ack: AckInput, now_ms: int) -> list[Notice]:
    notices: list[Notice] = []
    if ack.status == RECEIVED:
        if delivery.received_ms is None:
            delivery.received_ms = now_ms
        if delivery.state in FINAL:
            return notices  # a late technical acknowledgement: kept as proof, changes nothing
        delivery.state = RECEIVED
        delivery.next_attempt_ms = None  # the agency has it: sending again would only duplicate
    else:
        delivery.received_ms = delivery.received_ms or now_ms
        delivery.state = ack.status
        delivery.final_ms = now_ms
        delivery.reason = ack.reason
        delivery.next_attempt_ms = None
    if closes(delivery.required_level, ack.status):
        delivery.deadline_check_ms = None
        if delivery.closed_ms is None:
            delivery.closed_ms = now_ms
            delivery.closed_by = ack.status
        if delivery.escalated and delivery.escalation_id:
            case = session.exec(select(EscalationRow).where(EscalationRow.id == delivery.escalation_id)).one()
            notices.append(close_by_ack(session, case, delivery, ack.status, now_ms))
        if ack.status == REJECTED:
            notices.append(open_case(session, delivery, REJECTED_BY_RECIPIENT, ack.reason, now_ms))
    return notices


@dataclass(frozen=True)
class AckRequest:
    caller: Principal
    ack: AckInput
    now_ms: int
    via: str  # stream, unary, or a connector's name
    signature: AckhubError | None  # the refusal of the signature check (None: it verified)


# Built once (see ackhub.hub.store.bulk for why).
_D, _R = table_of(DeliveryRow), table_of(RecordRow)
_TO_ACKNOWLEDGE = (
    core_select(*(_D.c[name] for name in DELIVERY_COLUMNS), _R.c.digest)
    .join(_R, _R.c.id == _D.c.record_id)
    .where(_D.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_D.c.id)  # every batch locks in one order: hubs sharing a PostgreSQL cannot deadlock on them
    .with_for_update(of=_D)
)
_A = table_of(AcknowledgementRow)
_STORED_ACKS = core_select(_A.c.delivery_id, _A.c.status).where(
    _A.c.delivery_id.in_(bindparam("ids", expanding=True))
)

# What an acknowledgement may change on its delivery, written for the whole batch in one UPDATE.
_DELIVERY_CHANGES = (
    "state",
    "received_ms",
    "final_ms",
    "reason",
    "next_attempt_ms",
    "deadline_check_ms",
    "escalated",
    "escalation_id",
    "closed_ms",
    "closed_by",
)


def reads_ahead(requests: list[AckRequest]) -> list[Read]:
    """What `acknowledge_many` will read for `requests`, to be read ahead (ackhub.hub.store.batching): their
    deliveries, locked, and the statuses already stored."""
    ids = sorted(_valid_delivery_ids(requests, {}))
    return [(_TO_ACKNOWLEDGE, {"ids": ids}), (_STORED_ACKS, {"ids": ids})] if ids else []


def acknowledge_many(session: Session, requests: list[AckRequest]) -> list[AckOutcome | AckhubError]:
    """Inside the caller's transaction, in order; each answer is an outcome or that request's refusal,
    raised before it wrote anything. The deliveries, digests and stored statuses of the whole batch are
    read in two queries; the acknowledgements, the deliveries' changes, the closed attempts and the audit
    events are written in one statement each."""
    answers: list[AckOutcome | AckhubError | None] = [None] * len(requests)
    refused: dict[int, AckhubError] = {}
    wanted = _valid_delivery_ids(requests, refused)
    for index, refusal in refused.items():
        answers[index] = refusal
    deliveries: dict[str, tuple[DeliveryView, str]] = {}
    stored: set[tuple[str, str]] = set()
    if wanted:
        ids = sorted(wanted)  # one list, in a stable order, for both reads
        for *columns, digest in select_rows(session, _TO_ACKNOWLEDGE, {"ids": ids}):
            view = DeliveryView(*columns)  # changed in Python, written back in one UPDATE
            deliveries[view.id] = (view, digest)
        stored = {
            (delivery_id, status) for delivery_id, status in select_rows(session, _STORED_ACKS, {"ids": ids})
        }
    writes = _Writes()
    for index, request in enumerate(requests):
        if answers[index] is None:
            try:
                answers[index] = _acknowledge(session, request, deliveries, stored, writes)
            except AckhubError as refusal:
                answers[index] = refusal
    if writes.acks:
        insert_rows(session, AcknowledgementRow, writes.acks)
        update_rows(session, DeliveryRow, changes_of(writes.changed.values(), _DELIVERY_CHANGES))
        close_attempts(session, "ACKED", writes.attempts)
        audit_log.append_rows(session, writes.events)
    return [answer for answer in answers if answer is not None]


def _valid_delivery_ids(requests: list[AckRequest], refused: dict[int, AckhubError]) -> set[str]:
    """The deliveries the valid requests acknowledge; each refusal into `refused`, by request index."""
    wanted: set[str] = set()
    for index, request in enumerate(requests):
        try:
            validate(request.ack, request.now_ms)
            wanted.add(request.ack.delivery_id)
        except AckhubError as refusal:
            refused[index] = refusal
    return wanted


@dataclass
class _Writes:
    """What a batch of acknowledgements will write."""

    acks: list[dict[str, object]] = field(default_factory=list)
    changed: dict[str, DeliveryView] = field(default_factory=dict)
    attempts: list[dict[str, object]] = field(default_factory=list)
    events: list[dict[str, object]] = field(default_factory=list)


def _acknowledge(
    session: Session,
    request: AckRequest,
    deliveries: dict[str, tuple[DeliveryView, str]],
    stored: set[tuple[str, str]],
    writes: _Writes,
) -> AckOutcome:
    ack, now_ms = request.ack, request.now_ms
    found = deliveries.get(ack.delivery_id)
    if found is None:
        raise NotFound("delivery", ack.delivery_id)
    delivery, digest = found
    _check_against(ack, delivery, digest, request.caller, request.signature)
    if (delivery.id, ack.status) in stored:
        return AckOutcome(delivery, True, [])
    if ack.status in FINAL and delivery.state in FINAL:
        raise FailedPrecondition(
            f"delivery {delivery.id!r} was already {delivery.state}; {ack.status} contradicts it",
            reason="ACK_CONTRADICTS_FINAL",
            metadata={"delivery_id": delivery.id, "state": delivery.state, "status": ack.status},
        )
    writes.acks.append(
        {
            "delivery_id": delivery.id,
            "record_id": delivery.record_id,
            "recipient": delivery.recipient,
            "status": ack.status,
            "reason": ack.reason,
            "ack_time_ms": ack.time_ms or 0,
            "key_id": ack.key_id,
            "signature": ack.signature,
            "received_ms": now_ms,
            "via": request.via,
        }
    )
    stored.add((delivery.id, ack.status))
    writes.attempts.append({"d": delivery.id, "n": delivery.attempts, "t": now_ms})
    notices = _apply(session, delivery, ack, now_ms)
    writes.changed[delivery.id] = delivery
    writes.events.append(
        audit_log.event_row(
            kind=f"delivery.{ack.status.lower()}",
            actor=request.caller.actor,
            time_ms=now_ms,
            record_id=delivery.record_id,
            delivery_id=delivery.id,
            data={
                "status": ack.status,
                "reason": ack.reason,
                "key": ack.key_id,
                "ack_time_ms": ack.time_ms,
                "signature": ack.signature.hex(),
                "state": delivery.state,
            },
        )
    )
    return AckOutcome(delivery, False, notices)
