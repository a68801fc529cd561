"""Fixtures: every store-touching test runs on SQLite and on the machine's PostgreSQL (a fresh database
per test), and gets a running hub on loopback with a hand-moved clock (`hub`), or the migrated store
alone (`db`).

A test that asks for `hub` or `db` would migrate its fresh database first thing; it gets a copy of one
migrated once per session instead (`CREATE DATABASE … TEMPLATE`, a copied SQLite file), which saves a
migration per test (0.2 s on PostgreSQL, 0.1 s on SQLite). Every other test gets an empty database.
"""

from __future__ import annotations

import shutil
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
def fresh_postgres(template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database on the machine's server, empty or a copy of `template`, dropped
    afterwards."""
    if not _postgres_available():
        pytest.fail("PostgreSQL is not reachable at 127.0.0.1:5432 (it should be started on this machine)")
    name = f"ackhub_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class _Migrated:
    """The session's migrated databases, made on first use: a PostgreSQL template and a SQLite file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.postgres: str | None = None
        self.sqlite: Path | None = None

    def postgres_template(self) -> str:
        if self.postgres is None:
            name = f"ackhub_template_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            self.postgres = name
            self._migrate(f"postgresql://postgres@127.0.0.1:5432/{name}")
        return self.postgres

    def sqlite_file(self) -> Path:
        if self.sqlite is None:
            path = self.folder / "migrated.db"
            self._migrate(f"sqlite:///{path}")
            self.sqlite = path
        return self.sqlite

    @staticmethod
    def _migrate(url: str) -> None:
        db = Database(url)
        try:
            db.migrate()
        finally:
            db.close()

    def drop(self) -> None:
        if self.postgres is not None:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.postgres}" WITH (FORCE)')


@pytest.fixture(name="migrated", scope="session")
def fixture_migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Migrated]:
    migrated = _Migrated(tmp_path_factory.mktemp("migrated"))
    try:
        yield migrated
    finally:
        migrated.drop()


@pytest.fixture(name="database_url", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fixture_database_url(
    request: pytest.FixtureRequest, tmp_path: Path, migrated: _Migrated
) -> Iterator[str]:
    """A fresh database: a migrated copy when the test asks for `hub` or `db` (which would migrate it
    first thing), otherwise empty."""
    copy = bool({"hub", "db"} & set(request.fixturenames))
    if request.param == "sqlite":
        path = tmp_path / "hub.db"
        if copy:
            shutil.copyfile(migrated.sqlite_file(), path)
        yield f"sqlite:///{path}"
        return
    with fresh_postgres(migrated.postgres_template() if copy else None) as url:
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
