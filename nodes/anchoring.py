"""Anchors at the node: checked before a backup prepares, awaited before a block executes.

Every block anchors the latest committed (height, hash) of the other two channels
(p2pchain/ledger/block.py, :class:`~p2pchain.ledger.block.Anchors`; docs/ledger.md). A
contract reads another channel only as of those heights (``ctx.read``), so the read is the
same on every node. This module is what makes that true on a live node:

* **Intake** (:class:`AnchorGate`, pure): a PRE-PREPARE is judged before the replica sees
  it. Malformed metadata, an anchor to a height this node committed with a *different*
  hash, or an anchor below the anchors of this channel's last committed block is
  **refused** (counted in ``p2pchain_refused_total{edge="anchors"}`` and logged): no honest
  backup prepares it, so a Byzantine primary's forged anchors never gather a quorum and its
  request timers bring a view change. An anchor to a height this node has not committed
  yet is **held** (at most the watermark window per channel; beyond, dropped and counted)
  and handed to the replica once the local chain reaches that height -- or dropped then, if
  the hash differs. A PRE-PREPARE inside a NEW-VIEW is not gated here: it was prepared by
  2f+1 replicas, f+1 of them honest, which checked it; execution waits for its anchors.
* **Execution** (:class:`ExecutionQueue`): a committed block whose anchored heights this
  node has not reached yet is executed only once it has; later blocks of the channel queue
  behind it (the replica accepts a late ``BlockExecuted``). The node's catch-up brings the
  missing heights.
* **Reading** (:class:`LedgerReader`): the ``AnchoredReader`` the contract worker reads
  other channels through, at the anchored heights (``WorldState.as_of``).

Why no two channels can wait on each other: an honest node anchors only blocks it has
committed, and a block is prepared only by replicas that checked (or held until they could
check) that each anchor names a committed block. So an anchor always names a block committed
*before* the anchoring block was proposed. If block *a* of channel A waited for block *b* of
B while *b* waited (directly or through its predecessors, which execute first) for a block
of A at or after *a*, then *b* was committed before *a* was proposed, and that block of A
before *b* was proposed: *a* before *a* -- impossible.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from p2pchain.consensus.messages import PrePrepare
from p2pchain.ledger.block import Anchor, Anchors, BlockError, anchored_channels, metadata_anchors

__all__ = ["Verdict", "AnchorGate", "ExecutionQueue", "LedgerReader", "NodeAnchoring", "anchors_of",
           "anchors_reached"]

log = logging.getLogger("p2pchain.node")


def anchors_of(channel: str, metadata: bytes) -> Anchors | None:
    """The anchors in a committed batch's metadata; ``None`` for none (a null batch) or for
    malformed ones -- every node sees the same bytes, so every node decides alike, and
    ``p2pchain verify`` names the block."""
    if metadata == b"":
        return None
    try:
        return Anchors.from_metadata(metadata, channel)
    except BlockError:
        return None


def anchors_reached(channel: str, metadata: bytes, heads: Callable[[str], int]) -> bool:
    """Whether this node has committed every height a batch of ``channel`` anchors."""
    anchors = anchors_of(channel, metadata)
    return anchors is None or all(heads(name) >= anchor.height for name, anchor in anchors.by_channel)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the gate decided about one consensus message: ``deliver``, ``hold`` or ``refuse``
    (``reason`` is a short code for the metrics, ``detail`` the log line's explanation)."""

    action: str
    reason: str = ""
    detail: str = ""
    waits_for: tuple[tuple[str, int], ...] = ()  # hold: (channel, height) not committed here yet


DELIVER = Verdict("deliver")


class AnchorGate:
    """The anchors of incoming PRE-PREPAREs, judged against this node's ledgers (no I/O).

    ``heads(channel)`` is this node's committed height of a channel; ``hash_at(channel,
    height)`` the hash it stores there; ``floor(channel)`` the anchors of the channel's last
    committed block (or ``None``). ``window`` bounds the PRE-PREPAREs held per channel (the
    replica accepts none beyond its watermark window anyway).
    """

    def __init__(self, heads: Callable[[str], int], hash_at: Callable[[str, int], bytes],
                 floor: Callable[[str], Anchors | None], window: int) -> None:
        self.heads, self.hash_at, self.floor, self.window = heads, hash_at, floor, window
        # channel -> [(PRE-PREPARE, the (channel, height) it waits for)], in arrival order
        self.held: dict[str, list[tuple[PrePrepare, tuple[tuple[str, int], ...]]]] = {}
        # The highest anchor per (channel, anchored channel) in a PRE-PREPARE this node let
        # through or proposed: a primary never proposes below it (anchors never decrease).
        self.highest: dict[tuple[str, str], Anchor] = {}

    def judge(self, channel: str, message: Any) -> Verdict:
        if type(message) is not PrePrepare:
            return DELIVER
        batch = message.batch
        try:
            anchors = metadata_anchors(channel, batch.metadata, has_requests=bool(batch.requests))
        except BlockError as exc:
            return Verdict("refuse", "malformed_anchors", str(exc))
        if anchors is None:
            return DELIVER
        floor = self.floor(channel)
        missing = []
        for name, anchor in anchors.by_channel:
            if floor is not None and anchor.height < floor[name].height:
                return Verdict("refuse", "anchor_goes_back",
                               f"{name} anchored at {anchor.height}, below {floor[name].height} "
                               f"of the last committed {channel} block")
            if anchor.height > self.heads(name):
                missing.append((name, anchor.height))
            elif self.hash_at(name, anchor.height) != anchor.block_hash:
                return Verdict("refuse", "forged_anchor",
                               f"{name} block {anchor.height} is not the block committed at that height")
        if missing:
            return Verdict("hold", "anchor_not_committed",
                           "waits for " + ", ".join(f"{name} {height}" for name, height in missing), tuple(missing))
        return DELIVER

    def admit(self, channel: str, message: Any) -> Verdict:
        """Judge ``message``; hold it if it must wait (or refuse it when the hold is full)."""
        verdict = self.judge(channel, message)
        if verdict.action == "hold":
            held = self.held.setdefault(channel, [])
            if len(held) >= self.window:
                return Verdict("refuse", "anchor_hold_full", f"{len(held)} PRE-PREPAREs already wait; "
                               + verdict.detail)
            held.append((message, verdict.waits_for))
        elif verdict.action == "deliver":
            self.note(channel, message)
        return verdict

    def release(self) -> tuple[list[tuple[str, Any]], list[tuple[str, Any, Verdict]]]:
        """Judge the held PRE-PREPAREs again: (channel, message) to deliver now, in arrival
        order, and (channel, message, verdict) of those that turned out bad.

        One still short of a height it waited for keeps waiting unjudged (a loaded node holds
        dozens and commits a block at a time): what it waits for cannot have changed. It is
        judged in full, refusals included, once those heights are here."""
        deliver, refused = [], []
        heads = self.heads
        for channel in sorted(self.held):
            still = []
            for message, waits_for in self.held[channel]:
                if any(heads(name) < height for name, height in waits_for):
                    still.append((message, waits_for))
                    continue
                verdict = self.judge(channel, message)
                if verdict.action == "hold":
                    still.append((message, verdict.waits_for))
                elif verdict.action == "refuse":
                    refused.append((channel, message, verdict))
                else:
                    self.note(channel, message)
                    deliver.append((channel, message))
            self.held[channel] = still
        return deliver, refused

    def note(self, channel: str, message: Any) -> None:
        anchors = anchors_of(channel, message.batch.metadata) if type(message) is PrePrepare else None
        if anchors is not None:
            self.note_anchors(channel, anchors)

    def note_anchors(self, channel: str, anchors: Anchors) -> None:
        for name, anchor in anchors.by_channel:
            known = self.highest.get((channel, name))
            if known is None or anchor.height > known.height:
                self.highest[(channel, name)] = anchor

    def propose(self, channel: str, own: Mapping[str, Anchor]) -> Anchors:
        """A primary's anchors for a new batch of ``channel``: its own committed heads, or a
        higher anchor some earlier batch of the channel carried (a checked, committed block),
        so that a lagging primary never anchors below its predecessor."""
        chosen = {}
        for name in anchored_channels(channel):
            known = self.highest.get((channel, name))
            chosen[name] = known if known is not None and known.height > own[name].height else own[name]
        anchors = Anchors.for_block(channel, chosen)
        self.note_anchors(channel, anchors)
        return anchors


class ExecutionQueue:
    """A channel's committed batches, executed in order once their anchors are reached.

    ``execute(action)`` executes one ``ExecuteBatch``; ``ready(metadata)`` says whether this
    node has committed the heights its metadata anchors. :meth:`pump` is called again
    whenever another channel commits a block.
    """

    def __init__(self, execute: Callable[[Any], None], ready: Callable[[bytes], bool]) -> None:
        self._execute, self._ready = execute, ready
        self._waiting: deque = deque()
        self._pumping = False

    def submit(self, action: Any) -> None:
        self._waiting.append(action)
        self.pump()

    def pump(self) -> None:
        if self._pumping:
            return  # the loop below is running further up the stack and will see the queue
        self._pumping = True
        try:
            while self._waiting and self._ready(self._waiting[0].batch.metadata):
                self._execute(self._waiting.popleft())
        finally:
            self._pumping = False

    def ready(self, metadata: bytes) -> bool:
        return self._ready(metadata)

    def __len__(self) -> int:
        return len(self._waiting)


class LedgerReader:
    """``AnchoredReader`` over this node's ledgers: another channel's committed state as of
    the height this block anchors (``WorldState.as_of``). Only anchored channels are read;
    the contract context refuses the others with a ``ContractFault`` first."""

    def __init__(self, ledgers: Mapping[str, Any], heights: Mapping[str, int]) -> None:
        self._ledgers, self._heights = ledgers, dict(heights)

    def read(self, channel: str, namespace: str, key: str) -> bytes | None:
        return self._ledgers[channel].state.as_of(self._heights[channel]).get(namespace, key)


class NodeAnchoring:
    """The node's side of anchoring: the gate at message intake, the release of held
    PRE-PREPAREs and queued executions when a channel commits, and the primary's anchors."""

    def __init__(self, ledgers: Mapping[str, Any], engines: Mapping[str, Any], metrics, window: int) -> None:
        self.ledgers, self.engines, self.metrics = ledgers, engines, metrics
        self.gate = AnchorGate(self._head, self._hash_at, self._floor, window)
        self._release_scheduled = False
        self._floors: dict[str, tuple[int, Anchors | None]] = {}  # channel -> (height, its anchors)
        self.stopped = False

    def _head(self, channel: str) -> int:
        return self.ledgers[channel].height

    def _hash_at(self, channel: str, height: int) -> bytes:
        return self.ledgers[channel].block_hash(height)

    def _floor(self, channel: str) -> Anchors | None:
        """The anchors of the channel's last committed block (decoded once per height)."""
        ledger = self.ledgers[channel]
        cached = self._floors.get(channel)
        if cached is None or cached[0] != ledger.height:
            floor = anchors_of(channel, ledger.header(ledger.height).metadata) if ledger.height else None
            cached = self._floors[channel] = (ledger.height, floor)
        return cached[1]

    def reached(self, channel: str, metadata: bytes) -> bool:
        return anchors_reached(channel, metadata, self._head)

    def held_for_execution(self, channel: str) -> bool:
        """Does a PRE-PREPARE of ``channel`` wait here only for this node's own execution:
        every height it anchors is committed on this node (2f+1 nodes ordered it), just not
        applied yet? Then its wait is not the primary's fault, and the engine holds the
        request timer back (an honest primary anchors what it has applied, which a loaded
        backup may take a while to apply). Anchors above this node's committed heights do
        not count: those may be a faulty primary's invention."""
        for message, _ in self.gate.held.get(channel, ()):
            anchors = anchors_of(channel, message.batch.metadata)
            if anchors is not None and all(anchor.height <= self.engines[name].replica.last_committed
                                           for name, anchor in anchors.by_channel if name in self.engines):
                return True
        return False

    def reader(self, heights: Mapping[str, int]) -> LedgerReader:
        return LedgerReader(self.ledgers, heights)

    def propose(self, channel: str) -> bytes:
        own = {name: self.ledgers[name].anchor() for name in anchored_channels(channel)}
        return self.gate.propose(channel, own).to_metadata()

    def receive(self, engine, message: Any) -> str | None:
        """Hand ``message`` to ``engine`` now, later, or never; the refusal code if never (the
        node then closes the link it came by).

        A halted channel takes nothing more, and a PRE-PREPARE that waits for a height of a
        halted channel would wait for ever: both are dropped here and counted
        (``channel_halted``), with the link left up -- the fault is this node's (a full
        disk, say: the status names it), not the peer's.
        """
        if self._for_a_halted_channel(engine, message):
            self.metrics.refused.labels("peer", "channel_halted").inc()
            return None
        verdict = self.gate.admit(engine.channel, message)
        if verdict.action == "deliver":
            engine.receive(message)
            return None
        if verdict.action == "refuse":
            self._refused(engine.channel, message, verdict)
            return verdict.reason
        log.debug("%s: PRE-PREPARE %d held: %s", engine.channel, message.seq, verdict.detail)
        return None

    def _for_a_halted_channel(self, engine, message: Any) -> bool:
        if engine.halted:
            return True
        if type(message) is not PrePrepare:   # most messages: no set built on the way
            return False
        halted = {name for name, other in self.engines.items() if other.halted}
        if not halted:
            return False
        verdict = self.gate.judge(engine.channel, message)
        return verdict.action == "hold" and any(name in halted for name, _ in verdict.waits_for)

    def _refused(self, channel: str, message: Any, verdict: Verdict) -> None:
        self.metrics.refused.labels("anchors", verdict.reason).inc()
        log.warning("%s: PRE-PREPARE %d of view %d from %s refused: %s: %s", channel, message.seq, message.view,
                    message.sender, verdict.reason, verdict.detail)

    def committed(self) -> None:
        """A channel committed a block: soon, release what waited for it (not now: the engine
        that committed is mid-way through its own event)."""
        if not self._release_scheduled:
            self._release_scheduled = True
            asyncio.get_running_loop().call_soon(self._release)

    def stop(self) -> None:
        """The node closed its channels (shutdown, or a crash injected): release nothing more."""
        self.stopped = True
        self.gate.held.clear()

    def _release(self) -> None:
        self._release_scheduled = False
        if self.stopped:
            return
        deliver, refused = self.gate.release()
        for channel, message, verdict in refused:
            self._refused(channel, message, verdict)
        for channel, message in deliver:
            engine = self.engines.get(channel)
            if engine is not None:
                engine.receive(message)
        for engine in list(self.engines.values()):
            if not engine.halted:
                engine.execution.pump()
