"""Writing many rows in one statement: the hot paths (publish, acknowledge, claim) build plain column
values and execute one `executemany` per table instead of flushing an ORM object per row."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, insert, update
from sqlmodel import Session, SQLModel


def table_of(model: type[SQLModel]) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


def insert_rows(session: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]]) -> None:
    """One INSERT for all `rows`, executed now in the session's transaction. Every row names the same
    columns, every non-nullable one included (the models' Python defaults do not apply here)."""
    if rows:
        session.connection().execute(insert(table_of(model)), list(rows))


def update_rows(
    session: Session, model: type[SQLModel], objects: Iterable[SQLModel], columns: Sequence[str]
) -> None:
    """Write `columns` of each (detached) object to its row, matched by `id`, in one UPDATE."""
    table = table_of(model)
    rows = [{"key_id": obj.id, **{c: getattr(obj, c) for c in columns}} for obj in objects]  # type: ignore[attr-defined]
    if rows:
        statement = (
            update(table).where(table.c.id == bindparam("key_id")).values({c: bindparam(c) for c in columns})
        )
        session.connection().execute(statement, rows)
