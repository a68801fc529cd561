"""SQLite's WAL is checkpointed by the hub in the background, not by whichever commit crosses SQLite's
automatic threshold (that commit, and every caller waiting on it, would pay for the copy)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from ackhub.hub.store.db import WAL_AUTOCHECKPOINT_PAGES, Database
from ackhub.hub.store.models import AgencyRow


def _wal_frames(db: Database) -> tuple[int, int]:
    """(frames in the WAL, frames of it already copied into the database)."""
    with db.engine.connect() as connection:
        busy, frames, copied = connection.execute(text("PRAGMA wal_checkpoint(PASSIVE)")).one()
    assert busy == 0
    return frames, copied


def test_background_checkpoint_copies_the_wal(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'hub.db'}")
    db.migrate()
    with db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA wal_autocheckpoint")).scalar() == WAL_AUTOCHECKPOINT_PAGES
    for n in range(50):
        with db.transaction() as session:
            session.add(AgencyRow(id=f"agency-{n}", name="A", kind="tax"))
    # What the writes left in the WAL is still there: no commit checkpointed it by itself.
    wal = tmp_path / "hub.db-wal"
    assert wal.stat().st_size > 50 * 4096
    db.checkpoint_wal()
    frames, copied = _wal_frames(db)
    assert frames == copied and frames > 0  # everything in the WAL is now in the database file
    db.close()


def test_checkpoint_is_a_no_op_on_postgresql(postgres_url: str) -> None:
    db = Database(postgres_url)
    db.checkpoint_wal()  # nothing to do, and no error
    db.close()
