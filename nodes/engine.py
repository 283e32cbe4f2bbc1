"""One channel on one node: the PBFT replica driven by asyncio, the ledger, the contract worker.

The replica is sans-I/O (``p2pchain.consensus``): the engine feeds it events and carries
out the actions it returns, in order. Events are queued and handled one at a time, so an
action that produces an event (executing a batch produces ``BlockExecuted``) never re-enters
the replica. The one owner of the replica's state is this loop (CometBFT's rule).

* ``Persist`` — what changed in the replica's durable state is appended to its journal
  (SQLite, ``synchronous=FULL``; :mod:`.durablestore`) before any later action is carried
  out: a vote is never sent that a crash could make us forget.
* ``Send``/``Broadcast`` — framed with the channel name and handed to the peer links.
* ``SetTimer``/``CancelTimer`` — asyncio timers that feed ``TimerFired`` back.
* ``ExecuteBatch`` — on the channel's execution thread (:mod:`.execution`): the ledger
  builds the block, screens its transactions, the channel's worker process executes the
  admitted ones, and the block is stored durably with its commit certificate *before* its
  state is applied (``ChannelLedger.commit_batch``); ``BlockExecuted`` comes back in order.
* ``FetchState`` — state transfer: the certified blocks this node lacks are fetched from a
  peer, their certificates checked, their batches executed here (outputs are never taken on
  trust), and the resulting state digest compared with the certified checkpoint's.
* ``Trace``/``Fault`` — logged, counted, and published to ``/v1/events`` subscribers.

A worker that cannot compute a block (crash, resource breach) or a state that disagrees
with a certified checkpoint *halts the channel*: the node says so in its log and status
and takes no further part in that channel, rather than diverge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Callable

from p2pchain.bounded import BoundedDict
from p2pchain.consensus import (
    Broadcast, CancelTimer, FaultKind, ExecuteBatch, Fault, FetchState, Keyring,
    Persist, Received, Replica, RequestReceived, Send, SendReply, SetTimer, Start,
    TimerFired, Trace,
)
from p2pchain.consensus.events import TIMER_BATCH, TIMER_REQUEST
from p2pchain.consensus.events import Action
from p2pchain.consensus.durable import DurableState
from p2pchain.consensus.messages import CommittedEntry, PrePrepare
from p2pchain.encoding import digest
from p2pchain.genesis import Genesis
from p2pchain.ledger.block import Block
from p2pchain.ledger.smt import EMPTY
from p2pchain.ledger.store import ChannelLedger
from p2pchain.runtime.worker import ChannelWorker
from p2pchain.sim.trace import describe as describe_message

from .anchoring import ExecutionQueue, anchors_of
from .catchup import CatchUpMixin, app_digest
from .execution import ExecutionMixin, committed_transactions
from .durablestore import ChannelPersister, DurableReplicaStore

__all__ = ["ChannelEngine", "DurableReplicaStore", "app_digest", "committed_transactions"]

log = logging.getLogger("p2pchain.node")
LAZY_WRITE_S = 0.05
"""How long a changed durable state with nothing to send may wait for its write."""
PIPELINE_BATCHES = 1
"""Primary: a partial batch waits (past batch_timeout_ms) while this many of its batches
are in flight, so requests that arrive meanwhile join it. Every block costs each node the
same fixed work (votes, signatures, an fsync'd append, a worker round trip); small blocks
at moderate load spent the cores on that instead of on transactions. A full batch
(batch_max) is never held; a timer delivered late is within the replica's contract.
One rather than two (docs/performance.md, ninth session): at 300 tx/s the cluster's cores
are ~90 % busy, and a second batch in flight per channel only made the blocks smaller and
each one's agreement wait behind the other's -- p50 at 300 tx/s 92, 95, 94 and 95 ms
against 150, 145, 142 and 142; at 100 tx/s 35 and 41 against 50 and 53; the same at 30
tx/s; at saturation 934 and 922 committed tx/s against 888 and 913."""
MAX_BATCH_HOLD_S = 0.25
"""The longest a batch timer is held beyond batch_timeout_ms: under a backlog (execution
behind agreement) a held batch goes anyway after this long. 0.25 s rather than 0.05 s
(docs/performance.md, ninth session): at saturation the blocks grew from ~40 to ~80
transactions and the cluster committed 1,031 and 1,016 tx/s against 871 and 895, with
p50 at 100 and 300 tx/s unchanged within the runs' spread; far below the view-change
timeout, so a held batch never looks like a primary ignoring requests."""
LOOP_LAG_S = 0.25
"""A request timer that fires this much late says the node's own event loop was behind."""
MAX_LATE_REARMS = 2
"""Request timeouts in a row that a late firing may postpone (see _request_wait_is_ours)."""
CUT_OFF_S = 1.5
"""A peer not heard from for this long -- no frame, and no answer to the status this node
asks every peer for each PEER_POLL_S (nodes/node.py) -- is cut off from this node."""


def message_type(message) -> str:
    return type(message).__name__


@dataclass
class EngineHooks:
    """What the engine needs from the node around it (all plain callables)."""

    send: Callable[[str, str, Any], None]  # (peer, channel, message)
    broadcast: Callable[[str, Any], None]  # (channel, message)
    publish: Callable[[dict], None]  # an event for /v1/events subscribers
    fetch_blocks: Callable[[str, str, int, int], Any]  # async (peer, channel, start, end) -> [(header, body, cert)]
    anchors: Callable[[], bytes] = lambda: b""  # batch metadata the primary proposes
    reached: Callable[[bytes], bool] = lambda metadata: True  # are a batch's anchored heights committed here?
    held_for_execution: Callable[[], bool] = lambda: False  # does a PRE-PREPARE wait only for our own execution?
    reader: Callable[[dict], Any] = lambda heights: None  # other channels' state as of anchored heights
    on_commit: Callable[[str, Block, list], None] = lambda channel, block, committed: None
    now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000
    peers_heard: Callable[[float], int] = lambda within_s: 0  # how many peers were heard from within that many seconds
    relay: Callable[[str, list], None] = lambda channel, requests: None  # client requests to every peer again


def with_ledger_commits(saved: DurableState, ledger: ChannelLedger) -> DurableState:
    """``saved`` with the blocks ``ledger`` holds beyond its last execution that it lacks, as
    committed entries.

    A batch is executed, and its block stored with the commit certificate, as soon as it
    commits, while the replica's own record of that commit may still wait for a lazy
    write (``LAZY_WRITE_S``: nothing sent depended on it). After a crash the ledger can
    therefore be ahead of the persisted commits; if every node lost the same commit (all
    of them killed together), no peer could hand it back, and the channel waited for it
    for good. The certified blocks are a durable record of those commits: the replica
    gets them as committed entries and hands them out again on ``Start``, and the ledger,
    which has them, reports their digests (``ExecutionMixin._execute_here``).
    """
    have = {entry.seq for entry in saved.committed}
    found = [CommittedEntry(height, batch, certificate)
             for height in range(saved.last_executed + 1, ledger.height + 1) if height not in have
             for batch, _view, certificate in (ledger.certified_batch(height),)]
    if not found:
        return saved
    log.info("%s: %d committed block(s) the replica's persisted state lacks (it executed up to %d) "
             "taken from the ledger", ledger.channel, len(found), saved.last_executed)
    return replace(saved, committed=tuple(sorted((*saved.committed, *found), key=lambda entry: entry.seq)))


class ChannelEngine(ExecutionMixin, CatchUpMixin):
    def __init__(self, *, channel: str, node: str, genesis: Genesis, keyring: Keyring,
                 ledger: ChannelLedger, worker: ChannelWorker, durable: DurableReplicaStore,
                 hooks: EngineHooks, metrics, verifier, tamper: bool = False) -> None:
        self.channel, self.node, self.genesis = channel, node, genesis
        self.ledger, self.worker, self.durable = ledger, worker, durable
        self.hooks, self.metrics = hooks, metrics
        self.channel_metrics = metrics.for_channel(channel)
        self.halted: str | None = None
        self.tamper = tamper
        saved = durable.load(channel)
        # Restart from the last *persisted* executed seq even if the ledger holds more: the
        # blocks in between executed (on the execution thread) after the last write, so
        # their BlockExecuted never reached the persisted state. The replica hands those
        # batches out again; the ledger already has them and reports their digests, and the
        # replica rebuilds its own checkpoints from them.
        executed = None if saved is None else min(ledger.height, saved.last_executed)
        self.replica = Replica(
            channel=channel, name=node, keyring=keyring, nodes=genesis.node_names,
            config=genesis.consensus, verifier=verifier, propose_metadata=hooks.anchors,
            genesis_app_digest=self._genesis_digest(),
            durable=None if saved is None else with_ledger_commits(saved, ledger),
            executed_seq=executed, trace=True,
            # clients are answered from this node's committed blocks (_committed), so the
            # replica signs no REPLY per request that nobody would receive
            replies=False,
        )
        self.persister = ChannelPersister(durable, channel, saved)  # what is on disk: the journal's base
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"exec-{channel}")
        self._events: deque = deque()
        # Committed blocks wait for their anchored heights (nodes/anchoring.py); none runs once halted.
        self.execution = ExecutionQueue(self._execute, lambda metadata: not self.halted and hooks.reached(metadata))
        self._running = False
        self._dirty = False  # a Persist is owed before the outbox may be sent
        self._outbox: list[tuple[str | None, Any]] = []
        self._flush_scheduled = False
        self._writing = False  # a write of the durable state is in flight
        self._lazy: asyncio.TimerHandle | None = None  # a deferred write (nothing to send yet)
        self._batch_held = False  # the batch timer fired while PIPELINE_BATCHES were in flight
        self._late_rearms = 0  # request timeouts postponed in a row because they fired late
        self._cut_off = False  # a request timeout is waiting because fewer than 2f peers are heard from
        self._fetch_goal: FetchState | None = None
        self._peer_heights: dict[str, int] = {}  # peer -> the highest seq it showed (catchup.py)
        self._progress = (0, 0.0)  # (last executed, when it last moved)
        self._watchdog: asyncio.TimerHandle | None = None
        self._fetcher: asyncio.Task | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._waiters: dict[tuple[str, int], list[tuple[bytes, asyncio.Future]]] = {}  # (client, nonce) -> (tx id, future)
        self._arrivals: dict[tuple[str, int], float] = {}
        # seq -> [proposed (its PRE-PREPARE sent or accepted here), committed by consensus,
        # handed to the execution thread] (monotonic seconds), for the latency stages of the
        # transactions it carries (p2pchain_latency_stage_seconds)
        self._batch_times: BoundedDict[int, list] = BoundedDict(4096)
        self._tasks: set[asyncio.Task] = set()
        self.view = self.replica.view

    def _genesis_digest(self) -> bytes:
        """The digest at sequence number 0: block 0 and the empty state."""
        return digest([self.ledger.block_hash(0), EMPTY])

    # -- feeding the replica -------------------------------------------------------------

    def start(self) -> None:
        self.feed(Start(self.hooks.now_ms()))
        self._arm_watchdog()

    def stop(self, *, flush: bool) -> None:
        """Stop timers, waiters and the execution thread; with ``flush`` (a clean shutdown,
        not an emulated crash) also write what the replica changed since its last write."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._lazy is not None:
            self._lazy.cancel()
            self._lazy = None
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        for waiting in self._waiters.values():
            for _tx_id, future in waiting:
                if not future.done():
                    future.cancel()
        # The block being executed finishes (its ledger and worker are closed after this);
        # batches not started are dropped: the replica hands them out again after a restart.
        self.executor.shutdown(wait=True, cancel_futures=True)
        if flush:
            self._write_last()

    def _write_last(self) -> None:
        """Write the replica's changes not on disk yet (a lazy write still due, or what came
        after the write in flight) and wait for it. A crash loses them -- votes received,
        and commits whose blocks the ledger already holds (:func:`with_ledger_commits`
        gives those back) -- a clean stop need not: a cluster stopped and started again
        then resumes where it was."""
        if not self._dirty or self.halted:
            return
        self._dirty = False
        try:
            statements, _size = self.persister.prepare_replica(self.replica)
            self.durable.submit(statements).result(timeout=30)
        except Exception as exc:  # noqa: BLE001 -- stopping anyway; a restart recovers without it
            log.warning("%s: the last write of the replica's durable state failed: %s", self.channel, exc)

    def feed(self, event) -> None:
        """Queue ``event`` and handle every queued event, one at a time, in order."""
        if self.halted:
            return
        self._events.append(event)
        if self._running:
            return
        self._running = True
        try:
            while self._events and not self.halted:
                actions = self.replica.handle(self._events.popleft())
                self._perform(actions)
                if self.replica.view != self.view:
                    self._entered_view(self.replica.view)
        finally:
            self._running = False
        if (self._dirty or self._outbox) and not self._flush_scheduled:
            # Group commit: frames that arrive in the same turn of the event loop share one
            # write of the durable state; their sends wait for it.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write the durable state once for all the events handled since the last write, then send.

        The replica asks for ``Persist`` before the actions after it; deferring every send
        to after the write keeps that order (nothing leaves before the write that covers it).
        The write and its fsync run on the store's own thread, so the event loop goes on
        handling messages meanwhile; whatever they produce waits for the next write, which
        then serves the whole burst (group commit).
        """
        self._flush_scheduled = False
        if self.halted:
            return
        if self._writing:
            return  # the write in flight will call us again when it is done
        outbox, self._outbox = self._outbox, []
        if not self._dirty:
            self._send_all(outbox)
            return
        if not outbox:
            # Nothing leaves yet, so nothing yet depends on this state being on disk: a crash
            # now loses only votes received since the last write, as if the network had
            # dropped them (peers retransmit). It is written with the next send, or after
            # LAZY_WRITE_S, whichever comes first; an fsync per received vote would otherwise
            # hold up the sends that do need one.
            if self._lazy is None:
                self._lazy = asyncio.get_running_loop().call_later(LAZY_WRITE_S, self._write_lazily)
            return
        self._write(outbox)

    def _write_lazily(self) -> None:
        self._lazy = None
        if self._dirty and not self._writing and not self.halted:
            self._write([])

    def _write(self, outbox: list[tuple[str | None, Any]]) -> None:
        """Write what changed in the durable state on the store's thread, then send ``outbox``."""
        if self._lazy is not None:
            self._lazy.cancel()
            self._lazy = None
        self._dirty = False
        # What changed since the last write (a journal delta; now and then a whole snapshot),
        # taken here: later events go into the next write.
        statements, size = self.persister.prepare_replica(self.replica)
        self._writing = True
        started = time.perf_counter()
        future = asyncio.wrap_future(self.durable.submit(statements))

        def written(done: asyncio.Future) -> None:
            self._writing = False
            if done.cancelled() or done.exception() is not None:
                self.halt(f"cannot write the replica's durable state: {done.exception() if not done.cancelled() else 'cancelled'}")
                return
            self.channel_metrics.persist_seconds.observe(time.perf_counter() - started)
            self.channel_metrics.persist_bytes.set(size)
            self._send_all(outbox)
            if self._dirty or self._outbox:
                self._flush()

        future.add_done_callback(written)

    def _send_all(self, outbox: list[tuple[str | None, Any]]) -> None:
        for to, message in outbox:
            if to is None:
                self.hooks.broadcast(self.channel, message)
            else:
                self.hooks.send(to, self.channel, message)

    def _entered_view(self, view: int) -> None:
        self.view = view
        self.channel_metrics.view.set(view)
        self.channel_metrics.view_changes.inc()
        log.info("%s: view %d, primary %s", self.channel, view, self.replica.ctx.primary(view))

    def receive(self, message) -> None:
        self.channel_metrics.messages_in[message_type(message)].inc()
        if type(message) is PrePrepare:
            self._batch_seen(message.seq)
        self.feed(Received(self.hooks.now_ms(), message))

    def _batch_seen(self, seq: int) -> None:
        """The first PRE-PREPARE for ``seq`` this node sent or accepted: when its batch was proposed."""
        if seq not in self._batch_times:
            self._batch_times.put(seq, [time.monotonic(), None, None])

    def submit(self, request: bytes, client: str, nonce: int, *, wait: bytes | None = None) -> asyncio.Future | None:
        """Hand a validated client request to the replica; with ``wait`` (the request's
        transaction id), a future for its result. The future fails with
        :class:`~.execution.NonceTaken` if another transaction of the client commits with
        this nonce instead (both were signed, e.g. by a client that restarted and resumed
        from a node still behind)."""
        key = (client, nonce)
        future = None
        if wait is not None:
            future = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(key, []).append((wait, future))
            future.add_done_callback(lambda done: self._forget_waiter(key, done))
        if nonce <= self.replica.clients.get(client, 0):
            # Committed already, not yet executed (execution runs behind commit on its own
            # thread, so the ledger's nonce check let it through): typically a relayed copy
            # that arrived late. The replica would only keep it in its request cache (and we
            # its arrival time) for good; a waiter is answered when the block executes.
            return future
        self._arrivals.setdefault(key, time.monotonic())
        self.feed(RequestReceived(self.hooks.now_ms(), request))
        return future

    def _forget_waiter(self, key: tuple[str, int], future: asyncio.Future) -> None:
        """A waiter given up (the client's wait timed out, or it went away) is dropped at once:
        a request that never commits would otherwise keep it, and its arrival time, for good."""
        if not future.cancelled():
            return
        waiting = self._waiters.get(key)
        if waiting is not None:
            waiting[:] = [(tx_id, other) for tx_id, other in waiting if other is not future]
            if not waiting:
                del self._waiters[key]
                self._arrivals.pop(key, None)

    # -- carrying out actions ------------------------------------------------------------

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            kind = type(action)
            if kind is Persist:
                self._dirty = True
            elif kind is Send:
                self.channel_metrics.messages_out[message_type(action.message)].inc()
                self._outbox.append((action.to, action.message))
                self._trace_message(action.to, action.message)
            elif kind is Broadcast:
                if type(action.message) is PrePrepare:
                    self._batch_seen(action.message.seq)
                self.channel_metrics.messages_out[message_type(action.message)].inc()
                self._outbox.append((None, action.message))
                self._trace_message(None, action.message)
            elif kind is SetTimer:
                self._set_timer(action.timer, action.delay_ms)
            elif kind is CancelTimer:
                if action.timer == TIMER_BATCH:
                    self._batch_held = False
                handle = self._timers.pop(action.timer, None)
                if handle is not None:
                    handle.cancel()
            elif kind is ExecuteBatch:
                self._batch_seen(action.seq)  # (state transfer or a NEW-VIEW may bring a batch unseen)
                self._batch_times[action.seq][1] = time.monotonic()
                self.execution.submit(action)
            elif kind is SendReply:
                pass  # none come (replies=False): clients are answered from committed blocks
            elif kind is FetchState:
                # One transfer at a time per channel; a later request only raises its goal.
                self._fetch_goal = action
                if self._fetcher is None or self._fetcher.done():
                    self._fetcher = asyncio.get_running_loop().create_task(self._fetch_until_goal())
                    self._tasks.add(self._fetcher)
                    self._fetcher.add_done_callback(self._tasks.discard)
            elif kind is Trace:
                self._trace(action)
            elif kind is Fault:
                self.metrics.faults.labels(self.channel, action.kind.value, action.peer).inc()
                log.log(logging.DEBUG if action.kind.ordinary else logging.WARNING, "%s: fault from %s: %s: %s",
                        self.channel, action.peer, action.kind.value, action.detail)
                self.hooks.publish({"type": "fault", "channel": self.channel, "node": self.node,
                                    "kind": action.kind.value, "peer": action.peer, "detail": action.detail})
                if action.kind is FaultKind.STATE_DIVERGENCE and action.peer == self.node:
                    # DESIGN.md decision 5: a node whose state differs from what 2f+1 nodes
                    # certified stops this channel and says so, rather than go on diverging.
                    self.halt(f"state root differs from the one 2f+1 nodes certified: {action.detail}")
                    return

    def _set_timer(self, name: str, delay_ms: int) -> None:
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        if name == TIMER_BATCH:
            self._batch_held = False
            if self._in_flight() == 0:
                # Nothing of ours in flight: waiting batch_timeout_ms for company would only
                # add latency; requests of this turn of the loop still share the batch.
                delay_ms = 0
        loop = asyncio.get_running_loop()
        due = loop.time() + delay_ms / 1000

        def fire() -> None:
            self._timers.pop(name, None)
            if name == TIMER_REQUEST and self._request_wait_is_ours(loop.time() - due):
                self._set_timer(name, delay_ms)  # a timer delivered late is within the replica's contract
                return
            if (name == TIMER_BATCH and self._in_flight() >= PIPELINE_BATCHES
                    and loop.time() < due + MAX_BATCH_HOLD_S):
                # delivered when a batch in flight has executed (_release_batch), or at the
                # latest MAX_BATCH_HOLD_S late, whatever the replica's view has become
                self._batch_held = True
                self._timers[name] = loop.call_later(MAX_BATCH_HOLD_S / 4, fire)
                return
            self._batch_held = False
            self.feed(TimerFired(self.hooks.now_ms(), name))

        self._timers[name] = loop.call_later(delay_ms / 1000, fire)

    def _request_wait_is_ours(self, late_s: float) -> bool:
        """Should a request timeout wait instead of suspecting the primary?

        * A PRE-PREPARE waits until the heights it anchors, committed here, are applied: the
          wait is this node's own execution (the replica itself knows when its *own*
          channel's execution lags).
        * The timer fires more than LOOP_LAG_S late: this node's event loop was too busy (an
          overloaded machine, a burst of client requests) to hear the network, and the votes
          that would have restarted the timer may be waiting, unread, in its sockets. At most
          MAX_LATE_REARMS times in a row, so a node kept busy on purpose still suspects a
          primary that orders nothing, only later.
        * Fewer than 2f peers have been heard from within CUT_OFF_S: this node is cut off
          from a quorum (a partition, the isolate fault) and cannot tell that from a faulty
          primary. A view change needs 2f+1 VIEW-CHANGEs, so with fewer than 2f peers in
          reach it could not complete, and would leave this node a view ahead of the others
          once it hears them again, out of the ordering until their next view change (PBFT
          gives no way back down to the old view). Alone (the isolate fault) or with f
          peers (a 2|2 split of four nodes), it waits until it hears 2f; a primary that is
          really faulty is suspected then, and the others' VIEW-CHANGEs, once heard, pull
          it along anyway (f+1).
        * The first timeout after such a wait: the node has just heard a quorum again, and
          the requests it holds were most likely ordered without it meanwhile. It waits one
          timeout more, long enough for its status polls to show it the others' heights
          and for it to fetch what it missed (nodes/catchup.py); suspecting the primary at
          once would take it a view ahead alone, the very thing the wait avoided. It also
          relays the requests it holds to every peer again: those that reached it while it
          was cut off never reached the primary (a client that times out sends its request
          to every replica for the same reason, OSDI'99 §4.1), and the primary can order
          them now instead of being replaced for missing them.
        """
        if self.hooks.held_for_execution():
            return True
        needed = 2 * self.replica.f
        heard = self.hooks.peers_heard(CUT_OFF_S)
        if heard < needed:
            if not self._cut_off:
                self._cut_off = True
                log.warning("%s: %d peer(s) heard from in the last %.1f s, fewer than the %d a view change "
                            "needs: not suspecting the primary while cut off (waiting to hear more)",
                            self.channel, heard, CUT_OFF_S, needed)
            return True
        if self._cut_off:
            self._cut_off = False
            pending = list(self.replica.pending)
            log.info("%s: %d peers heard again: one more timeout to learn how far they are before "
                     "suspecting the primary; the %d request(s) held here relayed to them again",
                     self.channel, heard, len(pending))
            self.hooks.relay(self.channel, pending)
            return True
        if late_s > LOOP_LAG_S and self._late_rearms < MAX_LATE_REARMS:
            self._late_rearms += 1
            log.info("%s: request timer fired %.2f s late (this node was busy): waiting once more "
                     "before suspecting the primary", self.channel, late_s)
            return True
        self._late_rearms = 0
        return False

    def _in_flight(self) -> int:
        """Batches this replica proposed that have not executed here yet."""
        return self.replica.next_seq - 1 - self.replica.last_executed

    def _release_batch(self) -> None:
        """A batch executed: a held batch timer may fire now."""
        if self._batch_held and self._in_flight() < PIPELINE_BATCHES:
            self._batch_held = False
            handle = self._timers.pop(TIMER_BATCH, None)
            if handle is not None:
                handle.cancel()
            self.feed(TimerFired(self.hooks.now_ms(), TIMER_BATCH))

    def _trace(self, action: Trace) -> None:
        if action.kind == "request-timeout":
            # Why this node gives up on the primary, in its log: what it had ordered and done.
            replica = self.replica
            log.warning("%s: requests waited %d ms in view %d (%d pending): starting a view change; "
                        "committed %d, executed %d, stable checkpoint %d, next proposal %d, "
                        "%d committed batches waiting for anchors", self.channel, replica.view_change_timeout_ms,
                        replica.view, len(replica.pending), replica.last_committed, replica.last_executed,
                        replica.low, replica.next_seq, len(self.execution))
        self.hooks.publish({"type": "trace", "channel": self.channel, "node": self.node,
                            "kind": action.kind, **action.fields})

    def _trace_message(self, to: str | None, message) -> None:
        """The dashboard's message flow (nodes/ui): one ``send`` trace per message the replica
        sends (``to`` is ``"*"`` for a broadcast), summarised as the simulator's trace does.
        What a fault at the node's edge then does to it (nodes/faults.py) is not shown here."""
        self.hooks.publish({"type": "trace", "channel": self.channel, "node": self.node,
                            "kind": "send", "to": to or "*", "msg": describe_message(message)})

    # -- execution -----------------------------------------------------------------------

    def halt(self, reason: str) -> None:
        if self.halted:
            return
        self.halted = reason
        log.error("%s: CHANNEL HALTED on %s: %s", self.channel, self.node, reason)
        self.channel_metrics.halted.set(1)
        self.hooks.publish({"type": "halted", "channel": self.channel, "node": self.node, "reason": reason})
        self.stop(flush=False)
