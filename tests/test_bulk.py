"""`hub.store.bulk.select_rows` (the hot paths' reads on the DBAPI cursor) returns what SQLAlchemy's own
execution returns for the same statements: the same rows, in the same order, with the same column names
and the same Python types (SQLite's 0/1 read back as a bool), for every length of an IN list, on SQLite and
on PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import Select

from ackhub.hub.exchange.acknowledge import _STORED_ACKS, _TO_ACKNOWLEDGE
from ackhub.hub.exchange.claims import _DUE, _NEXT_DUE
from ackhub.hub.exchange.publish import _STORED, _STORED_DELIVERIES
from ackhub.hub.ledger.log import _UNSEQUENCED
from ackhub.hub.store.bulk import _padded, prefetch, select_rows
from tests.harness import RunningHub
from tests.records import declaration

TYPE = "customs.export_declaration.released"


def _both(hub: RunningHub, statement: Select[Any], params: dict[str, Any]) -> list[Any]:
    """The rows through select_rows, after checking them against SQLAlchemy's execution."""
    with hub.server.db.transaction() as session:
        expected = session.connection().execute(statement, params).all()
        got = select_rows(session, statement, params)
    assert [tuple(row) for row in got] == [tuple(row) for row in expected]
    assert [[type(value) for value in row] for row in got] == [
        [type(value) for value in row] for row in expected
    ]
    if expected:
        assert got[0]._fields == tuple(expected[0]._mapping)
    return got


def test_select_rows_matches_sqlalchemy(hub: RunningHub) -> None:
    request_ids = [str(uuid.uuid4()) for _ in range(3)]
    receipts = [
        hub.agency("customs").publish(TYPE, declaration(), subject_uscc="91110000600037341L", request_id=rid)
        for rid in request_ids
    ]
    record_ids = [receipt.record_id for receipt in receipts]
    delivery_ids = sorted(d.delivery_id for receipt in receipts for d in receipt.deliveries)
    assert len(delivery_ids) >= 3

    # A list parameter of each length is its own compiled statement; a scalar beside it keeps its place.
    for count in (1, 2, 3):
        stored = _both(hub, _STORED, {"publisher": "customs", "request_ids": request_ids[:count]})
        assert sorted(row.request_id for row in stored) == sorted(request_ids[:count])
    assert _both(hub, _STORED, {"publisher": "tax", "request_ids": request_ids}) == []
    delivered = _both(hub, _STORED_DELIVERIES, {"record_ids": record_ids})
    assert sorted(row.id for row in delivered) == delivery_ids

    to_ack = _both(hub, _TO_ACKNOWLEDGE, {"ids": delivery_ids})
    assert [row.id for row in to_ack] == delivery_ids
    assert all(row.escalated is False for row in to_ack)  # a bool, not SQLite's 0
    assert _both(hub, _STORED_ACKS, {"ids": delivery_ids[:1]}) == []

    recipient = to_ack[0].recipient
    future = 2**62
    due = _both(hub, _DUE, {"recipient": recipient, "now_ms": future, "limit": 2})
    assert 1 <= len(due) <= 2  # the limit is a bound value, the statement's own OFFSET 0 a literal
    assert _both(hub, _DUE, {"recipient": recipient, "now_ms": 0, "limit": 5}) == []
    assert [row.next_attempt_ms for row in _both(hub, _NEXT_DUE, {"recipient": recipient, "now_ms": 0})]
    _both(hub, _UNSEQUENCED, {"limit": 10})


def test_in_lists_of_every_length_share_a_few_compiled_forms(hub: RunningHub) -> None:
    """A list is padded to the next power of two with its last value: the same rows, and lengths 1 to 300
    make ten compiled forms of a statement (lengths 1, 2, 4 … 512), not 300."""
    receipts = [
        hub.agency("customs").publish(TYPE, declaration(note="2"), subject_uscc="91110000600037341L")
        for _ in range(5)
    ]
    delivery_ids = sorted(d.delivery_id for receipt in receipts for d in receipt.deliveries)
    lengths = set()
    for count in range(1, 301):
        ids = (delivery_ids * 30)[:count]  # repeats, as a padded list has
        rows = _both(hub, _TO_ACKNOWLEDGE, {"ids": ids})
        assert [row.id for row in rows] == sorted(set(ids))
        padded = _padded(ids)
        assert set(padded) == set(ids) and padded[: len(ids)] == ids
        lengths.add(len(padded))
    assert sorted(lengths) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


def test_prefetched_reads_are_answered_once_with_the_same_rows(hub: RunningHub) -> None:
    """`prefetch` (PostgreSQL: several reads in one round trip) keeps each read's rows for the one
    `select_rows` call that asks for exactly it, with the same rows as a read made then; a second call
    reads the database again (so it sees the transaction's own writes), and on SQLite nothing is read
    ahead."""
    receipts = [
        hub.agency("customs").publish(TYPE, declaration(note="p"), subject_uscc="91110000600037341L")
        for _ in range(2)
    ]
    delivery_ids = sorted(d.delivery_id for receipt in receipts for d in receipt.deliveries)
    to_tax = next(d.delivery_id for d in receipts[0].deliveries if d.recipient == "tax")
    reads: list[tuple[Select[Any], dict[str, Any]]] = [
        (_TO_ACKNOWLEDGE, {"ids": delivery_ids[:3]}),  # padded to 4, as select_rows pads it
        (_STORED_ACKS, {"ids": delivery_ids}),
        (_NEXT_DUE, {"recipient": "tax", "now_ms": 0}),
    ]
    with hub.server.db.transaction() as session:
        expected = [session.connection().execute(statement, params).all() for statement, params in reads]
    with pytest.raises(_RolledBack):
        _read_ahead(hub, reads, expected, to_tax)


def _read_ahead(
    hub: RunningHub, reads: list[tuple[Select[Any], dict[str, Any]]], expected: list[Any], to_tax: str
) -> None:
    with hub.server.db.transaction() as session:
        prefetch(session, reads)
        ahead = session.info.get("ackhub.prefetched", {})
        assert len(ahead) == (0 if hub.server.db.is_sqlite else 3)
        got = [select_rows(session, statement, params) for statement, params in reads]
        assert [[tuple(row) for row in rows] for rows in got] == [
            [tuple(row) for row in rows] for rows in expected
        ]
        assert not ahead  # each answered once
        # A read asked for again goes to the database and sees what the transaction wrote meanwhile.
        session.connection().exec_driver_sql(
            f"UPDATE deliveries SET next_attempt_ms = 1 WHERE id = '{to_tax}'"
        )
        (first,) = select_rows(session, _NEXT_DUE, {"recipient": "tax", "now_ms": 0})
        assert first.next_attempt_ms == 1
        raise _RolledBack


class _RolledBack(Exception):
    """Raised to leave a transaction without committing it."""
