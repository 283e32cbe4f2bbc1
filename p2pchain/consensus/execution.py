"""Execution and checkpoints at a replica (a mixin of :class:`~.replica.Replica`).

Committed batches leave the core in sequence order as ``ExecuteBatch``; the shell answers
``BlockExecuted`` with the application's state digest, from which the replica signs its
replies and, every K sequence numbers, its CHECKPOINT (OSDI'99 §4.3). 2f+1 matching
checkpoints make one stable: watermarks move and the log below is collected (the pure
helpers are in :mod:`.checkpoint`); when a timer runs out, f+1 above what a replica
committed make it fetch.
"""

from __future__ import annotations

from collections.abc import Iterable

from .events import TIMER_REQUEST, BlockExecuted, ReplicaMisuse, Broadcast, ExecuteBatch, FaultKind, SendReply
from .messages import Checkpoint, CheckpointState, Reply

__all__ = ["ExecutionMixin"]


class ExecutionMixin:
    def _deliver(self) -> None:
        """Hand committed batches to the shell strictly in sequence order."""
        delivered = False
        advanced: dict[str, None] = {}  # clients whose committed nonce moved, in order
        while self.transfer is None:
            entry = self.committed.get(self.last_committed + 1)
            if entry is None:
                break
            seq = entry.seq
            for request in entry.batch.requests:
                info = self._info(request)
                if info is not None and info[1] > self.clients.get(info[0], 0):
                    self.clients[info[0]] = info[1]
                    advanced[info[0]] = None
                self.request_info.pop(request, None)  # the cache must not grow with the chain
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
            self._forget_committed_requests(advanced)
            if self.fetching and self.last_committed >= self.fetch_goal:
                self._stop_fetching()

    def _forget_committed_requests(self, clients: Iterable[str] | None = None) -> None:
        """Drop the pending requests whose nonce the client table has reached: those of
        ``clients`` (the clients whose nonce a delivery moved), or of every client (after a
        state transfer replaced the table). A delivery then costs its batch, not every
        request waiting (up to one per client lane at saturation)."""
        pending_of = self.pending_of
        for client in list(pending_of) if clients is None else clients:
            waiting = pending_of.get(client)
            if waiting is None:
                continue
            done = self.clients.get(client, 0)
            for request in [r for r, nonce in waiting.items() if nonce <= done]:
                del waiting[request]
                del self.pending[request]
                self.queue.pop(request, None)
                self.request_info.pop(request, None)
            if not waiting:
                del pending_of[client]
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
        if self.sending_replies:
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

    def _fetch_what_f_plus_one_vouch_for(self) -> None:
        """A timer ran out: if f+1 matching checkpoints (so one honest replica's) stand above
        what this replica committed, fetch the certified batches it lacks. Waiting for 2f+1
        may be waiting for ever: with one replica silent, this replica's own vote may be the
        one the checkpoint lacks, while the primary, its window full, waits for that
        checkpoint too (a simulator schedule, seed 97001874)."""
        votes = self.checkpoint_votes
        vouched = [seq for seq in votes.seqs() if seq > max(self.last_committed, self.low)
                   and votes.best_digest(seq)[1] > self.f]
        if vouched:
            self._start_fetch(max(vouched))

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
