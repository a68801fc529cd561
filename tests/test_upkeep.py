"""The hub's own PostgreSQL upkeep (ackhub.hub.store.upkeep): a busy table with many dead rows is vacuumed,
one changed a lot since its last analysis is analyzed, with autovacuum off for it; a table below the
thresholds is left alone; one process of a deployment does a round at a time."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from ackhub.hub.store.db import Database
from ackhub.hub.store.upkeep import UPKEEP_LOCK, TableStats, due, upkeep

pytestmark = pytest.mark.postgres


@pytest.fixture(name="store")
def fixture_store(postgres_url: str) -> Iterator[Database]:
    db = Database(postgres_url)
    db.migrate()
    try:
        yield db
    finally:
        db.close()


def _stats(url: str, table: str) -> tuple[int, int, object, object]:
    """(dead rows, changed since analyze, last vacuum, last analyze) of `table`, as the server counts them."""
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT n_dead_tup, n_mod_since_analyze, last_vacuum, last_analyze FROM pg_stat_user_tables "
            "WHERE relname = %s",
            [table],
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3]


def _until_counted(url: str, table: str, dead: int, changed: int) -> None:
    """Statistics reach shared memory when a backend ends or idles (PostgreSQL 15); wait, bounded."""
    deadline = time.monotonic() + 20
    while True:
        now = _stats(url, table)
        if now[0] >= dead and now[1] >= changed:
            return
        assert time.monotonic() < deadline, f"{table}: counted {now[:2]}, expected {dead}, {changed}"
        time.sleep(0.1)


def test_due_uses_autovacuums_default_thresholds() -> None:
    assert due(TableStats("deliveries", live_rows=1000, dead_rows=250, changed_since_analyze=0)) is None
    assert due(TableStats("deliveries", live_rows=1000, dead_rows=251, changed_since_analyze=0)) == "vacuum"
    assert due(TableStats("records", live_rows=1000, dead_rows=0, changed_since_analyze=150)) is None
    assert due(TableStats("records", live_rows=1000, dead_rows=0, changed_since_analyze=151)) == "analyze"
    assert due(TableStats("records", live_rows=0, dead_rows=0, changed_since_analyze=51)) == "analyze"


def test_busy_tables_are_vacuumed_and_analyzed_without_autovacuum(store: Database) -> None:
    url = store.conninfo
    with psycopg.connect(url, autocommit=True) as connection:
        for table in ("rate_buckets", "hub_secrets", "records"):
            connection.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        connection.execute(
            "INSERT INTO rate_buckets (key, tokens, updated_ms) "
            "SELECT 'k' || n, 1, n FROM generate_series(1, 400) AS n"
        )
        connection.execute("UPDATE rate_buckets SET tokens = 2")  # 400 dead row versions
    _until_counted(url, "rate_buckets", dead=400, changed=800)

    done = upkeep(store)
    assert done is not None and ("vacuum", "rate_buckets") in done
    dead, changed, vacuumed, analyzed = _stats(url, "rate_buckets")
    assert (dead, changed) == (0, 0) and vacuumed is not None and analyzed is not None
    assert not any(table == "records" for _, table in done)  # empty and unchanged: left alone

    with psycopg.connect(url, autocommit=True) as connection:  # 120 changes: over 50 + 10 % of 400
        connection.execute("UPDATE rate_buckets SET updated_ms = 0 WHERE updated_ms <= 120")
    _until_counted(url, "rate_buckets", dead=120, changed=120)
    assert upkeep(store) == [("analyze", "rate_buckets")]  # 120 dead rows: under 50 + 20 % of 400
    assert upkeep(store) == []


def test_one_process_at_a_time(store: Database) -> None:
    with psycopg.connect(store.conninfo, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [UPKEEP_LOCK])
        assert upkeep(store) is None  # another process's round is under way
        other.execute("SELECT pg_advisory_unlock(%s)", [UPKEEP_LOCK])
    assert upkeep(store) is not None
