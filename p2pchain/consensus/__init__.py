"""PBFT consensus core, sans-I/O (DESIGN.md decision 1; docs/consensus.md).

Public API for shells (the node, the simulator):

* :class:`Replica` with ``handle(event) -> list[Action]`` and ``durable_state()``;
* events: :class:`Start`, :class:`Received`, :class:`RequestReceived`, :class:`TimerFired`,
  :class:`BlockExecuted`, :class:`StateTransferred`;
* actions: :class:`Send`, :class:`Broadcast`, :class:`SetTimer`, :class:`CancelTimer`,
  :class:`ExecuteBatch`, :class:`SendReply`, :class:`FetchState`, :class:`Persist`,
  :class:`Trace`, :class:`Fault`;
* messages and their wire form: :mod:`.messages` (``encode_message``/``decode_message``);
* :class:`Keyring`, :class:`RequestVerifier`, :class:`DurableState`.
"""

from .context import RequestRefused, RequestVerifier
from .durable import DurableState, decode_durable_state, encode_durable_state
from .events import (BlockExecuted, Broadcast, CancelTimer, CatchUp, ExecuteBatch, Fault, FaultKind,
                     FetchState, Persist, Received, RequestReceived, Send, SendReply, SetTimer,
                     Start, StateTransferred, TimerFired, Trace)
from .keys import Keyring
from .messages import MalformedMessage, decode_message, encode_message
from .replica import Replica, ReplicaMisuse

__all__ = [
    "Replica", "ReplicaMisuse", "Keyring", "RequestVerifier", "RequestRefused", "DurableState", "encode_durable_state", "decode_durable_state",
    "Start", "Received", "RequestReceived", "CatchUp", "TimerFired", "BlockExecuted", "StateTransferred",
    "Send", "Broadcast", "SetTimer", "CancelTimer", "ExecuteBatch", "SendReply", "FetchState",
    "Persist", "Trace", "Fault", "FaultKind", "MalformedMessage", "encode_message",
    "decode_message",
]
