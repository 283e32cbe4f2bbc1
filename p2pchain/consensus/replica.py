"""The PBFT replica: a pure state machine, ``handle(event) -> list[Action]``.

Castro & Liskov, "Practical Byzantine Fault Tolerance", OSDI'99 (and TOCS 20(4), 2002).
The normal case (§4.2): the primary p = v mod n assigns sequence number n to a batch and
multicasts PRE-PREPARE(v, n, d); each backup that accepts it multicasts PREPARE(v, n, d);
a replica is *prepared* once it holds the pre-prepare and 2f matching prepares, then
multicasts COMMIT(v, n, d); it is *committed-local* with 2f+1 matching commits, and executes
batches in sequence order. This module holds the state and the three phases; the rest of
the behaviour is in mixins, one per concern: client requests and batching
(:mod:`.requests`), execution and checkpoints (:mod:`.execution`, §4.3), view changes
(:mod:`.views`, §4.4, with the pure checks in :mod:`.viewchange`), state transfer and
restart (:mod:`.recovery`, checks in :mod:`.statetransfer`, persisted state in
:mod:`.durable`).

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
from .checkpoint import CheckpointVotes
from .context import Context, RequestVerifier
from .durable import DurableState
from .journal import ChangeTrackingDict
from .events import (TIMER_BATCH, TIMER_FETCH, TIMER_REQUEST, TIMER_VIEW_CHANGE, Action, CatchUp,
                     BlockExecuted, Broadcast, CancelTimer, Event, Fault, FaultKind, Persist,
                     Received, ReplicaMisuse, RequestReceived, SetTimer, Start,
                     StateTransferred, TimerFired, Trace)
from .keys import Keyring
from .log import Slot
from .messages import (Checkpoint, CheckpointState, Commit, CommittedEntry, FetchReply,
                       FetchRequest, NewView, PrePrepare, Prepare, PreparedCertificate,
                       Reply, ViewChange)
from .execution import ExecutionMixin
from .recovery import RecoveryMixin
from .requests import RequestsMixin
from .views import ViewsMixin

__all__ = ["Replica", "ReplicaMisuse"]

_FIELDS: dict[type, tuple[str, ...]] = {}  # message type -> field names before the signature

FUTURE_BUFFER_LIMIT = 4096  # messages for a view not yet entered, kept until its NEW-VIEW


class Replica(ViewsMixin, RecoveryMixin, RequestsMixin, ExecutionMixin):
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
    replies:
        Build, sign and send a REPLY to each client per executed request (OSDI'99 §4.1, as
        the simulator's clients expect). A shell that answers its clients otherwise — the
        node answers from its committed blocks — turns this off: no Ed25519 signature per
        request per replica for replies nobody receives, and ``BlockExecuted.results`` may
        then be empty.
    """

    def __init__(self, *, channel: str, name: str, keyring: Keyring, nodes: Sequence[str],
                 config: ConsensusConfig, verifier: RequestVerifier,
                 propose_metadata: Callable[[], bytes] | None = None,
                 genesis_app_digest: bytes = b"", durable: DurableState | None = None,
                 executed_seq: int | None = None, trace: bool = True, replies: bool = True) -> None:
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
        self.sending_replies = replies
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
        # highest nonce committed per client; this and ``replies`` grow with the number of
        # clients, so the journal is told which keys changed (durable_changes)
        self.clients: dict[str, int] = ChangeTrackingDict()
        self.client_snapshots: dict[int, tuple[tuple[str, int], ...]] = {}
        self.own_states: dict[int, CheckpointState] = {}
        self.replies: dict[str, Reply] = ChangeTrackingDict()
        self._tracked_written: dict[str, ChangeTrackingDict] = {}  # the objects durable_changes saw last
        self.my_view_change: ViewChange | None = None
        self.new_view: NewView | None = None
        self.new_view_sent = 0  # highest view this replica sent a NEW-VIEW for
        self.next_seq = 1
        self.view_change_timeout_ms = config.view_change_timeout_ms
        # -- volatile state --
        self.pending: dict[bytes, tuple[str, int]] = {}  # received, not yet committed
        self.pending_of: dict[str, dict[bytes, int]] = {}  # the same by client: request -> nonce
        self.queue: dict[bytes, tuple[str, int]] = {}  # primary: pending, not yet proposed
        self.request_info: dict[bytes, tuple[str, int]] = {}
        self.ordered: dict[str, dict[int, tuple[int, int]]] = {}  # client -> seq -> (lo, hi)
        self.checkpoint_votes = CheckpointVotes(config.watermark_window // config.checkpoint_interval + 2)
        self.view_changes: dict[str, dict[int, ViewChange]] = {}  # sender -> view -> message
        self.future: list = []
        self.timers: set[str] = set()
        self.quorum_seen_view = -1
        self.helped_at: dict[str, tuple[int, int]] = {}
        self.my_view_changes: dict[int, ViewChange] = {}  # recent own (durable), for late peers
        self.fetch_goal = 0
        self.fetching = False
        self._fetch_mark = -1  # last_committed when a request timeout last waited for a fetch
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
        elif kind is CatchUp:
            if event.goal > self.last_committed:
                self._start_fetch(event.goal)
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

    def _ordering_waits_on_execution(self) -> bool:
        """No primary could order more just now: this replica is still executing batches it
        has committed, or every sequence number of the watermark window is committed and
        waits for a stable checkpoint, i.e. for 2f+1 replicas to execute it (§4.3). Under a
        load the replicas execute more slowly than they commit, that is what holds requests
        up, and a view change would only add to the load; before this check, overload set off
        view change after view change. A faulty primary gains nothing by it: executing
        committed batches ends, and the 2f+1 correct replicas make the checkpoint stable,
        after which the request timer runs again."""
        return (self.last_executed < self.last_committed
                or self.last_committed >= self.low + self.config.watermark_window)

    def _request_wait_is_ours(self) -> bool:
        """Is the wait of the pending requests this replica's own doing, not the primary's
        fault: executing what it committed (:meth:`_ordering_waits_on_execution`),
        installing a proven checkpoint, or fetching what it lacks -- the last only while
        the fetch moves. A fetch goal may be out of every peer's reach: a height only a
        faulty node claimed (the node's catch-up hint takes any message's), or a commit
        every replica lost in a crash of them all. Postponing for it without end let one
        faulty primary stop the channel for good."""
        if self.transfer is not None or self._ordering_waits_on_execution():
            return True
        if not self.fetching:
            return False
        moved = self.last_committed > self._fetch_mark
        self._fetch_mark = self.last_committed
        return moved

    def _on_timer(self, name: str) -> None:
        self.timers.discard(name)
        if name == TIMER_BATCH:
            self._cut_batches(force=True)
        elif name == TIMER_REQUEST:
            if not self.pending:
                return
            self._fetch_what_f_plus_one_vouch_for()
            if self._request_wait_is_ours():
                self._set_timer(TIMER_REQUEST, self.view_change_timeout_ms)
            elif self.active:
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


Replica._handlers = {
    PrePrepare: Replica._on_pre_prepare,
    Prepare: Replica._on_prepare,
    Commit: Replica._on_commit,
    Checkpoint: ExecutionMixin._on_checkpoint,
    ViewChange: ViewsMixin._on_view_change,
    NewView: ViewsMixin._on_new_view,
    FetchRequest: RecoveryMixin._on_fetch_request,
    FetchReply: RecoveryMixin._on_fetch_reply,
}
