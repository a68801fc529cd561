"""`ListRecords`' filters as queries (ackhub.hub.exchange.trace): by delivery state and by declaration number,
still limited to the caller's own records, newest first and paged, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from ackhub.core.identifiers import uscc_check_character
from ackhub.core.principal import Principal
from ackhub.hub.exchange import trace
from ackhub.hub.exchange.trace import list_records
from ackhub.hub.store.db import Database
from ackhub.hub.store.models import DeliveryRow, RecordRow

ALPHA = "91110000600037341L"
BETA = "91310000MA1FL0000" + uscc_check_character("91310000MA1FL0000")


def _store(db: Database, records: list[tuple[str, str, str, str]]) -> None:
    """(record id, USCC, declaration number, state of its fx delivery); its tax delivery is ACCEPTED."""
    with db.transaction() as session:
        for n, (record_id, uscc, declaration, fx_state) in enumerate(records):
            session.add(
                RecordRow(
                    id=record_id,
                    request_id=f"request-{n}",
                    publisher="customs",
                    record_type="customs.export_declaration.released",
                    subject_uscc=uscc,
                    declaration_number=declaration,
                    content_type="application/json",
                    payload=b"{}",
                    digest="0" * 64,
                    accepted_ms=1_800_000_000_000 + n,
                )
            )
            session.flush()
            for recipient, state in (("tax", "ACCEPTED"), ("fx", fx_state)):
                session.add(
                    DeliveryRow(
                        id=f"{record_id}-{recipient}",
                        record_id=record_id,
                        record_type="customs.export_declaration.released",
                        publisher="customs",
                        recipient=recipient,
                        state=state,
                        required_level="RECEIVED",
                        policy="{}",
                        created_ms=1_800_000_000_000 + n,
                        deadline_ms=1_800_000_600_000 + n,
                    )
                )


def _ids(db: Database, uscc: str, *, declaration: str = "", state: str = "", size: int = 50) -> list[str]:
    page = list_records(
        db,
        Principal("enterprise", uscc),
        declaration_number=declaration,
        record_type="",
        start_ms=None,
        end_ms=None,
        state=state,
        size=size,
        token="",
    )
    return [record.id for record, _ in page.items]


def test_state_and_declaration_filters(db: Database) -> None:
    """A state matches records with any delivery in it; a declaration number only the caller's record."""
    _store(
        db,
        [
            ("r0", ALPHA, "020220260000000001", "RECEIVED"),
            ("r1", ALPHA, "020220260000000002", "SENT"),
            ("r2", BETA, "020220260000000002", "SENT"),
            ("r3", ALPHA, "020220260000000003", "REJECTED"),
            ("r4", ALPHA, "020220260000000004", "SENT"),
        ],
    )
    assert _ids(db, ALPHA) == ["r4", "r3", "r1", "r0"]
    assert _ids(db, ALPHA, state="SENT") == ["r4", "r1"]
    assert _ids(db, ALPHA, state="ACCEPTED") == ["r4", "r3", "r1", "r0"]
    assert _ids(db, ALPHA, state="REJECTED") == ["r3"]
    assert _ids(db, ALPHA, state="PENDING") == []
    assert _ids(db, ALPHA, declaration="020220260000000002") == ["r1"]
    assert _ids(db, BETA, declaration="020220260000000002") == ["r2"]
    assert _ids(db, BETA, declaration="020220260000000001") == []
    assert _ids(db, ALPHA, declaration="020220260000000002", state="REJECTED") == []


def test_a_state_filter_pages_newest_first(db: Database) -> None:
    _store(
        db, [(f"r{n}", ALPHA, f"0202202600000000{n:02d}", "SENT" if n % 2 else "RECEIVED") for n in range(9)]
    )
    listed, token = [], ""
    while True:
        page = list_records(
            db,
            Principal("enterprise", ALPHA),
            declaration_number="",
            record_type="",
            start_ms=None,
            end_ms=None,
            state="SENT",
            size=2,
            token=token,
        )
        listed += [record.id for record, _ in page.items]
        token = page.next_token
        if not token:
            break
    assert listed == ["r7", "r5", "r3", "r1"]


def test_a_crowded_rare_state_is_checked_per_record_with_the_same_answer(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More deliveries in a rare state than `RARE_READ`: the caller's records are checked one by one."""
    _store(
        db,
        [
            ("r0", ALPHA, "020220260000000001", "SENT"),
            ("r1", BETA, "020220260000000002", "SENT"),
            ("r2", ALPHA, "020220260000000003", "REJECTED"),
            ("r3", ALPHA, "020220260000000004", "SENT"),
        ],
    )
    expected = {state: _ids(db, ALPHA, state=state) for state in ("SENT", "REJECTED", "PENDING")}
    monkeypatch.setattr(trace, "RARE_READ", 0)
    assert (
        {state: _ids(db, ALPHA, state=state) for state in expected}
        == expected
        == {
            "SENT": ["r3", "r0"],
            "REJECTED": ["r2"],
            "PENDING": [],
        }
    )
