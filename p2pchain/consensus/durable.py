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
* its **recent VIEW-CHANGEs** (the last four views): a replica still waiting in an older
  view change may have lost ours, and only we can resend it (see :mod:`.views`);
* the **NEW-VIEW it sent or accepted** and the highest view it sent one for: a restarted
  primary must not send a second, different NEW-VIEW for the same view;
* its **stable checkpoint** with proof, the **committed batches** above it with their
  certificates, how far it committed and executed, the **client table**, and the **reply
  cache**: so it never re-executes or re-orders a client's request;
* the next sequence number it would propose as primary.

Lost on a crash, and rebuilt by protocol: pending client requests (clients retransmit),
timers, other replicas' checkpoint and view-change votes (they retransmit), state-transfer
progress (a replica restarted below its stable checkpoint fetches that state again). An
*amnesiac* restart keeps nothing; the simulator counts it against f.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..encoding import EncodingError, decode, encode
from .messages import (Checkpoint, CheckpointState, Commit, CommittedEntry, NewView,
                       PrePrepare, Prepare, PreparedCertificate, Reply, ViewChange)

__all__ = ["DurableSlot", "DurableState", "encode_durable_state", "decode_durable_state"]


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
    recent_view_changes: tuple[ViewChange, ...]
    new_view: NewView | None
    new_view_sent: int
    next_seq: int
    view_change_timeout_ms: int


def encode_durable_state(state: DurableState) -> bytes:
    """Canonical bytes of ``state``, for the shell to write to disk (fsync before sending)."""
    return encode({
        "format": 1, "view": state.view, "active": state.active,
        "stable_state": state.stable_state.to_value(),
        "stable_proof": [c.to_value() for c in state.stable_proof],
        "slots": [{"view": s.view, "seq": s.seq,
                   "pre_prepare": None if s.pre_prepare is None else s.pre_prepare.to_value(),
                   "prepares": [p.to_value() for p in s.prepares],
                   "commits": [c.to_value() for c in s.commits],
                   "sent_commit": s.sent_commit, "committed": s.committed} for s in state.slots],
        "prepared": [c.to_value() for c in state.prepared],
        "committed": [e.to_value() for e in state.committed],
        "last_committed": state.last_committed, "last_executed": state.last_executed,
        "clients": [[c, n] for c, n in state.clients],
        "client_snapshots": [[seq, [[c, n] for c, n in table]] for seq, table in state.client_snapshots],
        "own_states": [s.to_value() for s in state.own_states],
        "replies": [r.to_value() for r in state.replies],
        "my_view_change": None if state.my_view_change is None else state.my_view_change.to_value(),
        "recent_view_changes": [vc.to_value() for vc in state.recent_view_changes],
        "new_view": None if state.new_view is None else state.new_view.to_value(),
        "new_view_sent": state.new_view_sent, "next_seq": state.next_seq,
        "view_change_timeout_ms": state.view_change_timeout_ms,
    })


def decode_durable_state(data: bytes) -> DurableState:
    """The inverse of :func:`encode_durable_state`; raises ``MalformedMessage`` if corrupt."""
    from . import messages as m

    def typed(value):
        return m.decode_message(encode(value))

    try:
        v = decode(data, max_size=1 << 30)
        if v.get("format") != 1:
            raise m.MalformedMessage(f"unknown durable state format {v.get('format')!r}")
        pairs = lambda items: tuple((c, n) for c, n in items)  # noqa: E731
        return DurableState(
            view=v["view"], active=v["active"], stable_state=m._state(v["stable_state"]),
            stable_proof=tuple(typed(c) for c in v["stable_proof"]),
            slots=tuple(DurableSlot(s["view"], s["seq"],
                                    None if s["pre_prepare"] is None else typed(s["pre_prepare"]),
                                    tuple(typed(p) for p in s["prepares"]),
                                    tuple(typed(c) for c in s["commits"]),
                                    s["sent_commit"], s["committed"]) for s in v["slots"]),
            prepared=tuple(m._certificate(c) for c in v["prepared"]),
            committed=tuple(m._entry(e) for e in v["committed"]),
            last_committed=v["last_committed"], last_executed=v["last_executed"],
            clients=pairs(v["clients"]),
            client_snapshots=tuple((seq, pairs(table)) for seq, table in v["client_snapshots"]),
            own_states=tuple(m._state(s) for s in v["own_states"]),
            replies=tuple(typed(r) for r in v["replies"]),
            my_view_change=None if v["my_view_change"] is None else typed(v["my_view_change"]),
            recent_view_changes=tuple(typed(vc) for vc in v["recent_view_changes"]),
            new_view=None if v["new_view"] is None else typed(v["new_view"]),
            new_view_sent=v["new_view_sent"], next_seq=v["next_seq"],
            view_change_timeout_ms=v["view_change_timeout_ms"],
        )
    except m.MalformedMessage:
        raise
    except (EncodingError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise m.MalformedMessage(f"corrupt durable state: {exc!r}") from None
