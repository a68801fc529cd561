"""The database: engine creation, migrations on start, and the thread pools that keep blocking database
work off the gRPC event loop (for SQLite, which has one writer, one thread for everything that writes and
two for long reads beside it; a pool for PostgreSQL)."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import psycopg
from sqlalchemy import Connection, Engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, create_engine

from ackhub.core.errors import StartupError

if TYPE_CHECKING:
    from alembic.config import Config

P = ParamSpec("P")
T = TypeVar("T")
MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision (tests/test_server.py checks it against Alembic's head): a store already
# there starts without loading Alembic and its scripts, a fifth of a second of every start.
HEAD_REVISION = "0014"
PG_THREADS = 6  # database threads (each with its connection) of one hub process on PostgreSQL
WAL_AUTOCHECKPOINT_PAGES = 20_000  # ~80 MB of WAL before a commit would checkpoint by itself
MIGRATION_LOCK = 0x6163_6B68_7576  # advisory lock: one migration at a time on one database


def driver_error(failure: BaseException) -> BaseException:
    """The driver's own exception under SQLAlchemy's wrapper (the hot paths run on the DBAPI cursor, so
    theirs arrive unwrapped)."""
    original = getattr(failure, "orig", None)
    return original if isinstance(original, BaseException) else failure


def first_line(error: BaseException) -> str:
    """An error's message as one line for a log or a refusal (drivers add lines of context)."""
    return next(iter(str(error).strip().splitlines()), type(error).__name__)


def is_unique_race(failure: BaseException) -> bool:
    """A unique constraint broken: another transaction stored the same key first."""
    error = driver_error(failure)
    return isinstance(error, sqlite3.IntegrityError | psycopg.errors.UniqueViolation) or (
        isinstance(failure, IntegrityError) and not isinstance(error, psycopg.Error)
    )


def is_transient(failure: BaseException) -> bool:
    """PostgreSQL rolled the transaction back for a reason that trying again cures (a deadlock's victim,
    a serialization failure)."""
    return isinstance(
        driver_error(failure), psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure
    )


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here; everything else is passed through."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, application_name: str = "ackhub") -> Engine:
    """`application_name`: how PostgreSQL's `pg_stat_activity` (and the wake-up notifications, which
    carry it: ackhub.hub.store.cluster) name this process's connections."""
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
    # No pre-ping: each database thread keeps its connection (`Database._writer`), and a connection that
    # failed is invalidated by SQLAlchemy and replaced at the next transaction. A ping per checkout was a
    # round trip before every group commit (a tenth of the database threads' time, py-spy).
    engine = create_engine(
        url,
        pool_size=PG_THREADS + 2,
        max_overflow=8,
        connect_args={"application_name": application_name, "connect_timeout": 10},
    )
    from ackhub.hub.store.bulk import leave_pipeline

    # The hot paths' writes ride a pipeline (ackhub.hub.store.bulk): it ends before SQLAlchemy sends anything
    # itself, and before a rollback. A commit goes through it (psycopg sends COMMIT and a Sync: one round
    # trip, which raises the first error of the transaction's statements), and it stays open for the
    # next transaction of the thread's connection.
    def _leave(connection: Connection, failed: bool = False) -> None:
        if not connection.invalidated:  # a lost connection has no pipeline to end
            leave_pipeline(connection.connection.dbapi_connection, failed)

    @event.listens_for(engine, "before_cursor_execute")
    def _before_execute(connection: Connection, *_args: Any) -> None:
        _leave(connection)

    @event.listens_for(engine, "rollback")
    def _before_rollback(connection: Connection) -> None:
        _leave(connection, failed=True)

    return engine


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
    """Bring the schema to the newest revision (a no-op when it is there already). On PostgreSQL under an
    advisory lock, so that hub processes starting together on a new database migrate it once."""
    if stored_revision(engine) == HEAD_REVISION:
        return
    from alembic import command

    if engine.dialect.name != "postgresql":
        command.upgrade(alembic_config(engine), "head")
        return
    with engine.connect() as lock:
        lock.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
        try:
            if stored_revision(engine) != HEAD_REVISION:  # not done meanwhile by the lock's last holder
                command.upgrade(alembic_config(engine), "head")
        finally:
            lock.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
            lock.commit()


def shown(url: str) -> str:
    """The URL as logs and messages show it: without its password."""
    return make_url(normalize_url(url)).render_as_string(hide_password=True).replace("+psycopg", "")


def prepare(engine: Engine, url: str) -> None:
    """What a hub does to its store at start: reach it, migrate a new one, and refuse one at another
    schema revision (`StartupError` saying what to do), since other processes of the deployment may be
    running on it: it is upgraded once, on purpose, with `ackhub db upgrade` (docs/deploy.md)."""
    try:
        stored = stored_revision(engine)
    except OperationalError as error:
        why = first_line(driver_error(error))
        raise StartupError(
            f"cannot reach the database at {shown(url)}: {why}. Check that the server is running and "
            f"accepts connections at that host and port, that the database exists, and that the user may "
            f"connect (pg_hba.conf, password in the URL or PGPASSWORD)."
        ) from None
    if stored == HEAD_REVISION:
        return
    if stored is None:
        migrate(engine)
        return
    if stored in _older_revisions():
        raise StartupError(
            f"the database at {shown(url)} is at schema revision {stored}; this hub needs {HEAD_REVISION}. "
            f"Upgrade it once (back it up first): ackhub db upgrade --config FILE (docs/deploy.md)"
        )
    raise StartupError(
        f"the database at {shown(url)} is at schema revision {stored}, newer than this hub knows "
        f"({HEAD_REVISION}): a newer ackhub upgraded it; run that version."
    )


def _older_revisions() -> set[str]:
    return {path.name.split("_", 1)[0] for path in (MIGRATIONS / "versions").glob("[0-9]*_*.py")} - {
        HEAD_REVISION
    }


def _end_pipeline(connection: Connection) -> None:
    """Before a database thread's connection is closed: end the pipeline its last commit left open."""
    from ackhub.hub.store.bulk import leave_pipeline

    with suppress(Exception):
        if not connection.closed and not connection.invalidated:
            leave_pipeline(connection.connection.dbapi_connection, failed=_broken(connection))


def _broken(connection: Connection) -> bool:
    """The driver's connection was lost under SQLAlchemy (a hot path's statement on the DBAPI cursor
    failed with it: SQLAlchemy did not see that and did not invalidate the connection)."""
    dbapi = connection.connection.dbapi_connection
    return bool(getattr(dbapi, "broken", False) or getattr(dbapi, "closed", False) is True)


class Database:
    """Owns the engine; `transaction()` is a unit of work; `run()` executes one off the event loop."""

    def __init__(self, url: str, threads: int = PG_THREADS, application_name: str = "ackhub") -> None:
        """`threads`: database threads on PostgreSQL (SQLite has one)."""
        self.url = normalize_url(url)
        self.application_name = application_name
        self.engine = make_engine(self.url, application_name)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # Each database thread keeps one connection open for all its transactions (`_writer`): SQLite's
        # one, and on PostgreSQL each of `PG_THREADS`.
        self._local = threading.local()
        self._writers: list[Connection] = []  # every database thread's connection, closed by `close`
        self._executor = ThreadPoolExecutor(
            max_workers=1 if self.is_sqlite else threads,
            thread_name_prefix="ackhub-db",
            initializer=self._mark_writer,
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

    def prepare(self) -> None:
        prepare(self.engine, self.url)

    @property
    def conninfo(self) -> str:
        """The URL as psycopg takes it (PostgreSQL)."""
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A unit of work. Opened inside another on the same thread, it is that one (a use case run within
        `hub.store.idempotency.once` commits with the record of its answer, or not at all)."""
        outer: Session | None = getattr(self._local, "session", None)
        if outer is not None:
            yield outer
            return
        writer = self._writer()
        bind = self.engine if writer is None else writer
        with Session(bind, expire_on_commit=False) as session, session.begin():
            self._local.session = session
            try:
                yield session
            finally:
                self._local.session = None

    def _mark_writer(self) -> None:
        self._local.writer = True

    def _writer(self) -> Connection | None:
        """On a database thread, its connection, kept open between transactions: taking one from the pool
        and giving it back (with the pool's reset, and on PostgreSQL a ping) was a third of what a small
        transaction cost the thread in Python. A connection that failed (the server restarted) is
        invalidated by SQLAlchemy and replaced here. Elsewhere None: one from the pool per transaction."""
        if not getattr(self._local, "writer", False):
            return None
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.invalidated or _broken(connection):
            if connection is not None:  # failed: give back what is left of it
                self._writers.remove(connection)
                _end_pipeline(connection)
                connection.close()
            connection = self._local.connection = self.engine.connect()
            self._writers.append(connection)  # list.append/remove are atomic under the GIL
        return connection

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
        self._executor.shutdown(wait=True)
        for connection in self._writers:  # no thread uses them any more
            _end_pipeline(connection)
            connection.close()
        self._writers.clear()
        self.engine.dispose()
