"""Appending to the audit log, always inside the caller's transaction so the event and the change it
records commit together or not at all; and sequencing, which makes committed events leaves of the tree.

Why a separate sequencing step: `seq` comes from the database and is no order of commit — on PostgreSQL
concurrent transactions commit out of `seq` order, and a rolled-back one leaves a gap. So appending only
inserts the row (cheap, and no lock shared by every writer), and `sequence` — serialized by a PostgreSQL
advisory lock, or by SQLite's single writer — gives the committed events it finds the next dense leaf
indexes 0, 1, 2 … in `seq` order and stores each one's leaf hash. The leaf index is the tree order, and it
is inside the hashed leaf data, so moving an event moves nothing silently. Events are covered by the tree
once sequenced, and by a signature once a checkpoint includes them (ackhub.hub.ledger.ledger does both on a
schedule and on demand).
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import Any, Protocol

from sqlalchemy import bindparam, func, text, update
from sqlalchemy import select as core_select
from sqlmodel import Session

from ackhub.audit.merkle import leaf_hash
from ackhub.hub.store.bulk import execute_many, insert_rows, select_rows, table_of
from ackhub.hub.store.models import AuditEventRow

LEAF_VERSION = 1
_ADVISORY_LOCK = 0x6163_6B68_7562  # "ackhub": one sequencer at a time across every hub on one database


# One encoder for every event: `json.dumps` with options builds a new one per call, a third of its time.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(data: dict[str, Any]) -> str:
    """Sorted keys, no spaces, UTF-8 as is: what `json.dumps(data, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)` gives."""
    return _CANONICAL.encode(data)


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
        **event_row(
            kind=kind,
            actor=actor,
            time_ms=time_ms,
            record_id=record_id,
            delivery_id=delivery_id,
            escalation_id=escalation_id,
            data=data,
        )
    )
    session.add(event)
    return event


def event_row(
    *,
    kind: str,
    actor: str,
    time_ms: int,
    record_id: str | None = None,
    delivery_id: str | None = None,
    escalation_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One event as the column values `append_rows` inserts."""
    return {
        "time_ms": time_ms,
        "kind": kind,
        "actor": actor,
        "record_id": record_id,
        "delivery_id": delivery_id,
        "escalation_id": escalation_id,
        "data": canonical_json(data or {}),
        "leaf_index": None,
        "leaf_hash": None,
    }


def append_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Append many events (from `event_row`) in one INSERT executed now, in the caller's transaction.
    The hot paths use this: it skips building an ORM object per event."""
    insert_rows(session, AuditEventRow, rows)


def leaf_fields(event: EventFields, leaf_index: int) -> dict[str, Any]:
    """What a leaf states. `data` must be the canonical JSON `append` wrote; anything else raises."""
    data = json.loads(event.data)
    if not isinstance(data, dict) or canonical_json(data) != event.data:
        raise ValueError(f"event seq {event.seq} holds data that is not canonical JSON")
    return {
        "v": LEAF_VERSION,
        "index": leaf_index,
        "seq": event.seq,
        "time_ms": event.time_ms,
        "kind": event.kind,
        "actor": event.actor,
        "record_id": event.record_id,
        "delivery_id": event.delivery_id,
        "escalation_id": event.escalation_id,
        "data": data,
    }


def leaf_data(event: EventFields, leaf_index: int) -> bytes:
    """The bytes a leaf hash is over: canonical JSON of `leaf_fields`, UTF-8."""
    return canonical_json(leaf_fields(event, leaf_index)).encode()


def _json_text(value: str | None) -> str:
    return "null" if value is None else encode_basestring(value)


def spliced_leaf_data(event: EventFields, leaf_index: int) -> bytes:
    """`leaf_data` without parsing `data`: the stored text is spliced in where the sorted keys put it
    ("actor" < "data" < "delivery_id" …). Byte-identical to `leaf_data` whenever `data` is what `append`
    wrote, canonical JSON of an object (tests/test_audit.py checks); the sequencer uses it because parsing
    and re-encoding each event was most of its time. An event edited into something else before it was
    sequenced gets a leaf that verification cannot recompute, so `ackhub audit verify` reports it."""
    assert event.seq is not None
    return leaf_bytes(
        leaf_index,
        event.seq,
        event.time_ms,
        event.kind,
        event.actor,
        event.record_id,
        event.delivery_id,
        event.escalation_id,
        event.data,
    )


def leaf_bytes(
    leaf_index: int,
    seq: int,
    time_ms: int,
    kind: str,
    actor: str,
    record_id: str | None,
    delivery_id: str | None,
    escalation_id: str | None,
    data: str,
) -> bytes:
    """`spliced_leaf_data` from the column values (bench/scale.py builds millions of leaves this way)."""
    return (
        f'{{"actor":{_json_text(actor)},"data":{data},'
        f'"delivery_id":{_json_text(delivery_id)},"escalation_id":{_json_text(escalation_id)},'
        f'"index":{leaf_index},"kind":{_json_text(kind)},"record_id":{_json_text(record_id)},'
        f'"seq":{seq},"time_ms":{time_ms},"v":{LEAF_VERSION}}}'
    ).encode()


def tree_size(session: Session) -> int:
    (row,) = select_rows(session, _LAST_LEAF, {})
    return 0 if row.last is None else int(row.last) + 1


class EventFields(Protocol):
    """What a leaf states of an event: an `AuditEventRow`, or a plain row of the same columns."""

    seq: int | None
    time_ms: int
    kind: str
    actor: str
    record_id: str | None
    delivery_id: str | None
    escalation_id: str | None
    data: str


_EVENTS = table_of(AuditEventRow)
# Built once: the sequencer runs every sweep interval on the database thread (see ackhub.hub.store.bulk).
_UNSEQUENCED = (
    core_select(
        _EVENTS.c.seq,
        _EVENTS.c.time_ms,
        _EVENTS.c.kind,
        _EVENTS.c.actor,
        _EVENTS.c.record_id,
        _EVENTS.c.delivery_id,
        _EVENTS.c.escalation_id,
        _EVENTS.c.data,
    )
    .where(_EVENTS.c.leaf_index.is_(None))
    .order_by(_EVENTS.c.seq)
    .limit(bindparam("limit"))
)
_LAST_LEAF = core_select(func.max(_EVENTS.c.leaf_index).label("last"))
_SET_LEAF = (
    update(_EVENTS)
    .where(_EVENTS.c.seq == bindparam("key_seq"))
    .values(leaf_index=bindparam("leaf_index"), leaf_hash=bindparam("leaf_hash"))
)


def sequence(session: Session, limit: int = 10_000) -> int:
    """Make up to `limit` committed, unsequenced events the next leaves; returns the new tree size."""
    first, hashes = sequence_leaves(session, limit)
    return first + len(hashes)


def sequence_leaves(session: Session, limit: int) -> tuple[int, list[bytes]]:
    """`sequence`, returning the index of the first new leaf and the new leaves' hashes, in order (for
    the tree to grow by without reading them back). One read and one executemany UPDATE: about 25 µs of
    CPU an event on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
    first = size = tree_size(session)
    leaves: list[dict[str, Any]] = []
    for event in select_rows(session, _UNSEQUENCED, {"limit": limit}):
        # Spliced, not parsed: an event edited before it was sequenced stays in the tree (rather than
        # stalling the sequencer) with a leaf that verification cannot recompute, so it is reported.
        leaves.append(
            {"key_seq": event.seq, "leaf_index": size, "leaf_hash": leaf_hash(spliced_leaf_data(event, size))}
        )
        size += 1
    execute_many(session, _SET_LEAF, leaves)
    return first, [leaf["leaf_hash"] for leaf in leaves]
