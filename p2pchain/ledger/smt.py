"""The state root: a compact sparse Merkle tree over 256-bit key paths, stored in SQLite.

Every state entry ``(namespace, key) -> value`` is a leaf at the path
``digest(encode([namespace, key]))``, read as 256 bits from the most significant. The tree
is the binary trie over those paths with one rule of compaction: a subtree that holds a
single leaf is that leaf, placed at the subtree's root position (Diem's Jellyfish Merkle
tree, binary case; Dahlberg et al. call the idea a "compact sparse Merkle tree"). Hashes:

* empty subtree: 32 zero bytes (``EMPTY``),
* leaf:  ``H(0x00 ‖ path ‖ H(value))`` — it commits to its *full* path, so it means the same
  wherever compaction places it,
* inner: ``H(0x01 ‖ left ‖ right)``.

Soundness (two different states never share a root except by a collision of H). The shape
is a function of the set of paths, and the root a function of the shape and leaves. If two
roots are equal and no collision occurred, then at the root either both are ``EMPTY``
(nothing hashes to zeros without finding a preimage), or both are leaves with equal path
and value hash (the prefixes 0x00/0x01 keep leaves and inner nodes apart), or both are inner
nodes with equal children; by induction on depth the two trees hold the same leaves, i.e.
the same (path, H(value)) pairs, hence the same states (paths are digests of the injective
canonical encoding of the key, values are compared through H).

Cost. With n random paths a leaf sits at depth ≈ log2 n, so applying k writes rehashes
O(k log n) nodes, and touches as many rows: the cost follows the block's writes, not the
state's size. Nodes live in the SQLite table ``smt`` keyed by position (depth, prefix); a
bounded LRU cache keeps the hot top of the tree in memory.

References
----------
R. Dahlberg, T. Pulls, R. Peeters, "Efficient Sparse Merkle Trees", NordSec 2016.
Z. Gao et al., "Jellyfish Merkle Tree", Diem technical report, 2021.
"""

from __future__ import annotations

import bisect
import sqlite3
from dataclasses import dataclass
from typing import Iterable

from ..encoding import digest_bytes, encode

__all__ = ["EMPTY", "PATH_BITS", "SparseMerkleTree", "MerkleProof", "key_path", "leaf_hash",
           "root_of_sorted_leaves", "verify_proof"]

PATH_BITS = 256
EMPTY = bytes(32)
_LEAF, _NODE = b"\x00", b"\x01"

# A node: (hash, leaf path as int) for a leaf, (hash, None) for an inner node; None if empty.
Node = tuple  # tuple[bytes, int | None]


def key_path(namespace: str, key: str) -> bytes:
    """The 32-byte path of a state entry."""
    return digest_bytes(encode([namespace, key]))


def leaf_hash(path: bytes, value: bytes) -> bytes:
    return digest_bytes(_LEAF + path + digest_bytes(value))


def _inner(left: bytes, right: bytes) -> bytes:
    return digest_bytes(_NODE + left + right)


def _path_of(change: tuple[int, bytes | None]) -> int:
    return change[0]


def _first_right(items: list, right_index: int, depth: int) -> int:
    """Where the items (sorted by path) under the right child, heap index ``right_index``
    at ``depth + 1``, begin: the smallest such path is that child's prefix, then zeros."""
    prefix = right_index - (2 << depth)
    return bisect.bisect_left(items, prefix << (PATH_BITS - 1 - depth), key=_path_of)


def _position(depth: int, prefix: int) -> bytes:
    """The row key of the node at (depth, prefix): the prefix bits left-aligned, then depth.

    Keys sort by prefix first, so a subtree's nodes sit together in the table's B-tree and
    the deep nodes of one path share pages: fewer pages are dirtied per write.
    """
    return (prefix << (-depth % 8)).to_bytes((depth + 7) // 8, "big") + depth.to_bytes(2, "big")


SCHEMA = "CREATE TABLE IF NOT EXISTS smt (pos BLOB PRIMARY KEY, hash BLOB NOT NULL, leaf BLOB) WITHOUT ROWID"


class SparseMerkleTree:
    """The tree's nodes in table ``smt`` of ``conn``; the caller owns the transaction.

    :meth:`update` stages node writes and executes them on ``conn`` inside the caller's
    open transaction; on rollback the caller must call :meth:`forget` (cache invalidation).

    In memory a position (depth, prefix) is the integer ``2**depth + prefix`` (heap
    numbering: the children of ``i`` are ``2i`` and ``2i + 1``), which is cheaper to make and
    hash than the row key; the row key is built only for the rows a block writes. The cache
    keeps the recently used nodes in two generations (a node read from the older one moves to
    the newer; when the newer is full it becomes the older): bounded like an LRU, without an
    LRU's bookkeeping on every read.
    """

    def __init__(self, conn: sqlite3.Connection, *, cache_nodes: int = 65_536) -> None:
        self._conn = conn
        self._young: dict[int, Node | None] = {}
        self._old: dict[int, Node | None] = {}
        self._generation = max(1, cache_nodes // 2)
        self._pending: dict[int, Node | None] = {}
        conn.execute(SCHEMA)

    @property
    def root(self) -> bytes:
        node = self._load(1)
        return EMPTY if node is None else node[0]

    def forget(self) -> None:
        """Drop cached nodes (after a rolled-back transaction)."""
        self._young.clear()
        self._old.clear()
        self._pending.clear()

    # -- reading nodes ------------------------------------------------------------------

    def _load(self, index: int) -> Node | None:
        """The node at heap index ``index`` (``2**depth + prefix``)."""
        pending = self._pending
        if index in pending:
            return pending[index]
        young = self._young
        if index in young:
            return young[index]
        old = self._old
        if index in old:
            node = old.pop(index)
        else:
            depth = index.bit_length() - 1
            row = self._conn.execute("SELECT hash, leaf FROM smt WHERE pos = ?",
                                     (_position(depth, index - (1 << depth)),)).fetchone()
            node = None if row is None else (row[0], None if row[1] is None else int.from_bytes(row[1], "big"))
        self._remember(index, node)
        return node

    def _remember(self, index: int, node: Node | None) -> None:
        young = self._young
        young[index] = node
        if len(young) > self._generation:
            self._old, self._young = young, {}

    # -- updating -----------------------------------------------------------------------

    def update(self, changes: Iterable[tuple[bytes, bytes | None]]) -> bytes:
        """Apply ``(path, leaf hash or None to delete)`` changes; return the new root."""
        staged = sorted((int.from_bytes(path, "big"), lh) for path, lh in dict(changes).items())
        if staged:
            self._pending = pending = {}
            self._update(1, 0, self._load(1), staged)
            rows, gone = [], []
            for index, node in pending.items():
                depth = index.bit_length() - 1
                pos = _position(depth, index - (1 << depth))
                if node is None:
                    gone.append((pos,))
                else:
                    rows.append((pos, node[0], None if node[1] is None else node[1].to_bytes(32, "big")))
            self._conn.executemany(
                "INSERT INTO smt (pos, hash, leaf) VALUES (?, ?, ?) "
                "ON CONFLICT (pos) DO UPDATE SET hash = excluded.hash, leaf = excluded.leaf", rows)
            self._conn.executemany("DELETE FROM smt WHERE pos = ?", gone)
            self._pending = {}
            for index, node in pending.items():
                self._remember(index, node)
        return self.root

    def _update(self, index: int, depth: int, node: Node | None, changes: list) -> Node | None:
        """New node at heap index ``index`` (at ``depth``) after ``changes`` (sorted, all below it)."""
        pending = self._pending
        if node is None or node[1] is not None:
            # Empty or a single leaf: nothing is stored below this position, so rebuild
            # the subtree from the leaf (unless a change replaces it) and the changes.
            if node is not None:
                at = bisect.bisect_left(changes, node[1], key=_path_of)
                if at == len(changes) or changes[at][0] != node[1]:
                    changes = changes[:at] + [(node[1], node[0])] + changes[at:]
            leaves = [c for c in changes if c[1] is not None]
            if not leaves:
                if node is not None:
                    pending[index] = None
                return None
            return self._build(index, depth, leaves)
        left_index = index << 1
        right_index = left_index | 1
        split = _first_right(changes, right_index, depth)
        left = self._load(left_index)
        right = self._load(right_index)
        if split > 0:
            left = self._update(left_index, depth + 1, left, changes[:split])
        if split < len(changes):
            right = self._update(right_index, depth + 1, right, changes[split:])
        if left is None and right is None:
            pending[index] = None
            return None
        if left is None and right[1] is not None:  # compaction: a lone leaf moves up
            pending[right_index] = None
            pending[index] = right
            return right
        if right is None and left[1] is not None:
            pending[left_index] = None
            pending[index] = left
            return left
        node = (_inner(EMPTY if left is None else left[0], EMPTY if right is None else right[0]), None)
        pending[index] = node
        return node

    def _build(self, index: int, depth: int, leaves: list) -> Node:
        """Write the subtree of ``leaves`` (≥ 1, sorted) at a position empty below."""
        if len(leaves) == 1:
            path, lh = leaves[0]
            node = self._pending[index] = (lh, path)
            return node
        left_index = index << 1
        right_index = left_index | 1
        split = _first_right(leaves, right_index, depth)
        left = self._build(left_index, depth + 1, leaves[:split]) if split > 0 else None
        right = self._build(right_index, depth + 1, leaves[split:]) if split < len(leaves) else None
        node = self._pending[index] = (_inner(EMPTY if left is None else left[0],
                                              EMPTY if right is None else right[0]), None)
        return node

    # -- proofs -------------------------------------------------------------------------

    def prove(self, path: bytes) -> MerkleProof:
        """The siblings from the root down to where ``path`` ends, and what is there."""
        target = int.from_bytes(path, "big")
        siblings: list[bytes] = []
        depth, prefix = 0, 0
        node = self._load(1)
        while node is not None and node[1] is None:
            bit = (target >> (PATH_BITS - 1 - depth)) & 1
            sibling = self._load((((1 << depth) | prefix) << 1) | (1 - bit))
            siblings.append(EMPTY if sibling is None else sibling[0])
            depth, prefix = depth + 1, (prefix << 1) | bit
            node = self._load((1 << depth) | prefix)
        terminal = None if node is None else (node[1].to_bytes(32, "big"), node[0])
        return MerkleProof(tuple(siblings), terminal)


@dataclass(frozen=True, slots=True)
class MerkleProof:
    """Siblings top-down; ``terminal`` is the (path, leaf hash) found at the end, or None."""

    siblings: tuple[bytes, ...]
    terminal: tuple[bytes, bytes] | None


def verify_proof(root: bytes, path: bytes, value: bytes | None, proof: MerkleProof) -> bool:
    """True if ``proof`` shows that ``path`` holds ``value`` (None: holds nothing) under ``root``."""
    depth = len(proof.siblings)
    target = int.from_bytes(path, "big")
    if proof.terminal is None:
        if value is not None:
            return False
        current = EMPTY
    else:
        other, lh = proof.terminal
        other_int = int.from_bytes(other, "big")
        # The leaf found must lie under the position the siblings lead to.
        if depth and (other_int >> (PATH_BITS - depth)) != (target >> (PATH_BITS - depth)):
            return False
        if value is None:
            if other == path:
                return False
        elif other != path or lh != leaf_hash(path, value):
            return False
        current = lh
    for d in range(depth - 1, -1, -1):
        sibling = proof.siblings[d]
        current = _inner(sibling, current) if (target >> (PATH_BITS - 1 - d)) & 1 else _inner(current, sibling)
    return current == root


def root_of_sorted_leaves(leaves: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The root over ``(path, leaf hash)`` pairs given in increasing path order, streamed.

    Memory is O(depth): the verifier uses it to hash a whole stored state without loading
    it. It is also the independent re-computation the tests compare the tree against.
    """
    iterator = iter(leaves)
    window: list[tuple[int, bytes]] = []

    def peek(i: int) -> tuple[int, bytes] | None:
        while len(window) <= i:
            item = next(iterator, None)
            if item is None:
                return None
            window.append((int.from_bytes(item[0], "big"), item[1]))
        return window[i]

    def under(item: tuple[int, bytes] | None, depth: int, prefix: int) -> bool:
        return item is not None and (depth == 0 or item[0] >> (PATH_BITS - depth) == prefix)

    def build(depth: int, prefix: int) -> bytes:
        if not under(peek(0), depth, prefix):
            return EMPTY
        if not under(peek(1), depth, prefix):
            return window.pop(0)[1]
        left = build(depth + 1, prefix << 1)
        right = build(depth + 1, (prefix << 1) | 1)
        return _inner(left, right)

    return build(0, 0)
