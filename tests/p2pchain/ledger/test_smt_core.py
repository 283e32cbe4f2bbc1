"""The state tree's C walk (p2pchain/_smt.c) against the pure-Python reference walk.

The contract: for the same tree and changes, both walks write exactly the same nodes
(``pending``: row key -> node or None) and return the same root node, so a node's table
and root do not depend on which one ran. The other tree tests run on whichever is active
(the C walk where it was built; CI checks that it was).
"""

import hashlib
import os
import sqlite3

import pytest
from hypothesis import given, settings, strategies as st

from p2pchain.ledger import smt
from p2pchain.ledger.smt import EMPTY, SparseMerkleTree, leaf_hash, root_of_sorted_leaves

_smt = pytest.importorskip("p2pchain._smt", reason="C accelerator not built (pip install -e . builds it)")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=128))
def test_the_walks_hash_is_blake2b_256(data):
    assert _smt.blake2b_256(data) == hashlib.blake2b(data, digest_size=32).digest()


def test_the_accelerator_is_the_active_walk_where_built():
    if os.environ.get("P2PCHAIN_PURE_SMT", "") not in ("", "0"):
        assert smt.IMPLEMENTATION == "python" and smt.UPDATE is smt._pure_update
    else:
        assert smt.IMPLEMENTATION == "c" and smt.UPDATE is _smt.update


# Paths that share long prefixes put nodes deep in the tree (and across byte boundaries);
# random ones keep it shallow. A path is a 32-byte string.
def _path(prefix_bits: int, tail: bytes) -> bytes:
    base = int.from_bytes(bytes(32), "big") | (0b1011 << 252)  # a common 4-bit start
    value = base | (int.from_bytes(tail, "big") >> prefix_bits)
    return value.to_bytes(32, "big")


paths = st.one_of(
    st.binary(min_size=32, max_size=32),
    st.builds(_path, st.sampled_from([4, 7, 8, 9, 63, 64, 65, 130, 255]), st.binary(min_size=32, max_size=32)),
)
# a block: paths written (a leaf hash) or deleted (None)
blocks = st.lists(st.dictionaries(paths, st.one_of(st.none(), st.binary(min_size=32, max_size=32)), max_size=40),
                  min_size=1, max_size=8)


class _Store:
    """One tree's nodes for a walk: what ``pending`` left, as the tree's table would hold."""

    def __init__(self) -> None:
        self.rows: dict[bytes, tuple] = {}
        self.root = None

    def apply(self, walk, changes: list) -> dict:
        pending: dict = {}
        self.root = walk(self.root, changes, pending, {}, self.rows.get)
        for pos, node in pending.items():
            if node is None:
                self.rows.pop(pos, None)
            else:
                self.rows[pos] = node
        return pending


@settings(max_examples=200, deadline=None)
@given(blocks)
def test_the_c_walk_writes_the_nodes_the_pure_walk_writes(sequence):
    c, pure = _Store(), _Store()
    state: dict[bytes, bytes] = {}
    for block in sequence:
        changes = sorted(block.items())
        assert c.apply(_smt.update, changes) == pure.apply(smt._pure_update, changes)
        assert c.root == pure.root and c.rows == pure.rows
        state.update(block)
        state = {path: lh for path, lh in state.items() if lh is not None}
        # and the root is the tree's over the leaves left
        expected = root_of_sorted_leaves(sorted(state.items()))
        assert (EMPTY if c.root is None else c.root[0]) == expected


def test_a_change_list_out_of_order_or_malformed_is_refused():
    a, b = bytes(31) + b"\x01", bytes(31) + b"\x02"
    with pytest.raises(ValueError, match="strictly increasing"):
        _smt.update(None, [(b, bytes(32)), (a, bytes(32))], {}, {}, {}.get)
    with pytest.raises(ValueError, match="strictly increasing"):
        _smt.update(None, [(a, bytes(32)), (a, None)], {}, {}, {}.get)
    with pytest.raises(TypeError, match="32-byte"):
        _smt.update(None, [(a[:31], bytes(32))], {}, {}, {}.get)
    with pytest.raises(TypeError, match="32-byte"):
        _smt.update(None, [(a, b"short")], {}, {}, {}.get)


def test_a_stored_node_that_is_not_a_node_is_refused():
    a, b = bytes(32), b"\x80" + bytes(31)
    pending: dict = {}
    root = _smt.update(None, [(a, bytes(32)), (b, bytes(32))], pending, {}, {}.get)
    assert root[1] is None  # an inner node over two leaves
    broken = {pos: ("not a node",) for pos in pending if pos != smt._ROOT}
    with pytest.raises(ValueError, match="not \\(hash, path or None\\)"):
        _smt.update(root, [(a, None)], {}, {}, broken.get)
    # from the cache too, on the side the change does not touch, and a leaf's path or hash
    # of another size (a damaged table row read into the cache)
    left, right = smt._position(1, 0), smt._position(1, 1)
    for bad in [("not a node",), (bytes(32), b"short"), (b"short", None), (bytes(32), 7)]:
        cached = {left: pending[left], right: bad}
        with pytest.raises(ValueError, match="not \\(hash, path or None\\)"):
            _smt.update(root, [(a, None)], {}, cached, {}.get)


@settings(max_examples=30, deadline=None)
@given(blocks)
def test_a_tree_on_either_walk_leaves_the_same_table(sequence):
    tables = []
    for walk in (_smt.update, smt._pure_update):
        conn = sqlite3.connect(":memory:", isolation_level=None)
        tree = SparseMerkleTree(conn, cache_nodes=8)  # a small cache: most nodes come from the table
        old, smt.UPDATE = smt.UPDATE, walk
        try:
            roots = [tree.update(block.items()) for block in sequence]
        finally:
            smt.UPDATE = old
        tables.append((roots, conn.execute("SELECT pos, hash, leaf FROM smt ORDER BY pos").fetchall()))
    assert tables[0] == tables[1]


def test_leaf_hashes_and_roots_match_the_documented_formula():
    path = bytes(range(32))
    tree = SparseMerkleTree(sqlite3.connect(":memory:", isolation_level=None))
    assert tree.update([(path, leaf_hash(path, b"v"))]) == leaf_hash(path, b"v")
    other = b"\xff" + bytes(31)
    root = tree.update([(other, leaf_hash(other, b"w"))])
    assert root == hashlib.blake2b(b"\x01" + leaf_hash(path, b"v") + leaf_hash(other, b"w"), digest_size=32).digest()
