"""The hub's audit Merkle tree, kept in the store: O(log n) memory, roots and proofs from stored hashes.

Leaf hashes are stored with their events (`audit_events.leaf_hash`). The hash of every complete, aligned
subtree at a level that is a multiple of `STRIDE` — 16, 256, 4096 … leaves — is stored in
`audit_tree_nodes` once the leaves under it are sequenced: about one row per 15 leaves. Any other complete
aligned subtree is hashed from at most 2^(STRIDE-1) stored hashes one stored level below it (or leaves),
so a root, audit path or consistency proof of any tree size reads O(log n) rows, whatever the size of the
log. In memory there is only the `merkle.Frontier` of the tree synced so far — the O(log n) hashes that
appending and the current root need — and a bounded cache of interior hashes used lately (`RECENT`). Nothing
is loaded when the hub starts; the first `sync` reads a few rows to rebuild the frontier.

A store from before these hashes were kept (migration 0004) gets them on the first `sync`: one pass over the
leaf hashes, in order, done once.

Proofs are those of ackhub.audit.merkle, byte for byte: the same ranges (`merkle.inclusion_ranges`,
`merkle.consistency_ranges`), hashed from the same subtrees.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import structlog
from sqlalchemy import bindparam, func, insert
from sqlalchemy import select as core_select
from sqlalchemy.sql.dml import UpdateBase
from sqlmodel import Session, col, select

from ackhub.audit.merkle import Frontier, consistency_ranges, fold, inclusion_ranges, node_hash, pieces
from ackhub.hub.store.bulk import execute_many, select_rows, table_of
from ackhub.hub.store.models import AuditEventRow, AuditTreeNodeRow

STRIDE = 4  # interior hashes are stored at levels 4, 8, 12 …
_WRITE_BATCH = 5_000  # stored hashes per INSERT while syncing
_READ_BATCH = 10_000  # leaf hashes per fetch while syncing
RECENT = 16_384  # interior hashes kept in memory after use (a few MiB at most)
_NODES = AuditTreeNodeRow.__table__  # type: ignore[attr-defined]

_log = structlog.get_logger("ackhub.audit")

Node = tuple[int, int]  # (level, position): leaves [position * 2^level, (position + 1) * 2^level)
_EVENTS = table_of(AuditEventRow)
# Built once: the hub syncs the tree a few times a second (see ackhub.hub.store.bulk for why).
_LEAVES = (
    core_select(_EVENTS.c.leaf_index, _EVENTS.c.leaf_hash)
    .where(_EVENTS.c.leaf_index >= bindparam("first"), _EVENTS.c.leaf_index < bindparam("end"))
    .order_by(_EVENTS.c.leaf_index)
    .limit(bindparam("limit"))
)


@functools.cache
def _insert_nodes(dialect: str) -> UpdateBase:
    """INSERT of stored-level hashes that leaves a row already there alone (another hub stored it)."""
    if dialect == "postgresql":  # imported here: a SQLite hub need not load PostgreSQL's dialect
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(_NODES).on_conflict_do_nothing()
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(_NODES).on_conflict_do_nothing()
    return insert(_NODES)  # pragma: no cover - the hub runs on SQLite and PostgreSQL


def is_stored_level(level: int) -> bool:
    """Whether complete subtrees of this level have their hash in `audit_tree_nodes`."""
    return level > 0 and level % STRIDE == 0


def _perfect(hashes: Sequence[bytes]) -> bytes:
    """The root of a complete subtree from its 2^k equal-sized, ordered children."""
    level = list(hashes)
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


class MissingLeaf(RuntimeError):
    """A sequenced leaf is not in the store (deleted, or its hash cleared): the tree cannot grow past it.
    `ackhub audit verify` says which and how."""


class StoredTree:
    """The tree of the sequenced leaves in the store. Not thread-safe: the ledger holds a lock around it.

    `sync` runs inside the caller's transaction and writes the interior hashes it completes there; if that
    transaction does not commit, call `forget` so the next `sync` rebuilds from what the store holds.
    """

    def __init__(self) -> None:
        self._frontier: Frontier | None = None
        # Interior hashes read or computed lately (they never change): the upper tree that every proof
        # shares stays here, so a proof mostly reads only the leaves and small subtrees near its leaf.
        self._recent: OrderedDict[Node, bytes] = OrderedDict()

    @property
    def size(self) -> int:
        """How many leaves have been synced in this process (0 before the first `sync`)."""
        return 0 if self._frontier is None else self._frontier.size

    def forget(self) -> None:
        self._frontier = None
        self._recent.clear()

    # -- growing --------------------------------------------------------------------------------------
    def sync(self, session: Session, size: int, fresh: Sequence[bytes] = (), fresh_from: int = 0) -> None:
        """Make the tree cover at least the first `size` sequenced leaves, storing the hashes of the
        stored-level subtrees they complete. `fresh`: the hashes of leaves `fresh_from`, `fresh_from + 1`
        … that the caller has just sequenced, used instead of reading them back."""
        if self._frontier is None:
            self._frontier = self._load(session, size)
        frontier = self._frontier
        if frontier.size >= size:
            return
        grown = frontier.copy()
        pending: list[dict[str, Any]] = []
        start = grown.size
        while grown.size < size:
            if fresh_from <= grown.size < fresh_from + len(fresh):
                values = fresh[grown.size - fresh_from : size - fresh_from]
            else:
                values = self._stored_leaves(session, grown.size, size)
            for value in values:
                for level, position, node in grown.append(value):
                    if is_stored_level(level):
                        pending.append({"level": level, "position": position, "hash": node})
                if len(pending) >= _WRITE_BATCH:
                    self._store(session, pending)
                    pending = []
        self._store(session, pending)
        if size - start > 100_000:
            _log.info("audit.tree_synced", leaves=size - start, tree_size=size)
        self._frontier = grown

    @staticmethod
    def _stored_leaves(session: Session, first: int, end: int) -> list[bytes]:
        """Up to `_READ_BATCH` stored leaf hashes from `first` on (below `end`), in order; raises
        `MissingLeaf` at the first one that is not there."""
        rows = select_rows(session, _LEAVES, {"first": first, "end": end, "limit": _READ_BATCH})
        for expected, (index, value) in enumerate(rows, start=first):
            if index != expected or value is None:
                raise MissingLeaf(f"audit leaf {expected} is missing: run `ackhub audit verify`")
        if not rows:
            raise MissingLeaf(f"audit leaf {first} is missing: run `ackhub audit verify`")
        return [value for _, value in rows]

    @staticmethod
    def _store(session: Session, nodes: list[dict[str, Any]]) -> None:
        """Insert stored-level hashes; ones already there (another hub synced them) are left alone."""
        if nodes:
            execute_many(session, _insert_nodes(session.get_bind().dialect.name), nodes)

    def _load(self, session: Session, size: int) -> Frontier:
        """The frontier at the size up to which the store holds every stored-level hash (at most `size`)."""
        last = session.exec(
            select(func.max(AuditTreeNodeRow.position)).where(AuditTreeNodeRow.level == STRIDE)
        ).one()
        covered = 0 if last is None else (int(last) + 1) << STRIDE
        at = min(covered, size)
        if size - at > 100_000:
            _log.info("audit.tree_building", from_leaf=at, tree_size=size)
        return Frontier(at, self._values(session, pieces(0, at)))

    # -- reading --------------------------------------------------------------------------------------
    def _values(self, session: Session, wanted: Iterable[Node]) -> list[bytes]:
        wanted = list(wanted)
        found = self._hashes(session, set(wanted))
        return [found[node] for node in wanted]

    def _hashes(self, session: Session, wanted: set[Node]) -> dict[Node, bytes]:
        """The hashes of complete aligned subtrees of synced leaves: from memory when they are the
        frontier's or recently used, else from stored hashes (one query per level they are read at)."""
        found: dict[Node, bytes] = {}
        if self._frontier is not None:
            mine = dict(zip(pieces(0, self._frontier.size), self._frontier.hashes, strict=True))
            found = {node: mine[node] for node in wanted if node in mine}
        for node in wanted - found.keys():
            if node in self._recent:
                found[node] = self._recent[node]
                self._recent.move_to_end(node)
        # each other subtree from its children at the nearest stored level at or below it
        sources: dict[Node, list[Node]] = {}
        for level, position in wanted - found.keys():
            base = level - level % STRIDE
            span = 1 << (level - base)
            sources[(level, position)] = [(base, p) for p in range(position * span, (position + 1) * span)]
        needed = {child for children in sources.values() for child in children}
        rows = {child: self._recent[child] for child in needed if child in self._recent}
        rows.update(self._read(session, needed - rows.keys()))
        for node, children in sources.items():
            if all(child in rows for child in children):
                found[node] = _perfect([rows[child] for child in children])
            else:  # not stored (a store being rebuilt, or damaged): hash it from the level below
                found[node] = self._rebuild(session, node)
        for node, value in (*rows.items(), *found.items()):
            if node[0] >= STRIDE:  # not leaves: each proof wants others
                self._remember(node, value)
        return found

    def _remember(self, node: Node, value: bytes) -> None:
        self._recent[node] = value
        self._recent.move_to_end(node)
        if len(self._recent) > RECENT:
            self._recent.popitem(last=False)

    @staticmethod
    def _read(session: Session, nodes: set[Node]) -> dict[Node, bytes]:
        """Stored hashes of subtrees at stored levels, and leaf hashes (level 0)."""
        out: dict[Node, bytes] = {}
        leaves = sorted(position for level, position in nodes if level == 0)
        for first in range(0, len(leaves), 500):
            for index, value in session.exec(
                select(AuditEventRow.leaf_index, AuditEventRow.leaf_hash).where(
                    col(AuditEventRow.leaf_index).in_(leaves[first : first + 500])
                )
            ):
                if index is not None and value is not None:
                    out[(0, index)] = value
        by_level: dict[int, list[int]] = {}
        for level, position in nodes:
            if level:
                by_level.setdefault(level, []).append(position)
        for level, positions in by_level.items():
            positions.sort()
            for first in range(0, len(positions), 500):
                for position, value in session.exec(
                    select(AuditTreeNodeRow.position, AuditTreeNodeRow.hash).where(
                        AuditTreeNodeRow.level == level,
                        col(AuditTreeNodeRow.position).in_(positions[first : first + 500]),
                    )
                ):
                    out[(level, position)] = value
        return out

    def _rebuild(self, session: Session, node: Node) -> bytes:
        """A subtree's hash from its leaves up, through whatever stored hashes exist (slow; a fallback)."""
        level, position = node
        if level == 0:
            rows = self._read(session, {node})
            if node not in rows:
                raise MissingLeaf(f"audit leaf {position} is missing: run `ackhub audit verify`")
            return rows[node]
        if is_stored_level(level):
            stored = self._read(session, {node})
            if node in stored:
                return stored[node]
        lower = level - STRIDE if is_stored_level(level) else level - level % STRIDE
        span = 1 << (level - lower)
        children = [(lower, p) for p in range(position * span, (position + 1) * span)]
        rows = self._read(session, set(children))
        return _perfect([rows[c] if c in rows else self._rebuild(session, c) for c in children])

    # -- what the ledger serves -------------------------------------------------------------------------
    def _check(self, tree_size: int) -> None:
        if not 0 <= tree_size <= self.size:
            raise ValueError(f"tree size {tree_size} is outside 0..{self.size} (sync first)")

    def root(self, session: Session, tree_size: int) -> bytes:
        """MTH of the first `tree_size` leaves (synced)."""
        self._check(tree_size)
        if self._frontier is not None and self._frontier.size == tree_size:
            return self._frontier.root()
        return fold(self._values(session, pieces(0, tree_size)))

    def _ranges(self, session: Session, ranges: list[tuple[int, int]]) -> list[bytes]:
        parts = [pieces(start, end) for start, end in ranges]
        found = self._hashes(session, {node for nodes in parts for node in nodes})
        return [fold([found[node] for node in nodes]) for nodes in parts]

    def subtrees(self, session: Session, level: int, first: int, count: int) -> list[bytes]:
        """The hashes of the complete subtrees (level, first) … (level, first + count - 1), all of synced
        leaves (a tlog tile: ackhub.audit.tiles)."""
        self._check((first + count) << level)
        return self._values(session, [(level, first + i) for i in range(count)])

    def inclusion(self, session: Session, leaf_index: int, tree_size: int) -> list[bytes]:
        """PATH(leaf_index, D[tree_size]), RFC 9162 2.1.3.1."""
        self._check(tree_size)
        return self._ranges(session, inclusion_ranges(leaf_index, tree_size))

    def inclusions(self, session: Session, leaf_indexes: list[int], tree_size: int) -> dict[int, list[bytes]]:
        """The audit paths of several leaves to one tree: the subtree hashes they share are read once."""
        self._check(tree_size)
        ranges = {index: inclusion_ranges(index, tree_size) for index in leaf_indexes}
        hashes = iter(self._ranges(session, [r for index in leaf_indexes for r in ranges[index]]))
        return {index: [next(hashes) for _ in ranges[index]] for index in leaf_indexes}

    def consistency(self, session: Session, first: int, second: int) -> list[bytes]:
        """PROOF(first, D[second]), RFC 9162 2.1.4.1."""
        self._check(second)
        return self._ranges(session, consistency_ranges(first, second))
