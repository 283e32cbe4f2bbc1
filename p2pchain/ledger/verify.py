"""Offline verification of one node's ledgers against the genesis (``p2pchain verify DIR``).

For every channel, block by block from block 0, the verifier checks

* **decoding and hash links**: each stored block decodes, its stored hash is its header's
  hash, heights are consecutive, ``prev_hash`` is the previous block's hash, block 0 is the
  genesis block of this channel and consortium;
* **transactions**: ``tx_root`` is the Merkle root of the requests, and every request is
  screened again exactly as the node screened it (signature against the creator's
  certificate in the genesis as of the block timestamp, channel policy, nonces from the
  re-computed state): an admitted request must be recorded as executed, a refused one as
  refused with the same code, and the nonce writes must be those of the admitted ones;
* **commit certificates**: the batch rebuilt from the header and requests has the digest in
  the header, and the certificate is for that digest at (channel, view, height) with 2f+1
  valid signatures of distinct genesis nodes (:meth:`CommitCertificate.check`);
* **state roots**: the state is *re-computed*, not re-executed — the write set of each
  block, stored in its body and committed by the next header's ``prev_outputs_digest``, is
  applied to a scratch world state, and the root must equal the next header's
  ``state_root``. Re-execution would need the contracts; the write sets suffice to check
  that the chain's state roots are consistent, and the honest executions agreed on them
  through the consensus on the following blocks. The node's own state tables are then
  compared, entry by entry and tree node by tree node, with the scratch state at the
  node's applied height — entries, history and tree nodes — so an altered state value is
  found and named;
* **anchors** (every channel; a block anchors the other two): each anchor names the hash
  the anchored channel stores at that height, and anchored heights never decrease. Only a
  block without requests may anchor nothing (empty metadata). An anchor beyond the anchored
  channel's stored head (a lagging node) is reported as a note, not a fault.

The first fault ends a channel's verification; the report names the block and the fault.
The write set of the head block is checked against the node's state only: no successor
commits to it yet.
"""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..encoding import EncodingError, decode
from ..genesis import CHANNELS, Genesis
from ..ordering import CommitCertificate
from .block import ZERO_HASH, Block, BlockError, anchored_channels, check_metadata, genesis_block, request_id
from .merkle import merkle_root
from .state import StateError, WorldState
from .store import ledger_path
from .transaction import (
    NONCE_NAMESPACE, TransactionRefused, nonce_writes, read_nonce, screen_requests,
    timestamp_to_datetime,
)

__all__ = ["ChannelReport", "Fault", "verify_channel", "verify_node"]

MAX_NOTES = 10


class Fault(Exception):
    """What is wrong with one block."""

    def __init__(self, height: int, message: str) -> None:
        super().__init__(f"block {height}: {message}")
        self.height = height
        self.message = message


@dataclass(frozen=True, slots=True)
class ChannelReport:
    channel: str
    verified_height: int  # the last block that passed every check; -1 if none
    transactions: int
    state_root: bytes | None  # after verified_height
    fault: Fault | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.fault is None

    def describe(self) -> str:
        if self.fault is not None:
            text = (f"{self.channel:12} FAULT at block {self.fault.height}: {self.fault.message} "
                    f"(verified to height {self.verified_height})")
        else:
            text = (f"{self.channel:12} ok: verified to height {self.verified_height}, "
                    f"{self.transactions} transactions, state root {self.state_root.hex()[:16]}…")
        return "\n".join([text] + [f"{'':12} note: {note}" for note in self.notes])


def _rows(conn: sqlite3.Connection) -> Iterator[tuple]:
    yield from conn.execute("SELECT height, hash, header, body, certificate FROM blocks ORDER BY height")


def _side_hash(side: dict[str, sqlite3.Connection | None], channel: str, height: int) -> bytes | None:
    conn = side.get(channel)
    if conn is None:
        return None
    row = conn.execute("SELECT hash FROM blocks WHERE height = ?", (height,)).fetchone()
    return None if row is None else row[0]


class _ChannelVerifier:
    def __init__(self, conn: sqlite3.Connection, channel: str, genesis: Genesis, scratch: WorldState,
                 side: dict[str, sqlite3.Connection | None]) -> None:
        self.conn, self.channel, self.genesis, self.scratch, self.side = conn, channel, genesis, scratch, side
        self.node_keys = {node.name: node.public_key for node in genesis.nodes}
        self.notes: list[str] = []
        self.suppressed_notes = 0
        self.transactions = 0
        self.prev_hash = ZERO_HASH
        self.prev_outputs_digest = ZERO_HASH
        self.prev_anchors = None

    def run(self) -> ChannelReport:
        applied = self._meta_height()
        verified = -1
        try:
            head = -1
            for row in _rows(self.conn):
                height = row[0]
                if height != verified + 1:
                    raise Fault(verified + 1, f"missing: the next stored block is {height}")
                self._block(*row)
                verified = head = height
                if height == applied:
                    self._compare_state(height)
            if head < 0:
                raise Fault(0, "the ledger holds no blocks")
            if applied < head:
                self._note(f"state applied to height {applied} of {head}: recovery re-applies the rest on open")
        except Fault as fault:
            # A block's outputs are judged by its successor: the fault may name an earlier block.
            verified = min(verified, fault.height - 1)
            return ChannelReport(self.channel, verified, self.transactions, None, fault, self._notes())
        return ChannelReport(self.channel, verified, self.transactions, self.scratch.root, None, self._notes())

    def _notes(self) -> tuple[str, ...]:
        more = [f"and {self.suppressed_notes} more notes"] if self.suppressed_notes else []
        return tuple(self.notes + more)

    def _note(self, text: str) -> None:
        """Keep the first few notes and count the rest: the report stays small."""
        self.suppressed_notes += len(self.notes) >= MAX_NOTES
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)

    def _meta_height(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE name = 'applied_height'").fetchone()
        return -1 if row is None else decode(row[0])

    def _block(self, height: int, stored_hash: bytes, header_bytes: bytes, body_bytes: bytes,
               certificate_bytes: bytes | None) -> None:
        try:
            block = Block.from_stored(header_bytes, body_bytes)
        except BlockError as exc:
            raise Fault(height, f"cannot be decoded: {exc}") from None
        h = block.header
        if block.hash != stored_hash:
            raise Fault(height, "the header does not hash to the stored block hash (header altered)")
        if (h.channel, h.height, h.seq) != (self.channel, height, height):
            raise Fault(height, f"header names channel {h.channel!r}, height {h.height}, seq {h.seq}")
        if h.prev_hash != self.prev_hash:
            raise Fault(height, "prev_hash is not the hash of the previous block")
        if block.outputs is None or len(block.outputs.results) != len(block.requests):
            raise Fault(height, "the body does not hold one result per request")
        if h.prev_outputs_digest != self.prev_outputs_digest:
            raise Fault(height - 1, f"its results or write set differ from those block {height} commits to")
        if h.state_root != self.scratch.root:
            raise Fault(height, f"state_root differs from the root re-computed after block {height - 1}")
        if height == 0:
            if block.hash != genesis_block(self.channel, self.genesis.digest).hash or block.requests \
                    or certificate_bytes is not None:
                raise Fault(0, "not the genesis block of this channel and consortium")
        else:
            if h.genesis_digest:
                raise Fault(height, "only block 0 carries the genesis digest")
            self._transactions(block)
            self._certificate(block, certificate_bytes)
            self._anchors(block)
        try:
            self.scratch.apply_block(height, block.outputs.write_map())
        except StateError as exc:
            raise Fault(height, f"write set cannot be applied: {exc}") from None
        self.prev_hash = block.hash
        self.prev_outputs_digest = block.outputs.digest()
        self.transactions += len(block.requests)

    def _transactions(self, block: Block) -> None:
        height = block.height
        if block.header.tx_root != merkle_root([request_id(r) for r in block.requests]):
            raise Fault(height, "tx_root is not the Merkle root of the stored requests")
        screened = screen_requests(
            block.requests, channel=self.channel, genesis=self.genesis,
            now=timestamp_to_datetime(block.header.timestamp_ms),
            nonce_lookup=lambda creator: read_nonce(self.scratch.get(NONCE_NAMESPACE, creator)),
        )
        for index, (item, result) in enumerate(zip(screened, block.outputs.results)):
            if isinstance(item, TransactionRefused):
                if result.status != "refused" or not result.reason.startswith(item.code + ":"):
                    what = "signature does not verify" if item.code == "bad_signature" else f"is invalid ({item})"
                    raise Fault(height, f"transaction {index}: {what}, but the block records it as {result.status!r}")
            elif result.status == "refused":
                raise Fault(height, f"transaction {index} ({item.tx_id.hex()[:16]}…) is valid but recorded as refused")
        recorded = {(ns, key): value for ns, key, value in block.outputs.writes if ns == NONCE_NAMESPACE}
        if recorded != nonce_writes(screened):
            raise Fault(height, "the nonce writes are not those of the admitted transactions")

    def _certificate(self, block: Block, certificate_bytes: bytes | None) -> None:
        height, h = block.height, block.header
        if block.batch().digest() != h.batch_digest:
            raise Fault(height, "the batch rebuilt from header and requests does not have the header's digest")
        if certificate_bytes is None:
            raise Fault(height, "no commit certificate is stored")
        try:
            certificate = CommitCertificate.from_value(decode(certificate_bytes))
        except (EncodingError, KeyError, TypeError, ValueError) as exc:
            raise Fault(height, f"commit certificate cannot be decoded: {exc!r}") from None
        # Any view: the same batch may commit in different views at different replicas
        # (see ChannelLedger.prepare); the signatures bind the certificate's own view.
        if (certificate.channel, certificate.seq, certificate.batch_digest) \
                != (self.channel, height, h.batch_digest):
            raise Fault(height, "commit certificate is for another channel, height or batch")
        problem = certificate.check(self.node_keys, self.genesis.consensus.f)
        if problem is not None:
            raise Fault(height, f"commit certificate: {problem}")

    def _anchors(self, block: Block) -> None:
        problem = check_metadata(self.channel, block.header.metadata, has_requests=bool(block.requests))
        if problem is not None:
            raise Fault(block.height, problem)
        anchors = block.header.anchors
        if anchors is None:
            return  # a null batch anchors nothing; the next block is compared with the last anchors
        for name in anchored_channels(self.channel):
            anchor = anchors[name]
            if self.prev_anchors is not None and anchor.height < self.prev_anchors[name].height:
                raise Fault(block.height, f"anchor of {name} goes back to height {anchor.height}")
            stored = _side_hash(self.side, name, anchor.height)
            if stored is None:
                self._note(f"block {block.height} anchors {name} block {anchor.height}, not stored here")
            elif stored != anchor.block_hash:
                raise Fault(block.height, f"anchor of {name} at height {anchor.height} is not the stored block's hash")
        self.prev_anchors = anchors

    def _compare_state(self, height: int) -> None:
        """The node's state tables must equal the re-computed ones at its applied height."""
        row = self.conn.execute("SELECT value FROM meta WHERE name = 'state_root'").fetchone()
        if row is None or row[0] != self.scratch.root:
            raise Fault(height, "the node's recorded state root differs from the re-computed one")
        ours = self.conn.execute("SELECT path, ns, key, value FROM state ORDER BY path")
        theirs = self.scratch._conn.execute("SELECT path, ns, key, value FROM state ORDER BY path")
        for stored, expected in zip_longest_rows(ours, theirs):
            if stored != expected:
                entry = stored or expected
                raise Fault(height, f"state entry {entry[1]}/{entry[2]} differs from what the blocks wrote")
        ours = self.conn.execute("SELECT ns, key, height, value FROM history ORDER BY ns, key, height")
        theirs = self.scratch._conn.execute("SELECT ns, key, height, value FROM history ORDER BY ns, key, height")
        for stored, expected in zip_longest_rows(ours, theirs, width=3):
            if stored != expected:
                entry = stored or expected
                raise Fault(height, f"state history of {entry[0]}/{entry[1]} at height {entry[2]} differs "
                                    "from what the blocks wrote")
        ours = self.conn.execute("SELECT pos, hash, leaf FROM smt ORDER BY pos")
        theirs = self.scratch._conn.execute("SELECT pos, hash, leaf FROM smt ORDER BY pos")
        for stored, expected in zip_longest_rows(ours, theirs):
            if stored != expected:
                entry = stored or expected
                raise Fault(height, f"state tree node at depth {int.from_bytes(entry[0][-2:], 'big')} differs")


def zip_longest_rows(a: Iterator[tuple], b: Iterator[tuple], width: int = 1) -> Iterator[tuple]:
    """Pairs of rows from two cursors ordered by their first ``width`` columns (the key).

    Yields ``(x, y)`` while keys agree; at the first key present on one side only, yields
    it paired with ``None`` and stops.
    """
    a, b = iter(a), iter(b)
    while True:
        x, y = next(a, None), next(b, None)
        if x is None and y is None:
            return
        if x is not None and y is not None and x[:width] != y[:width]:
            # Different keys: report the smaller one, which is present on one side only.
            yield (x, None) if x[:width] < y[:width] else (None, y)
            return
        yield x, y


def verify_channel(path: Path, channel: str, genesis: Genesis,
                   side: dict[str, sqlite3.Connection | None] | None = None) -> ChannelReport:
    """Verify one channel's database (opened without recovery; nothing is written to it)."""
    if not Path(path).exists():
        return ChannelReport(channel, -1, 0, None, Fault(0, f"no database at {path}"))
    # A plain connection, not mode=ro: a read-only one cannot open a WAL database whose
    # shared-memory file a killed node left behind. Nothing is written through it.
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        with tempfile.TemporaryDirectory(prefix="p2pchain-verify-") as scratch_dir:
            # Scratch state: thrown away afterwards, so no durability, no WAL.
            scratch_conn = sqlite3.connect(str(Path(scratch_dir) / "scratch.db"), isolation_level=None)
            scratch_conn.execute("PRAGMA journal_mode=MEMORY")
            scratch_conn.execute("PRAGMA synchronous=OFF")
            try:
                verifier = _ChannelVerifier(conn, channel, genesis, WorldState(scratch_conn), side or {})
                return verifier.run()
            finally:
                scratch_conn.close()
    except sqlite3.DatabaseError as exc:
        return ChannelReport(channel, -1, 0, None, Fault(0, f"database cannot be read: {exc}"))
    finally:
        conn.close()


def verify_node(node_dir: Path, genesis: Genesis, channels: tuple[str, ...] = CHANNELS) -> list[ChannelReport]:
    """Verify every channel of a node directory; each channel's anchors against the others."""
    side: dict[str, sqlite3.Connection | None] = {}
    for name in CHANNELS:
        path = ledger_path(node_dir, name)
        side[name] = sqlite3.connect(str(path)) if path.exists() else None
    try:
        reports = {c: verify_channel(ledger_path(node_dir, c), c, genesis, side) for c in channels}
    finally:
        for conn in side.values():
            if conn is not None:
                conn.close()
    return [reports[c] for c in channels]
