"""Appending to the audit log, always inside the caller's transaction so the event and the change it
records commit together or not at all."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session

from hub.store.models import AuditEventRow


def canonical_json(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def append(
    session: Session,
    *,
    kind: str,
    actor: str,
    time_ms: int,
    record_id: str | None = None,
    delivery_id: str | None = None,
    escalation_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEventRow:
    event = AuditEventRow(
        time_ms=time_ms,
        kind=kind,
        actor=actor,
        record_id=record_id,
        delivery_id=delivery_id,
        escalation_id=escalation_id,
        data=canonical_json(data or {}),
    )
    session.add(event)
    return event
