"""The agencies' registered Ed25519 public keys, by agency and key id, kept in the store and in memory."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlmodel import Session, select

from ackhub.audit.acks import load_public_key, public_key_base64
from ackhub.core.principal import SYSTEM
from ackhub.hub.config import Settings
from ackhub.hub.ledger import log as audit_log
from ackhub.hub.store.models import AgencyKeyRow, AgencyRow


@dataclass(frozen=True)
class KeyRing:
    keys: dict[tuple[str, str], Ed25519PublicKey]

    def get(self, agency_id: str, key_id: str) -> Ed25519PublicKey | None:
        return self.keys.get((agency_id, key_id))


def sync_agencies(session: Session, settings: Settings, now_ms: int) -> KeyRing:
    """Make the stored agencies and keys match the configuration; every change is audited."""
    stored_agencies = {row.id: row for row in session.exec(select(AgencyRow))}
    for agency in settings.agencies:
        row = stored_agencies.get(agency.id)
        if row is None:
            session.add(
                AgencyRow(id=agency.id, name=agency.name, kind=agency.kind, connector=agency.connector)
            )
            audit_log.append(
                session,
                kind="agency.registered",
                actor=SYSTEM.actor,
                time_ms=now_ms,
                data={"agency": agency.id, "name": agency.name, "kind": agency.kind},
            )
        elif (row.name, row.kind, row.connector) != (agency.name, agency.kind, agency.connector):
            row.name, row.kind, row.connector = agency.name, agency.kind, agency.connector
            session.add(row)
            audit_log.append(
                session,
                kind="agency.updated",
                actor=SYSTEM.actor,
                time_ms=now_ms,
                data={"agency": agency.id, "name": agency.name, "kind": agency.kind},
            )
    session.flush()

    stored_keys = {(row.agency_id, row.key_id): row for row in session.exec(select(AgencyKeyRow))}
    ring: dict[tuple[str, str], Ed25519PublicKey] = {}
    for agency in settings.agencies:
        for key in agency.keys:
            public = load_public_key(key.public_key)
            encoded = public_key_base64(public)
            ring[(agency.id, key.id)] = public
            key_row = stored_keys.pop((agency.id, key.id), None)
            if key_row is None or key_row.public_key != encoded or key_row.retired_ms is not None:
                if key_row is None:
                    key_row = AgencyKeyRow(
                        agency_id=agency.id, key_id=key.id, public_key=encoded, added_ms=now_ms
                    )
                key_row.public_key, key_row.retired_ms = encoded, None
                session.add(key_row)
                audit_log.append(
                    session,
                    kind="agency.key_added",
                    actor=SYSTEM.actor,
                    time_ms=now_ms,
                    data={"agency": agency.id, "key": key.id, "public_key": encoded},
                )
    for left_out in stored_keys.values():
        if left_out.retired_ms is None:
            left_out.retired_ms = now_ms
            session.add(left_out)
            audit_log.append(
                session,
                kind="agency.key_retired",
                actor=SYSTEM.actor,
                time_ms=now_ms,
                data={"agency": left_out.agency_id, "key": left_out.key_id},
            )
    return KeyRing(ring)
