"""Writing many rows in one statement: the hot paths (publish, acknowledge, claim) build plain column
values and execute one `executemany` per table instead of flushing an ORM object per row; and reading
their rows (`select_rows`) the same way, on the DBAPI cursor.

The statements are built and compiled once per database dialect, and executed on the transaction's own
DBAPI connection: building a SQLAlchemy statement costs several times what SQLite takes to run it (about
200 µs against 30 µs for a small SELECT, measured here), and even a prebuilt one costs ~100 µs a call in
SQLAlchemy's execution path. The values are plain `str`, `int`, `bytes`, `bool` and `None`, which both
drivers take as they are, so no SQLAlchemy type processing is skipped that these columns need.
"""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, suppress
from operator import itemgetter
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Dialect, Select, Table, bindparam, insert, update
from sqlalchemy.sql.dml import UpdateBase
from sqlmodel import Session, SQLModel


def table_of(model: type[SQLModel]) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


@functools.cache
def _insert(model: type[SQLModel]) -> UpdateBase:
    return insert(table_of(model)).inline()  # inline: no RETURNING of the generated keys


@functools.cache
def _update(model: type[SQLModel], columns: tuple[str, ...]) -> UpdateBase:
    table = table_of(model)
    return update(table).where(table.c.id == bindparam("key_id")).values({c: bindparam(c) for c in columns})


@functools.cache
def _compiled(
    statement: UpdateBase, dialect: Dialect, keys: tuple[str, ...]
) -> tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]] | None, dict[str, Any]]:
    """The SQL text in the driver's parameter style; what picks a row's values as positional parameters,
    in C (None when the driver takes them by name: a generator expression per row was a tenth of the
    interpreter's time in a batched run); the values of the statement's own literals (such as
    `outcome = 'SENT'`)."""
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    fixed = {name: value for name, value in compiled.params.items() if name not in keys}
    order = compiled.positiontup
    if not order:
        return compiled.string, None, fixed
    if len(order) == 1:
        key = order[0]
        return compiled.string, lambda row: (row[key],), fixed
    return compiled.string, itemgetter(*order), fixed


def _dbapi(connection: Connection) -> Any:
    """The driver's own connection under the session's (the pool's proxy adds a call per cursor)."""
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None  # checked out: the session's transaction holds it
    return dbapi


def execute_many(session: Session, statement: UpdateBase, rows: Sequence[dict[str, Any]]) -> None:
    """Run a built INSERT or UPDATE once per row, in one `executemany` on the session's connection (so
    inside its transaction). Every row has the same keys."""
    if not rows:
        return
    connection = session.connection()
    sql, values_of, fixed = _compiled(statement, connection.dialect, tuple(rows[0]))
    if fixed:
        rows = [{**fixed, **row} for row in rows]
    params: Sequence[Any] = [values_of(row) for row in rows] if values_of else rows
    dbapi = _dbapi(connection)
    if connection.dialect.name == "postgresql":
        _pipelined(dbapi).executemany(sql, params)  # sent, not waited for: see `_pipelined`
        return
    cursor = dbapi.cursor()
    try:
        cursor.executemany(sql, params)
    finally:
        cursor.close()


# PostgreSQL connections in pipeline mode now, each with the context that ends it (`leave_pipeline`).
_PIPELINES: WeakKeyDictionary[Any, AbstractContextManager[Any]] = WeakKeyDictionary()


def _pipelined(dbapi: Any) -> Any:
    """A cursor on `dbapi` in psycopg's pipeline mode, entered if it is not yet. The hot paths' writes
    then go to the server without waiting for their answers; the next read (`select_rows`) waits for
    them and itself; the commit is one more round trip in the pipeline, which raises the first error of
    the transaction; anything SQLAlchemy executes and a rollback first end the pipeline
    (`leave_pipeline`, from engine events set in ackhub.hub.store.db). A group commit's dozen statements
    cost as many round trips as it has reads plus one, not one per statement, and each of those is a
    wait after which the database thread must take the GIL back: with the event loop busy, up to the
    interpreter's switch interval each. (A statement that fails in a pipeline surfaces at that next wait,
    as the same driver error: a unique-key race is still recognised by ackhub.hub.store.batching.)"""
    _enter_pipeline(dbapi)
    return dbapi.cursor()


def _enter_pipeline(dbapi: Any) -> None:
    if dbapi not in _PIPELINES:
        pipeline = dbapi.pipeline()
        pipeline.__enter__()
        _PIPELINES[dbapi] = pipeline


def leave_pipeline(dbapi: Any, failed: bool = False) -> None:
    """End `dbapi`'s pipeline if one is open: wait for every answer (raising the first error), unless
    `failed` (a rollback follows: what the pipeline answers no longer matters)."""
    pipeline = _PIPELINES.pop(dbapi, None)
    if pipeline is None:
        return
    if failed and dbapi.closed:  # the server went away: nothing to end (psycopg would log that it failed)
        return
    if not failed:
        pipeline.__exit__(None, None, None)
        return
    with suppress(Exception):
        pipeline.__exit__(RuntimeError, RuntimeError("rolled back"), None)


def insert_rows(session: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]]) -> None:
    """One INSERT for all `rows`, executed now in the session's transaction. Every row names the same
    columns, every non-nullable one included (the models' Python defaults do not apply here)."""
    execute_many(session, _insert(model), rows)


def update_rows(session: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]]) -> None:
    """One UPDATE for all `rows`, each the row's `key_id` (its `id`) and the same new column values."""
    if rows:
        execute_many(session, _update(model, tuple(name for name in rows[0] if name != "key_id")), rows)


def changes_of(objects: Iterable[Any], columns: Sequence[str]) -> list[dict[str, Any]]:
    """`update_rows` rows from objects changed in Python: their `id` and `columns`."""
    return [{"key_id": obj.id, **{c: getattr(obj, c) for c in columns}} for obj in objects]


# How one bound value of a prepared SELECT is found in the caller's parameters: (name, None) for a plain
# parameter, (name, i) for the i-th value of a list (an `expanding` IN parameter), or the statement's own
# literal value (such as a default OFFSET 0).
_Source = tuple[str, int | None] | tuple[None, Any]


class _PreparedSelect:
    """A SELECT compiled for one dialect and one length of each of its list parameters: its SQL text,
    where each bound value comes from, the row type (a named tuple of the selected columns' keys) and
    the result processors that SQLAlchemy would apply (SQLite's 0/1 into a bool, say)."""

    def __init__(self, statement: Select[Any], dialect: Dialect, lists: tuple[tuple[str, int], ...]) -> None:
        compiled = statement.compile(dialect=dialect)
        sample: dict[str, Any] = {
            key: None for key, bind in compiled.binds.items() if bind.value is None and bind.callable is None
        }
        sample.update({name: [None] * length for name, length in lists})
        expanded = compiled.construct_expanded_state(sample)
        self.sql = expanded.statement
        names = expanded.positiontup if expanded.positiontup is not None else list(expanded.parameters)
        items = {f"{name}_{i + 1}": (name, i) for name, length in lists for i in range(length)}
        sources: list[_Source] = []
        for key in names:
            if key in items:
                sources.append(items[key])
            elif key in sample:
                sources.append((key, None))
            else:
                sources.append((None, compiled.params[key]))
        self.sources = sources
        self.names = None if expanded.positiontup is not None else names
        columns = list(statement.selected_columns)
        row_type: Any = namedtuple("Row", [str(column.key) for column in columns])  # type: ignore[misc]
        self.make: Callable[[Iterable[Any]], Any] = row_type._make
        self.processors = [
            (index, processor)
            for index, column in enumerate(columns)
            if (processor := column.type.dialect_impl(dialect).result_processor(dialect, None)) is not None
        ]

    def bound(self, params: dict[str, Any]) -> Sequence[Any] | dict[str, Any]:
        values = [
            value if name is None else params[name] if value is None else params[name][value]
            for name, value in self.sources
        ]
        return values if self.names is None else dict(zip(self.names, values, strict=True))

    def rows(self, fetched: Sequence[Sequence[Any]]) -> list[Any]:
        make = self.make
        if not self.processors:
            return [make(values) for values in fetched]
        out = []
        for values in fetched:
            changed = list(values)
            for index, processor in self.processors:
                changed[index] = processor(changed[index])
            out.append(make(changed))
        return out


@functools.lru_cache(maxsize=1024)
def _prepared(
    statement: Select[Any], dialect: Dialect, lists: tuple[tuple[str, int], ...]
) -> _PreparedSelect:
    return _PreparedSelect(statement, dialect, lists)


def _padded(values: list[Any]) -> list[Any]:
    """An IN list made up to the next power of two by repeating its last value (the same set): each
    statement then has a few compiled forms, not one per length (a batch's lists run from 1 to 512
    long, and compiling one costs about a millisecond)."""
    size = len(values)
    if size < 2 or size & (size - 1) == 0:
        return values
    return values + [values[-1]] * ((1 << size.bit_length()) - size)


# A read of a hot path: a built SELECT and its parameters.
Read = tuple[Select[Any], dict[str, Any]]
_PREFETCHED = "ackhub.prefetched"  # session.info key: rows read ahead (`prefetch`), by statement and params


def _normalized(params: dict[str, Any]) -> dict[str, Any]:
    if any(isinstance(value, list) for value in params.values()):
        return {name: _padded(value) if isinstance(value, list) else value for name, value in params.items()}
    return params


def _key(statement: Select[Any], params: dict[str, Any]) -> tuple[int, tuple[tuple[str, Any], ...]]:
    frozen = tuple(
        sorted((name, tuple(value) if isinstance(value, list) else value) for name, value in params.items())
    )
    return id(statement), frozen


def select_rows(session: Session, statement: Select[Any], params: dict[str, Any]) -> list[Any]:
    """Run a built SELECT on the session's DBAPI connection (so inside its transaction) and return its
    rows as named tuples of the selected columns' keys. A list value fills an `expanding` IN parameter
    (only those: it is padded, `_padded`); the SQL is compiled once per dialect and list length
    (SQLAlchemy's own execution path costs ~50 µs a call, more than SQLite takes to answer the hot
    paths' reads). Rows `prefetch` read ahead for exactly this statement and these parameters are
    answered from there, once."""
    params = _normalized(params)
    ahead: dict[Any, list[Any]] | None = session.info.get(_PREFETCHED)
    if ahead:
        rows = ahead.pop(_key(statement, params), None)
        if rows is not None:
            return rows
    connection = session.connection()
    prepared = _prepared_for(statement, connection.dialect, params)
    cursor = _dbapi(connection).cursor()
    try:
        cursor.execute(prepared.sql, prepared.bound(params))
        return prepared.rows(cursor.fetchall())
    finally:
        cursor.close()


def _prepared_for(statement: Select[Any], dialect: Dialect, params: dict[str, Any]) -> _PreparedSelect:
    lists = tuple((name, len(value)) for name, value in params.items() if isinstance(value, list))
    return _prepared(statement, dialect, lists)


def prefetch(session: Session, reads: Sequence[Read]) -> None:
    """PostgreSQL: send `reads` together in the connection's pipeline and wait for their answers once,
    keeping the rows for the `select_rows` calls that ask for them later in the transaction. Each read
    that waits for its answer is a round trip to the server and, after it, a wait for the interpreter
    (~0.75 ms each on a busy two-core machine, where a group commit made eleven of them: the probe in
    docs/performance.md); reads that do not depend on each other's answers, or on writes the transaction
    makes before them, need only one. A prefetched read must be one that will be made: it holds its
    locks (`FOR UPDATE`) from now on. On SQLite (no round trips) it does nothing."""
    connection = session.connection()
    if connection.dialect.name != "postgresql" or not reads:
        return
    dbapi = _dbapi(connection)
    _enter_pipeline(dbapi)
    sent: list[tuple[Any, _PreparedSelect, Any]] = []
    try:
        for statement, params in reads:
            params = _normalized(params)
            prepared = _prepared_for(statement, connection.dialect, params)
            cursor = dbapi.cursor()
            cursor.execute(prepared.sql, prepared.bound(params))
            sent.append((_key(statement, params), prepared, cursor))
        ahead = session.info.setdefault(_PREFETCHED, {})
        for key, prepared, cursor in sent:
            ahead[key] = prepared.rows(cursor.fetchall())  # the first waits for all of them
    finally:
        for _, _, cursor in sent:
            cursor.close()
