"""Shared by the connector tests: a hub whose agency uses a push connector, signed acknowledgements as the
agency's own system would make them, and reading a delivery's state back."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlmodel import select

from ackhub.audit.acks import AckFields, sign_ack
from ackhub.audit.times import to_rfc3339_ms
from ackhub.connectors._push import PushConnector
from ackhub.core.clock import ManualClock
from ackhub.hub.store.models import AcknowledgementRow, EscalationRow
from ackhub.v1 import exchange_service_pb2 as pb
from ackhub.v1 import types_pb2
from tests.harness import RunningHub, key_id, private_key, start_hub
from tests.records import declaration

TYPE = "customs.export_declaration.released"


def hub_with(
    tmp_path: Path, clock: ManualClock, agency: str, connector: str, table: dict[str, Any]
) -> RunningHub:
    """A hub on SQLite whose `agency` is served by `connector`, configured by `table`."""

    def edit(config: dict[str, Any]) -> None:
        for entry in config["agencies"]:
            if entry["id"] == agency:
                entry["connector"] = connector
                entry[connector] = table

    return start_hub(f"sqlite:///{tmp_path / 'hub.db'}", clock=clock, edit=edit)


def connector_of(hub: RunningHub, name: str) -> PushConnector:
    return next(c for c in hub.server.push if c.name == name)


def publish(hub: RunningHub, payload: bytes = declaration()) -> pb.Receipt:
    return hub.agency("customs").publish(
        TYPE, payload, subject_uscc="91110000600037341L", request_id=str(uuid.uuid4())
    )


def delivery_to(receipt: pb.Receipt, agency: str) -> str:
    return next(d.delivery_id for d in receipt.deliveries if d.recipient == agency)


def state(hub: RunningHub, record_id: str, agency: str) -> types_pb2.Delivery:
    record = hub.exchange_stub.GetRecord(pb.GetRecordRequest(record_id=record_id), metadata=hub.as_operator())
    delivery: types_pb2.Delivery = next(d for d in record.deliveries if d.recipient == agency)
    return delivery


def step(hub: RunningHub, clock: ManualClock, name: str, advance_ms: int = 0) -> None:
    """Move time, let the dispatcher hand out what is due, and wait for the connector's sends to finish."""
    if advance_ms:
        clock.advance(advance_ms)
    hub.dispatch()
    hub.run(connector_of(hub, name).idle())


def signed_ack(
    agency: str,
    delivery_id: str,
    record_id: str,
    digest: str,
    status: str,
    time_ms: int,
    reason: str = "",
    sign_with: Callable[[bytes], bytes] | None = None,
) -> dict[str, str]:
    """An acknowledgement as JSON fields (the filedrop and webhook forms), signed by `agency`'s test key."""
    fields = AckFields(
        delivery_id,
        record_id,
        digest.removeprefix("sha256:"),
        agency,
        key_id(agency),
        status,
        reason,
        time_ms,
    )
    signature = sign_with(fields.canonical_text()) if sign_with else sign_ack(private_key(agency), fields)
    return {
        "delivery_id": delivery_id,
        "record_id": record_id,
        "digest": f"sha256:{fields.digest}",
        "recipient": agency,
        "key_id": key_id(agency),
        "status": status,
        "reason": reason,
        "time": to_rfc3339_ms(time_ms),
        "signature": base64.b64encode(signature).decode(),
    }


def stored_acks(hub: RunningHub, delivery_id: str) -> list[tuple[str, str]]:
    """(status, via) of every acknowledgement kept for the delivery."""
    with hub.server.db.transaction() as session:
        rows = session.exec(select(AcknowledgementRow).where(AcknowledgementRow.delivery_id == delivery_id))
        return sorted((r.status, r.via) for r in rows)


def cases(hub: RunningHub, delivery_id: str) -> list[tuple[str, str]]:
    """(reason, state) of the delivery's escalation cases."""
    with hub.server.db.transaction() as session:
        rows = session.exec(select(EscalationRow).where(EscalationRow.delivery_id == delivery_id))
        return [(r.reason, r.state) for r in rows]
