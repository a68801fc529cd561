"""What the hub already holds about a case's subject, gathered when the case opens.

The evidence is stored with the case as JSON:

    {"summary": "fx signed RECEIVED at 2026-12-05T08:00:01.250Z with key fx-2026-1",
     "deliveries": [{"delivery_id", "recipient", "state",
                     "acknowledgements": [{"status", "key_id", "ack_ms", "received_ms", "reason",
                                           "signature" (base64)}],
                     "attempts": [{"number", "connector", "sent_ms", "outcome"}]}],
     "delivery_proof": {the record's delivery proof, ackhub.hub.ledger.proof} or null,
     "permit": {"check_id", "kind", "number", "verdict", "reasons", "issuer", "permit_document",
                "permit_key_id", "permit_signature" (base64), "issuer_keys": [{"key_id", "public_key",
                "revoked_after"}], "signature_problem", "declaration_number", "declarant_uscc",
                "check_ms"} or null}

Most NOT_RECEIVED disputes end with the summary: a signed RECEIVED names the agency's key and time.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, col, select

from ackhub.audit.acks import public_key_base64
from ackhub.audit.times import to_rfc3339_ms
from ackhub.core.permit_document import from_json
from ackhub.hub.permits.issuers import Issuers
from ackhub.hub.store.models import AcknowledgementRow, AttemptRow, DeliveryRow, PermitCheckRow, PermitRow

# The strongest acknowledgement first: what a summary names.
_STRENGTH = {"ACCEPTED": 3, "REJECTED": 3, "RECEIVED": 2}


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def deliveries_evidence(session: Session, deliveries: Sequence[DeliveryRow]) -> list[dict[str, Any]]:
    """Each delivery with its signed acknowledgements and its attempts, oldest first."""
    ids = [d.id for d in deliveries]
    acks: dict[str, list[AcknowledgementRow]] = {i: [] for i in ids}
    for ack in session.exec(
        select(AcknowledgementRow)
        .where(col(AcknowledgementRow.delivery_id).in_(ids))
        .order_by(col(AcknowledgementRow.id))
    ):
        acks[ack.delivery_id].append(ack)
    attempts: dict[str, list[AttemptRow]] = {i: [] for i in ids}
    for attempt in session.exec(
        select(AttemptRow).where(col(AttemptRow.delivery_id).in_(ids)).order_by(col(AttemptRow.id))
    ):
        attempts[attempt.delivery_id].append(attempt)
    return [
        {
            "delivery_id": d.id,
            "recipient": d.recipient,
            "state": d.state,
            "acknowledgements": [
                {
                    "status": a.status,
                    "key_id": a.key_id,
                    "ack_ms": a.ack_time_ms,
                    "received_ms": a.received_ms,
                    "reason": a.reason,
                    "signature": _b64(a.signature),
                }
                for a in acks[d.id]
            ],
            "attempts": [
                {"number": t.number, "connector": t.connector, "sent_ms": t.sent_ms, "outcome": t.outcome}
                for t in attempts[d.id]
            ],
        }
        for d in deliveries
    ]


def delivery_summary(delivery: dict[str, Any]) -> str:
    """One sentence: the strongest signed acknowledgement, or where the delivery stands without one."""
    recipient = delivery["recipient"]
    signed = sorted(delivery["acknowledgements"], key=lambda a: _STRENGTH.get(a["status"], 0))
    received = [a for a in signed if a["status"] == "RECEIVED"]
    if received or signed:
        ack = received[0] if received else signed[-1]
        sentence = (
            f"{recipient} signed {ack['status']} at {to_rfc3339_ms(ack['ack_ms'])} with key {ack['key_id']}"
        )
        if ack["status"] != "RECEIVED" and ack["reason"]:
            sentence += f" ({ack['reason']})"
        later = [a for a in signed if a is not ack and a["status"] != "RECEIVED"]
        if later:
            sentence += f", then {later[-1]['status']} at {to_rfc3339_ms(later[-1]['ack_ms'])}"
            if later[-1]["reason"]:
                sentence += f" ({later[-1]['reason']})"
        return sentence
    attempts = delivery["attempts"]
    if not attempts:
        return f"{recipient} has no signed acknowledgement; the record was not sent to it yet ({delivery['state']})"
    last = attempts[-1]
    return (
        f"{recipient} has no signed acknowledgement after {len(attempts)} attempt(s); the last was sent at "
        f"{to_rfc3339_ms(last['sent_ms'])} via {last['connector']} ({delivery['state']})"
    )


def record_evidence(session: Session, deliveries: Sequence[DeliveryRow]) -> dict[str, Any]:
    """The concerned deliveries' evidence and a summary; the caller adds the delivery proof."""
    found = deliveries_evidence(session, deliveries)
    summary = "; ".join(delivery_summary(d) for d in found) or "the record has no deliveries"
    return {"summary": summary, "deliveries": found, "delivery_proof": None, "permit": None}


def issuer_of_check(
    session: Session, check: PermitCheckRow, issuers: Issuers
) -> tuple[PermitRow | None, str]:
    """The permit the check was about (when the hub holds it) and its issuer's id ('' when unknown: a
    number nobody registered, or a registry answer the hub did not keep)."""
    permit = None
    if check.permit_id is not None:
        permit = session.exec(select(PermitRow).where(PermitRow.id == check.permit_id)).first()
    if permit is None:
        permit = session.exec(
            select(PermitRow).where(PermitRow.kind == check.kind, PermitRow.number == check.number)
        ).first()
    if permit is not None:
        return permit, permit.issuer
    found = issuers.with_registry(check.kind)
    return None, found[0].id if len(found) == 1 else ""


def permit_evidence(
    session: Session, check: PermitCheckRow, permit: PermitRow | None, issuer_id: str, issuers: Issuers
) -> dict[str, Any]:
    """The decision, the permit as registered, and the issuer's key history (specimens, revocations)."""
    issuer = issuers.get(issuer_id) if issuer_id else None
    problem = ""
    if permit is not None and issuer is not None:
        problem = issuer.signature_problem(from_json(permit.document), permit.key_id, permit.signature) or ""
    reasons = [r for r in check.reasons.split(",") if r]
    evidence = {
        "check_id": check.id,
        "kind": check.kind,
        "number": check.number,
        "verdict": check.verdict,
        "reasons": reasons,
        "issuer": issuer_id,
        "permit_document": permit.document if permit is not None else "",
        "permit_key_id": permit.key_id if permit is not None else "",
        "permit_signature": _b64(permit.signature) if permit is not None else "",
        "issuer_keys": [
            {
                "key_id": key.key_id,
                "public_key": public_key_base64(key.public_key),
                "revoked_after": key.revoked_after.isoformat() if key.revoked_after else "",
            }
            for key in (issuer.keys.values() if issuer is not None else ())
        ],
        "signature_problem": problem,
        "declaration_number": check.declaration_number,
        "declarant_uscc": check.declarant_uscc,
        "check_ms": check.time_ms,
    }
    verdict = "VALID" if check.verdict == "VALID" else f"INVALID ({', '.join(reasons)})"
    summary = f"{check.kind} {check.number} was verified {verdict} at {to_rfc3339_ms(check.time_ms)}"
    if permit is None:
        summary += "; the hub holds no registered copy of it"
    else:
        summary += f"; registered version {permit.version} is signed with key {permit.key_id}"
    if problem:
        summary += f"; today: {problem}"
    return {"summary": summary, "deliveries": [], "delivery_proof": None, "permit": evidence}
