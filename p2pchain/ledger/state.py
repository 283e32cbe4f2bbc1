"""The world state of one channel: ``(namespace, key) -> canonical bytes``, with its root.

Contracts see ``get`` and ``scan`` (the runtime namespaces by contract name); the ledger
calls :meth:`WorldState.apply_block` once per block with the block's write set, inside one
SQLite transaction that also records the applied height and the new root, so a crash
leaves the state either wholly before or wholly after the block (DESIGN.md, decision 7).

Tables (in the channel's database, next to the blocks):

* ``state(path PRIMARY KEY, ns, key, value)`` with a unique index on ``(ns, key)``: the
  entries; ``path`` is the entry's position in the tree (:func:`.smt.key_path`), so the
  whole state can be streamed in tree order and re-hashed with O(depth) memory;
* ``smt``: the tree's nodes (:mod:`.smt`);
* ``meta``: ``applied_height`` and ``state_root``;
* ``history(ns, key, height, value)``: every write of every block (NULL for a delete), so
  the state *as of* any applied height can be read (:meth:`WorldState.as_of`). Contracts
  read other channels only as of the anchored height (DESIGN.md, decision 4), and a
  snapshot can be exported at an older height. It grows on disk with the chain, never in
  memory.

Keys are compared as ``str`` by SQLite's BINARY collation, i.e. by their UTF-8 bytes,
which is code-point order: the order of the canonical encoding.
"""

from __future__ import annotations

import sqlite3
import sys
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

from ..encoding import EncodingError, decode, encode
from .smt import EMPTY, MerkleProof, SparseMerkleTree, key_path, leaf_hash, root_of_sorted_leaves
from .sql import transaction

__all__ = ["StateError", "StagedWrites", "WorldState", "HistoricalView", "SCAN_PAGE"]

SCAN_PAGE = 256  # rows fetched per query while scanning; a scan holds no cursor across writes


@dataclass(frozen=True, slots=True)
class StagedWrites:
    """A block's write set, checked and prepared once (:meth:`WorldState.stage`): its tree
    changes ``(path, leaf hash or None)`` and its rows ``(path, ns, key, value)`` to upsert
    (deletions are left out of the rows)."""

    writes: Mapping[tuple[str, str], bytes | None]
    changes: list
    rows: list


def _unchanged(value: None) -> None:
    return value


if sys.version_info < (3, 12):
    # Before Python 3.12, sqlite3 binds a bytes or None parameter only after looking for an
    # adapter: it fails to find ``__adapt__`` on its PrepareProtocol type, and that failed
    # look-up formats an AttributeError message for every such parameter (a block's apply
    # binds thousands: tree nodes' hashes and NULL leaves, keys, values). An adapter
    # registered for the exact type is found first and hands the value back unchanged, so
    # SQLite binds the same BLOB or NULL. The registry is the process's: every connection
    # of a node (ledgers, durable replica state, index) binds this way.
    sqlite3.register_adapter(bytes, bytes)
    sqlite3.register_adapter(type(None), _unchanged)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS state (path BLOB PRIMARY KEY, ns TEXT NOT NULL, key TEXT NOT NULL, "
    "value BLOB NOT NULL) WITHOUT ROWID",
    "CREATE UNIQUE INDEX IF NOT EXISTS state_by_key ON state (ns, key)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS history (ns TEXT NOT NULL, key TEXT NOT NULL, height INTEGER NOT NULL, "
    "value BLOB, PRIMARY KEY (ns, key, height)) WITHOUT ROWID",
)
# The latest version of each entry at or below a height (history rows; value NULL = deleted).
_AS_OF = (
    "SELECT key, value FROM history AS h WHERE ns = ? AND key {lower} ? {upper} AND height = "
    "(SELECT MAX(height) FROM history WHERE ns = h.ns AND key = h.key AND height <= ?) "
    "AND value IS NOT NULL ORDER BY key LIMIT ?"
)


class StateError(Exception):
    """A write set that cannot be applied (wrong height, non-canonical value, bad key)."""


class WorldState:
    """The state of one channel in ``conn`` (autocommit mode; this class opens transactions)."""

    def __init__(self, conn: sqlite3.Connection, *, cache_nodes: int = 65_536) -> None:
        self._conn = conn
        for statement in SCHEMA:
            conn.execute(statement)
        self._tree = SparseMerkleTree(conn, cache_nodes=cache_nodes)

    # -- reading ------------------------------------------------------------------------

    def get(self, namespace: str, key: str) -> bytes | None:
        row = self._conn.execute("SELECT value FROM state WHERE ns = ? AND key = ?", (namespace, key)).fetchone()
        return None if row is None else row[0]

    def scan(
        self, namespace: str, start: str = "", end: str | None = None, limit: int | None = None,
    ) -> Iterator[tuple[str, bytes]]:
        """Entries of ``namespace`` with ``start <= key < end`` in key order, at most ``limit``."""
        def page(lower: str, inclusive: bool, size: int) -> list:
            sql = "SELECT key, value FROM state WHERE ns = ? AND key " + (">=" if inclusive else ">") + " ?"
            params: list = [namespace, lower]
            if end is not None:
                sql += " AND key < ?"
                params.append(end)
            return self._conn.execute(sql + " ORDER BY key LIMIT ?", (*params, size)).fetchall()

        return _paged(page, start, limit)

    def as_of(self, height: int) -> HistoricalView:
        """A read-only view of the state after block ``height`` (at most the applied height)."""
        row = self._conn.execute("SELECT value FROM meta WHERE name = 'history_from'").fetchone()
        first = 0 if row is None else decode(row[0])  # a state installed from a snapshot starts there
        if not first <= height <= self.applied_height:
            raise StateError(f"no state as of height {height}: history covers {first} to {self.applied_height}")
        return HistoricalView(self._conn, height)

    @property
    def root(self) -> bytes:
        row = self._conn.execute("SELECT value FROM meta WHERE name = 'state_root'").fetchone()
        return EMPTY if row is None else row[0]

    @property
    def applied_height(self) -> int:
        """The height of the last block whose writes are applied; -1 before block 0."""
        row = self._conn.execute("SELECT value FROM meta WHERE name = 'applied_height'").fetchone()
        return -1 if row is None else decode(row[0])

    def prove(self, namespace: str, key: str) -> MerkleProof:
        """A Merkle proof of ``get(namespace, key)`` under :attr:`root` (:func:`.smt.verify_proof`)."""
        return self._tree.prove(key_path(namespace, key))

    def stored_root(self) -> bytes:
        """The root re-hashed from the stored entries alone (a full pass; for verification)."""
        rows = self._conn.execute("SELECT path, value FROM state ORDER BY path")
        return root_of_sorted_leaves((path, leaf_hash(path, value)) for path, value in rows)

    # -- writing ------------------------------------------------------------------------

    def install(self, height: int, batches: Iterable[Iterable[tuple[str, str, bytes]]], expected_root: bytes) -> bytes:
        """Fill an empty state with entries, as of ``height``, in one transaction.

        Commits only if the re-computed root is ``expected_root`` (snapshot import).
        """
        if self.applied_height != -1:
            raise StateError(f"install needs an empty state, this one is at height {self.applied_height}")
        try:
            with transaction(self._conn) as conn:
                for batch in batches:
                    staged = self.stage({(ns, key): value for ns, key, value in batch})
                    conn.executemany("INSERT INTO state (path, ns, key, value) VALUES (?, ?, ?, ?)", staged.rows)
                    conn.executemany("INSERT INTO history (ns, key, height, value) VALUES (?, ?, ?, ?)",
                                     [(ns, key, height, value) for _, ns, key, value in staged.rows])
                    self._tree.update(staged.changes)
                root = self._tree.root
                if root != expected_root:
                    raise StateError("the entries do not have the expected state root")
                self._record(height, root)
                conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('history_from', ?)", (encode(height),))
        except BaseException:
            self._tree.forget()
            raise
        return root

    def stage(self, writes: Mapping[tuple[str, str], bytes | None]) -> StagedWrites:
        """``writes`` checked (keys, canonical values) and prepared for :meth:`apply_block`;
        :class:`StateError` if it would refuse them. The ledger stages a block's writes once,
        to check them before it stores the block and then to apply them."""
        changes, rows = [], []
        for (namespace, key), value in sorted(writes.items(), key=lambda item: item[0]):
            if type(namespace) is not str or type(key) is not str:
                raise StateError(f"state key {(namespace, key)!r} is not a (str, str) pair")
            path = key_path(namespace, key)
            if value is None:
                changes.append((path, None))
                continue
            if type(value) is not bytes:
                raise StateError(f"value of {namespace}/{key} is not bytes")
            try:
                decode(value)
            except EncodingError as exc:
                raise StateError(f"value of {namespace}/{key} is not canonical: {exc}") from None
            changes.append((path, leaf_hash(path, value)))
            rows.append((path, namespace, key, value))
        return StagedWrites(writes, changes, rows)

    def _record(self, height: int, root: bytes) -> None:
        self._conn.executemany(
            "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
            [("applied_height", encode(height)), ("state_root", root)],
        )

    def apply_block(self, height: int, writes: Mapping[tuple[str, str], bytes | None] | StagedWrites) -> bytes:
        """Apply one block's write set atomically; return the new state root.

        ``writes`` maps ``(namespace, key)`` to canonical bytes, or ``None`` to delete (or is
        that map already staged by :meth:`stage`). ``height`` must follow :attr:`applied_height`.
        """
        expected = self.applied_height + 1
        if height != expected:
            raise StateError(f"block {height} applied out of order: the state is at {expected - 1}")
        staged = writes if isinstance(writes, StagedWrites) else self.stage(writes)
        writes, changes, rows = staged.writes, staged.changes, staged.rows
        gone = [(path,) for path, lh in changes if lh is None]
        try:
            with transaction(self._conn) as conn:
                conn.executemany("DELETE FROM state WHERE path = ?", gone)
                conn.executemany("INSERT OR REPLACE INTO state (path, ns, key, value) VALUES (?, ?, ?, ?)", rows)
                conn.executemany("INSERT INTO history (ns, key, height, value) VALUES (?, ?, ?, ?)",
                                 [(ns, key, height, value) for (ns, key), value in writes.items()])
                root = self._tree.update(changes)
                self._record(height, root)
        except BaseException:
            self._tree.forget()
            raise
        return root


def _paged(page, start: str, limit: int | None) -> Iterator[tuple[str, bytes]]:
    """Drive ``page(lower, inclusive, size)`` from ``start`` until ``limit`` rows or the end.

    Each page is its own query, resumed after the last key seen: no cursor stays open
    across the caller's writes, and memory is one page.
    """
    remaining = limit
    lower, inclusive = start, True
    while remaining is None or remaining > 0:
        size = SCAN_PAGE if remaining is None else min(SCAN_PAGE, remaining)
        rows = page(lower, inclusive, size)
        yield from rows
        if len(rows) < size:
            return
        lower, inclusive = rows[-1][0], False
        if remaining is not None:
            remaining -= len(rows)


class HistoricalView:
    """The state as it was after block ``height``, with the read interface of WorldState.

    A contract's read of another channel goes through such a view at the anchored height,
    so every node reads the same values whatever that channel's head is locally.
    """

    def __init__(self, conn: sqlite3.Connection, height: int) -> None:
        self._conn = conn
        self.height = height

    def get(self, namespace: str, key: str) -> bytes | None:
        row = self._conn.execute(
            "SELECT value FROM history WHERE ns = ? AND key = ? AND height <= ? ORDER BY height DESC LIMIT 1",
            (namespace, key, self.height)).fetchone()
        return None if row is None else row[0]

    def scan(
        self, namespace: str, start: str = "", end: str | None = None, limit: int | None = None,
    ) -> Iterator[tuple[str, bytes]]:
        def page(lower: str, inclusive: bool, size: int) -> list:
            sql = _AS_OF.format(lower=">=" if inclusive else ">", upper="" if end is None else "AND key < ?")
            params = [namespace, lower] + ([] if end is None else [end]) + [self.height, size]
            return self._conn.execute(sql, params).fetchall()

        return _paged(page, start, limit)

    def entries(self) -> Iterator[tuple[str, str, bytes]]:
        """Every entry ``(namespace, key, value)`` in (namespace, key) order (snapshots)."""
        yield from self._conn.execute(
            "SELECT ns, key, value FROM history AS h WHERE height = "
            "(SELECT MAX(height) FROM history WHERE ns = h.ns AND key = h.key AND height <= ?) "
            "AND value IS NOT NULL ORDER BY ns, key", (self.height,))
