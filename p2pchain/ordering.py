"""What consensus orders and how its decision is proven: batches and commit certificates.

This module is the narrow waist between consensus (``p2pchain/consensus``), which orders
batches, and the ledger (``p2pchain/ledger``), which turns each committed batch into a block
and must later prove, offline, that the consortium committed it.

* A :class:`Batch` is what a primary proposes in a PRE-PREPARE: the client requests (each
  one a transaction envelope in canonical bytes, opaque here), the proposer's name, the
  proposer's timestamp and opaque metadata (on the ``transaction`` channel: the anchors of
  the side chains). Its digest is PBFT's *d* (Castro & Liskov, OSDI'99, Section 4.2).
  A batch with no requests is PBFT's null request, used to fill gaps after a view change.
* Each replica's COMMIT for (channel, view, sequence number, d) is signed over
  :func:`commit_payload`; 2f+1 of them from distinct nodes form a
  :class:`CommitCertificate`, stored with the block. Anyone holding the genesis can check
  it with :meth:`CommitCertificate.check`.

Sequence numbers and block heights coincide: the batch committed at sequence number *n* of
a channel becomes block *n* of that channel (block 0 is the genesis block).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .crypto import BadSignature, verify
from .encoding import digest, encode

__all__ = ["Batch", "CommitCertificate", "commit_payload", "quorum"]


def quorum(f: int) -> int:
    """2f + 1: the votes that make a prepared or committed certificate."""
    return 2 * f + 1


@dataclass(frozen=True, slots=True)
class Batch:
    requests: tuple[bytes, ...]
    proposer: str
    timestamp_ms: int
    metadata: bytes = b""

    def to_value(self) -> dict[str, Any]:
        return {
            "requests": list(self.requests),
            "proposer": self.proposer,
            "timestamp_ms": self.timestamp_ms,
            "metadata": self.metadata,
        }

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Batch:
        return cls(
            requests=tuple(value["requests"]),
            proposer=value["proposer"],
            timestamp_ms=value["timestamp_ms"],
            metadata=value["metadata"],
        )

    def digest(self) -> bytes:
        return digest(self.to_value())

    @property
    def is_null(self) -> bool:
        return not self.requests


def commit_payload(channel: str, view: int, seq: int, batch_digest: bytes, sender: str) -> bytes:
    """The bytes a replica signs in its COMMIT message (and that a certificate re-checks)."""
    return encode(
        {"type": "commit", "channel": channel, "view": view, "seq": seq,
         "digest": batch_digest, "sender": sender}
    )


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    """2f+1 signed COMMITs for one batch digest at one (channel, view, seq)."""

    channel: str
    view: int
    seq: int
    batch_digest: bytes
    signatures: tuple[tuple[str, bytes], ...]  # (node name, signature), sorted by name

    def to_value(self) -> dict[str, Any]:
        return {
            "channel": self.channel, "view": self.view, "seq": self.seq,
            "digest": self.batch_digest,
            "signatures": [[name, sig] for name, sig in self.signatures],
        }

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> CommitCertificate:
        return cls(
            channel=value["channel"], view=value["view"], seq=value["seq"],
            batch_digest=value["digest"],
            signatures=tuple((name, sig) for name, sig in value["signatures"]),
        )

    def check(self, node_keys: Mapping[str, bytes], f: int) -> str | None:
        """``None`` if 2f+1 distinct members signed this commit, else what is wrong."""
        names = [name for name, _ in self.signatures]
        if names != sorted(set(names)):
            return "certificate signers are not distinct and sorted"
        valid = 0
        for name, signature in self.signatures:
            key = node_keys.get(name)
            if key is None:
                return f"certificate signer {name!r} is not a node of the consortium"
            try:
                verify(key, commit_payload(self.channel, self.view, self.seq, self.batch_digest, name), signature)
            except BadSignature:
                return f"commit signature of {name} does not verify"
            valid += 1
        if valid < quorum(f):
            return f"certificate has {valid} commit signatures, needs {quorum(f)}"
        return None
