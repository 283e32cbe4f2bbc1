"""Where the replicas' durable state lives on a node: a snapshot and a journal per channel.

One SQLite database (``node.sqlite``, WAL, ``synchronous=FULL``) with two tables:
``replica`` (one snapshot per channel) and ``journal`` (the deltas written after it, in
order; :mod:`p2pchain.consensus.journal`). A group commit appends one delta row; every so
often (when the journal has grown past the snapshot's size plus ``SNAPSHOT_SLACK_BYTES``)
a snapshot replaces the row and empties the channel's journal in the same transaction, so
a crash leaves either the old snapshot with its whole journal or the new one alone, never
a mix. Each write is one SQLite transaction: fsynced when it returns, and atomic (a torn
row is never read back), so whatever was written before a crash is found after it.

Writes run on the store's one thread (``thread``), so an fsync never stalls the event
loop; the caller submits them in order and waits for each before sending what depends on
it.
"""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from p2pchain.consensus.durable import DurableState, decode_durable_state
from p2pchain.consensus.journal import DurableJournal, replay

__all__ = ["DurableReplicaStore", "ChannelPersister", "SNAPSHOT_SLACK_BYTES"]

SNAPSHOT_SLACK_BYTES = 1 << 20
"""Journal bytes beyond the snapshot's size that trigger a new snapshot: bounds what a
restart replays (about twice the state) while keeping snapshots rare under load."""


class DurableReplicaStore:
    """The replicas' durable state of one node: snapshot + journal per channel."""

    def __init__(self, path: Path) -> None:
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="durable")
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS replica (channel TEXT PRIMARY KEY, state BLOB NOT NULL)")
        self._conn.execute("CREATE TABLE IF NOT EXISTS journal (channel TEXT NOT NULL, n INTEGER NOT NULL, "
                           "delta BLOB NOT NULL, PRIMARY KEY (channel, n))")

    def load_parts(self, channel: str) -> tuple[bytes | None, list[bytes]]:
        """The snapshot (``None`` if never written) and the deltas after it, in order."""
        row = self._conn.execute("SELECT state FROM replica WHERE channel = ?", (channel,)).fetchone()
        deltas = [d for (d,) in self._conn.execute(
            "SELECT delta FROM journal WHERE channel = ? ORDER BY n", (channel,))]
        return (None if row is None else row[0]), deltas

    def load(self, channel: str) -> DurableState | None:
        """The state last written for ``channel``; raises ``MalformedMessage`` if corrupt."""
        snapshot, deltas = self.load_parts(channel)
        if snapshot is None:
            return None
        return replay(snapshot, deltas) if deltas else decode_durable_state(snapshot)

    def write_snapshot(self, channel: str, data: bytes) -> None:
        with self._conn:  # one transaction: the snapshot and the emptied journal together
            self._conn.execute("BEGIN")
            self._conn.execute("INSERT OR REPLACE INTO replica (channel, state) VALUES (?, ?)", (channel, data))
            self._conn.execute("DELETE FROM journal WHERE channel = ?", (channel,))

    def append(self, channel: str, n: int, data: bytes) -> None:
        self._conn.execute("INSERT INTO journal (channel, n, delta) VALUES (?, ?, ?)", (channel, n, data))

    def close(self) -> None:
        self.thread.shutdown(wait=True)
        self._conn.close()


class ChannelPersister:
    """Decides, for one channel, what a group commit writes: a delta or a snapshot.

    ``prepare(state, changes)`` returns ``(write, size)``: ``write()`` (to run on the store's
    thread) puts ``state`` on disk. Calls must be written in the order prepared. ``changes``
    is the replica's :meth:`~p2pchain.consensus.Replica.durable_changes` taken with ``state``.
    """

    def __init__(self, store: DurableReplicaStore, channel: str, base: DurableState | None) -> None:
        self.store, self.channel = store, channel
        self.journal = DurableJournal(base)
        self._n = self._journal_bytes = self._snapshot_bytes = 0
        if base is not None:
            # continue the journal found on disk (its rows are numbered 1..n)
            snapshot, deltas = store.load_parts(channel)
            self._n = len(deltas)
            self._snapshot_bytes = len(snapshot or b"")
            self._journal_bytes = sum(len(d) for d in deltas)

    def prepare(self, state: DurableState, changes: dict | None = None):
        if (not self.journal.has_base
                or self._journal_bytes > self._snapshot_bytes + SNAPSHOT_SLACK_BYTES):
            data = self.journal.snapshot(state)
            self._n, self._journal_bytes, self._snapshot_bytes = 0, 0, len(data)
            return (lambda: self.store.write_snapshot(self.channel, data)), len(data)
        data = self.journal.delta(state, changes)
        self._n += 1
        self._journal_bytes += len(data)
        n = self._n
        return (lambda: self.store.append(self.channel, n, data)), len(data)
