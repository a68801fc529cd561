"""The Merkle math of ackhub.audit.merkle against RFC 9162's recursive definitions, on every small tree."""

from __future__ import annotations

import hashlib

import pytest

from ackhub.audit import merkle


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(f"event {i}".encode()) for i in range(n)]


def test_hashing_is_rfc6962() -> None:
    """Leaves and nodes are domain-separated SHA-256, and the empty tree's root is SHA-256 of nothing."""
    assert merkle.leaf_hash(b"") == bytes.fromhex(
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert merkle.node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert merkle.Tree().root() == merkle.EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_rfc6962_reference_root() -> None:
    """The root of the 8-leaf tree used by RFC 6962 implementations (certificate-transparency-go)."""
    data = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657")]
    data.append(bytes.fromhex("606162636465666768696a6b6c6d6e6f"))
    tree = merkle.Tree(merkle.leaf_hash(d) for d in data)
    assert tree.root().hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    assert tree.root(3).hex() == "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"


def test_cached_roots_and_proofs_equal_the_recursive_definitions() -> None:
    """For every tree up to 33 leaves, roots, audit paths and consistency proofs match MTH/PATH/PROOF."""
    leaves = _leaves(33)
    tree = merkle.Tree(leaves)
    for n in range(34):
        assert tree.root(n) == merkle.mth(leaves[:n])
        for m in range(n):
            assert tree.inclusion(m, n) == merkle.path(m, leaves[:n])
        for m in range(n + 1):
            assert tree.consistency(m, n) == merkle.proof(m, leaves[:n])


def test_proofs_verify_and_tampered_proofs_do_not() -> None:
    """Every inclusion and consistency proof verifies; a changed hash, index or size does not."""
    leaves = _leaves(21)
    tree = merkle.Tree(leaves)
    for n in range(1, 22):
        root = tree.root(n)
        for m in range(n):
            audit_path = tree.inclusion(m, n)
            assert merkle.verify_inclusion(m, n, leaves[m], audit_path, root)
            assert not merkle.verify_inclusion(m, n, bytes(32), audit_path, root)
            if audit_path:
                bad = [*audit_path[:-1], bytes(32)]
                assert not merkle.verify_inclusion(m, n, leaves[m], bad, root)
                assert not merkle.verify_inclusion(m, n, leaves[m], audit_path[:-1], root)
        for m in range(1, n + 1):
            consistency = tree.consistency(m, n)
            assert merkle.verify_consistency(m, n, tree.root(m), root, consistency)
            if m < n:
                assert not merkle.verify_consistency(m, n, tree.root(m), root, [*consistency[:-1], bytes(32)])
                assert not merkle.verify_consistency(m, n, bytes(32), root, consistency)


def test_bad_arguments_are_refused() -> None:
    """Indexes and sizes outside the tree are ValueError, and a proof for an empty path does not verify."""
    tree = merkle.Tree(_leaves(4))
    with pytest.raises(ValueError, match="outside"):
        tree.inclusion(4, 4)
    with pytest.raises(ValueError, match="outside"):
        tree.root(5)
    assert not merkle.verify_consistency(2, 4, tree.root(2), tree.root(4), [])
    assert not merkle.verify_inclusion(5, 4, b"x", [], b"y")


def test_hundred_thousand_leaves_are_cheap() -> None:
    """Proofs in a 100k-leaf tree come from the cache: thousands of them take well under a second."""
    import time

    tree = merkle.Tree(merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(100_000))
    size = 99_999
    root = tree.root(size)
    started = time.perf_counter()
    for m in range(0, size, 50):
        assert merkle.verify_inclusion(m, size, tree.levels[0][m], tree.inclusion(m, size), root)
    assert merkle.verify_consistency(77_777, size, tree.root(77_777), root, tree.consistency(77_777, size))
    assert time.perf_counter() - started < 2


def test_ranges_decompose_into_aligned_subtrees() -> None:
    """Every range of the recursion is the right fold of its aligned pieces; a misaligned range is refused."""
    leaves = _leaves(45)
    tree = merkle.Tree(leaves)
    for n in range(1, 46):
        for m in range(n):
            for start, end in merkle.inclusion_ranges(m, n):
                hashes = [tree.levels[h][i] for h, i in merkle.pieces(start, end)]
                assert merkle.fold(hashes) == merkle.mth(leaves[start:end])
    assert merkle.pieces(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert merkle.fold([]) == merkle.EMPTY_ROOT
    with pytest.raises(ValueError, match="not a range"):
        merkle.pieces(3, 7)


def test_frontier_keeps_log_n_hashes_and_names_what_each_leaf_completes() -> None:
    """The frontier's root equals MTH at every size; the subtrees it reports completed are the Tree's."""
    leaves = _leaves(70)
    tree = merkle.Tree(leaves)
    frontier = merkle.Frontier()
    assert frontier.root() == merkle.EMPTY_ROOT
    seen: dict[tuple[int, int], bytes] = {}
    for n, leaf in enumerate(leaves, start=1):
        for level, index, value in frontier.append(leaf):
            seen[(level, index)] = value
        assert frontier.size == n and len(frontier.hashes) == n.bit_count()
        assert frontier.root() == merkle.mth(leaves[:n])
        resumed = merkle.Frontier(n, [tree.levels[h][i] for h, i in merkle.pieces(0, n)])
        assert resumed.hashes == frontier.hashes
    assert seen == {(h, i): value for h, level in enumerate(tree.levels) for i, value in enumerate(level)}
    with pytest.raises(ValueError, match="frontier subtrees"):
        merkle.Frontier(3, [bytes(32)])
