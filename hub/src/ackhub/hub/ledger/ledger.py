"""`AuditLedger`: the hub's side of the tree — sequencing, signing checkpoints, serving proofs.

The tree lives in the store (ackhub.hub.ledger.tree): leaf hashes with their events, interior hashes of aligned
subtrees in `audit_tree_nodes`, and in memory only its right edge (O(log n) hashes). So starting costs
nothing, memory does not grow with the log, and a root or proof reads O(log n) stored hashes. Every method
is blocking (run it with `Database.run`); the tree is used under a lock because PostgreSQL runs several
threads, and each use is one transaction, so the interior hashes a sync stores commit with it or not at all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ackhub.audit import checkpoint as checkpoints
from ackhub.audit.checkpoint import Checkpoint
from ackhub.audit.tiles import Tile, entry_bundle
from ackhub.core.clock import Clock
from ackhub.core.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from ackhub.hub.ledger import log
from ackhub.hub.ledger.tree import MissingLeaf, StoredTree
from ackhub.hub.store.db import Database
from ackhub.hub.store.models import AuditCheckpointRow, AuditCosignatureRow, AuditEventRow

_log = structlog.get_logger("ackhub.audit")


@dataclass(frozen=True)
class Inclusion:
    event: AuditEventRow
    leaf_data: bytes
    audit_path: list[bytes]
    checkpoint: Checkpoint


def to_checkpoint(row: AuditCheckpointRow) -> Checkpoint:
    return Checkpoint(
        row.origin, row.tree_size, row.root_hash, row.time_ms, row.key_id, row.public_key, row.signature
    )


def cosignature_lines(session: Session, tree_size: int) -> list[str]:
    """The stored cosignature lines of the checkpoint of `tree_size`, by witness name."""
    rows = session.exec(
        select(AuditCosignatureRow)
        .where(AuditCosignatureRow.tree_size == tree_size)
        .order_by(col(AuditCosignatureRow.witness))
    )
    return [row.line for row in rows]


class AuditLedger:
    def __init__(self, db: Database, key: Ed25519PrivateKey, origin: str, clock: Clock) -> None:
        self.db = db
        self.key = key
        self.origin = origin
        self.clock = clock
        self.public_key = key.public_key()
        self._tree = StoredTree()
        self._lock = threading.Lock()

    # -- the tree -----------------------------------------------------------------------------------
    @contextmanager
    def _with_tree(self) -> Iterator[tuple[Session, StoredTree]]:
        """One transaction with the tree to ourselves; if it does not commit, the tree forgets what it
        synced in it (the interior hashes it stored were rolled back) and rebuilds from the store."""
        with self._lock:
            try:
                with self.db.transaction() as session:
                    yield session, self._tree
            except BaseException:
                self._tree.forget()
                raise

    def sequence(self) -> int:
        """Sequence every committed event not yet in the tree; returns the tree size."""
        while True:
            with self.db.transaction() as session:
                before = log.tree_size(session)
                size = log.sequence(session)
            if size - before < 10_000:
                return size

    def sequence_some(self, limit: int) -> int:
        """Sequence up to `limit` events, then extend the stored tree over them; returns how many were
        sequenced. The hub's scheduled job does this in small chunks, so a checkpoint finds the tree
        already synced: syncing a minute of leaves at once (72,000 at 200 records/s) held the database
        thread for 220 ms."""
        with self._with_tree() as (session, tree):
            first, hashes = log.sequence_leaves(session, limit)
            try:  # with the new leaves' hashes at hand, not read back
                tree.sync(session, first + len(hashes), hashes, first)
            except MissingLeaf:
                # A tree that cannot grow (a leaf was deleted) stops checkpoints, which report it; it
                # must not stop new events from becoming leaves, so the sequencing still commits. What
                # the sync stored before it stopped are hashes of complete subtrees of stored leaves.
                tree.forget()
        return len(hashes)

    # -- checkpoints --------------------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        """Sequence, then sign a checkpoint of the whole tree unless the latest one already covers it."""
        try:
            return self._checkpoint()
        except IntegrityError:  # another hub on the same database signed this size a moment ago
            return self.get_checkpoint()

    def _checkpoint(self) -> Checkpoint:
        size = self.sequence()
        with self._with_tree() as (session, tree):
            latest = self._latest(session)
            if latest is not None and latest.tree_size == size:
                return to_checkpoint(latest)
            tree.sync(session, size)
            root = tree.root(session, size)
            signed = checkpoints.sign(self.key, self.origin, size, root, self.clock.now_ms())
            session.add(
                AuditCheckpointRow(
                    tree_size=signed.tree_size,
                    root_hash=signed.root_hash,
                    time_ms=signed.time_ms,
                    origin=signed.origin,
                    key_id=signed.key_id,
                    public_key=signed.public_key,
                    signature=signed.signature,
                )
            )
        _log.info("audit.checkpoint", tree_size=size, root=root.hex(), key_id=signed.key_id)
        return signed

    @staticmethod
    def _latest(session: Session) -> AuditCheckpointRow | None:
        return session.exec(
            select(AuditCheckpointRow).order_by(col(AuditCheckpointRow.tree_size).desc()).limit(1)
        ).first()

    def get_checkpoint(self, tree_size: int = 0) -> Checkpoint:
        """The checkpoint of exactly `tree_size` leaves, or the latest for 0 (signing one if none yet)."""
        if tree_size < 0:
            raise InvalidArgument([FieldViolation("tree_size", "cannot be negative")])
        with self.db.transaction() as session:
            row = self._latest(session) if tree_size == 0 else session.get(AuditCheckpointRow, tree_size)
        if row is None:
            if tree_size == 0:
                return self.checkpoint()
            raise NotFound("checkpoint", str(tree_size))
        return to_checkpoint(row)

    # -- proofs -------------------------------------------------------------------------------------
    def inclusion(self, leaf_index: int, tree_size: int = 0) -> Inclusion:
        """The event at `leaf_index` with its audit path to the checkpoint of `tree_size` (0: the latest,
        signing a fresh one when the event is newer than the latest)."""
        if leaf_index < 0:
            raise InvalidArgument([FieldViolation("leaf_index", "cannot be negative")])
        signed = self.get_checkpoint(tree_size)
        if tree_size == 0 and leaf_index >= signed.tree_size:
            signed = self.checkpoint()
        if leaf_index >= signed.tree_size:
            raise _not_in_tree(leaf_index, signed.tree_size)
        with self._with_tree() as (session, tree):
            event = session.exec(select(AuditEventRow).where(AuditEventRow.leaf_index == leaf_index)).one()
            tree.sync(session, signed.tree_size)
            audit_path = tree.inclusion(session, leaf_index, signed.tree_size)
        return Inclusion(event, log.leaf_data(event, leaf_index), audit_path, signed)

    def audit_paths(self, leaf_indexes: list[int], checkpoint: Checkpoint) -> dict[int, list[bytes]]:
        """The audit paths of several sequenced leaves to `checkpoint`, in one transaction that reads each
        subtree hash once. A delivery proof needs one per event of its record; taken one by one (two
        transactions each) they made a proof's cost grow with the record's events and cases."""
        beyond = [index for index in leaf_indexes if not 0 <= index < checkpoint.tree_size]
        if beyond:
            raise _not_in_tree(beyond[0], checkpoint.tree_size)
        with self._with_tree() as (session, tree):
            tree.sync(session, checkpoint.tree_size)
            return tree.inclusions(session, leaf_indexes, checkpoint.tree_size)

    def consistency(self, first: int, second: int = 0) -> tuple[list[bytes], Checkpoint, Checkpoint]:
        """The proof that the checkpoint of `first` leaves is a prefix of the one of `second` (0: latest)."""
        if first <= 0:
            raise InvalidArgument([FieldViolation("first_tree_size", "must be a checkpoint's size (> 0)")])
        old = self.get_checkpoint(first)
        new = self.get_checkpoint(second)
        if new.tree_size < old.tree_size:
            raise InvalidArgument(
                [FieldViolation("second_tree_size", f"must be at least first_tree_size ({first})")]
            )
        with self._with_tree() as (session, tree):
            tree.sync(session, new.tree_size)
            proof = tree.consistency(session, old.tree_size, new.tree_size)
        return proof, old, new

    def tree_consistency(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 PROOF between any two tree sizes the log has reached (for a witness, whose last
        cosigned size need not be one of this store's checkpoints)."""
        if not 0 <= first <= second:
            raise ValueError(f"no consistency proof from {first} to {second} leaves")
        if first in (0, second):
            return []
        with self._with_tree() as (session, tree):
            tree.sync(session, second)
            return tree.consistency(session, first, second)

    def tile(self, tile: Tile) -> bytes:
        """A tlog-tiles resource (hashes, or an entry bundle) inside the newest checkpoint; NotFound for one
        that reaches beyond it."""
        with self.db.transaction() as session:
            latest = self._latest(session)
        start, end = tile.leaves()
        if latest is None or end > latest.tree_size:
            raise NotFound("tile", tile.path())
        if tile.is_entries:
            with self.db.transaction() as session:
                events = list(
                    session.exec(
                        select(AuditEventRow)
                        .where(col(AuditEventRow.leaf_index) >= start, col(AuditEventRow.leaf_index) < end)
                        .order_by(col(AuditEventRow.leaf_index))
                    )
                )
            if [e.leaf_index for e in events] != list(range(start, end)):
                raise MissingLeaf(
                    f"audit leaves {start}..{end - 1} are not all stored: run `ackhub audit verify`"
                )
            # As the sequencer hashed them: an event edited since then shows as an entry that no longer
            # hashes to its leaf, for any mirror to see.
            return entry_bundle([log.spliced_leaf_data(e, e.leaf_index or 0) for e in events])
        with self._with_tree() as (session, tree):
            tree.sync(session, latest.tree_size)
            return b"".join(tree.subtrees(session, 8 * tile.level, tile.index * 256, tile.width))

    def events_of(self, session: Session, record_id: str) -> list[AuditEventRow]:
        return list(
            session.exec(
                select(AuditEventRow)
                .where(AuditEventRow.record_id == record_id)
                .order_by(col(AuditEventRow.seq))
            )
        )


def _not_in_tree(leaf_index: int, tree_size: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"leaf {leaf_index} is not in the tree of size {tree_size}",
        reason="LEAF_NOT_IN_TREE",
        metadata={"leaf_index": str(leaf_index), "tree_size": str(tree_size)},
    )
