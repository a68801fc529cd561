"""The database: engine creation, migrations on start, and the thread pools that keep blocking database
work off the gRPC event loop (for SQLite, which has one writer, one thread for everything that writes and
two for long reads beside it; a pool for PostgreSQL)."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine

if TYPE_CHECKING:
    from alembic.config import Config

P = ParamSpec("P")
T = TypeVar("T")
MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision (tests/test_server.py checks it against Alembic's head): a store already
# there starts without loading Alembic and its scripts, a fifth of a second of every start.
HEAD_REVISION = "0008"
WAL_AUTOCHECKPOINT_PAGES = 20_000  # ~80 MB of WAL before a commit would checkpoint by itself


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here; everything else is passed through."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            # The hub checkpoints the WAL in the background (Database.checkpoint_wal); this is only the
            # safety net, so that no commit of the writer pays for copying the WAL into the database.
            cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=5, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def stored_revision(engine: Engine) -> str | None:
    """The store's Alembic revision, or None for a store without one (new, or older than Alembic)."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (a no-op when it is there already)."""
    if stored_revision(engine) == HEAD_REVISION:
        return
    from alembic import command

    command.upgrade(alembic_config(engine), "head")


class Database:
    """Owns the engine; `transaction()` is a unit of work; `run()` executes one off the event loop."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # SQLite's one database thread keeps one connection open for all its transactions (`_writer`).
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(
            max_workers=1 if self.is_sqlite else 8,
            thread_name_prefix="ackhub-db",
            initializer=self._mark_writer if self.is_sqlite else None,
        )
        self._wal_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ackhub-wal")
        # Reads that may take long (a console page, a metrics scrape, a trace query) on SQLite run on
        # threads and connections of their own: WAL lets them read the last committed state while the
        # database thread writes, instead of holding up every group commit behind them.
        self._read_executor = (
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="ackhub-read")
            if self.is_sqlite
            else self._executor
        )

    def migrate(self) -> None:
        migrate(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        writer = self._writer()
        bind = self.engine if writer is None else writer
        with Session(bind, expire_on_commit=False) as session, session.begin():
            yield session

    def _mark_writer(self) -> None:
        self._local.writer = True

    def _writer(self) -> Connection | None:
        """On SQLite's database thread, its connection, kept open between transactions: taking one from
        the pool and giving it back (with the pool's reset) was a third of what a small transaction
        cost the thread in Python. Elsewhere None: a connection from the pool per transaction."""
        if not getattr(self._local, "writer", False):
            return None
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.invalidated:
            connection = self._local.connection = self.engine.connect()
        return connection

    def _close_writer(self) -> None:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`run` for work that only reads. On SQLite it does not queue behind the writes nor hold them up
        (at a million records, counting deliveries by state for `/metrics` took 730 ms, during which no
        record could be stored); on PostgreSQL it is `run`. Anything that writes, or must see what this
        caller wrote in the same transaction, uses `run`."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_executor, functools.partial(fn, *args, **kwargs))

    def checkpoint_wal(self) -> None:
        """SQLite: copy what the WAL holds into the database file without blocking the writer (PASSIVE),
        on a connection and a thread of its own. Left to SQLite's automatic checkpoint, the commit that
        crosses the threshold pays for the copy and its fsync: tens to hundreds of ms of every caller
        waiting on that commit (seen in bench/exchange.py as stalls of the group commit)."""
        if not self.is_sqlite:
            return
        with self.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    async def run_wal_checkpoint(self) -> None:
        if self.is_sqlite:
            await asyncio.get_running_loop().run_in_executor(self._wal_executor, self.checkpoint_wal)

    def close(self) -> None:
        self._wal_executor.shutdown(wait=True)
        if self._read_executor is not self._executor:
            self._read_executor.shutdown(wait=True)
        if self.is_sqlite:
            self._executor.submit(self._close_writer).result()
        self._executor.shutdown(wait=True)
        self.engine.dispose()
