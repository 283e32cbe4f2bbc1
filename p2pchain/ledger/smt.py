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
bounded LRU cache keeps the hot top of the tree in memory. The walk of an update runs in C
(``p2pchain/_smt.c``) where that was built, else in Python (:func:`_pure_update`, the
reference); both write the same nodes.

References
----------
R. Dahlberg, T. Pulls, R. Peeters, "Efficient Sparse Merkle Trees", NordSec 2016.
Z. Gao et al., "Jellyfish Merkle Tree", Diem technical report, 2021.
"""

from __future__ import annotations

import bisect
import os
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
Node = tuple  # tuple[bytes, bytes | None]: (hash, path) for a leaf, (hash, None) for an inner node


def key_path(namespace: str, key: str) -> bytes:
    """The 32-byte path of a state entry."""
    return digest_bytes(encode([namespace, key]))


def leaf_hash(path: bytes, value: bytes) -> bytes:
    return digest_bytes(_LEAF + path + digest_bytes(value))


def _inner(left: bytes, right: bytes) -> bytes:
    return digest_bytes(_NODE + left + right)


def _position(depth: int, prefix: int) -> bytes:
    """The row key of the node at (depth, prefix): the prefix bits left-aligned, then depth.

    Keys sort by prefix first, so a subtree's nodes sit together in the table's B-tree and
    the deep nodes of one path share pages: fewer pages are dirtied per write.
    """
    return (prefix << (-depth % 8)).to_bytes((depth + 7) // 8, "big") + depth.to_bytes(2, "big")


SCHEMA = "CREATE TABLE IF NOT EXISTS smt (pos BLOB PRIMARY KEY, hash BLOB NOT NULL, leaf BLOB) WITHOUT ROWID"


_ROOT = _position(0, 0)


def _path_of(change: tuple) -> int:
    return change[0]


def _lookup(pending: dict, young: dict, load_slow, pos: bytes) -> Node | None:
    """The node at row key ``pos``: this update's write, else the newer cache generation,
    else ``load_slow`` (the older generation, then the table). The C walk looks the same way."""
    if pos in pending:
        return pending[pos]
    if pos in young:
        return young[pos]
    return load_slow(pos)


class _PureWalk:
    """The reference walk of an update (``p2pchain/_smt.c`` mirrors it node for node).

    Changes are ``(path as int, leaf hash or None, path)``, sorted; a node's position is
    (depth, prefix as int) and its key :func:`_position` of them.
    """

    def __init__(self, pending: dict, young: dict, load_slow) -> None:
        self.pending, self.young, self.load_slow = pending, young, load_slow

    def load(self, pos: bytes) -> Node | None:
        return _lookup(self.pending, self.young, self.load_slow, pos)

    @staticmethod
    def inner(left: Node | None, right: Node | None) -> Node:
        return (_inner(EMPTY if left is None else left[0], EMPTY if right is None else right[0]), None)

    def update(self, depth: int, prefix: int, node: Node | None, changes: list) -> Node | None:
        """The new node at (depth, prefix), now ``node``, after ``changes`` (all below it)."""
        pending = self.pending
        if node is None or node[1] is not None:
            # Empty or a single leaf: nothing is stored below this position, so rebuild
            # the subtree from the leaf (unless a change replaces it) and the changes.
            if node is not None:
                path = int.from_bytes(node[1], "big")
                at = bisect.bisect_left(changes, path, key=_path_of)
                if at == len(changes) or changes[at][0] != path:
                    changes = changes[:at] + [(path, node[0], node[1])] + changes[at:]
            leaves = [c for c in changes if c[1] is not None]
            if not leaves:
                if node is not None:
                    pending[_position(depth, prefix)] = None
                return None
            return self.build(depth, prefix, leaves)
        left_prefix = prefix << 1
        right_prefix = left_prefix | 1
        # the first change under the right child: its prefix, then zeros
        split = bisect.bisect_left(changes, right_prefix << (PATH_BITS - 1 - depth), key=_path_of)
        left_pos, right_pos = _position(depth + 1, left_prefix), _position(depth + 1, right_prefix)
        left, right = self.load(left_pos), self.load(right_pos)
        if split > 0:
            left = self.update(depth + 1, left_prefix, left, changes[:split])
        if split < len(changes):
            right = self.update(depth + 1, right_prefix, right, changes[split:])
        pos = _position(depth, prefix)
        if left is None and right is None:
            pending[pos] = None
            return None
        if left is None and right[1] is not None:  # compaction: a lone leaf moves up
            pending[right_pos] = None
            pending[pos] = right
            return right
        if right is None and left[1] is not None:
            pending[left_pos] = None
            pending[pos] = left
            return left
        node = pending[pos] = self.inner(left, right)
        return node

    def build(self, depth: int, prefix: int, leaves: list) -> Node:
        """Write the subtree of ``leaves`` (>= 1, sorted) at a position empty below."""
        if len(leaves) == 1:
            _, lh, path = leaves[0]
            node = self.pending[_position(depth, prefix)] = (lh, path)
            return node
        left_prefix = prefix << 1
        right_prefix = left_prefix | 1
        split = bisect.bisect_left(leaves, right_prefix << (PATH_BITS - 1 - depth), key=_path_of)
        left = self.build(depth + 1, left_prefix, leaves[:split]) if split > 0 else None
        right = self.build(depth + 1, right_prefix, leaves[split:]) if split < len(leaves) else None
        node = self.pending[_position(depth, prefix)] = self.inner(left, right)
        return node


def _pure_update(root: Node | None, changes: list, pending: dict, young: dict, load_slow) -> Node | None:
    """Apply ``changes`` (``(path, leaf hash or None)``, paths strictly increasing) to the
    tree whose root node is ``root``; every node written goes into ``pending`` (row key ->
    node or None). Returns the new root node. Nodes not in ``pending`` or ``young`` come
    from ``load_slow(pos)``."""
    if not changes:
        return root
    staged = [(int.from_bytes(path, "big"), lh, path) for path, lh in changes]
    return _PureWalk(pending, young, load_slow).update(0, 0, root, staged)


def _load_accelerator():
    """The C walk (``p2pchain/_smt.c``), or None: not built, switched off, or stale."""
    if os.environ.get("P2PCHAIN_PURE_SMT", "") not in ("", "0"):
        return None
    try:
        from .. import _smt
    except ImportError:
        return None
    if getattr(_smt, "ABI_VERSION", None) != 2:
        return None
    # its inner-node hash must be the tree's: BLAKE2b-256, as encoding.digest_bytes
    sample = _NODE + bytes(range(64))
    return _smt if _smt.blake2b_256(sample) == digest_bytes(sample) else None


_accelerator = _load_accelerator()
#: The update's walk: the C accelerator's, or the pure reference (same nodes, slower). A
#: module global read at each update, so a test can set it to :func:`_pure_update`.
UPDATE = _accelerator.update if _accelerator else _pure_update
IMPLEMENTATION = "c" if _accelerator else "python"


class SparseMerkleTree:
    """The tree's nodes in table ``smt`` of ``conn``; the caller owns the transaction.

    :meth:`update` stages node writes and executes them on ``conn`` inside the caller's
    open transaction; on rollback the caller must call :meth:`forget` (cache invalidation).

    In memory a node is keyed by its row key (:func:`_position`) and is a tuple as in the
    table: ``(hash, path)`` for a leaf, ``(hash, None)`` for an inner node; ``None`` is an
    empty subtree. The cache keeps the recently used nodes in two generations (a node read
    from the older one moves to the newer; when the newer is full it becomes the older):
    bounded like an LRU, without an LRU's bookkeeping on every read. The walk of an update
    is :data:`UPDATE` (the C accelerator, or the pure reference :func:`_pure_update`).
    """

    def __init__(self, conn: sqlite3.Connection, *, cache_nodes: int = 65_536) -> None:
        self._conn = conn
        self._young: dict[bytes, Node | None] = {}
        self._old: dict[bytes, Node | None] = {}
        self._generation = max(1, cache_nodes // 2)
        self._pending: dict[bytes, Node | None] = {}
        conn.execute(SCHEMA)

    @property
    def root(self) -> bytes:
        node = self._load(_ROOT)
        return EMPTY if node is None else node[0]

    def forget(self) -> None:
        """Drop cached nodes (after a rolled-back transaction)."""
        self._young.clear()
        self._old.clear()
        self._pending.clear()

    # -- reading nodes ------------------------------------------------------------------

    def _load(self, pos: bytes) -> Node | None:
        """The node at row key ``pos``."""
        return _lookup(self._pending, self._young, self._load_slow, pos)

    def _load_slow(self, pos: bytes) -> Node | None:
        """The node at ``pos`` from the older generation or the table (the walk has looked in
        the pending writes and the newer generation)."""
        old = self._old
        if pos in old:
            node = old.pop(pos)
        else:
            row = self._conn.execute("SELECT hash, leaf FROM smt WHERE pos = ?", (pos,)).fetchone()
            node = None if row is None else (row[0], row[1])
        self._young[pos] = node
        self._age()
        return node

    def _age(self) -> None:
        """A newer generation grown past its size becomes the older one (the older dropped)."""
        if len(self._young) > self._generation:
            self._old, self._young = self._young, {}

    # -- updating -----------------------------------------------------------------------

    def update(self, changes: Iterable[tuple[bytes, bytes | None]]) -> bytes:
        """Apply ``(path, leaf hash or None to delete)`` changes; return the new root."""
        staged = sorted(dict(changes).items())
        if staged:
            self._pending = pending = {}
            UPDATE(self._load(_ROOT), staged, pending, self._young, self._load_slow)
            self._conn.executemany(
                "INSERT INTO smt (pos, hash, leaf) VALUES (?, ?, ?) "
                "ON CONFLICT (pos) DO UPDATE SET hash = excluded.hash, leaf = excluded.leaf",
                [(pos, node[0], node[1]) for pos, node in pending.items() if node is not None])
            self._conn.executemany("DELETE FROM smt WHERE pos = ?",
                                   [(pos,) for pos, node in pending.items() if node is None])
            self._pending = {}
            self._young.update(pending)
            self._age()
        return self.root

    # -- proofs -------------------------------------------------------------------------

    def prove(self, path: bytes) -> MerkleProof:
        """The siblings from the root down to where ``path`` ends, and what is there."""
        target = int.from_bytes(path, "big")
        siblings: list[bytes] = []
        depth, prefix = 0, 0
        node = self._load(_ROOT)
        while node is not None and node[1] is None:
            bit = (target >> (PATH_BITS - 1 - depth)) & 1
            sibling = self._load(_position(depth + 1, (prefix << 1) | (1 - bit)))
            siblings.append(EMPTY if sibling is None else sibling[0])
            depth, prefix = depth + 1, (prefix << 1) | bit
            node = self._load(_position(depth, prefix))
        terminal = None if node is None else (node[1], node[0])
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
