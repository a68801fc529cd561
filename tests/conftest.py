"""Fixtures: every store-touching test runs on SQLite and on the machine's PostgreSQL (a fresh database
per test), and gets a running hub on loopback with a hand-moved clock (`hub`), or the migrated store
alone (`db`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from ackhub.core.clock import ManualClock, SystemClock
from ackhub.hub.store.db import Database
from tests.harness import RunningHub, start_hub

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new, empty PostgreSQL database on the machine's server, dropped afterwards."""
    if not _postgres_available():
        pytest.fail("PostgreSQL is not reachable at 127.0.0.1:5432 (it should be started on this machine)")
    name = f"ackhub_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(name="database_url", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fixture_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    with fresh_postgres() as url:
        yield url


@pytest.fixture(name="postgres_url")
def fixture_postgres_url() -> Iterator[str]:
    with fresh_postgres() as url:
        yield url


@pytest.fixture(name="db")
def fixture_db(database_url: str) -> Iterator[Database]:
    """The store migrated to the newest revision, without a hub."""
    db = Database(database_url)
    db.migrate()
    try:
        yield db
    finally:
        db.close()


@pytest.fixture(name="clock")
def fixture_clock() -> ManualClock:
    return ManualClock(SystemClock().now_ms())


@pytest.fixture(name="hub")
def fixture_hub(database_url: str, clock: ManualClock) -> Iterator[RunningHub]:
    running = start_hub(database_url, clock=clock)
    try:
        yield running
    finally:
        running.stop()
