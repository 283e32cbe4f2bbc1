"""Where the replicas' durable state lives on a node: a snapshot and a journal per channel.

One SQLite database (``node.sqlite``, WAL, ``synchronous=FULL``) with two tables:
``replica`` (one snapshot per channel) and ``journal`` (the deltas written after it, in
order; :mod:`p2pchain.consensus.journal`). A group commit appends one delta row; every so
often (when the journal has grown past the snapshot's size plus ``SNAPSHOT_SLACK_BYTES``)
a snapshot replaces the row and empties the channel's journal in the same transaction, so
a crash leaves either the old snapshot with its whole journal or the new one alone, never
a mix. Writes are SQLite transactions: fsynced before they are reported done, and atomic
(a torn row is never read back), so whatever was written before a crash is found after it.

Writes run on the store's one writer thread, so an fsync never stalls the event loop; the
caller submits them in order (:meth:`DurableReplicaStore.submit`) and waits for each before
sending what depends on it. The writer commits whatever the three channels queued while
its last fsync ran in one transaction (a group commit across channels): one fsync instead
of one per channel, and no channel's vote waits behind another channel's fsync.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Sequence

from p2pchain.consensus.durable import DurableState, decode_durable_state
from p2pchain.consensus.journal import DurableJournal, replay
from p2pchain.ledger.sql import transaction

__all__ = ["DurableReplicaStore", "ChannelPersister", "SNAPSHOT_SLACK_BYTES", "Statements", "commit_group"]

Statements = Sequence[tuple[str, tuple[Any, ...]]]
"""A write: SQL statements with their parameters, run in order inside one transaction."""

SNAPSHOT_SLACK_BYTES = 1 << 20
"""Journal bytes beyond the snapshot's size that trigger a new snapshot: bounds what a
restart replays (about twice the state) while keeping snapshots rare under load."""


class DurableReplicaStore:
    """The replicas' durable state of one node: snapshot + journal per channel."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS replica (channel TEXT PRIMARY KEY, state BLOB NOT NULL)")
        self._conn.execute("CREATE TABLE IF NOT EXISTS journal (channel TEXT NOT NULL, n INTEGER NOT NULL, "
                           "delta BLOB NOT NULL, PRIMARY KEY (channel, n))")
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_forever, name="durable", daemon=True)
        self._writer.start()

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

    @staticmethod
    def snapshot_statements(channel: str, data: bytes) -> Statements:
        """A new snapshot and the emptied journal, together (never a mix after a crash)."""
        return (("INSERT OR REPLACE INTO replica (channel, state) VALUES (?, ?)", (channel, data)),
                ("DELETE FROM journal WHERE channel = ?", (channel,)))

    @staticmethod
    def append_statements(channel: str, n: int, data: bytes) -> Statements:
        return (("INSERT INTO journal (channel, n, delta) VALUES (?, ?, ?)", (channel, n, data)),)

    def submit(self, statements: Statements) -> Future:
        """Queue a write; the future is done once it is on disk (or failed: then every write
        committed with it failed too, and none of them is on disk)."""
        future: Future = Future()
        self._queue.put((statements, future))
        return future

    def write(self, statements: Statements) -> None:
        """Write and wait (for tests and tools)."""
        self.submit(statements).result()

    def _write_forever(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, stop = [first], False
            while True:  # whatever else was queued meanwhile joins this transaction
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            commit_group(self._conn, group)
            if stop:
                return

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join()
        self._conn.close()


def commit_group(conn: sqlite3.Connection, group: list[tuple[Statements, Future]]) -> None:
    """Run the writes of ``group`` in one transaction, then settle their futures: all done
    (on disk: ``synchronous=FULL``), or all failed with the error and none written."""
    try:
        with transaction(conn):
            for statements, _ in group:
                for sql, params in statements:
                    conn.execute(sql, params)
    except Exception as exc:  # a disk or database failure: every write of the group failed
        for _, future in group:
            future.set_exception(exc)
        return
    for _, future in group:
        future.set_result(None)


class ChannelPersister:
    """Decides, for one channel, what a group commit writes: a delta or a snapshot.

    ``prepare(state, changes)`` returns ``(statements, size)``: the statements that put
    ``state`` on disk, for :meth:`DurableReplicaStore.submit`. Calls must be written in the
    order prepared. ``changes`` is the replica's
    :meth:`~p2pchain.consensus.Replica.durable_changes` taken with ``state``;
    ``prepare_replica(replica)`` takes both itself.
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

    @property
    def snapshot_due(self) -> bool:
        """Whether the next write is a snapshot: the first, or once the journal has grown
        past the snapshot's size plus ``SNAPSHOT_SLACK_BYTES``."""
        return not self.journal.has_base or self._journal_bytes > self._snapshot_bytes + SNAPSHOT_SLACK_BYTES

    def prepare(self, state: DurableState, changes: dict | None = None):
        if self.snapshot_due:
            data = self.journal.snapshot(state)
            self._n, self._journal_bytes, self._snapshot_bytes = 0, 0, len(data)
            return self.store.snapshot_statements(self.channel, data), len(data)
        data = self.journal.delta(state, changes)
        self._n += 1
        self._journal_bytes += len(data)
        return self.store.append_statements(self.channel, self._n, data), len(data)

    def prepare_replica(self, replica):
        """:meth:`prepare` for ``replica``'s durable state now. A delta is told the changes
        of the tracked parts (the client table, the replies: they grow with the number of
        clients), so the state built for it leaves out every part whose changes are known;
        only a snapshot builds them whole. A write then costs what arrived, not what is
        held (with 400 clients a third of a write's CPU went into sorting the client
        table, docs/performance.md)."""
        changes = replica.durable_changes()
        if self.snapshot_due:
            return self.prepare(replica.durable_state())
        known = [name for name, change in changes.items() if change is not None]
        return self.prepare(replica.durable_state(leave_out=known), changes)
