"""Delivery proofs: one self-contained JSON document that lets anyone, offline, check that each recipient
acknowledged a record — the agencies' signed acknowledgements, the keys they were checked against, the
audit events that recorded the record, the keys and the acknowledgements, each event's inclusion proof, and
the hub's signed checkpoint the proofs lead to. Format (all binary values base64):

    {"format": "ackhub-delivery-proof/v1",
     "record": {"record_id", "record_type", "publisher", "subject_uscc", "declaration_number", "digest",
                "accept_time", "published_event"},
     "recipients": [{"agency", "name", "registered_event", "delivery_id", "state",
                     "acknowledgements": [{"status", "reason", "time", "key_id", "public_key",
                                           "key_event", "signature", "event"}]}],
     "cases": [{"case_id", "kind", "state", "events": [<leaf index>, ...]}],
     "events": {"<leaf index>": {"leaf_data": "<canonical JSON the leaf hash is over>",
                                 "audit_path": ["<hash>", ...]}},
     "checkpoint": {"origin", "tree_size", "root_hash", "time", "time_ms", "key_id", "public_key",
                    "signature", "note", "signed_note"}}

`*_event` values are leaf indexes into `events`. `signed_note` is the checkpoint as a C2SP signed note with the
witnesses' cosignatures: the proof uses the newest checkpoint that witnesses cosigned when it covers every
event the proof needs, else a fresh one (without cosignatures yet). ackhub.hub.ledger.verify's `verify_delivery_proof`
checks it, and with a policy (trusted witness keys, quorum K) requires K cosignatures.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from ackhub.audit.checkpoint import Checkpoint
from ackhub.audit.proofs import FORMAT
from ackhub.audit.times import to_rfc3339_ms
from ackhub.core.principal import Principal
from ackhub.hub.exchange.trace import deliveries_of, visible_record
from ackhub.hub.ledger import log
from ackhub.hub.ledger.ledger import AuditLedger, cosignature_lines, to_checkpoint
from ackhub.hub.store.models import (
    AcknowledgementRow,
    AgencyKeyRow,
    AgencyRow,
    AuditCheckpointRow,
    AuditCosignatureRow,
    AuditEventRow,
)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _leaf(session: Session, *conditions: Any, where: dict[str, str] | None = None) -> AuditEventRow | None:
    """The newest sequenced event matching `conditions` whose data holds every `where` item (for the
    agencies' events, of kinds that are few)."""
    rows = session.exec(
        select(AuditEventRow)
        .where(col(AuditEventRow.leaf_index).is_not(None), *conditions)
        .order_by(col(AuditEventRow.leaf_index).desc())
    )
    for row in rows:
        data = json.loads(row.data)
        if all(data.get(k) == v for k, v in (where or {}).items()):
            return row
    return None


def _newest_cosigned(session: Session) -> Checkpoint | None:
    size = session.exec(select(func.max(AuditCosignatureRow.tree_size))).one()
    row = session.get(AuditCheckpointRow, size) if size is not None else None
    return to_checkpoint(row) if row is not None else None


def build(ledger: AuditLedger, caller: Principal, record_id: str) -> dict[str, Any]:
    """Blocking. Against the newest cosigned checkpoint when it covers the record's events; else against a
    fresh checkpoint (signed now when events of the record are not yet covered)."""
    db = ledger.db
    with db.transaction() as session:
        visible_record(session, caller, record_id)  # refuse before signing anything
        cosigned = _newest_cosigned(session)
    if cosigned is not None:
        document = _build(ledger, caller, record_id, cosigned)
        if document is not None:
            return document
    document = _build(ledger, caller, record_id, ledger.checkpoint())
    assert document is not None  # a fresh checkpoint covers every sequenced event
    return document


def _build(
    ledger: AuditLedger, caller: Principal, record_id: str, checkpoint: Checkpoint
) -> dict[str, Any] | None:
    """The document against `checkpoint`; None when an event it needs is newer than the checkpoint."""
    db = ledger.db
    wanted: set[int] = set()
    uncovered = False

    def leaf(row: AuditEventRow | None) -> int | None:
        nonlocal uncovered
        if row is None or row.leaf_index is None:
            return None
        if row.leaf_index >= checkpoint.tree_size:
            uncovered = True
            return None
        wanted.add(row.leaf_index)
        return row.leaf_index

    with db.transaction() as session:
        record = visible_record(session, caller, record_id)
        names = {a.id: a.name for a in session.exec(select(AgencyRow))}
        # The record's own events (published, attempts, acknowledgements) come through its record_id
        # index, a handful of rows; looking them up by kind would read every event of that kind.
        own = sorted(
            (e for e in ledger.events_of(session, record.id) if e.leaf_index is not None),
            key=lambda e: e.leaf_index or 0,
            reverse=True,
        )

        def newest(kind: str, delivery_id: str | None = None) -> AuditEventRow | None:
            return next(
                (e for e in own if e.kind == kind and delivery_id in (None, e.delivery_id)),
                None,
            )

        recipients = []
        for delivery in deliveries_of(session, [record.id])[record.id]:
            acks = []
            for ack in session.exec(
                select(AcknowledgementRow)
                .where(AcknowledgementRow.delivery_id == delivery.id)
                .order_by(col(AcknowledgementRow.id))
            ):
                key = session.get(AgencyKeyRow, (ack.recipient, ack.key_id))
                public_key = key.public_key if key is not None else ""
                acks.append(
                    {
                        "status": ack.status,
                        "reason": ack.reason,
                        "time": to_rfc3339_ms(ack.ack_time_ms),
                        "key_id": ack.key_id,
                        "public_key": public_key,
                        "key_event": leaf(
                            _leaf(
                                session,
                                AuditEventRow.kind == "agency.key_added",
                                col(AuditEventRow.time_ms) <= ack.received_ms,
                                where={"agency": ack.recipient, "key": ack.key_id, "public_key": public_key},
                            )
                        ),
                        "signature": _b64(ack.signature),
                        "event": leaf(newest(f"delivery.{ack.status.lower()}", delivery.id)),
                    }
                )
            recipients.append(
                {
                    "agency": delivery.recipient,
                    "name": names.get(delivery.recipient, delivery.recipient),
                    "registered_event": leaf(
                        _leaf(
                            session,
                            col(AuditEventRow.kind).in_(["agency.registered", "agency.updated"]),
                            where={"agency": delivery.recipient},
                        )
                    ),
                    "delivery_id": delivery.id,
                    "state": delivery.state,
                    "acknowledgements": acks,
                }
            )
        published = leaf(newest("record.published"))
        # Cases between parties about the record (hub/cases/): every audited change of each, oldest first.
        cases: dict[str, dict[str, Any]] = {}
        for event in reversed(own):
            if event.kind.startswith("case."):
                data = json.loads(event.data)
                case = cases.setdefault(
                    data["case_id"], {"case_id": data["case_id"], "kind": data["case_kind"], "events": []}
                )
                case["state"] = data["state"]
                case["events"].append(leaf(event))
        if uncovered:
            return None
        cosignatures = cosignature_lines(session, checkpoint.tree_size)
        rows = {
            r.leaf_index: r
            for r in session.exec(select(AuditEventRow).where(col(AuditEventRow.leaf_index).in_(wanted)))
        }
    paths = ledger.audit_paths(sorted(wanted), checkpoint)
    events = {
        str(index): {
            "leaf_data": log.leaf_data(rows[index], index).decode(),
            "audit_path": [_b64(h) for h in paths[index]],
        }
        for index in sorted(wanted)
    }
    return {
        "format": FORMAT,
        "record": {
            "record_id": record.id,
            "record_type": record.record_type,
            "publisher": record.publisher,
            "subject_uscc": record.subject_uscc or "",
            "declaration_number": record.declaration_number or "",
            "digest": f"sha256:{record.digest}",
            "accept_time": to_rfc3339_ms(record.accepted_ms),
            "published_event": published,
        },
        "recipients": recipients,
        "cases": list(cases.values()),
        "events": events,
        "checkpoint": checkpoint.to_json(cosignatures),
    }


def dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2, ensure_ascii=False).encode()
