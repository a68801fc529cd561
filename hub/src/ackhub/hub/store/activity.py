"""When each agency was last seen: its last acknowledgement and its last publication (the console's
Agencies page).

Reading that from `acknowledgements` and `records` took a whole-table aggregate on every page load (1.6 s
on SQLite and 0.6 s on PostgreSQL at a million records: bench/scale.py). Writing it with every transaction
would make one row per agency hot for every group commit of every process. So each process keeps the
newest times it saw in memory (`Activity`) and writes them with its heartbeat, every sweep interval, to
`agency_activity`, never moving a time back (several processes write the same rows). A page shows the
stored times and the unwritten ones of the process that renders it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from ackhub.hub.store.db import Database
from ackhub.hub.store.models import AgencyActivityRow

Seen = dict[str, tuple[int | None, int | None]]  # agency → (last acknowledgement, last publication) ms


def _later(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass
class Activity:
    """This process's sightings since its last heartbeat; used on the event loop only."""

    _seen: Seen = field(default_factory=dict)

    def acknowledged(self, agency: str, at_ms: int) -> None:
        ack, published = self._seen.get(agency, (None, None))
        self._seen[agency] = (_later(ack, at_ms), published)

    def published(self, agency: str, at_ms: int) -> None:
        ack, published = self._seen.get(agency, (None, None))
        self._seen[agency] = (ack, _later(published, at_ms))

    def unwritten(self) -> Seen:
        return dict(self._seen)

    def take(self) -> Seen:
        """What to write now; `put_back` it if the write fails."""
        taken, self._seen = self._seen, {}
        return taken

    def put_back(self, seen: Seen) -> None:
        for agency, (ack, published) in seen.items():
            if ack is not None:
                self.acknowledged(agency, ack)
            if published is not None:
                self.published(agency, published)


def record(db: Database, seen: Seen) -> None:
    """Blocking: merge `seen` into `agency_activity`, keeping the later of the stored and the new time."""
    if not seen:
        return
    insert = sqlite_insert if db.is_sqlite else pg_insert
    table = AgencyActivityRow.__table__  # type: ignore[attr-defined]
    with db.transaction() as session:
        for agency in sorted(seen):  # one order in every process: no deadlock between them
            ack, published = seen[agency]
            statement = insert(table).values(agency=agency, last_ack_ms=ack, last_publish_ms=published)
            session.exec(
                statement.on_conflict_do_update(
                    index_elements=["agency"],
                    set_={
                        column: _sql_later(db, table.c[column], statement.excluded[column])
                        for column in ("last_ack_ms", "last_publish_ms")
                    },
                )
            )


def _sql_later(db: Database, stored: Any, new: Any) -> Any:
    """The later of two times in SQL, a NULL counting as no time: PostgreSQL's greatest() ignores NULLs;
    SQLite's two-argument max() is NULL if either is, hence the coalesces."""
    if db.is_sqlite:
        return func.max(func.coalesce(stored, new), func.coalesce(new, stored))
    return func.greatest(stored, new)


def last_seen(session: Session, unwritten: Seen) -> dict[str, int]:
    """agency → when it was last seen (its later acknowledgement or publication), stored or `unwritten`."""
    seen: dict[str, int | None] = {}
    for row in session.exec(select(AgencyActivityRow)).all():
        seen[row.agency] = _later(row.last_ack_ms, row.last_publish_ms)
    for agency, (ack, published) in unwritten.items():
        seen[agency] = _later(seen.get(agency), _later(ack, published))
    return {agency: at for agency, at in seen.items() if at is not None}
