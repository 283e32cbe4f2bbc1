"""What a replica must keep across a crash, and why.

A replica that restarts must never contradict what it signed before the crash; otherwise a
crash would count as a Byzantine fault. So it persists, before sending anything that depends
on them (the ``Persist`` action is write-ahead):

* its **view** and whether it is still changing to it: after VIEW-CHANGE(v+1) it must not
  prepare or commit in view v again, or a NEW-VIEW that left its vote out could be undone;
* the **log of the current view** (pre-prepares, prepares and commits, its own among them):
  it must not prepare or commit a second digest for a (view, seq);
* its **prepared certificates** of earlier views: the P set of its next VIEW-CHANGE; losing
  them could drop a committed request from a NEW-VIEW (OSDI'99 §4.4 safety argument);
* the **NEW-VIEW it sent or accepted** and the highest view it sent one for: a restarted
  primary must not send a second, different NEW-VIEW for the same view;
* its **stable checkpoint** with proof, the **committed batches** above it with their
  certificates, how far it committed and executed, the **client table**, and the **reply
  cache**: so it never re-executes or re-orders a client's request;
* the next sequence number it would propose as primary.

Lost on a crash, and rebuilt by protocol: pending client requests (clients retransmit),
timers, other replicas' checkpoint and view-change votes (they retransmit), state-transfer
progress. An *amnesiac* restart keeps nothing; the simulator counts it against f.
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import (Checkpoint, CheckpointState, Commit, CommittedEntry, NewView,
                       PrePrepare, Prepare, PreparedCertificate, Reply, ViewChange)

__all__ = ["DurableSlot", "DurableState"]


@dataclass(frozen=True, slots=True)
class DurableSlot:
    view: int
    seq: int
    pre_prepare: PrePrepare | None
    prepares: tuple[Prepare, ...]
    commits: tuple[Commit, ...]
    sent_commit: bool
    committed: bool


@dataclass(frozen=True, slots=True)
class DurableState:
    view: int
    active: bool
    stable_state: CheckpointState
    stable_proof: tuple[Checkpoint, ...]
    slots: tuple[DurableSlot, ...]
    prepared: tuple[PreparedCertificate, ...]
    committed: tuple[CommittedEntry, ...]
    last_committed: int
    last_executed: int
    clients: tuple[tuple[str, int], ...]
    client_snapshots: tuple[tuple[int, tuple[tuple[str, int], ...]], ...]
    own_states: tuple[CheckpointState, ...]
    replies: tuple[Reply, ...]
    my_view_change: ViewChange | None
    new_view: NewView | None
    new_view_sent: int
    next_seq: int
    view_change_timeout_ms: int
