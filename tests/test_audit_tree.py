"""The audit tree kept in the store (ackhub.hub.ledger.tree): roots and proofs byte-identical to ackhub.audit.merkle's
`Tree` (itself checked against RFC 9162), O(log n) memory, rebuilt from the store by a new process, built
once for a store from before its interior hashes were kept, and unharmed by a transaction that fails."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from ackhub.audit import merkle
from ackhub.hub.ledger import log
from ackhub.hub.ledger.tree import STRIDE, StoredTree, is_stored_level
from ackhub.hub.store.db import Database
from ackhub.hub.store.models import AuditCheckpointRow, AuditEventRow, AuditTreeNodeRow

LEAVES = 700  # past 256 and 512, so levels 4 and 8 are stored and level 8 is partly complete


def _append(db: Database, count: int, first: int = 0) -> None:
    with db.transaction() as session:
        for i in range(first, first + count):
            log.append(
                session,
                kind="delivery.attempt",
                actor="system:hub",
                time_ms=1_800_000_000_000 + i,
                record_id=f"record-{i}",
                data={"attempt": i % 3 + 1, "connector": "stream"},
            )


def _sequence(db: Database, limit: int) -> int:
    with db.transaction() as session:
        return log.sequence(session, limit)


def _leaf_hashes(db: Database) -> list[bytes]:
    with db.transaction() as session:
        return [
            h
            for h in session.exec(
                select(AuditEventRow.leaf_hash)
                .where(col(AuditEventRow.leaf_index).is_not(None))
                .order_by(col(AuditEventRow.leaf_index))
            )
            if h is not None
        ]


def _stored(db: Database) -> dict[tuple[int, int], bytes]:
    with db.transaction() as session:
        return {(n.level, n.position): n.hash for n in session.exec(select(AuditTreeNodeRow))}


def _grown(db: Database) -> tuple[StoredTree, merkle.Tree]:
    """LEAVES events sequenced in uneven batches, the stored tree synced after each."""
    tree = StoredTree()
    rng = random.Random(5)
    _append(db, LEAVES)
    size = 0
    while size < LEAVES:
        size = _sequence(db, rng.choice([1, 3, 16, 37, 200]))
        with db.transaction() as session:
            tree.sync(session, size)
    return tree, merkle.Tree(_leaf_hashes(db))


def _sizes() -> list[int]:
    return [*range(1, 40), 255, 256, 257, 300, 511, 512, 513, 699, LEAVES]


def test_roots_and_proofs_equal_the_in_memory_tree(db: Database) -> None:
    """Every root, and audit paths and consistency proofs across the interesting sizes, byte for byte."""
    tree, reference = _grown(db)
    assert tree.size == LEAVES
    rng = random.Random(9)
    with db.transaction() as session:
        for n in _sizes():
            assert tree.root(session, n) == reference.root(n)
            leaves = sorted({0, n - 1, n // 2, *rng.sample(range(n), min(n, 6))})
            for m in leaves:
                assert tree.inclusion(session, m, n) == reference.inclusion(m, n), (m, n)
            # several at once (a delivery proof's), sharing the subtrees they need
            assert tree.inclusions(session, leaves, n) == {m: reference.inclusion(m, n) for m in leaves}
            for m in {1, n, n // 2 or 1, *rng.sample(range(1, n + 1), min(n, 6))}:
                assert tree.consistency(session, m, n) == reference.consistency(m, n), (m, n)
        assert tree.root(session, 0) == merkle.EMPTY_ROOT
        with pytest.raises(ValueError, match="outside"):
            tree.root(session, LEAVES + 1)


def test_the_store_holds_every_complete_subtree_of_the_stored_levels(db: Database) -> None:
    """Level 4 and 8 hashes, exactly the complete aligned subtrees: about one row per 15 leaves."""
    _, reference = _grown(db)
    expected = {
        (level, position): value
        for level, values in enumerate(reference.levels)
        if is_stored_level(level)
        for position, value in enumerate(values)
    }
    assert _stored(db) == expected
    assert len(expected) == LEAVES // 16 + LEAVES // 256


def test_memory_is_the_frontier_only(db: Database) -> None:
    """After syncing 700 leaves the tree holds one hash per set bit of 700, not 700 leaves."""
    tree, _ = _grown(db)
    assert tree._frontier is not None
    assert len(tree._frontier.hashes) == LEAVES.bit_count() == 6


def test_a_new_process_resumes_from_the_store(db: Database) -> None:
    """A fresh tree (a restarted hub) reads a few stored hashes and leaves, then keeps growing the same."""
    _, reference = _grown(db)
    _append(db, 90, first=LEAVES)
    size = _sequence(db, 10_000)
    restarted = StoredTree()
    with db.transaction() as session:
        assert restarted.root(session, 0) == merkle.EMPTY_ROOT  # nothing synced yet, nothing read
        restarted.sync(session, size)
    complete = merkle.Tree(_leaf_hashes(db))
    with db.transaction() as session:
        assert restarted.root(session, size) == complete.root()
        assert restarted.root(session, LEAVES) == reference.root()
        assert restarted.inclusion(session, 5, size) == complete.inclusion(5, size)
        assert restarted.consistency(session, LEAVES, size) == complete.consistency(LEAVES, size)
    assert len(_stored(db)) == size // 16 + size // 256


def test_a_store_without_interior_hashes_gets_them_on_first_sync(db: Database) -> None:
    """A log from before migration 0004: the first sync streams the leaves once and stores the hashes."""
    _, reference = _grown(db)
    expected = _stored(db)
    with db.transaction() as session:
        session.exec(delete(AuditTreeNodeRow))  # type: ignore[call-overload]
    upgraded = StoredTree()
    with db.transaction() as session:
        upgraded.sync(session, LEAVES)
        assert upgraded.root(session, LEAVES) == reference.root()
        assert upgraded.inclusion(session, 300, 513) == reference.inclusion(300, 513)
    assert _stored(db) == expected


def test_missing_stored_hashes_are_recomputed_from_below(db: Database) -> None:
    """A damaged store (some interior hashes gone) still answers the right proofs, only slower."""
    _, reference = _grown(db)
    with db.transaction() as session:
        session.exec(delete(AuditTreeNodeRow).where(col(AuditTreeNodeRow.level) == 2 * STRIDE))  # type: ignore[call-overload]
        session.exec(delete(AuditTreeNodeRow).where(col(AuditTreeNodeRow.position) == 3))  # type: ignore[call-overload]
    fresh = StoredTree()
    with db.transaction() as session:
        fresh.sync(session, 600)
        for n in (300, 600):
            assert fresh.root(session, n) == reference.root(n)
            assert fresh.inclusion(session, 60, n) == reference.inclusion(60, n)
            assert fresh.consistency(session, 257, n) == reference.consistency(257, n)


def test_a_failed_transaction_leaves_no_gap(db: Database) -> None:
    """The hashes a sync stored in a transaction that rolled back are gone; after `forget` the next sync
    stores them again, so every later proof still finds them."""
    _append(db, 300)
    _sequence(db, 10_000)
    tree = StoredTree()
    with db.transaction() as session:
        tree.sync(session, 100)

    def sync_then_fail() -> None:
        with db.transaction() as session:
            tree.sync(session, 300)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        sync_then_fail()
    tree.forget()
    with db.transaction() as session:
        tree.sync(session, 300)
    reference = merkle.Tree(_leaf_hashes(db))
    with db.transaction() as session:
        count = session.exec(select(func.count()).select_from(AuditTreeNodeRow)).one()
        assert count == 300 // 16 + 300 // 256
        assert tree.inclusion(session, 7, 300) == reference.inclusion(7, 300)


def test_a_gap_in_the_leaves_is_an_error_not_a_wrong_root(db: Database) -> None:
    """A deleted leaf stops the sync with a pointer to `ackhub audit verify`."""
    _append(db, 40)
    _sequence(db, 10_000)
    with db.transaction() as session:
        session.exec(delete(AuditEventRow).where(col(AuditEventRow.leaf_index) == 20))  # type: ignore[call-overload]
    with pytest.raises(RuntimeError, match="leaf 20 is missing"), db.transaction() as session:
        StoredTree().sync(session, 40)


def test_the_ledger_forgets_a_sync_its_transaction_lost(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another hub signs the same size first: our checkpoint's transaction, and the interior hashes it
    stored, roll back; the ledger answers with the other checkpoint and its proofs still verify."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ackhub.core.clock import ManualClock
    from ackhub.hub.ledger.ledger import AuditLedger

    _append(db, 100)
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    other = AuditLedger(db, key, "ackhub", ManualClock(1_800_000_000_000))
    first = other.checkpoint()  # the other hub: signs 100 leaves and stores their interior hashes
    with db.transaction() as session:
        session.exec(delete(AuditTreeNodeRow))  # type: ignore[call-overload]
    ours = AuditLedger(db, key, "ackhub", ManualClock(1_800_000_000_500))
    latest = AuditLedger._latest
    calls: list[int] = []

    def raced(session: Session) -> AuditCheckpointRow | None:
        calls.append(1)
        return None if len(calls) == 1 else latest(session)  # only our first look misses it

    monkeypatch.setattr(AuditLedger, "_latest", staticmethod(raced))
    assert ours.checkpoint() == first  # IntegrityError inside: answered with the stored checkpoint
    assert _stored(db) == {}  # what our sync stored went with the transaction
    monkeypatch.undo()
    inclusion = ours.inclusion(42, 100)
    leaf = merkle.leaf_hash(inclusion.leaf_data)
    assert merkle.verify_inclusion(42, 100, leaf, inclusion.audit_path, first.root_hash)
    assert len(_stored(db)) == 100 // 16


def test_the_hubs_chunks_grow_the_tree_from_the_hashes_just_computed(db: Database) -> None:
    """`AuditLedger.sequence_some`, the hub's job: each chunk is sequenced and added to the tree in one
    transaction, from the leaf hashes it just computed, and the result is the tree the store holds:
    the same interior hashes and roots as one synced by reading every leaf back. Leaves sequenced
    elsewhere first (a checkpoint, `audit verify`) are read from the store."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from sqlalchemy import event

    from ackhub.core.clock import ManualClock
    from ackhub.hub.ledger.ledger import AuditLedger

    _append(db, LEAVES)
    _sequence(db, 40)  # sequenced by someone else: not in this ledger's tree yet
    ledger = AuditLedger(
        db, Ed25519PrivateKey.from_private_bytes(bytes(range(32))), "ackhub", ManualClock(1_800_000_000_000)
    )
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda _connection: commits.append(1))
    rng = random.Random(3)
    chunks = sequenced = 0
    while sequenced < LEAVES - 40:
        made = ledger.sequence_some(rng.choice([1, 7, 16, 200]))
        assert made > 0
        sequenced += made
        chunks += 1
    assert ledger.sequence_some(200) == 0
    assert len(commits) == chunks + 1  # one transaction a chunk
    reference = merkle.Tree(_leaf_hashes(db))
    assert len(reference.levels[0]) == LEAVES
    assert _stored(db) == {
        (level, position): value
        for level, values in enumerate(reference.levels)
        if is_stored_level(level)
        for position, value in enumerate(values)
    }
    checkpoint = ledger.checkpoint()
    assert checkpoint.tree_size == LEAVES and checkpoint.root_hash == reference.root()
    read_back = StoredTree()
    with db.transaction() as session:
        read_back.sync(session, LEAVES)
        assert read_back.root(session, LEAVES) == reference.root()
        assert read_back.inclusion(session, 333, LEAVES) == reference.inclusion(333, LEAVES)
