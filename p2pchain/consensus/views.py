"""The replica's view-change behaviour (OSDI'99 §4.4), as a mixin of
:class:`~.replica.Replica`; the pure checks and the NEW-VIEW computation are in
:mod:`.viewchange`.

Liveness rules (OSDI'99 §4.5.2), each with the method that implements it:

1. A backup whose oldest waiting request has not executed within the timeout moves to
   view v+1 (``Replica._on_timer``). Once it holds 2f+1 VIEW-CHANGEs for v+1 it waits one
   more timeout for the NEW-VIEW, then moves on to v+2 with the timeout doubled
   (``_on_view_change_timer``); the timeout returns to its base when a request commits.
2. A replica that holds VIEW-CHANGEs from f+1 *other* replicas for views above its own
   joins the smallest view that f+1 of them support, without waiting for its timer
   (``_after_view_change_vote``). Its own vote never counts toward f+1: with n = 4,
   f+1 = 2 = 2f, and counting it would let one faulty replica drag another along.
3. A faulty primary cannot force a change of view on its own: a VIEW-CHANGE needs f+1
   replicas to spread and 2f+1 to complete.

Two retransmissions recover from lost messages (the paper's implementation retransmits
too): a replica still waiting for a NEW-VIEW re-broadcasts its VIEW-CHANGE every timeout,
and a replica that already entered the view answers a late VIEW-CHANGE with the NEW-VIEW
it holds (self-certifying, so anyone may relay it). A primary sends at most one NEW-VIEW
per view (``new_view_sent`` is durable): no double NEW-VIEW, even across a crash.
"""

from __future__ import annotations

from .events import (TIMER_BATCH, TIMER_REQUEST, TIMER_VIEW_CHANGE, Broadcast, FaultKind,
                     Send)
from .messages import NewView, PrePrepare, ViewChange
from .viewchange import NewViewPlan, check_new_view, check_view_change, compute_new_view

__all__ = ["ViewsMixin"]

VIEW_CHANGES_PER_SENDER = 4  # views kept per sender, from our own up
BACKOFF_CAP = 16  # the view-change timeout doubles per failed view, up to 16 x its base


class ViewsMixin:
    def _start_view_change(self, view: int) -> None:
        """Leave the current view: multicast VIEW-CHANGE(view, n, C, P)."""
        if view <= self.view:
            return
        self.view, self.active = view, False
        self.slots = {}
        self.ordered = {}
        self.queue = {}
        self._cancel_timer(TIMER_REQUEST)
        self._cancel_timer(TIMER_BATCH)
        prepared = tuple(self.prepared[s] for s in sorted(self.prepared) if s > self.low)
        vc = self._sign(ViewChange(self.ctx.channel, view, self.low, self.stable_state,
                                   self.stable_proof, prepared, self.name))
        self.my_view_change = vc
        self.my_view_changes[view] = vc
        for old in sorted(self.my_view_changes)[:-VIEW_CHANGES_PER_SENDER]:
            del self.my_view_changes[old]
        self._store_view_change(vc)
        self._dirty = True
        self._out.append(Broadcast(vc))
        self._trace("view-change", view=view, stable_seq=self.low, prepared=len(prepared))
        self._set_timer(TIMER_VIEW_CHANGE, self.view_change_timeout_ms)
        self._after_view_change_vote()

    def _on_view_change(self, vc: ViewChange) -> None:
        if vc.view < self.view or (vc.view == self.view and self.active):
            self._help_late_peer(vc)
            return
        problem = check_view_change(vc, self.ctx)
        if problem:
            self._fault(FaultKind.BAD_VIEW_CHANGE, vc.sender, problem)
            return
        if not self._store_view_change(vc):
            return
        self._after_view_change_vote()

    def _store_view_change(self, vc: ViewChange) -> bool:
        """Keep ``vc`` unless known; per sender, a few views from ours up.

        A sender's VIEW-CHANGE for v stays valid for a NEW-VIEW(v) after it moved on to
        v+1, so older ones are kept too (dropping them can leave 2f+1 replicas spread over
        two views with no quorum in either)."""
        votes = self.view_changes.setdefault(vc.sender, {})
        if vc.view in votes:
            return False
        votes[vc.view] = vc
        for v in [v for v in votes if v < self.view]:
            del votes[v]
        if len(votes) > VIEW_CHANGES_PER_SENDER:
            highest = max(votes)
            del votes[highest if highest != vc.view else min(votes)]
        return vc.view in votes

    def _view_change_votes(self, view: int) -> list[ViewChange]:
        return [votes[view] for votes in self.view_changes.values() if view in votes]

    def _help_late_peer(self, vc: ViewChange) -> None:
        """The sender is still changing to a view we already left or entered.

        If we entered it, relay our NEW-VIEW (self-certifying). If we moved on to a later
        view change, send our own VIEW-CHANGE for its view (it may have lost it, and without
        it the replicas still there may never reach 2f+1) and the one for our view (so the
        f+1 rule can pull it along)."""
        if vc.sender not in self.ctx.keyring.node_keys or vc.sender == self.name:
            return
        last = self.helped_at.get(vc.sender)
        if last is not None and last[0] == self.view and self.now_ms - last[1] < self.view_change_timeout_ms // 2:
            return  # answered recently; do not let a peer make us flood
        self.helped_at[vc.sender] = (self.view, self.now_ms)
        if self.active:
            if self.new_view is not None:
                self._out.append(Send(vc.sender, self.new_view))
            return
        old = self.my_view_changes.get(vc.view)
        for message in (old, self.my_view_change):
            if message is not None:
                self._out.append(Send(vc.sender, message))

    def _after_view_change_vote(self) -> None:
        higher = sorted((max(votes) for sender, votes in self.view_changes.items()
                         if sender != self.name and votes and max(votes) > self.view), reverse=True)
        if len(higher) >= self.f + 1:
            self._start_view_change(higher[self.f])  # liveness rule 2: join
            return
        if self.active:
            return
        votes = self._view_change_votes(self.view)
        if len(votes) < self.ctx.quorum:
            return
        if self.quorum_seen_view < self.view:
            self.quorum_seen_view = self.view
            self._set_timer(TIMER_VIEW_CHANGE, self.view_change_timeout_ms)  # rule 1: wait T
        if self.ctx.primary(self.view) == self.name and self.new_view_sent < self.view \
                and self.name in {vc.sender for vc in votes}:
            self._send_new_view(votes)

    def _send_new_view(self, votes: list[ViewChange]) -> None:
        mine = self.my_view_change
        others = sorted((vc for vc in votes if vc.sender != self.name), key=lambda vc: vc.sender)
        chosen = tuple([mine, *others][: self.ctx.quorum])
        plan = compute_new_view(chosen, self.view, self.ctx)
        pre_prepares = tuple(
            self._sign(PrePrepare(self.ctx.channel, self.view, seq, d, batch, self.name))
            for seq, batch, d in plan.batches)
        # V by digests (NewView): O carries the batches
        nv = self._sign(NewView(self.ctx.channel, self.view, tuple(vc.without_batches() for vc in chosen),
                                pre_prepares, self.name))
        self.new_view_sent = self.view
        self._out.append(Broadcast(nv))
        self._enter_view(nv, plan)

    def _on_new_view(self, nv: NewView) -> None:
        if nv.view < self.view or (nv.view == self.view and self.active):
            return  # already in this view (or later): a duplicate or a relay
        problem, plan = check_new_view(nv, self.ctx)
        if problem:
            self._fault(FaultKind.BAD_NEW_VIEW, nv.sender, problem)
            return
        self._enter_view(nv, plan)

    def _enter_view(self, nv: NewView, plan: NewViewPlan) -> None:
        view = nv.view
        self.view, self.active, self.new_view = view, True, nv
        self.my_view_change = None
        for votes in self.view_changes.values():
            for v in [v for v in votes if v <= view]:
                del votes[v]
        self._cancel_timer(TIMER_VIEW_CHANGE)
        self.slots = {}
        self.ordered = {}
        self._dirty = True
        self._trace("new-view", view=view, primary=nv.sender, min_seq=plan.stable_state.seq,
                    max_seq=plan.max_seq)
        self._adopt_checkpoint(plan.stable_state, plan.checkpoint_proof)
        for pp in nv.pre_prepares:
            if pp.seq > self.low:
                self._accept_pre_prepare(self._slot(pp.seq), pp)
        self.next_seq = max(plan.max_seq, self.low) + 1
        if self.is_primary():
            self.queue = {r: i for r, i in self.pending.items() if i[1] > self._known_nonce(i[0])}
        if self.pending:
            self._set_timer(TIMER_REQUEST, self.view_change_timeout_ms)
        future, self.future = self.future, []
        for msg in future:
            if msg.view >= view:
                self._on_message(msg)
        self._cut_batches(force=False)
        self._deliver()

    def _on_view_change_timer(self) -> None:
        if self.active:
            return
        self._fetch_what_f_plus_one_vouch_for()   # behind while it waits: catch up meanwhile
        if self.quorum_seen_view == self.view:
            # 2f+1 moved but no NEW-VIEW came: the next primary is faulty too (rule 1).
            self.view_change_timeout_ms = min(2 * self.view_change_timeout_ms,
                                              self.config.view_change_timeout_ms * BACKOFF_CAP)
            self._start_view_change(self.view + 1)
        else:
            if self.my_view_change is not None:
                self._out.append(Broadcast(self.my_view_change))  # retransmit
            self._set_timer(TIMER_VIEW_CHANGE, self.view_change_timeout_ms)
