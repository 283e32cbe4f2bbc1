"""State transfer: checking what a peer serves to a replica that fell behind.

A replica learns it is behind when 2f+1 replicas certify a checkpoint it has not reached
(OSDI'99 §4.3; the BFT library's state transfer, TOCS 2002, does the same with a partition
tree of page digests; we move whole snapshots), when a NEW-VIEW starts above its state, or when it restarts. It then asks its
peers (FETCH-REQUEST) and takes from any one reply what verifies:

* a stable checkpoint, proven by 2f+1 CHECKPOINT signatures over the
  :class:`CheckpointState` digest; the application snapshot itself is fetched by the shell
  (action ``FetchState``), which must check it against ``CheckpointState.app_digest``;
* the committed batches after it, each with a commit certificate of 2f+1 signed COMMITs;
* the peer's latest NEW-VIEW, which is self-certifying.

A lying peer can therefore slow a replica down but never make it install a wrong state.
"""

from __future__ import annotations

from ..ordering import commit_payload
from .context import Context
from .messages import CommittedEntry

__all__ = ["check_committed_entry"]


def check_committed_entry(entry: CommittedEntry, ctx: Context) -> str | None:
    """``None`` if ``entry`` carries a valid commit certificate for its batch."""
    cert = entry.certificate
    if cert.channel != ctx.channel or cert.seq != entry.seq:
        return f"certificate for {cert.channel}/{cert.seq} attached to seq {entry.seq}"
    if ctx.batch_digest(entry.batch) != cert.batch_digest:
        return f"batch of seq {entry.seq} does not match its certificate"
    names = [name for name, _ in cert.signatures]
    if names != sorted(set(names)):
        return "certificate signers are not distinct and sorted"
    if len(names) < ctx.quorum:
        return f"certificate has {len(names)} signatures, needs {ctx.quorum}"
    for name, signature in cert.signatures:
        payload = commit_payload(cert.channel, cert.view, cert.seq, cert.batch_digest, name)
        problem = ctx.keyring.check(name, payload, signature)
        if problem:
            return problem
    return None
