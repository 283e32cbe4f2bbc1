"""What goes into a replica (events) and what comes out (actions).

The replica is sans-I/O (DESIGN.md decision 1, after h11): the shell feeds it one event at a
time through :meth:`Replica.handle` and carries out the actions it returns, in order. Every
event carries ``now_ms``, the shell's clock (virtual in the simulator), which is the only
time the core ever sees. Timers are actions too: ``SetTimer(name, delay_ms)`` asks the shell
to feed back ``TimerFired(now_ms, name)`` after the delay; setting a timer that is already
set re-arms it, and ``CancelTimer`` forgets it. At most one timer per name is pending.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Union

from ..ordering import Batch, CommitCertificate
from .messages import Message, Reply

__all__ = [
    "ReplicaMisuse", "Start", "Received", "RequestReceived", "TimerFired", "BlockExecuted", "StateTransferred",
    "Event", "Send", "Broadcast", "SetTimer", "CancelTimer", "ExecuteBatch", "SendReply",
    "FetchState", "Persist", "Trace", "Fault", "FaultKind", "Action",
    "TIMER_BATCH", "TIMER_REQUEST", "TIMER_VIEW_CHANGE", "TIMER_FETCH",
]

# Timer names (one pending timer per name).
TIMER_BATCH = "batch"  # primary: cut a batch after batch_timeout_ms
TIMER_REQUEST = "request"  # a pending request has waited too long: suspect the primary
TIMER_VIEW_CHANGE = "view-change"  # the NEW-VIEW is late: resend or move on to the next view
TIMER_FETCH = "fetch"  # a state-transfer request went unanswered: ask again


class ReplicaMisuse(Exception):
    """The shell broke the replica's contract (a local bug, not a peer's fault)."""


# -- events ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Start:
    """The shell has built (or rebuilt after a crash) the replica; arm timers, catch up."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class Received:
    """A message from a peer replica, already decoded (see ``messages.decode_message``)."""

    now_ms: int
    message: Message


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A client request: opaque bytes, checked by the injected ``RequestVerifier``."""

    now_ms: int
    request: bytes


@dataclass(frozen=True, slots=True)
class TimerFired:
    now_ms: int
    timer: str


@dataclass(frozen=True, slots=True)
class BlockExecuted:
    """The shell executed ``ExecuteBatch(seq)``: the application's state digest after it,
    and one ``(client, nonce, result)`` per request actually executed (a replayed nonce is
    skipped by the application and has no result)."""

    now_ms: int
    seq: int
    state_digest: bytes
    results: tuple[tuple[str, int, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class StateTransferred:
    """The shell installed the application snapshot asked for by ``FetchState``."""

    now_ms: int
    seq: int
    state_digest: bytes


@dataclass(frozen=True, slots=True)
class CatchUp:
    """The shell has seen peers ahead of this replica (messages for sequence numbers up to
    ``goal`` while it is not executing): ask them for the certified state and batches it
    lacks (FETCH-REQUEST). Nothing is taken on trust: replies are self-certifying."""

    now_ms: int
    goal: int


Event = Union[Start, Received, RequestReceived, TimerFired, BlockExecuted, StateTransferred, CatchUp]


# -- actions -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Send:
    to: str
    message: Message


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``message`` to every other replica of the channel."""

    message: Message


@dataclass(frozen=True, slots=True)
class SetTimer:
    timer: str
    delay_ms: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer: str


@dataclass(frozen=True, slots=True)
class ExecuteBatch:
    """Execute the committed batch at ``seq`` (emitted in sequence order, once per seq),
    then feed back ``BlockExecuted``. ``certificate`` proves the commit (stored with the block)."""

    channel: str
    seq: int
    view: int
    batch: Batch
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True)
class SendReply:
    client: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class FetchState:
    """Install the application snapshot at ``seq`` whose digest is ``state_digest`` (a
    certified checkpoint): fetch it from ``peers``, check the digest, then feed back
    ``StateTransferred``. Never install a snapshot whose digest differs."""

    channel: str
    seq: int
    state_digest: bytes
    peers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Persist:
    """The durable state changed: write ``replica.durable_state()`` before carrying out the
    actions after this one (write-ahead: never send a vote that a crash could forget)."""


@dataclass(frozen=True, slots=True)
class Trace:
    """A protocol milestone for logs and the dashboard (phase changes, views, checkpoints)."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)


class FaultKind(str, enum.Enum):
    """Why an input was refused. The first group is evidence against the sender; the
    second is ordinary in an asynchronous network (late or early messages)."""

    MALFORMED = "malformed"
    NOT_MEMBER = "not_member"
    BAD_SIGNATURE = "bad_signature"
    WRONG_CHANNEL = "wrong_channel"
    NOT_PRIMARY = "not_primary"
    DIGEST_MISMATCH = "digest_mismatch"
    CONFLICT = "conflict"  # equivocation: two different votes for one (view, seq)
    BAD_REQUEST = "bad_request"
    REQUEST_ORDER = "request_order"  # a batch that replays or reorders a client's nonces
    BAD_VIEW_CHANGE = "bad_view_change"
    BAD_NEW_VIEW = "bad_new_view"
    BAD_CHECKPOINT = "bad_checkpoint"
    BAD_STATE = "bad_state"
    STATE_DIVERGENCE = "state_divergence"
    STALE = "stale"  # for an older view or below the low watermark
    OUTSIDE_WATERMARKS = "outside_watermarks"

    @property
    def ordinary(self) -> bool:
        """Late or early, as any asynchronous network delivers (a node catching up sees
        hundreds): no evidence against the sender."""
        return self in (FaultKind.STALE, FaultKind.OUTSIDE_WATERMARKS)


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    peer: str
    detail: str


Action = Union[Send, Broadcast, SetTimer, CancelTimer, ExecuteBatch, SendReply, FetchState,
               Persist, Trace, Fault]
