"""SQLite's database thread keeps one connection for all its transactions (`Database._writer`): a failed
transaction leaves nothing behind and the connection usable, other threads take their own, and `close()`
closes it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from hub.store.db import Database
from hub.store.models import AgencyRow


def _driver_connection(db: Database) -> Any:
    with db.transaction() as session:
        return session.connection().connection.dbapi_connection


def _add(db: Database, agency: str, fail: bool = False) -> None:
    with db.transaction() as session:
        session.add(AgencyRow(id=agency, name="A", kind="tax"))
        session.flush()
        if fail:
            raise RuntimeError("after the insert")


def test_sqlite_database_thread_keeps_one_connection(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'hub.db'}")
    db.migrate()

    async def on_the_database_thread() -> list[Any]:
        seen = [await db.run(_driver_connection, db)]
        await db.run(_add, db, "tax")
        with pytest.raises(RuntimeError):
            await db.run(_add, db, "fx", fail=True)
        seen.append(await db.run(_driver_connection, db))
        return seen

    seen = asyncio.run(on_the_database_thread())
    writer = seen[0]
    assert all(connection is writer for connection in seen)
    assert _driver_connection(db) is not writer  # this thread takes one from the pool
    with db.transaction() as session:
        assert [row.id for row in session.exec(select(AgencyRow))] == ["tax"]  # the failed one rolled back

    db.close()
    with pytest.raises(sqlite3.ProgrammingError):
        writer.execute("SELECT 1")


def test_postgres_keeps_no_connection_per_thread(postgres_url: str) -> None:
    db = Database(postgres_url)
    db.migrate()
    try:
        assert asyncio.run(db.run(db._writer)) is None
    finally:
        db.close()
