"""Checkpoints and their proofs (OSDI'99 §4.3).

Every K-th sequence number (``ConsensusConfig.checkpoint_interval``) each replica signs a
CHECKPOINT naming the digest of its :class:`CheckpointState`. 2f+1 matching ones from
distinct replicas make the checkpoint *stable*: the low watermark h moves up to it, the
high watermark to h + L, and everything at or below h is garbage-collected. The 2f+1
messages are the proof a VIEW-CHANGE or a state transfer carries.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable

from .messages import Checkpoint, CheckpointState

__all__ = ["check_checkpoint_proof", "CheckpointVotes"]


def check_checkpoint_proof(
    state: CheckpointState,
    proof: Iterable[Checkpoint],
    *,
    channel: str,
    genesis_state: CheckpointState,
    quorum: int,
    check: Callable[[Checkpoint], str | None],
) -> str | None:
    """``None`` if ``proof`` certifies ``state``; else what is wrong.

    Sequence number 0 needs no proof: it is the genesis state every replica starts from.
    """
    proof = tuple(proof)
    if state.seq == 0:
        if state != genesis_state:
            return "seq-0 checkpoint state is not the genesis state"
        return None
    wanted = state.digest()
    senders = set()
    for ckpt in proof:
        if ckpt.channel != channel or ckpt.seq != state.seq or ckpt.digest != wanted:
            return f"checkpoint from {ckpt.sender} does not match seq {state.seq}"
        problem = check(ckpt)
        if problem:
            return problem
        senders.add(ckpt.sender)
    if len(senders) < quorum:
        return f"checkpoint proof has {len(senders)} distinct signers, needs {quorum}"
    return None


class CheckpointVotes:
    """CHECKPOINT messages received above the low watermark, per sender bounded.

    A Byzantine peer could announce checkpoints at many far sequence numbers; each sender
    keeps at most ``per_sender`` of them (its newest), so memory stays bounded.
    """

    def __init__(self, per_sender: int) -> None:
        self.per_sender = per_sender
        self._by_seq: dict[int, dict[str, Checkpoint]] = defaultdict(dict)
        self._seqs_by_sender: dict[str, list[int]] = defaultdict(list)

    def add(self, ckpt: Checkpoint) -> bool:
        """Record ``ckpt``; ``False`` if the sender already signed another digest at its seq."""
        votes = self._by_seq[ckpt.seq]
        known = votes.get(ckpt.sender)
        if known is not None:
            return known.digest == ckpt.digest
        votes[ckpt.sender] = ckpt
        seqs = self._seqs_by_sender[ckpt.sender]
        seqs.append(ckpt.seq)
        if len(seqs) > self.per_sender:
            seqs.sort()
            oldest = seqs.pop(0)
            self._by_seq.get(oldest, {}).pop(ckpt.sender, None)
        return True

    def seqs(self) -> list[int]:
        """The sequence numbers with at least one vote."""
        return [seq for seq, votes in self._by_seq.items() if votes]

    def matching(self, seq: int, digest: bytes) -> list[Checkpoint]:
        votes = self._by_seq.get(seq, {})
        return sorted((c for c in votes.values() if c.digest == digest), key=lambda c: c.sender)

    def best_digest(self, seq: int) -> tuple[bytes | None, int]:
        """The digest at ``seq`` with most votes (ties: smallest digest) and its count."""
        counts: dict[bytes, int] = defaultdict(int)
        for c in self._by_seq.get(seq, {}).values():
            counts[c.digest] += 1
        if not counts:
            return None, 0
        d = min(counts, key=lambda k: (-counts[k], k))
        return d, counts[d]

    def seqs(self) -> list[int]:
        return sorted(s for s, votes in self._by_seq.items() if votes)

    def discard_through(self, seq: int) -> None:
        for s in [s for s in self._by_seq if s <= seq]:
            for sender in self._by_seq.pop(s):
                seqs = self._seqs_by_sender[sender]
                if s in seqs:
                    seqs.remove(s)
