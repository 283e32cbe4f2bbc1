"""Executing committed batches off the event loop (a mixin of :class:`~.engine.ChannelEngine`).

A committed batch becomes a block on the channel's *execution thread*: the ledger builds
the block, screens its transactions, the channel's worker process executes the admitted
ones, and the block is stored durably with its commit certificate before its state is
applied (``ChannelLedger.commit_batch``). The event loop meanwhile goes on with consensus
messages, client requests and the durable-state writes of the other blocks in flight:
the worker round trip and the block's fsync no longer hold every other message up. (SQLite
and the worker's pipe release the GIL while they wait.)

One thread per channel keeps the blocks in order; their results come back to the loop in
that order and are fed to the replica as ``BlockExecuted``. Everything that changes the
ledger runs on this thread — also state transfer (:mod:`.catchup`) — so two writers never
meet. The loop still *reads* the ledger (API, status); a read during a block sees either
side of it, never a mixture that lasts.
"""

from __future__ import annotations

import asyncio
import logging
import time

from p2pchain.consensus import BlockExecuted, ExecuteBatch
from p2pchain.encoding import decode, encode
from p2pchain.ledger.block import Block, TxResult
from p2pchain.ledger.transaction import Transaction, TransactionRefused, timestamp_to_datetime
from p2pchain.runtime.records import BlockContext, Invocation, RuntimeFault

from .anchoring import anchors_of
from .catchup import app_digest

__all__ = ["ExecutionMixin", "NonceTaken", "committed_transactions"]

log = logging.getLogger("p2pchain.node")


class NonceTaken(Exception):
    """A waited-for transaction cannot commit: another one of its client committed with its nonce."""

    def __init__(self, client: str, nonce: int, tx_id: bytes, height: int) -> None:
        super().__init__(f"nonce {nonce} of {client} was taken by transaction {tx_id.hex()} at height {height}; "
                         "this one will not commit (sign it again with a fresh nonce)")


def committed_transactions(block: Block) -> list[tuple[int, Transaction, TxResult]]:
    """(position, transaction, result) of each well-formed request of an executed block."""
    out = []
    for position, (request, result) in enumerate(zip(block.requests, block.outputs.results)):
        try:
            out.append((position, Transaction.from_bytes(request), result))
        except TransactionRefused:
            continue
    return out


def _ledger_result(result) -> TxResult:
    """A runtime result (canonical bytes) in the ledger's form (canonical values)."""
    if not result.ok:
        return TxResult("failed", result.reason or "failed")
    value = None if result.value is None else decode(result.value)
    return TxResult("ok", "", value, tuple(decode(event) for event in result.events))


class ExecutionMixin:
    """Needs from the engine: ``executor`` (a one-thread pool), ``ledger``, ``worker``,
    ``genesis``, ``channel``, ``tamper``, ``channel_metrics``, ``hooks``, ``feed``, ``halt``,
    ``_release_batch``, ``_digest_at``, ``_arrivals``, ``_batch_times``, ``_waiters``."""

    def _execute(self, action: ExecuteBatch) -> None:
        """Hand the batch to the execution thread; its result comes back as ``BlockExecuted``."""
        times = self._batch_times.get(action.seq)
        if times is not None:
            times[2] = time.monotonic()
        future = asyncio.get_running_loop().run_in_executor(self.executor, self._execute_here, action)
        future.add_done_callback(lambda done: self._executed(action, done))

    def _execute_here(self, action: ExecuteBatch) -> tuple[Block | None, bytes]:
        """On the execution thread: (the committed block or ``None`` if the ledger already had
        it, the application digest after it). The digest is taken here, before the next block
        can move the ledger on."""
        if action.seq <= self.ledger.height:  # executed before a crash, reported again on restart
            return None, self._digest_at(action.seq)
        block = self.ledger.commit_batch(action.batch, action.view, action.certificate, self._run_contracts)
        return block, app_digest(self.ledger)

    def _executed(self, action: ExecuteBatch, done: asyncio.Future) -> None:
        """On the event loop, in the order the batches were handed out (one thread)."""
        if self.halted or done.cancelled():
            return
        exc = done.exception()
        if isinstance(exc, RuntimeFault):
            self.halt(f"the contract worker could not execute block {action.seq}: {exc}")
            return
        if exc is not None:  # a ledger or disk failure: stop this channel rather than diverge
            log.error("%s: cannot commit block %d", self.channel, action.seq, exc_info=exc)
            self.halt(f"cannot commit block {action.seq}: {exc!r}")
            return
        block, state_digest = done.result()
        if block is not None:
            try:
                self._committed(block)
            except Exception as exc:  # the node's own record of it (its index: a full disk, say)
                log.error("%s: block %d committed, but not recorded", self.channel, action.seq, exc_info=exc)
                self.halt(f"block {action.seq} committed, but the node could not record it: {exc!r}")
                return
        # No per-request results: the replica sends no REPLY (replies=False, see the engine).
        self.feed(BlockExecuted(self.hooks.now_ms(), action.seq, state_digest, ()))
        self._release_batch()

    def _run_contracts(self, block: Block, admitted: list[Transaction]):
        # Malformed anchors never reach a commit at an honest backup (nodes/anchoring.py); a
        # block without anchors (a null batch) reads no other channel.
        decoded = anchors_of(self.channel, block.header.metadata)
        anchors = {} if decoded is None else decoded.heights()
        context = BlockContext(self.channel, block.height, block.hash, block.header.timestamp_ms, anchors)
        now = timestamp_to_datetime(block.header.timestamp_ms)
        invocations = [Invocation(tx.tx_id, tx.contract, tx.function, tx.args, self.genesis.identity(tx.creator, now=now))
                       for tx in admitted]
        result = self.worker.execute_block(context, invocations, self.ledger.state, self.hooks.reader(anchors))
        writes = result.write_map()
        if self.tamper and invocations:
            # Demonstration only (`p2pchain node --tamper`): this node behaves as if its copy of
            # the contracts wrote one thing more, so its state root parts from the others'.
            writes[("tampered", f"block/{block.height}")] = encode(block.height)
        return [_ledger_result(r) for r in result.results], writes

    def _committed(self, block: Block) -> list[tuple[int, Transaction, TxResult]]:
        """Account for a committed block: metrics, waiting clients, the node's hook.
        Returns its well-formed transactions, each parsed once for all of these."""
        metrics = self.channel_metrics
        metrics.height.set(block.height)
        now = time.monotonic()
        committed = committed_transactions(block)
        proposed, ordered, started = self._batch_times.pop(block.height, None) or (None, None, None)
        stages = metrics.stages
        for _, tx, result in committed:
            key = (tx.creator, tx.nonce)
            metrics.transactions[result.status].inc()
            arrived = self._arrivals.pop(key, None)
            if arrived is not None:
                metrics.commit_latency.observe(now - arrived)
                if started is not None and ordered is not None and arrived <= proposed:
                    stages["propose"].observe(proposed - arrived)
                    stages["agree"].observe(ordered - proposed)
                    stages["wait"].observe(started - ordered)
                    stages["execute"].observe(now - started)
            self._answer_waiters(key, block, tx, result)
        self.hooks.on_commit(self.channel, block, committed)
        return committed

    def _answer_waiters(self, key: tuple[str, int], block: Block, tx: Transaction, result: TxResult) -> None:
        """``tx`` committed with ``key``'s (client, nonce): its waiters get the commit; a
        waiter for another transaction with that nonce, :class:`NonceTaken`."""
        for tx_id, future in self._waiters.pop(key, ()):
            if future.done():
                continue
            if tx_id == tx.tx_id:
                future.set_result((block, tx.tx_id, result))
            else:
                future.set_exception(NonceTaken(tx.creator, tx.nonce, tx.tx_id, block.height))

