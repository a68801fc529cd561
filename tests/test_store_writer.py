"""A database thread keeps one connection for all its transactions (`Database._writer`): a failed
transaction leaves nothing behind and the connection usable, a lost one is replaced, other threads take
their own, and `close()` closes it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlmodel import select

from ackhub.hub.store.db import Database
from ackhub.hub.store.models import AgencyRow


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


@pytest.mark.postgres
def test_postgres_threads_keep_their_connection_and_replace_a_lost_one(postgres_url: str) -> None:
    """On PostgreSQL a database thread keeps its connection between transactions; when the server ends
    it (a restart, an administrator), the transaction that meets it fails and the next one reconnects."""
    db = Database(postgres_url, threads=1)  # so each call meets the same connection
    db.migrate()

    def backend_pid(db: Database) -> int:
        with db.transaction() as session:
            return int(session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar_one())

    async def on_one_database_thread() -> tuple[int, int, int]:
        first = await db.run(backend_pid, db)
        again = await db.run(backend_pid, db)
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        with pytest.raises(Exception, match=r"terminat|closed|server"):
            await db.run(_add, db, "tax")
        await db.run(_add, db, "fx")  # a new connection
        return first, again, await db.run(backend_pid, db)

    try:
        first, again, after = asyncio.run(on_one_database_thread())
        assert first == again and after != first
        with db.transaction() as session:
            assert [row.id for row in session.exec(select(AgencyRow))] == ["fx"]
    finally:
        db.close()


def test_a_long_read_does_not_hold_up_the_writes(tmp_path: Path) -> None:
    """`Database.read` (console pages, `/metrics`, trace queries) runs beside the database thread: a
    write finishes while a read is still under way, and a read started after it sees it (SQLite's WAL)."""
    import threading

    db = Database(f"sqlite:///{tmp_path / 'hub.db'}")
    db.migrate()
    reading, release = threading.Event(), threading.Event()

    def slow_read() -> list[str]:
        with db.transaction() as session:
            before = [a.id for a in session.exec(select(AgencyRow))]
            reading.set()
            assert release.wait(10)  # a long read: the write below must not wait for it
            return before

    async def scenario() -> tuple[list[str], list[str]]:
        read = asyncio.ensure_future(db.read(slow_read))
        await asyncio.get_running_loop().run_in_executor(None, reading.wait, 10)
        await asyncio.wait_for(db.run(_add, db, "tax"), 5)  # done while the read still holds on
        assert not read.done()
        release.set()
        after = await db.read(lambda: [a.id for a in _agencies(db)])
        return await read, after

    try:
        before, after = asyncio.run(scenario())
    finally:
        release.set()
        db.close()
    assert before == [] and after == ["tax"]


def _agencies(db: Database) -> list[AgencyRow]:
    with db.transaction() as session:
        return list(session.exec(select(AgencyRow)))
