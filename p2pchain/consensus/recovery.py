"""Catching up and coming back: state transfer, restart from durable state (a mixin of
:class:`~.replica.Replica`; the checks are in :mod:`.statetransfer`, what is persisted and
why in :mod:`.durable`).

A replica fetches when 2f+1 checkpoints (or a NEW-VIEW) name a sequence number it has not
reached, and once after every (re)start. It broadcasts FETCH-REQUEST(have_seq); any peer
answers with its stable checkpoint and proof, its committed batches above ``have_seq`` with
their commit certificates (up to ``FETCH_REPLY_BYTES`` of them), and its NEW-VIEW. The
replica adopts a proven checkpoint above its own (the shell installs the application
snapshot: ``FetchState`` then ``StateTransferred``), then executes the certified batches in
order. It asks again at once while replies bring batches and it is short of its goal, and
every timeout until it has reached it.
"""

from __future__ import annotations

from collections.abc import Collection

from .checkpoint import check_checkpoint_proof
from .durable import DurableSlot, DurableState
from .journal import TRACKED_PARTS, ChangeTrackingDict
from .events import TIMER_FETCH, TIMER_VIEW_CHANGE, Broadcast, FaultKind, FetchState, Send
from .log import Slot
from .messages import CheckpointState, Checkpoint, FetchReply, FetchRequest
from .statetransfer import check_committed_entry

__all__ = ["RecoveryMixin", "FETCH_REPLY_BYTES", "StoresDisagree"]

FETCH_REPLY_BYTES = 1024 * 1024
"""A FETCH-REPLY's committed batches hold at most this many request bytes (and at least
one batch); the peer asks again for the rest. With the NEW-VIEW it also carries (O: up to
a window of batches, ~2.6 MB at ``BATCH_MAX_BYTES``) a reply stays below the peer links'
4 MiB frames; a window of entries beside it would not."""


class StoresDisagree(ValueError):
    """The replica's durable state records more executed than the application's ledger
    holds: the two stores on disk do not belong together (a ledger lost, or replaced by an
    older copy), so the replica cannot resume from them."""


class RecoveryMixin:
    # -- adopting a certified checkpoint -------------------------------------------------

    def _adopt_checkpoint(self, state: CheckpointState, proof: tuple[Checkpoint, ...]) -> None:
        """``state`` is proven stable by ``proof``: move up to it, fetching it if behind."""
        if state.seq <= self.low:
            return
        own = self.own_states.get(state.seq)
        if own is not None and own.digest() != state.digest():
            self._fault(FaultKind.STATE_DIVERGENCE, self.name, f"own state at seq {state.seq} differs from a proven checkpoint")
        behind = self.last_committed < state.seq
        self._make_stable(state, proof)
        if behind:
            self.transfer = state
            self.fetch_goal = max(self.fetch_goal, state.seq)
            self._request_snapshot()

    def _request_snapshot(self) -> None:
        state = self.transfer
        peers = tuple(n for n in self.ctx.nodes if n != self.name)
        self._out.append(FetchState(self.ctx.channel, state.seq, state.app_digest, peers))
        self._trace("state-transfer", seq=state.seq)
        if TIMER_FETCH not in self.timers:
            self.fetching = True
            self._set_timer(TIMER_FETCH, self.config.view_change_timeout_ms)

    def _on_state_transferred(self, ev) -> None:
        state = self.transfer
        if state is None or ev.seq != state.seq:
            return  # an older transfer, superseded
        if ev.state_digest != state.app_digest:
            self._fault(FaultKind.BAD_STATE, self.name, f"installed snapshot at seq {ev.seq} has the wrong digest")
            return
        self.transfer = None
        self.last_committed = self.last_executed = state.seq
        self.clients = ChangeTrackingDict(state.clients)
        self.own_states[state.seq] = state
        self._dirty = True
        self._trace("state-transferred", seq=state.seq)
        self._forget_committed_requests()
        self._deliver()
        if self.last_committed >= self.fetch_goal:
            self._stop_fetching()
        self._cut_batches(force=False)

    # -- asking and answering ------------------------------------------------------------

    def _start_fetch(self, goal: int) -> None:
        self.fetch_goal = max(self.fetch_goal, goal)
        if not self.fetching:
            self.fetching = True
            self._send_fetch_request()

    def _send_fetch_request(self) -> None:
        request = self._sign(FetchRequest(self.ctx.channel, self.last_committed, self.name))
        self._out.append(Broadcast(request))
        self._set_timer(TIMER_FETCH, self.config.view_change_timeout_ms)

    def _stop_fetching(self) -> None:
        self.fetching = False
        self._cancel_timer(TIMER_FETCH)

    def _on_fetch_timer(self) -> None:
        if self.transfer is not None:
            self._request_snapshot()
            self._send_fetch_request()
        elif self.fetching and self.last_committed < self.fetch_goal:
            self._send_fetch_request()
        else:
            self.fetching = False

    def _on_fetch_request(self, req: FetchRequest) -> None:
        problem = self.ctx.check(req)
        if problem or req.sender == self.name:
            self._fault(FaultKind.BAD_SIGNATURE, req.sender, problem or "fetch request from myself")
            return
        entries, size = [], 0
        for seq in sorted(self.committed):
            if seq <= req.have_seq:
                continue
            size += sum(map(len, self.committed[seq].batch.requests))
            if len(entries) == self.config.watermark_window or (entries and size > FETCH_REPLY_BYTES):
                break
            entries.append(self.committed[seq])
        entries = tuple(entries)
        new_view = self.new_view if self.active else None
        if not entries and self.low <= req.have_seq and new_view is None:
            return  # nothing the peer lacks
        reply = self._sign(FetchReply(self.ctx.channel, self.stable_state, self.stable_proof,
                                      entries, new_view, self.name))
        self._out.append(Send(req.sender, reply))

    def _on_fetch_reply(self, reply: FetchReply) -> None:
        problem = self.ctx.check(reply)
        if problem:
            self._fault(FaultKind.BAD_SIGNATURE, reply.sender, problem)
            return
        nv = reply.new_view
        if nv is not None and (nv.view > self.view or (nv.view == self.view and not self.active)):
            self._on_new_view(nv)
        state = reply.stable_state
        if state.seq > self.low:
            problem = check_checkpoint_proof(state, reply.checkpoint_proof, channel=self.ctx.channel,
                                             genesis_state=self.ctx.genesis_state,
                                             quorum=self.ctx.quorum, check=self.ctx.check)
            if problem:
                self._fault(FaultKind.BAD_STATE, reply.sender, problem)
                return
            self._adopt_checkpoint(state, reply.checkpoint_proof)
        limit = self.low + 2 * self.config.watermark_window
        added = False
        for entry in reply.entries:
            if entry.seq <= max(self.last_committed, self.low) or entry.seq in self.committed or entry.seq > limit:
                continue
            problem = check_committed_entry(entry, self.ctx)
            if problem:
                self._fault(FaultKind.BAD_STATE, reply.sender, problem)
                return
            self.committed[entry.seq] = entry
            self._dirty = True
            added = True
        self._deliver()
        if added and self.fetching and self.transfer is None and self.last_committed < self.fetch_goal:
            self._send_fetch_request()  # the reply was cut (FETCH_REPLY_BYTES): the rest at once

    # -- start and restart ---------------------------------------------------------------

    def _on_start(self) -> None:
        self._trace("start", view=self.view, active=self.active, restored=self.restored,
                    last_committed=self.last_committed, low=self.low)
        if self.restored and not self.active and self.my_view_change is not None:
            self._out.append(Broadcast(self.my_view_change))
            self._set_timer(TIMER_VIEW_CHANGE, self.view_change_timeout_ms)
        self.fetching = True  # one round of catching up after every start
        self._send_fetch_request()
        if self.last_committed < self.low:
            # Stopped during a state transfer: its progress is not persisted (see .durable),
            # the proven checkpoint it adopted is -- and no peer offers that one as news
            # again (not above low), nor the batches up to it (collected). Fetch it again.
            self.transfer = self.stable_state
            self.fetch_goal = max(self.fetch_goal, self.low)
            self._request_snapshot()
        self._deliver()

    def durable_state(self, leave_out: Collection[str] = ()) -> DurableState:
        """The state to persist on ``Persist`` (see :mod:`.durable` for why each part).

        ``leave_out``: tracked parts (:data:`~.journal.TRACKED_PARTS`) to give as ``None``
        rather than build, for a journal delta told their changes
        (:meth:`~.journal.DurableJournal.delta`): they grow with the number of clients,
        and sorting them at every write cost more than the rest of the state."""
        if not set(leave_out) <= TRACKED_PARTS.keys():
            raise ValueError(f"only tracked parts can be left out, not {sorted(set(leave_out) - TRACKED_PARTS.keys())}")
        return DurableState(
            view=self.view, active=self.active, stable_state=self.stable_state,
            stable_proof=self.stable_proof,
            slots=tuple(DurableSlot(s.view, s.seq, s.pre_prepare, tuple(s.prepares.values()),
                                    tuple(s.commits.values()), s.sent_commit, s.committed)
                        for _, s in sorted(self.slots.items())),
            prepared=tuple(c for _, c in sorted(self.prepared.items())),
            committed=tuple(e for _, e in sorted(self.committed.items())),
            last_committed=self.last_committed, last_executed=self.last_executed,
            clients=None if "clients" in leave_out else tuple(sorted(self.clients.items())),
            client_snapshots=tuple(sorted(self.client_snapshots.items())),
            own_states=tuple(st for _, st in sorted(self.own_states.items())),
            replies=None if "replies" in leave_out else tuple(r for _, r in sorted(self.replies.items())),
            my_view_change=self.my_view_change,
            recent_view_changes=tuple(vc for _, vc in sorted(self.my_view_changes.items())),
            new_view=self.new_view,
            new_view_sent=self.new_view_sent, next_seq=self.next_seq,
            view_change_timeout_ms=self.view_change_timeout_ms,
        )

    def durable_changes(self) -> dict[str, dict | None]:
        """What changed in the tracked parts (:data:`~.journal.TRACKED_PARTS`) since the last
        call, for :meth:`~.journal.DurableJournal.delta`: per part the changed keys with
        their values now, or ``None`` where that is not known (the part was replaced
        wholesale since, or this is the first call). Take it with every
        :meth:`durable_state` that is written, right after it."""
        changes: dict[str, dict | None] = {}
        for name in TRACKED_PARTS:
            part = getattr(self, name)
            if type(part) is not ChangeTrackingDict:
                changes[name] = None
                continue
            taken = part.take_changes()
            changes[name] = taken if self._tracked_written.get(name) is part else None
            self._tracked_written[name] = part
        return changes

    def _restore(self, d: DurableState, executed_seq: int | None) -> None:
        self.view, self.active = d.view, d.active
        self.stable_state, self.stable_proof = d.stable_state, d.stable_proof
        for ds in d.slots:
            slot = Slot(ds.view, ds.seq, ds.pre_prepare, {p.sender: p for p in ds.prepares},
                        {c.sender: c for c in ds.commits}, ds.sent_commit, ds.committed)
            self.slots[ds.seq] = slot
            if slot.pre_prepare is not None:
                self._index_batch(slot.seq, slot.pre_prepare.batch)
        self.prepared = {c.seq: c for c in d.prepared}
        self.committed = {e.seq: e for e in d.committed}
        self.last_committed, self.last_executed = d.last_committed, d.last_executed
        if executed_seq is not None and executed_seq < d.last_committed:
            if executed_seq < d.last_executed:
                raise StoresDisagree(f"application at {executed_seq} is behind the executed seq "
                                 f"{d.last_executed} persisted after it: the shell must persist "
                                 "the block before feeding BlockExecuted")
            # hand the committed batches the application lost out again, on Start
            self.last_committed = self.last_executed = executed_seq
        self.clients = ChangeTrackingDict(d.clients)
        self.client_snapshots = dict(d.client_snapshots)
        self.own_states = {st.seq: st for st in d.own_states}
        self.replies = ChangeTrackingDict((r.client, r) for r in d.replies)
        self.my_view_change, self.new_view = d.my_view_change, d.new_view
        self.my_view_changes = {vc.view: vc for vc in d.recent_view_changes}
        if d.my_view_change is not None:
            self.view_changes[self.name] = {d.my_view_change.view: d.my_view_change}
        self.new_view_sent, self.next_seq = d.new_view_sent, d.next_seq
        self.view_change_timeout_ms = d.view_change_timeout_ms
