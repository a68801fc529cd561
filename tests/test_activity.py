"""When agencies were last seen (ackhub.hub.store.activity, migration 0014): times written with the
heartbeats never move back, whichever process writes last, and the migration fills them from what was
stored before it."""

from __future__ import annotations

from alembic import command
from sqlmodel import select

from ackhub.core.clock import ManualClock, SystemClock
from ackhub.hub.store import activity
from ackhub.hub.store.activity import Activity
from ackhub.hub.store.db import Database, alembic_config
from ackhub.hub.store.models import AgencyActivityRow
from tests.harness import start_hub
from tests.records import declaration


def _stored(db: Database) -> dict[str, tuple[int | None, int | None]]:
    with db.transaction() as session:
        rows = session.exec(select(AgencyActivityRow)).all()
        return {row.agency: (row.last_ack_ms, row.last_publish_ms) for row in rows}


def test_times_only_move_forward(db: Database) -> None:
    activity.record(db, {"tax": (200, None), "customs": (None, 100)})
    activity.record(db, {"tax": (150, 300), "customs": (None, 90)})  # a slower process writes later
    assert _stored(db) == {"tax": (200, 300), "customs": (None, 100)}
    with db.transaction() as session:
        assert activity.last_seen(session, {"fx": (None, None), "customs": (None, 400)}) == {
            "tax": 300,
            "customs": 400,
        }
    activity.record(db, {})  # nothing seen: nothing written


def test_what_was_taken_and_not_written_is_put_back() -> None:
    seen = Activity()
    seen.acknowledged("tax", 10)
    seen.published("customs", 20)
    taken = seen.take()
    seen.acknowledged("tax", 5)  # an older time after the take
    seen.put_back(taken)
    assert seen.unwritten() == {"tax": (10, None), "customs": (None, 20)}


def test_the_migration_fills_the_times_from_the_stored_records(database_url: str) -> None:
    hub = start_hub(database_url, clock=ManualClock(SystemClock().now_ms()))  # seen when accepted
    try:
        receipt = hub.agency("customs").publish(
            "customs.export_declaration.released",
            declaration(note="1"),
            subject_uscc="91110000600037341L",
        )
        accepted_ms = receipt.accept_time.ToMilliseconds()
    finally:
        hub.stop()  # its last sightings are written on the way out
    db = Database(database_url)
    try:
        assert _stored(db) == {"customs": (None, accepted_ms)}
        config = alembic_config(db.engine)
        command.downgrade(config, "0013")
        command.upgrade(config, "head")
        assert _stored(db) == {"customs": (None, accepted_ms)}  # from `records` this time
    finally:
        db.close()
