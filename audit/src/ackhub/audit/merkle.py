"""Merkle tree hashing, proofs and their verification, as in RFC 9162 section 2.1 (RFC 6962 hashing).

    leaf hash  = SHA-256(0x00 || leaf data)
    node hash  = SHA-256(0x01 || left || right)
    MTH(D[n])  = the root over n leaf hashes, split at the largest power of two smaller than n

Every range of leaves the RFC's recursion visits in a tree of size n starts at a multiple of a power of two
at least as large as the range, so its MTH is the right fold of the complete, aligned subtrees (2^h leaves
starting at a multiple of 2^h) its length decomposes into, largest first (`pieces`, `fold`). An audit path
or a consistency proof is a list of such ranges (`inclusion_ranges`, `consistency_ranges`): given the hashes
of complete aligned subtrees, any root or proof of any tree size costs O(log n) of them.

`Tree` keeps every such hash in memory (for tests and small trees); `Frontier` keeps only the O(log n) ones
that make up the whole tree, enough to append and to compute the current root, and names the subtrees each
appended leaf completes so that a caller can store them (ackhub.hub.ledger.tree keeps the hub's tree that way).
The free functions `mth`, `path` and `proof` are the RFC's recursive definitions, kept short and obviously
right; the tests compare the rest against them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "Tree",
    "consistency_ranges",
    "fold",
    "inclusion_ranges",
    "leaf_hash",
    "mth",
    "node_hash",
    "path",
    "pieces",
    "proof",
    "root_from_inclusion",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 9162 2.1.1, over leaf *hashes*."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1: the audit path of leaf m in the tree of `leaves`."""
    n = len(leaves)
    if n <= 1:
        return []
    k = _split(n)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 2.1.4.1: the consistency proof from the first m leaves to all of `leaves`."""
    if m == 0 or m == len(leaves):
        return []
    return _subproof(m, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], b), mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def root_from_inclusion(leaf_index: int, tree_size: int, leaf: bytes, audit_path: Sequence[bytes]) -> bytes:
    """RFC 9162 2.1.3.2: the root an audit path leads to; raises ValueError when the path cannot fit."""
    if leaf_index >= tree_size or leaf_index < 0:
        raise ValueError(f"leaf index {leaf_index} is outside a tree of size {tree_size}")
    fn, sn, r = leaf_index, tree_size - 1, leaf
    for p in audit_path:
        if sn == 0:
            raise ValueError("the audit path is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("the audit path is shorter than the tree is deep")
    return r


def verify_inclusion(
    leaf_index: int, tree_size: int, leaf: bytes, audit_path: Sequence[bytes], root: bytes
) -> bool:
    try:
        return root_from_inclusion(leaf_index, tree_size, leaf, audit_path) == root
    except ValueError:
        return False


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, consistency: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2."""
    if first > second or first < 0:
        return False
    if first == second:
        return not consistency and first_root == second_root
    if first == 0:
        return not consistency  # the empty tree is a prefix of every tree
    if not consistency:
        return False
    items = list(consistency)
    if first & (first - 1) == 0:  # a power of two: the first root is itself a node of the proof
        items.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = items[0]
    for c in items[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


def pieces(start: int, end: int) -> list[tuple[int, int]]:
    """The complete aligned subtrees `(level, index)` — leaves [index * 2^level, (index + 1) * 2^level) —
    that leaves [start, end) decompose into, largest first. `start` must be a multiple of a power of two
    at least `end - start`, as for every range the RFC's recursion visits."""
    out: list[tuple[int, int]] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start & ((1 << level) - 1):
            raise ValueError(f"leaves [{start}, {end}) are not a range of the tree's recursion")
        out.append((level, start >> level))
        start += 1 << level
    return out


def fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from the hashes of its `pieces`, in order: H(p1, H(p2, … H(p(k-1), pk)))."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def _check_size(tree_size: int, size: int) -> None:
    if not 0 <= tree_size <= size:
        raise ValueError(f"tree size {tree_size} is outside 0..{size}")


def inclusion_ranges(leaf_index: int, tree_size: int) -> list[tuple[int, int]]:
    """The leaf ranges [start, end) whose MTHs are PATH(leaf_index, D[tree_size]), in the path's order."""
    if not 0 <= leaf_index < tree_size:
        raise ValueError(f"leaf index {leaf_index} is outside a tree of size {tree_size}")
    out: list[tuple[int, int]] = []
    start, end = 0, tree_size
    while end - start > 1:
        k = _split(end - start)
        if leaf_index < start + k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
    out.reverse()  # the recursion lists the deepest sibling first
    return out


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The leaf ranges [start, end) whose MTHs are PROOF(first, D[second]), in the proof's order."""
    if not 0 <= first <= second:
        raise ValueError(f"first size {first} must be within 0..{second}")
    if first in (0, second):
        return []
    out: list[tuple[int, int]] = []
    start, end, m, whole = 0, second, first, True
    while True:
        n = end - start
        if m == n:
            if not whole:
                out.append((start, end))
            break
        k = _split(n)
        if m <= k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start, m, whole = start + k, m - k, False
    out.reverse()
    return out


class Tree:
    """An append-only tree of leaf hashes with every complete aligned subtree's hash cached: about 2n
    hashes in memory, so for tests, verification of small logs and references; the hub uses ackhub.hub.ledger.tree.

    `levels[h][i]` is the hash of leaves [i * 2^h, (i + 1) * 2^h).
    """

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, leaf: bytes) -> None:
        self.levels[0].append(leaf)
        h, index = 0, self.size - 1
        while index & 1:  # a right child completes its parent
            if len(self.levels) == h + 1:
                self.levels.append([])
            level = self.levels[h]
            self.levels[h + 1].append(node_hash(level[index - 1], level[index]))
            h, index = h + 1, index >> 1

    def _hash(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end) from the cache."""
        return fold([self.levels[h][i] for h, i in pieces(start, end)])

    def root(self, tree_size: int | None = None) -> bytes:
        n = self.size if tree_size is None else tree_size
        _check_size(n, self.size)
        return self._hash(0, n)

    def inclusion(self, leaf_index: int, tree_size: int) -> list[bytes]:
        """PATH(m, D[n]) with cached subtrees."""
        _check_size(tree_size, self.size)
        return [self._hash(start, end) for start, end in inclusion_ranges(leaf_index, tree_size)]

    def consistency(self, first: int, second: int) -> list[bytes]:
        """PROOF(m, D[n]) with cached subtrees."""
        _check_size(second, self.size)
        return [self._hash(start, end) for start, end in consistency_ranges(first, second)]


class Frontier:
    """The right edge of an append-only tree: the hashes of `pieces(0, size)` (one complete aligned subtree
    per set bit of `size`, largest first). That is all appending and the current root need: O(log n)
    memory, O(1) hashing per leaf amortised."""

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        self.size = size
        self.hashes = list(hashes)
        if size < 0 or len(self.hashes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {max(size, 0).bit_count()} frontier subtrees")

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add the next leaf hash; returns the subtrees `(level, index, hash)` it completes, the leaf
        itself (level 0) first, then each parent it completes, upwards."""
        index = self.size
        completed = [(0, index, leaf)]
        carry, level = leaf, 0
        while index & 1:  # a right child completes its parent
            carry = node_hash(self.hashes.pop(), carry)
            level, index = level + 1, index >> 1
            completed.append((level, index, carry))
        self.hashes.append(carry)
        self.size += 1
        return completed

    def root(self) -> bytes:
        return fold(self.hashes)

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)
