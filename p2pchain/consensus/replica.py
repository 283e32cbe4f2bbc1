"""The PBFT replica: a pure state machine, ``handle(event) -> list[Action]``.

Castro & Liskov, "Practical Byzantine Fault Tolerance", OSDI'99 (and TOCS 20(4), 2002).
The normal case (§4.2): the primary p = v mod n assigns sequence number n to a batch and
multicasts PRE-PREPARE(v, n, d); each backup that accepts it multicasts PREPARE(v, n, d);
a replica is *prepared* once it holds the pre-prepare and 2f matching prepares, then
multicasts COMMIT(v, n, d); it is *committed-local* with 2f+1 matching commits, and executes
batches in sequence order. Checkpoints (§4.3) are in :mod:`.checkpoint`, view changes
(§4.4) in :mod:`.viewchange` and this class's ``_views`` methods, state transfer in
:mod:`.statetransfer`.

Everything received is checked before use: signature by a member, channel, view,
watermarks, digests, and client requests through the injected ``RequestVerifier``. What
fails becomes a :class:`~.events.Fault` action; nothing a peer sends can make ``handle``
raise. ``handle`` raises :class:`ReplicaMisuse` only when the *shell* breaks the contract
(e.g. reports executing a sequence number it was never given).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Callable, Sequence

from ..genesis import ConsensusConfig
from ..ordering import Batch
from .checkpoint import CheckpointVotes
from .context import Context, RequestVerifier
from .durable import DurableSlot, DurableState
from .events import (TIMER_BATCH, TIMER_FETCH, TIMER_REQUEST, TIMER_VIEW_CHANGE, Action, BlockExecuted, Broadcast,
                     CancelTimer, Event, ExecuteBatch, Fault, FaultKind, Persist, Received,
                     RequestReceived, SendReply, SetTimer, Start, StateTransferred,
                     TimerFired, Trace)
from .keys import Keyring
from .log import Slot
from .messages import (Checkpoint, CheckpointState, Commit, CommittedEntry, FetchReply,
                       FetchRequest, NewView, PrePrepare, Prepare, PreparedCertificate,
                       Reply, ViewChange)
from .recovery import RecoveryMixin
from .views import ViewsMixin

__all__ = ["Replica", "ReplicaMisuse"]

_FIELDS: dict[type, tuple[str, ...]] = {}  # message type -> field names before the signature

FUTURE_BUFFER_LIMIT = 4096  # messages for a view not yet entered, kept until its NEW-VIEW


class ReplicaMisuse(Exception):
    """The shell broke the replica's contract (a local bug, not a peer's fault)."""


class Replica(ViewsMixin, RecoveryMixin):
    """One PBFT replica of one channel.

    Parameters
    ----------
    channel, name:
        The channel this instance orders and this node's name (as in the genesis).
    keyring:
        This node's signing key and the channel's node keys (:class:`~.keys.Keyring`).
    nodes:
        The channel's node names in genesis order; the primary of view v is nodes[v % n].
    config:
        ``genesis.consensus``: f, batch_max, batch_timeout_ms, checkpoint_interval (K),
        watermark_window (L, a multiple of K), view_change_timeout_ms.
    verifier:
        Checks client requests (``verify_request(bytes) -> (client, nonce)``).
    propose_metadata:
        Called by the primary for each batch's metadata (the node: encoded anchors).
    genesis_app_digest:
        The application's state digest at sequence number 0.
    durable:
        The last :meth:`durable_state` persisted before a crash, or ``None`` for a new replica.
    executed_seq:
        With ``durable``: the application's height now, if behind the persisted one; the
        committed batches above it are handed out again on :class:`~.events.Start`.
    trace:
        Emit :class:`~.events.Trace` actions for protocol milestones.
    """

    def __init__(self, *, channel: str, name: str, keyring: Keyring, nodes: Sequence[str],
                 config: ConsensusConfig, verifier: RequestVerifier,
                 propose_metadata: Callable[[], bytes] | None = None,
                 genesis_app_digest: bytes = b"", durable: DurableState | None = None,
                 executed_seq: int | None = None, trace: bool = True) -> None:
        if name not in nodes:
            raise ValueError(f"{name!r} is not one of the channel's nodes {tuple(nodes)}")
        if config.watermark_window % config.checkpoint_interval:
            raise ValueError("watermark_window must be a multiple of checkpoint_interval")
        self.name = name
        genesis_state = CheckpointState(0, genesis_app_digest, ())
        self.ctx = Context(channel, tuple(nodes), config, keyring, genesis_state)
        self.config = config
        self.verifier = verifier
        self.propose_metadata = propose_metadata or (lambda: b"")
        self.tracing = trace
        # -- durable protocol state (see durable.py) --
        self.view = 0
        self.active = True  # False between sending VIEW-CHANGE(view) and entering the view
        self.stable_state = genesis_state
        self.stable_proof: tuple[Checkpoint, ...] = ()
        self.slots: dict[int, Slot] = {}
        self.prepared: dict[int, PreparedCertificate] = {}
        self.committed: dict[int, CommittedEntry] = {}
        self.last_committed = 0  # handed to the shell as ExecuteBatch, in order
        self.last_executed = 0  # reported back by BlockExecuted
        self.clients: dict[str, int] = {}  # highest nonce committed per client
        self.client_snapshots: dict[int, tuple[tuple[str, int], ...]] = {}
        self.own_states: dict[int, CheckpointState] = {}
        self.replies: dict[str, Reply] = {}
        self.my_view_change: ViewChange | None = None
        self.new_view: NewView | None = None
        self.new_view_sent = 0  # highest view this replica sent a NEW-VIEW for
        self.next_seq = 1
        self.view_change_timeout_ms = config.view_change_timeout_ms
        # -- volatile state --
        self.pending: dict[bytes, tuple[str, int]] = {}  # received, not yet committed
        self.queue: dict[bytes, tuple[str, int]] = {}  # primary: pending, not yet proposed
        self.request_info: dict[bytes, tuple[str, int]] = {}
        self.ordered: dict[str, dict[int, tuple[int, int]]] = {}  # client -> seq -> (lo, hi)
        self.checkpoint_votes = CheckpointVotes(config.watermark_window // config.checkpoint_interval + 2)
        self.view_changes: dict[str, dict[int, ViewChange]] = {}  # sender -> view -> message
        self.future: list = []
        self.timers: set[str] = set()
        self.quorum_seen_view = -1
        self.helped_at: dict[str, tuple[int, int]] = {}
        self.my_view_changes: dict[int, ViewChange] = {}  # recent own, for late peers
        self.fetch_goal = 0
        self.fetching = False
        self.transfer: CheckpointState | None = None
        self.restored = durable is not None
        self._out: list[Action] = []
        self._dirty = False
        self.now_ms = 0
        if durable is not None:
            self._restore(durable, executed_seq)

    # -- the one entry point -------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        """Feed one event; return the actions to carry out, in order."""
        self._out = []
        self._dirty = False
        self.now_ms = event.now_ms
        kind = type(event)
        if kind is Received:
            self._on_message(event.message)
        elif kind is RequestReceived:
            self._on_request(event.request)
        elif kind is TimerFired:
            self._on_timer(event.timer)
        elif kind is BlockExecuted:
            self._on_block_executed(event)
        elif kind is StateTransferred:
            self._on_state_transferred(event)
        elif kind is Start:
            self._on_start()
        else:
            raise ReplicaMisuse(f"unknown event {event!r}")
        out = self._out
        if self._dirty:
            out.insert(0, Persist())
        self._out = []
        return out

    # -- small helpers -------------------------------------------------------------------

    @property
    def f(self) -> int:
        return self.config.f

    @property
    def low(self) -> int:
        """h, the low watermark: the last stable checkpoint."""
        return self.stable_state.seq

    def is_primary(self) -> bool:
        return self.ctx.primary(self.view) == self.name

    def _sign(self, message):
        """``message`` with this node's signature (the last field of every message type)."""
        keyring = self.ctx.keyring
        signature = keyring.sign(message.signing_bytes()) if keyring.check_signatures else b""
        names = _FIELDS.get(type(message))
        if names is None:
            names = _FIELDS[type(message)] = tuple(f.name for f in fields(message))[:-1]
        return type(message)(*[getattr(message, n) for n in names], signature)

    def _fault(self, kind: FaultKind, peer: str, detail: str) -> None:
        self._out.append(Fault(kind, peer, detail))

    def _trace(self, kind: str, **fields) -> None:
        if self.tracing:
            self._out.append(Trace(kind, fields))

    def _set_timer(self, name: str, delay_ms: int) -> None:
        self.timers.add(name)
        self._out.append(SetTimer(name, delay_ms))

    def _cancel_timer(self, name: str) -> None:
        if name in self.timers:
            self.timers.discard(name)
            self._out.append(CancelTimer(name))

    def _on_timer(self, name: str) -> None:
        self.timers.discard(name)
        if name == TIMER_BATCH:
            self._cut_batches(force=True)
        elif name == TIMER_REQUEST:
            if self.active and self.pending:
                self._trace("request-timeout", view=self.view, pending=len(self.pending))
                self._start_view_change(self.view + 1)
        elif name == TIMER_VIEW_CHANGE:
            self._on_view_change_timer()
        elif name == TIMER_FETCH:
            self._on_fetch_timer()

    # -- messages ------------------------------------------------------------------------

    def _on_message(self, msg) -> None:
        if getattr(msg, "channel", None) != self.ctx.channel:
            self._fault(FaultKind.WRONG_CHANNEL, getattr(msg, "sender", "?"), "message for another channel")
            return
        handler = self._handlers.get(type(msg))
        if handler is None:
            self._fault(FaultKind.MALFORMED, getattr(msg, "sender", "?"), f"unexpected {type(msg).__name__}")
            return
        try:
            handler(self, msg)
        except (TypeError, ValueError, AttributeError) as exc:  # a peer's ill-typed record
            self._fault(FaultKind.MALFORMED, getattr(msg, "sender", "?"), f"{type(msg).__name__}: {exc!r}")

    def _admit_vote(self, msg) -> bool:
        """Common checks for PRE-PREPARE/PREPARE/COMMIT: view, watermarks, signature."""
        if msg.view != self.view or not self.active:
            if msg.view > self.view or (msg.view == self.view and not self.active):
                if len(self.future) < FUTURE_BUFFER_LIMIT:
                    self.future.append(msg)  # replayed once we enter that view
            else:
                self._fault(FaultKind.STALE, msg.sender, f"{type(msg).__name__} for old view {msg.view}")
            return False
        if not self.low < msg.seq <= self.low + self.config.watermark_window:
            kind = FaultKind.STALE if msg.seq <= self.low else FaultKind.OUTSIDE_WATERMARKS
            self._fault(kind, msg.sender, f"seq {msg.seq} outside ({self.low}, {self.low + self.config.watermark_window}]")
            return False
        problem = self.ctx.check(msg)
        if problem:
            kind = FaultKind.NOT_MEMBER if msg.sender not in self.ctx.keyring.node_keys else FaultKind.BAD_SIGNATURE
            self._fault(kind, msg.sender, problem)
            return False
        return True

    def _slot(self, seq: int) -> Slot:
        slot = self.slots.get(seq)
        if slot is None:
            slot = self.slots[seq] = Slot(self.view, seq)
        return slot

    def _on_pre_prepare(self, pp: PrePrepare) -> None:
        if not self._admit_vote(pp):
            return
        primary = self.ctx.primary(pp.view)
        if pp.sender != primary:
            self._fault(FaultKind.NOT_PRIMARY, pp.sender, f"pre-prepare from a backup in view {pp.view}")
            return
        slot = self._slot(pp.seq)
        if slot.pre_prepare is not None:
            if slot.pre_prepare.digest != pp.digest:
                self._fault(FaultKind.CONFLICT, pp.sender, f"second pre-prepare for view {pp.view} seq {pp.seq}")
            return
        if self.ctx.batch_digest(pp.batch) != pp.digest or pp.batch.proposer != pp.sender:
            self._fault(FaultKind.DIGEST_MISMATCH, pp.sender, f"batch does not match pre-prepare seq {pp.seq}")
            return
        done = self.committed.get(pp.seq)
        if done is not None and done.certificate.batch_digest != pp.digest:
            self._fault(FaultKind.CONFLICT, pp.sender, f"pre-prepare contradicts committed seq {pp.seq}")
            return
        if done is None and pp.seq > self.last_committed:
            problem = self._check_request_order(pp.seq, pp.batch)
            if problem:
                self._fault(problem[0], pp.sender, problem[1])
                return
        self._accept_pre_prepare(slot, pp)

    def _accept_pre_prepare(self, slot: Slot, pp: PrePrepare) -> None:
        slot.pre_prepare = pp
        self._index_batch(pp.seq, pp.batch)
        self._dirty = True
        self._trace("pre-prepared", view=pp.view, seq=pp.seq, digest=pp.digest.hex(), requests=len(pp.batch.requests))
        if pp.sender != self.name:
            prepare = self._sign(Prepare(self.ctx.channel, pp.view, pp.seq, pp.digest, self.name))
            slot.add_prepare(prepare)
            self._out.append(Broadcast(prepare))
        self._advance(slot)

    def _on_prepare(self, p: Prepare) -> None:
        if not self._admit_vote(p):
            return
        if p.sender == self.ctx.primary(p.view):
            self._fault(FaultKind.NOT_PRIMARY, p.sender, "the primary sends no prepare")
            return
        slot = self._slot(p.seq)
        if not slot.add_prepare(p):
            self._fault(FaultKind.CONFLICT, p.sender, f"second prepare for view {p.view} seq {p.seq}")
            return
        self._dirty = True
        self._advance(slot)

    def _on_commit(self, c: Commit) -> None:
        if not self._admit_vote(c):
            return
        slot = self._slot(c.seq)
        if not slot.add_commit(c):
            self._fault(FaultKind.CONFLICT, c.sender, f"second commit for view {c.view} seq {c.seq}")
            return
        self._dirty = True
        self._advance(slot)

    def _advance(self, slot: Slot) -> None:
        """Move a slot through prepared -> committed-local as its votes allow."""
        if slot.pre_prepare is None or slot.committed:
            return
        primary = self.ctx.primary(slot.view)
        if not slot.sent_commit:
            cert = slot.prepared_certificate(primary, self.f)
            if cert is None:
                return
            slot.sent_commit = True
            known = self.prepared.get(slot.seq)
            if known is None or known.view <= cert.view:
                self.prepared[slot.seq] = cert
            commit = self._sign(Commit(self.ctx.channel, slot.view, slot.seq, slot.digest, self.name))
            slot.add_commit(commit)
            self._out.append(Broadcast(commit))
            self._trace("prepared", view=slot.view, seq=slot.seq)
        certificate = slot.commit_certificate(self.f)
        if certificate is None:
            return
        slot.committed = True
        if slot.seq > self.last_committed and slot.seq not in self.committed:
            self.committed[slot.seq] = CommittedEntry(slot.seq, slot.pre_prepare.batch, certificate)
        self._trace("committed", view=slot.view, seq=slot.seq)
        self._deliver()

    # -- client requests -----------------------------------------------------------------

    def _info(self, request: bytes) -> tuple[str, int] | None:
        info = self.request_info.get(request)
        if info is None:
            try:
                client, nonce = self.verifier.verify_request(request)
            except Exception:  # the verifier's refusal, whatever its type  # noqa: BLE001
                return None
            if type(client) is not str or type(nonce) is not int:
                return None
            info = self.request_info[request] = (client, nonce)
        return info

    def _on_request(self, request: bytes) -> None:
        if type(request) is not bytes:
            self._fault(FaultKind.BAD_REQUEST, "client", "request is not bytes")
            return
        info = self._info(request)
        if info is None:
            self._fault(FaultKind.BAD_REQUEST, "client", "request refused by the verifier")
            return
        client, nonce = info
        if nonce <= self.clients.get(client, 0):
            cached = self.replies.get(client)
            if cached is not None and cached.nonce == nonce:
                self._out.append(SendReply(client, cached))  # the reply was lost: resend it
            return
        if request in self.pending:
            return
        self.pending[request] = info
        if self.active and TIMER_REQUEST not in self.timers:
            self._set_timer(TIMER_REQUEST, self.view_change_timeout_ms)
        if self.active and self.is_primary() and nonce > self._known_nonce(client):
            self.queue[request] = info
            self._cut_batches(force=False)

    def _known_nonce(self, client: str) -> int:
        ordered = self.ordered.get(client)
        top = max((hi for lo, hi in ordered.values()), default=0) if ordered else 0
        return max(top, self.clients.get(client, 0))

    def _index_batch(self, seq: int, batch: Batch) -> None:
        for request in batch.requests:
            info = self._info(request)
            if info is None:
                continue
            client, nonce = info
            spans = self.ordered.setdefault(client, {})
            lo, hi = spans.get(seq, (nonce, nonce))
            spans[seq] = (min(lo, nonce), max(hi, nonce))

    def _check_request_order(self, seq: int, batch: Batch) -> tuple[FaultKind, str] | None:
        """A batch may not replay a client's nonce nor order it against the client's order
        (the primary cannot reorder a client's requests): every nonce must exceed the client's
        committed one and those ordered at lower seqs, and stay below those at higher seqs."""
        spans: dict[str, tuple[int, int]] = {}
        for request in batch.requests:
            info = self._info(request)
            if info is None:
                return FaultKind.BAD_REQUEST, f"batch at seq {seq} holds a request the verifier refuses"
            client, nonce = info
            if client in spans:
                if nonce <= spans[client][1]:
                    return FaultKind.REQUEST_ORDER, f"{client} nonces not increasing within seq {seq}"
                spans[client] = (spans[client][0], nonce)
            else:
                spans[client] = (nonce, nonce)
        for client, (lo, hi) in spans.items():
            if lo <= self.clients.get(client, 0):
                return FaultKind.REQUEST_ORDER, f"{client} nonce {lo} already committed"
            for other, (olo, ohi) in self.ordered.get(client, {}).items():
                if (other < seq and ohi >= lo) or (other > seq and olo <= hi):
                    return FaultKind.REQUEST_ORDER, f"{client} nonces at seq {seq} out of order with seq {other}"
        return None

    def _cut_batches(self, force: bool) -> None:
        """Primary: propose batches of up to batch_max requests (OSDI'99 §5.1 batching)."""
        if not (self.active and self.is_primary()):
            return
        cfg = self.config
        while self.queue and (force or len(self.queue) >= cfg.batch_max) \
                and self.next_seq <= self.low + cfg.watermark_window:
            force = False
            requests = self._take_requests(cfg.batch_max)
            if not requests:
                break
            batch = Batch(tuple(requests), self.name, self.now_ms, self.propose_metadata())
            pp = self._sign(PrePrepare(self.ctx.channel, self.view, self.next_seq,
                                       self.ctx.batch_digest(batch), batch, self.name))
            self.next_seq += 1
            self._out.append(Broadcast(pp))
            self._accept_pre_prepare(self._slot(pp.seq), pp)
        if self.queue and TIMER_BATCH not in self.timers:
            self._set_timer(TIMER_BATCH, cfg.batch_timeout_ms)
        elif not self.queue:
            self._cancel_timer(TIMER_BATCH)

    def _take_requests(self, limit: int) -> list[bytes]:
        """Up to ``limit`` queued requests in arrival order, each client's in nonce order."""
        chosen: list[str] = []
        by_client: dict[str, list[tuple[int, bytes]]] = {}
        for request, (client, nonce) in list(self.queue.items()):
            if nonce <= self._known_nonce(client):
                del self.queue[request]  # committed or proposed already
                continue
            by_client.setdefault(client, []).append((nonce, request))
            chosen.append(client)
            if len(chosen) == limit:
                break
        for entries in by_client.values():
            entries.sort(reverse=True)
        requests, last = [], {}
        for client in chosen:
            nonce, request = by_client[client].pop()
            del self.queue[request]
            if nonce > last.get(client, 0):  # a client that reused a nonce: keep the first
                last[client] = nonce
                requests.append(request)
        return requests

    # -- execution, replies, checkpoints -------------------------------------------------

    def _deliver(self) -> None:
        """Hand committed batches to the shell strictly in sequence order."""
        delivered = False
        while self.transfer is None:
            entry = self.committed.get(self.last_committed + 1)
            if entry is None:
                break
            seq = entry.seq
            for request in entry.batch.requests:
                info = self._info(request)
                if info is not None and info[1] > self.clients.get(info[0], 0):
                    self.clients[info[0]] = info[1]
            if seq % self.config.checkpoint_interval == 0:
                self.client_snapshots.setdefault(seq, tuple(sorted(self.clients.items())))
            self.last_committed = seq
            self._dirty = True
            delivered = True
            self._out.append(ExecuteBatch(self.ctx.channel, seq, entry.certificate.view,
                                          entry.batch, entry.certificate))
            if entry.batch.requests:
                self.view_change_timeout_ms = self.config.view_change_timeout_ms
        if delivered:
            self._forget_committed_requests()
            if self.fetching and self.last_committed >= self.fetch_goal:
                self._stop_fetching()

    def _forget_committed_requests(self) -> None:
        for request, (client, nonce) in list(self.pending.items()):
            if nonce <= self.clients.get(client, 0):
                del self.pending[request]
                self.queue.pop(request, None)
                self.request_info.pop(request, None)
        # PBFT §4.5.2: stop the timer on progress; restart it if requests still wait.
        if self.pending and self.active:
            self._set_timer(TIMER_REQUEST, self.view_change_timeout_ms)
        else:
            self._cancel_timer(TIMER_REQUEST)

    def _on_block_executed(self, ev: BlockExecuted) -> None:
        if ev.seq <= self.last_executed:
            return  # superseded by a state transfer
        if ev.seq != self.last_executed + 1 or ev.seq > self.last_committed:
            raise ReplicaMisuse(f"BlockExecuted({ev.seq}) but executed {self.last_executed}, "
                                f"committed {self.last_committed}")
        self.last_executed = ev.seq
        self._dirty = True
        for client, nonce, result in ev.results:
            reply = self._sign(Reply(self.ctx.channel, self.view, ev.seq, client, nonce, result, self.name))
            self.replies[client] = reply
            self._out.append(SendReply(client, reply))
        if ev.seq % self.config.checkpoint_interval == 0:
            clients = self.client_snapshots.pop(ev.seq, ())
            state = CheckpointState(ev.seq, ev.state_digest, clients)
            self.own_states[ev.seq] = state
            ckpt = self._sign(Checkpoint(self.ctx.channel, ev.seq, state.digest(), self.name))
            self.checkpoint_votes.add(ckpt)
            self._out.append(Broadcast(ckpt))
            self._check_stable(ev.seq)

    def _on_checkpoint(self, c: Checkpoint) -> None:
        if c.seq <= self.low:
            return  # late: already stable here
        if c.seq % self.config.checkpoint_interval:
            self._fault(FaultKind.BAD_CHECKPOINT, c.sender, f"checkpoint at non-checkpoint seq {c.seq}")
            return
        problem = self.ctx.check(c)
        if problem:
            self._fault(FaultKind.BAD_SIGNATURE, c.sender, problem)
            return
        if not self.checkpoint_votes.add(c):
            self._fault(FaultKind.CONFLICT, c.sender, f"two checkpoint digests at seq {c.seq}")
            return
        self._check_stable(c.seq)

    def _check_stable(self, seq: int) -> None:
        d, count = self.checkpoint_votes.best_digest(seq)
        if d is None or count < self.ctx.quorum or seq <= self.low:
            return
        own = self.own_states.get(seq)
        if own is not None:
            if own.digest() == d:
                self._make_stable(own, tuple(self.checkpoint_votes.matching(seq, d)[: self.ctx.quorum]))
            else:
                self._fault(FaultKind.STATE_DIVERGENCE, self.name, f"own state at seq {seq} differs from 2f+1 others")
        elif self.last_committed < seq:
            self._start_fetch(seq)  # 2f+1 replicas are past us: catch up (§4.3)

    def _make_stable(self, state: CheckpointState, proof: tuple[Checkpoint, ...]) -> None:
        """The checkpoint at ``state.seq`` is stable: move the watermarks and collect garbage."""
        seq = state.seq
        if seq <= self.low:
            return
        self.stable_state, self.stable_proof = state, proof
        self.slots = {s: slot for s, slot in self.slots.items() if s > seq}
        self.prepared = {s: c for s, c in self.prepared.items() if s > seq}
        self.committed = {s: e for s, e in self.committed.items() if s > seq}
        self.own_states = {s: st for s, st in self.own_states.items() if s > seq}
        self.client_snapshots = {s: c for s, c in self.client_snapshots.items() if s > seq}
        for spans in self.ordered.values():
            for s in [s for s in spans if s <= seq]:
                del spans[s]
        self.checkpoint_votes.discard_through(seq)
        self._dirty = True
        self._trace("checkpoint-stable", seq=seq, digest=state.digest().hex())
        self._cut_batches(force=False)

    _handlers: dict = {}


Replica._handlers = {
    PrePrepare: Replica._on_pre_prepare,
    Prepare: Replica._on_prepare,
    Commit: Replica._on_commit,
    Checkpoint: Replica._on_checkpoint,
    ViewChange: ViewsMixin._on_view_change,
    NewView: ViewsMixin._on_new_view,
    FetchRequest: RecoveryMixin._on_fetch_request,
    FetchReply: RecoveryMixin._on_fetch_reply,
}


def _durable_slot(slot: Slot) -> DurableSlot:
    return DurableSlot(slot.view, slot.seq, slot.pre_prepare, tuple(slot.prepares.values()),
                       tuple(slot.commits.values()), slot.sent_commit, slot.committed)
