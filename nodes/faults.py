"""Fault injection on a live node, for teaching and tests (``p2pchain fault``, the dashboard).

The faults act at the node's edge, around an honest replica, as the simulator's Byzantine
behaviours do (``p2pchain.sim.byzantine``): the replica follows the protocol, and what it
sends is withheld, delayed, corrupted or split before it reaches the wire. A Byzantine node
signs what it forges with its own key, as a real attacker holding that key would.

* ``isolate`` / ``heal`` — drop every frame to and from the peers (a partition of one), or
  only those of the peers named (isolating node0 and node1 from node2 and node3 splits the
  cluster 2|2: no side has a quorum); the node also refuses those peers' status polls, as
  a real partition would cut them;
* ``slow`` — delay every outgoing frame by ``slow_ms``;
* ``byzantine silent`` — send nothing, hear nothing (a crash that looks alive to clients);
* ``byzantine corrupt`` — every outgoing signature is flipped (peers refuse and count it);
* ``byzantine equivocate`` — as primary, half the backups get one PRE-PREPARE and the other
  half another for the same view and sequence number;
* ``byzantine bad-anchors`` — as primary, every PRE-PREPARE anchors the first anchored channel
  at the height it names but with a forged hash (re-signed); ``byzantine malformed-anchors``
  — its metadata is not anchors at all. Honest backups refuse either before they prepare
  (nodes/anchoring.py), and the primary's request timers bring a view change.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from p2pchain.consensus.messages import PrePrepare
from p2pchain.ledger.block import Anchor, Anchors

from .anchoring import anchors_of

__all__ = ["BYZANTINE_MODES", "FaultState"]

BYZANTINE_MODES = ("equivocate", "silent", "corrupt", "bad-anchors", "malformed-anchors")
MALFORMED_METADATA = b"\xc1"  # a byte msgpack never uses: not anchors, not anything


@dataclass
class FaultState:
    byzantine: str | None = None
    slow_ms: int = 0
    isolated_from: set[str] = field(default_factory=set)

    def describe(self) -> dict[str, Any]:
        return {"byzantine": self.byzantine, "slow_ms": self.slow_ms, "isolated": sorted(self.isolated_from)}

    def outgoing(self, node, pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        """Rewrite (peer, message) pairs as this node's fault mode dictates."""
        mode = self.byzantine
        if mode is None:
            return pairs
        if mode == "silent":
            return []
        if mode == "corrupt":
            return [(peer, msg if msg is None else replace(msg, signature=_flip(msg.signature))) for peer, msg in pairs]
        if mode in ("bad-anchors", "malformed-anchors"):
            return [(peer, _bad_anchors(node, msg, mode) if type(msg) is PrePrepare and msg.sender == node.name else msg)
                    for peer, msg in pairs]
        if mode == "equivocate":
            out, seen = [], 0
            for peer, msg in pairs:
                if type(msg) is PrePrepare and msg.sender == node.name and len(pairs) > 1:
                    seen += 1
                    if seen > len(pairs) // 2:
                        msg = _other_pre_prepare(node, msg)
                out.append((peer, msg))
            return out
        return pairs


def _flip(signature: bytes) -> bytes:
    if not signature:
        return b"\x00" * 64
    return bytes([signature[0] ^ 0xFF]) + signature[1:]


def _other_pre_prepare(node, msg: PrePrepare) -> PrePrepare:
    """The same view and sequence number, another valid batch (one millisecond later)."""
    batch = replace(msg.batch, timestamp_ms=msg.batch.timestamp_ms + 1)
    other = replace(msg, batch=batch, digest=batch.digest(), signature=b"")
    return replace(other, signature=node.key.sign(other.signing_bytes()))


def _bad_anchors(node, msg: PrePrepare, mode: str) -> PrePrepare:
    """The same PRE-PREPARE with forged (a wrong hash at a real height) or malformed anchors."""
    metadata = MALFORMED_METADATA
    anchors = anchors_of(msg.channel, msg.batch.metadata)
    if mode == "bad-anchors" and anchors is not None:
        (name, anchor), *rest = anchors.by_channel
        forged = Anchor(anchor.height, bytes(b ^ 0xFF for b in anchor.block_hash))
        metadata = Anchors(((name, forged), *rest)).to_metadata()
    batch = replace(msg.batch, metadata=metadata)
    other = replace(msg, batch=batch, digest=batch.digest(), signature=b"")
    return replace(other, signature=node.key.sign(other.signing_bytes()))
