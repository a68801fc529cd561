"""Merkle tree hashing, proofs and their verification, as in RFC 9162 section 2.1 (RFC 6962 hashing).

    leaf hash  = SHA-256(0x00 || leaf data)
    node hash  = SHA-256(0x01 || left || right)
    MTH(D[n])  = the root over n leaf hashes, split at the largest power of two smaller than n

`Tree` keeps the hash of every complete, aligned subtree (2^h leaves starting at a multiple of 2^h) so that
any MTH, audit path or consistency proof of any tree size costs O(log n) lookups instead of rehashing the
log; appending a leaf costs O(1) amortised. The free functions below are the RFC's recursive definitions,
kept short and obviously right; the tests compare `Tree` against them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "Tree",
    "leaf_hash",
    "mth",
    "node_hash",
    "path",
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


class Tree:
    """An append-only tree of leaf hashes with every complete aligned subtree's hash cached.

    `levels[h][i]` is the hash of leaves [i * 2^h, (i + 1) * 2^h). Any range the RFC's recursion visits
    in a tree of size n is either such a complete subtree or a right-hand remainder, which `_hash` splits
    the same way; so roots and proofs for any size up to `size` come from the cache.
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
        """MTH of leaves [start, end); `start` is aligned to the subtree the recursion is in."""
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0:
            h = n.bit_length() - 1
            return self.levels[h][start >> h]
        k = _split(n)
        return node_hash(self._hash(start, start + k), self._hash(start + k, end))

    def _check(self, tree_size: int) -> None:
        if not 0 <= tree_size <= self.size:
            raise ValueError(f"tree size {tree_size} is outside 0..{self.size}")

    def root(self, tree_size: int | None = None) -> bytes:
        n = self.size if tree_size is None else tree_size
        self._check(n)
        return self._hash(0, n)

    def inclusion(self, leaf_index: int, tree_size: int) -> list[bytes]:
        """PATH(m, D[n]) with cached subtrees."""
        self._check(tree_size)
        if not 0 <= leaf_index < tree_size:
            raise ValueError(f"leaf index {leaf_index} is outside a tree of size {tree_size}")
        out: list[bytes] = []
        start, end, m = 0, tree_size, leaf_index
        while end - start > 1:
            k = _split(end - start)
            if m < start + k:
                out.append(self._hash(start + k, end))
                end = start + k
            else:
                out.append(self._hash(start, start + k))
                start += k
        out.reverse()  # the recursion lists the deepest sibling first
        return out

    def consistency(self, first: int, second: int) -> list[bytes]:
        """PROOF(m, D[n]) with cached subtrees."""
        self._check(second)
        if not 0 <= first <= second:
            raise ValueError(f"first size {first} must be within 0..{second}")
        if first in (0, second):
            return []
        out: list[bytes] = []
        start, end, m, b = 0, second, first, True
        while True:
            n = end - start
            if m == n:
                if not b:
                    out.append(self._hash(start, end))
                break
            k = _split(n)
            if m <= k:
                out.append(self._hash(start + k, end))
                end = start + k
            else:
                out.append(self._hash(start, start + k))
                start, m, b = start + k, m - k, False
        out.reverse()
        return out
