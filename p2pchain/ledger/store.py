"""One channel's ledger on one node: blocks and world state in one SQLite database.

Durability (DESIGN.md, decision 7). :meth:`ChannelLedger.commit` runs two SQLite
transactions, in this order:

1. **append**: the block row (header, body with outputs, commit certificate) is inserted in
   one transaction with ``synchronous=FULL``: when ``append`` returns, the block is on disk
   (WAL fsynced) and will be found after any crash;
2. **apply**: the block's write set, the tree nodes, the applied height and the new root are
   written in one transaction (``synchronous=NORMAL``: the WAL is fsynced by the next
   append or checkpoint; a state commit lost to a power cut is re-applied by recovery).

Crash points and what recovery on open does with each:

* during or before (1): SQLite's atomic commit leaves no trace of the block — the chain ends
  at the previous block, which is complete (no partial block is ever visible);
* between (1) and (2), or during (2): the block is stored, the state is at the previous
  height; on open the state lags the blocks and the write sets of the missing blocks are
  re-applied from the block table, which is the source of truth;
* after (2): nothing to do.

Recovery also checks the tail (the head's stored hash is its header's hash and links to
its predecessor) and, while re-applying, each recomputed root against the next header.
Nothing held in memory grows with the chain: the head's height, hash and outputs digest,
the tree's bounded node cache, and the last nonce of each creator (at most one entry per
identity of the genesis: only those can have a transaction admitted).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from ..bounded import BoundedDict
from ..encoding import decode, encode
from ..genesis import Genesis
from ..ordering import Batch, CommitCertificate
from .block import Anchor, Block, BlockError, BlockOutputs, Header, TxResult, genesis_block, make_header
from .sql import transaction
from .state import StagedWrites, StateError, WorldState
from .transaction import (
    NONCE_NAMESPACE, Transaction, TransactionRefused, nonce_writes, nothing_verified, read_nonce,
    screen_requests, timestamp_to_datetime,
)

__all__ = [
    "LedgerError", "StoreCorrupt", "StoredBlock", "Executor", "ChannelLedger", "ledger_path",
    "assemble_outputs",
]

BLOCKS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS blocks (height INTEGER PRIMARY KEY, hash BLOB NOT NULL, "
    "header BLOB NOT NULL, body BLOB NOT NULL, certificate BLOB)"
)

WAL_CHECKPOINT_PAGES = 8192
BLOCK_VIEW = 0
"""The ``view`` of every block header after block 0 (see :meth:`ChannelLedger.prepare`)."""

Executor = Callable[[Block, list[Transaction]], "tuple[Sequence[TxResult], Mapping[tuple[str, str], bytes | None]]"]
"""``execute(block, admitted) -> (one result per admitted transaction, merged write set)``."""


class LedgerError(Exception):
    """A block that does not extend this ledger, or a ledger that cannot be opened."""


class StoreCorrupt(LedgerError):
    """The database contradicts itself in a way no crash can cause (tampering, disk fault)."""


@dataclass(frozen=True, slots=True)
class StoredBlock:
    block: Block
    certificate: CommitCertificate | None  # None for block 0


def ledger_path(node_dir: Path, channel: str) -> Path:
    """Where a node keeps ``channel``'s database: ``NODE_DIR/ledger/<channel>.db``."""
    return Path(node_dir) / "ledger" / f"{channel}.db"


def _connect_one(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=10000")
    # Checkpoint every 32 MiB of WAL instead of 4: the top tree nodes, rewritten by every
    # block, are copied to the database once per checkpoint instead of once per few blocks.
    # The WAL stays bounded; it does not grow with the chain.
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    return conn


class ThreadConnections:
    """The ledger's database, one SQLite connection per thread that uses it (``execute``,
    ``executemany`` and ``close`` of a connection).

    A node writes a channel's ledger on the channel's execution thread and reads it on the
    event loop (API, validation, anchoring). Through one shared connection the loop's reads
    queued behind the writer's statements — a commit's fsync, or a WAL checkpoint of 32 MiB —
    and under load the loop stalled long enough for request timers to fire and view changes to
    follow; they also saw a block's writes before its transaction committed. With a connection
    each, WAL gives every reader the last committed state and never makes it wait for the
    writer (one writer at a time: all writes happen on one thread).
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._here()  # the opening thread's, at once: a bad file is refused here

    def _here(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _connect_one(self._path)
            with self._lock:
                self._all.append(conn)
        return conn

    def execute(self, sql: str, parameters=()) -> sqlite3.Cursor:
        return self._here().execute(sql, parameters)

    def executemany(self, sql: str, rows) -> sqlite3.Cursor:
        return self._here().executemany(sql, rows)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


def connect(path: Path) -> ThreadConnections:
    """The ledger database at ``path``: a connection per thread (:class:`ThreadConnections`)."""
    return ThreadConnections(path)


def assemble_outputs(
    screened: Sequence[Transaction | TransactionRefused],
    results: Sequence[TxResult],
    writes: Mapping[tuple[str, str], bytes | None],
) -> BlockOutputs:
    """Merge the refusals, the executor's results and the nonce writes into the outputs."""
    admitted = [item for item in screened if isinstance(item, Transaction)]
    if len(results) != len(admitted):
        raise LedgerError(f"executor returned {len(results)} results for {len(admitted)} transactions")
    if any(ns == NONCE_NAMESPACE for ns, _ in writes):
        raise LedgerError(f"contracts may not write namespace {NONCE_NAMESPACE!r}")
    given = iter(results)
    merged = [next(given) if isinstance(item, Transaction) else TxResult.refused(item) for item in screened]
    return BlockOutputs.of(merged, {**writes, **nonce_writes(screened)})


RECENT_BLOCKS = 256
"""How many recently applied blocks' hashes and state roots the ledger keeps in memory
(:meth:`ChannelLedger.root_after`, :meth:`ChannelLedger.block_hash`)."""


class ChannelLedger:
    """The blocks and state of one channel. Open with :meth:`open`; not thread-safe."""

    def __init__(self, conn: "sqlite3.Connection | ThreadConnections", channel: str, genesis: Genesis, *, cache_nodes: int,
                 signature_known: Callable[[bytes], bool] = nothing_verified) -> None:
        self._conn = conn
        self.channel = channel
        self.genesis = genesis
        # requests whose signature this node has verified already (its API's and relay's cache)
        self._signature_known = signature_known
        conn.execute(BLOCKS_SCHEMA)
        self.state = WorldState(conn, cache_nodes=cache_nodes)
        # The state's $nonce namespace, mirrored: every request a node validates looks its
        # creator's nonce up, and a dict lookup costs a fraction of an SQLite query. Loaded
        # here, kept right by _apply (the only path by which blocks change the state).
        self._nonces: dict[str, int] = {creator: read_nonce(value) for creator, value in self.state.scan(NONCE_NAMESPACE)}
        self._head: tuple[int, bytes, bytes] | None = None  # height, hash, outputs digest
        # What readers see: the last block whose writes are applied, its hash and the state root
        # after it, replaced as one tuple once a block is applied. A node executes blocks on
        # another thread than the one answering status and anchoring, so a reader must never see
        # a block stored but not applied, or a root that belongs to no height (nodes/execution.py).
        self._applied: tuple[int, bytes, bytes] | None = None
        self._recent: BoundedDict[int, tuple[bytes, bytes]] = BoundedDict(RECENT_BLOCKS)  # recent height -> (hash, root after it)

    @classmethod
    def open(cls, path: Path, channel: str, genesis: Genesis, *, cache_nodes: int = 65_536,
             signature_known: Callable[[bytes], bool] = nothing_verified) -> ChannelLedger:
        """Open (creating with block 0 if new) and recover the ledger at ``path``."""
        if channel not in genesis.channels:
            raise LedgerError(f"unknown channel {channel!r}")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        ledger = cls(connect(Path(path)), channel, genesis, cache_nodes=cache_nodes, signature_known=signature_known)
        try:
            ledger._recover()
        except BaseException:
            ledger.close()
            raise
        return ledger

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ChannelLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- recovery -----------------------------------------------------------------------

    def _recover(self) -> None:
        row = self._conn.execute("SELECT MAX(height) FROM blocks").fetchone()
        if row[0] is None:
            block = genesis_block(self.channel, self.genesis.digest)
            self._insert(block, None)
            self.state.apply_block(0, {})
        first = self.header(0)
        if first.channel != self.channel or first.genesis_digest != self.genesis.digest:
            raise LedgerError(f"{self.channel}: this database belongs to another channel or consortium")
        head = self._conn.execute("SELECT MAX(height) FROM blocks").fetchone()[0]
        tail = self.block(head).block
        if head > 0 and tail.header.prev_hash != self.block_hash(head - 1):
            raise StoreCorrupt(f"{self.channel}: block {head} does not link to block {head - 1}")
        applied = self.state.applied_height
        if applied > head:
            raise StoreCorrupt(f"{self.channel}: state applied to {applied} beyond the last block {head}")
        for height in range(applied + 1, head + 1):
            self._apply(self.block(height).block)
        self._head = (head, tail.hash, tail.outputs.digest())
        self._publish(head, tail.hash, self.state.root)

    def _apply(self, block: Block, staged: StagedWrites | None = None) -> bytes:
        """Apply a stored block's writes (``staged`` by :meth:`append`, or staged here)."""
        staged = staged or self.state.stage(block.outputs.write_map())
        writes = staged.writes
        root = self.state.apply_block(block.height, staged)
        nonces = self._nonces
        for (namespace, creator), value in writes.items():
            if namespace == NONCE_NAMESPACE:
                if value is None:
                    nonces.pop(creator, None)
                else:
                    nonces[creator] = read_nonce(value)
        following = self._conn.execute("SELECT header FROM blocks WHERE height = ?", (block.height + 1,)).fetchone()
        if following is not None and Header.from_bytes(following[0]).state_root != root:
            raise StoreCorrupt(f"{self.channel}: state root after block {block.height} differs from block {block.height + 1}'s")
        return root

    def _publish(self, height: int, block_hash: bytes, root: bytes) -> None:
        self._applied = (height, block_hash, root)
        self._recent.put(height, (block_hash, root))

    # -- reading ------------------------------------------------------------------------

    @property
    def height(self) -> int:
        """The height of the last block committed and applied."""
        return self._applied[0]

    @property
    def head_hash(self) -> bytes:
        return self._applied[1]

    @property
    def applied(self) -> tuple[int, bytes, bytes]:
        """(height, hash, state root after it) of the last applied block, read as one."""
        return self._applied

    def root_after(self, height: int) -> bytes | None:
        """The state root after a recently applied block (``None`` once it is out of memory)."""
        recent = self._recent.get(height)
        return None if recent is None else recent[1]

    def anchor(self) -> Anchor:
        """This chain's latest committed block, as a transaction-channel block anchors it."""
        return Anchor(self.height, self.head_hash)

    def block(self, height: int) -> StoredBlock:
        def parse(header: bytes, body: bytes, certificate: bytes | None) -> tuple:
            return (Block.from_stored(header, body),
                    None if certificate is None else CommitCertificate.from_value(decode(certificate)))
        return StoredBlock(*self._stored(height, "header, body, certificate", parse))

    def header(self, height: int) -> Header:
        """The header of block ``height`` alone: what :meth:`block` checks, without reading
        and decoding the requests and outputs (anchoring reads the head's at every height)."""
        return self._stored(height, "header", lambda header: (Header.from_bytes(header),))[0]

    def _stored(self, height: int, columns: str, parse) -> tuple:
        """Block ``height``'s stored ``columns``, parsed by ``parse`` into a tuple whose first
        item (the block or its header) must hash to the stored hash; a missing block is a
        :class:`LedgerError`, an unreadable or mismatched one :class:`StoreCorrupt`."""
        row = self._conn.execute(f"SELECT hash, {columns} FROM blocks WHERE height = ?", (height,)).fetchone()
        if row is None:
            raise LedgerError(f"{self.channel}: no block {height}")
        try:
            parsed = parse(*row[1:])
        except (BlockError, ValueError, KeyError, TypeError) as exc:
            raise StoreCorrupt(f"{self.channel}: block {height} cannot be read: {exc}") from None
        if parsed[0].hash != row[0]:
            raise StoreCorrupt(f"{self.channel}: block {height}'s stored hash is not its header's hash")
        return parsed

    def certified_batch(self, height: int) -> tuple[Batch, int, CommitCertificate]:
        """What a peer serves a lagging node: the batch, view and certificate of block ``height``.

        The lagging node checks the certificate against the genesis and re-executes the
        batch with :meth:`commit_batch`; execution is deterministic, so it arrives at the
        same block hash and state root (DESIGN.md, decision 5).
        """
        stored = self.block(height)
        if stored.certificate is None:
            raise LedgerError(f"{self.channel}: block {height} is the genesis block, it has no batch")
        return stored.block.batch(), stored.block.header.view, stored.certificate

    def block_hash(self, height: int) -> bytes:
        recent = self._recent.get(height)  # anchoring asks for recent heights at every PRE-PREPARE
        if recent is not None:
            return recent[0]
        row = self._conn.execute("SELECT hash FROM blocks WHERE height = ?", (height,)).fetchone()
        if row is None:
            raise LedgerError(f"{self.channel}: no block {height}")
        return row[0]

    def last_nonce(self, creator: str) -> int | None:
        """The last nonce ``creator`` used on this channel (the ``nonce_lookup`` of validation):
        its record in the state as of the last applied block."""
        return self._nonces.get(creator)

    # -- writing ------------------------------------------------------------------------

    def prepare(self, batch: Batch, view: int) -> Block:
        """The next block for a batch committed at sequence number ``height + 1``."""
        height, head_hash, outputs_digest = self._head
        # The header's view is 0, not ``view``: a batch committed in view v at some correct
        # replicas is re-proposed by the NEW-VIEW and commits in v+1 at the others, so the
        # commit view differs between replicas and would give the same block different
        # hashes (and their checkpoints different digests). Each node's stored certificate
        # keeps the view it saw the batch commit in.
        header = make_header(
            channel=self.channel, height=height + 1, prev_hash=head_hash, state_root=self.state.root,
            prev_outputs_digest=outputs_digest, batch=batch, view=BLOCK_VIEW,
        )
        return Block(header, tuple(batch.requests))

    def screen(self, block: Block) -> list[Transaction | TransactionRefused]:
        """Validate the block's requests as of its timestamp and the current nonces."""
        return screen_requests(
            block.requests, channel=self.channel, genesis=self.genesis,
            now=timestamp_to_datetime(block.header.timestamp_ms), nonce_lookup=self.last_nonce,
            signature_known=self._signature_known,
        )

    def commit_batch(self, batch: Batch, view: int, certificate: CommitCertificate, execute: Executor) -> Block:
        """Prepare, screen, execute (``execute`` runs the admitted transactions) and commit."""
        block = self.prepare(batch, view)
        screened = self.screen(block)
        results, writes = execute(block, [item for item in screened if isinstance(item, Transaction)])
        block = block.with_outputs(assemble_outputs(screened, results, writes))
        self.commit(block, certificate)
        return block

    def commit(self, block: Block, certificate: CommitCertificate) -> bytes:
        """Append ``block`` durably, then apply its writes; return the new state root."""
        staged = self.append(block, certificate)
        root = self._apply(block, staged)
        self._publish(block.height, block.hash, root)
        return root

    def append(self, block: Block, certificate: CommitCertificate) -> StagedWrites:
        """Store ``block`` (with outputs) and its certificate durably; check it extends the
        chain. Returns its writes as staged to check them (what :meth:`_apply` applies)."""
        height, head_hash, outputs_digest = self._head
        h = block.header
        if block.outputs is None:
            raise LedgerError("a block is stored with its outputs; execute it first")
        if self.state.applied_height != height:
            raise LedgerError(f"state at {self.state.applied_height} lags block {height}")
        problems = [
            (h.channel == self.channel, f"block is for channel {h.channel!r}"),
            (h.height == height + 1 and h.seq == h.height, f"block {h.height} (seq {h.seq}) does not follow {height}"),
            (h.prev_hash == head_hash, "prev_hash is not the head's hash"),
            (h.state_root == self.state.root, "state_root is not the state's root"),
            (h.prev_outputs_digest == outputs_digest, "prev_outputs_digest is not the head's"),
            (block.batch().digest() == h.batch_digest, "batch_digest does not match the batch"),
            (len(block.outputs.results) == len(block.requests), "one result per request is required"),
            ((certificate.channel, certificate.seq, certificate.batch_digest)
             == (h.channel, h.seq, h.batch_digest), "certificate is for another batch"),
        ]
        for ok, message in problems:
            if not ok:
                raise LedgerError(f"{self.channel}: block {h.height}: {message}")
        # A stored block whose writes cannot be applied would fail recovery on every open.
        try:
            staged = self.state.stage(block.outputs.write_map())
        except StateError as exc:
            raise LedgerError(f"{self.channel}: block {h.height}: {exc}") from None
        self._insert(block, certificate)
        self._head = (h.height, block.hash, block.outputs.digest())
        return staged

    def _insert(self, block: Block, certificate: CommitCertificate | None) -> None:
        conn = self._conn
        conn.execute("PRAGMA synchronous=FULL")
        with transaction(conn):
            conn.execute(
                "INSERT INTO blocks (height, hash, header, body, certificate) VALUES (?, ?, ?, ?, ?)",
                (block.height, block.hash, block.header.to_bytes(), block.body_bytes(),
                 None if certificate is None else encode(certificate.to_value())),
            )
        conn.execute("PRAGMA synchronous=NORMAL")

    def blocks(self, start: int = 0, end: int | None = None) -> Iterator[StoredBlock]:
        """Stored blocks ``start <= height < end`` (one query per block: nothing accumulates)."""
        last = self.height if end is None else end - 1
        for height in range(start, last + 1):
            yield self.block(height)
