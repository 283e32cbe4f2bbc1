"""How a channel engine catches up: state transfer and noticing that it is behind.

A mixin of :class:`nodes.engine.ChannelEngine`, kept apart because it is the one part of the
engine that talks to peers outside consensus messages.

* ``FetchState`` (the replica proved a checkpoint it lacks): fetch the certified blocks this
  node is missing from a peer's API, check each commit certificate, execute each batch here
  (outputs are never taken on trust), and compare the resulting state digest with the
  certified checkpoint's before telling the replica ``StateTransferred``. One transfer runs
  at a time per channel; a later request only raises its goal.
* The watchdog: a replica that missed the last messages of an idle cluster, or sits alone in
  a view change, does not know it is behind. Peers' progress (the sequence numbers in their
  messages and the heights in their ``/v1/status``, by authenticated peer) is a hint; when
  f + 1 peers are ahead of what this replica executed (so at least one honest node is) and
  nothing moved for a while, the replica is told ``CatchUp`` and asks its peers
  (FETCH-REQUEST). One Byzantine peer claiming a height far ahead moves nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time

from p2pchain.consensus import CatchUp, FetchState, StateTransferred
from p2pchain.encoding import digest
from p2pchain.ledger.block import Block
from p2pchain.runtime.records import RuntimeFault

__all__ = ["CatchUpMixin", "CATCH_UP_CHECK_S", "app_digest"]

log = logging.getLogger("p2pchain.node")
CATCH_UP_CHECK_S = 1.0
ANCHOR_POLL_S = 0.05  # a fetched block whose anchored heights are not committed here yet waits


def app_digest(ledger) -> bytes:
    """The application state digest PBFT checkpoints certify: the head block and the state root
    after it (the header covers the state *before* the block; the root covers its outputs)."""
    _height, head, root = ledger.applied
    return digest([head, root])


class CatchUpMixin:
    def _arm_watchdog(self) -> None:
        self._watchdog = asyncio.get_running_loop().call_later(CATCH_UP_CHECK_S, self._check_lag)

    def _check_lag(self) -> None:
        """Peers are ahead and this replica has not executed anything for a while (it was
        partitioned, or is alone in a view change): ask them for what it lacks. Checkpoint
        messages would tell it too, but only the next one, and an idle cluster sends none."""
        if self.halted:
            return
        executed, since = self._progress
        now = time.monotonic()
        if self.replica.last_executed != executed:
            self._progress = (self.replica.last_executed, now)
        elif now - since > CATCH_UP_CHECK_S:
            vouched = self.vouched_height()
            if vouched > executed:
                self.feed(CatchUp(self.hooks.now_ms(), vouched))
                self._progress = (executed, now)
        self._arm_watchdog()

    def note_peer_height(self, peer: str, height: int) -> None:
        """``peer`` (an authenticated consortium node) showed progress up to ``height``: a
        sequence number in one of its messages, or the height in its status. A hint only."""
        if height > self._peer_heights.get(peer, 0):
            self._peer_heights[peer] = height

    def vouched_height(self) -> int:
        """The highest height that f + 1 peers have each reached or passed: at least one of
        them is honest, so a faulty node cannot make this replica chase a height on its own."""
        f = self.genesis.consensus.f
        heights = sorted(self._peer_heights.values(), reverse=True)
        return heights[f] if len(heights) > f else 0

    async def _fetch_until_goal(self) -> None:
        while self._fetch_goal is not None and not self.halted:
            goal = self._fetch_goal
            await self._fetch_state(goal)
            if self._fetch_goal is goal:
                self._fetch_goal = None

    async def _fetch_state(self, action: FetchState) -> None:
        for peer in action.peers:
            if self.halted:
                return
            try:
                while self.ledger.height < action.seq:
                    start = self.ledger.height + 1
                    end = min(action.seq, start + 199)
                    stored = await self.hooks.fetch_blocks(peer, self.channel, start, end)
                    if not stored:
                        raise ValueError(f"{peer} has no blocks from {start}")
                    for block, certificate in stored:
                        if block.height <= self.ledger.height:
                            continue  # committed meanwhile through the normal protocol
                        problem = self._check_fetched(block, certificate)
                        if problem:
                            raise ValueError(f"{peer} sent block {block.height}: {problem}")
                        while not self.execution.ready(block.header.metadata):  # anchors first
                            if self.halted:
                                return
                            await asyncio.sleep(ANCHOR_POLL_S)
                        # on the execution thread, the ledger's one writer (nodes/execution.py)
                        committed = await asyncio.get_running_loop().run_in_executor(
                            self.executor, self.ledger.commit_batch, block.batch(), block.header.view,
                            certificate, self._run_contracts)
                        self._committed(committed)
                        if committed.height >= action.seq:
                            break
            except RuntimeFault as exc:
                self.halt(f"the contract worker failed during state transfer: {exc}")
                return
            except Exception as exc:  # a slow, absent or lying peer: try the next one
                log.warning("%s: state transfer from %s failed: %s", self.channel, peer, exc)
                continue
            mine = await asyncio.get_running_loop().run_in_executor(self.executor, self._digest_at, action.seq)
            if mine != action.state_digest:
                self.halt(f"state after block {action.seq} differs from the certified checkpoint "
                          f"({mine.hex()[:16]} vs {action.state_digest.hex()[:16]})")
                return
            log.info("%s: caught up to block %d by state transfer from %s", self.channel, action.seq, peer)
            self.feed(StateTransferred(self.hooks.now_ms(), action.seq, action.state_digest))
            return

    def _digest_at(self, seq: int) -> bytes:
        """The application digest after block ``seq`` (at most the head): the state root after
        a block is the next block's ``state_root``."""
        if seq >= self.ledger.height:
            return app_digest(self.ledger)
        return digest([self.ledger.block_hash(seq), self.ledger.header(seq + 1).state_root])

    def _check_fetched(self, block: Block, certificate) -> str | None:
        if certificate is None:
            return "no commit certificate"
        keys = {node.name: node.public_key for node in self.genesis.nodes}
        problem = certificate.check(keys, self.genesis.consensus.f)
        if problem:
            return problem
        if (certificate.channel, certificate.seq, certificate.batch_digest) != (self.channel, block.height, block.batch().digest()):
            return "certificate is for another batch"
        return None

    # -- halting -------------------------------------------------------------------------
