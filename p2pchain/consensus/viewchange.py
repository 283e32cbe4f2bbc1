"""View changes, as pure functions: check a VIEW-CHANGE, compute and check a NEW-VIEW.

Castro & Liskov, OSDI'99 §4.4. When backups suspect the primary of
view v they multicast VIEW-CHANGE(v+1, n, C, P). The primary of v+1 gathers 2f+1 of them
(the set V) and multicasts NEW-VIEW(v+1, V, O), where O re-issues a pre-prepare in view v+1
for every sequence number between min-s (the latest stable checkpoint in V) and max-s (the
highest prepared sequence number in V): the batch of the prepared certificate with the
highest view for that number, or the null batch if V holds none. Because any request that
committed at an honest replica was prepared at 2f+1 replicas, at least one honest replica in
any V reports it, so O carries it into the new view: that is the safety argument.

Backups do not trust O: :func:`check_new_view` recomputes it from V with
:func:`compute_new_view` and compares.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ordering import Batch
from .checkpoint import check_checkpoint_proof
from .context import Context
from .messages import (CheckpointState, Checkpoint, NewView, PreparedCertificate, ViewChange,
                       null_batch)

__all__ = ["check_prepared_certificate", "check_view_change", "NewViewPlan",
           "compute_new_view", "check_new_view"]


def check_prepared_certificate(cert: PreparedCertificate, ctx: Context) -> str | None:
    """``None`` if ``cert`` is a pre-prepare by the primary of its view with 2f matching
    prepares from distinct backups, all validly signed (and its batch, where it carries
    one, matches the digest they sign)."""
    pp = cert.pre_prepare
    if pp.channel != ctx.channel:
        return "prepared certificate for another channel"
    primary = ctx.primary(pp.view)
    if pp.sender != primary:
        return f"pre-prepare of view {pp.view} not sent by its primary {primary}"
    if pp.batch is not None and ctx.batch_digest(pp.batch) != pp.digest:
        return f"batch digest mismatch in the certificate for seq {pp.seq}"
    senders = set()
    for p in cert.prepares:
        if (p.channel, p.view, p.seq, p.digest) != (pp.channel, pp.view, pp.seq, pp.digest):
            return f"prepare from {p.sender} does not match the pre-prepare for seq {pp.seq}"
        if p.sender == primary:
            return "the primary's own prepare cannot count"
        senders.add(p.sender)
    if len(senders) < 2 * ctx.f:
        return f"prepared certificate for seq {pp.seq} has {len(senders)} prepares, needs {2 * ctx.f}"
    for message in (pp, *cert.prepares):
        problem = ctx.check(message)
        if problem:
            return problem
    return None


def check_view_change(vc: ViewChange, ctx: Context, *, in_new_view: bool = False) -> str | None:
    """``None`` if ``vc`` is well-formed, validly signed, and its C and P sets check out.

    On its own a VIEW-CHANGE must carry its certificates' batches (the next primary
    re-issues them); inside a NEW-VIEW (``in_new_view``) their digests stand for them."""
    if vc.channel != ctx.channel:
        return "view change for another channel"
    if vc.view < 1:
        return "view change to view 0"
    K, L = ctx.config.checkpoint_interval, ctx.config.watermark_window
    if vc.stable_seq != vc.stable_state.seq or vc.stable_seq % K:
        return f"stable seq {vc.stable_seq} is not a checkpoint"
    problem = ctx.check(vc)
    if problem:
        return problem
    problem = check_checkpoint_proof(vc.stable_state, vc.checkpoint_proof, channel=ctx.channel,
                                     genesis_state=ctx.genesis_state, quorum=ctx.quorum,
                                     check=ctx.check)
    if problem:
        return problem
    seqs = set()
    for cert in vc.prepared:
        if cert.pre_prepare.batch is None and not in_new_view:
            return f"prepared certificate for seq {cert.seq} without its batch"
        if not vc.stable_seq < cert.seq <= vc.stable_seq + L:
            return f"prepared seq {cert.seq} outside ({vc.stable_seq}, {vc.stable_seq + L}]"
        if cert.view >= vc.view:
            return f"prepared certificate of view {cert.view} in a view change to {vc.view}"
        if cert.seq in seqs:
            return f"two prepared certificates for seq {cert.seq}"
        seqs.add(cert.seq)
        problem = check_prepared_certificate(cert, ctx)
        if problem:
            return problem
    return None


@dataclass(frozen=True, slots=True)
class NewViewPlan:
    """What V implies: the checkpoint to start from and the batches O re-issues.

    A batch is ``None`` where V names it by its digest only (a NEW-VIEW's V); the primary,
    which computes O from the VIEW-CHANGEs themselves, always has them.
    """

    stable_state: CheckpointState
    checkpoint_proof: tuple[Checkpoint, ...]
    batches: tuple[tuple[int, Batch | None, bytes], ...]  # (seq, batch, digest), seq ascending

    @property
    def max_seq(self) -> int:
        return self.batches[-1][0] if self.batches else self.stable_state.seq


def compute_new_view(view_changes: tuple[ViewChange, ...], view: int, ctx: Context) -> NewViewPlan:
    """The decision procedure of OSDI'99 §4.4, deterministic in V (not in its order).

    Ties are broken by fixed rules: among view changes with the same stable seq, the one from
    the smallest sender name supplies the proof (all certify the same state when at most f
    are faulty); among certificates of the same view for one seq, the smallest digest.
    """
    base = min(view_changes, key=lambda vc: (-vc.stable_seq, vc.sender))
    min_s = base.stable_seq
    best: dict[int, PreparedCertificate] = {}
    for vc in view_changes:
        for cert in vc.prepared:
            if cert.seq <= min_s:
                continue
            known = best.get(cert.seq)
            if known is None or (cert.view, known.pre_prepare.digest) > (known.view, cert.pre_prepare.digest):
                best[cert.seq] = cert
    max_s = max(best, default=min_s)
    primary = ctx.primary(view)
    batches = []
    for seq in range(min_s + 1, max_s + 1):
        cert = best.get(seq)
        if cert is None:
            batch = null_batch(primary)
            batches.append((seq, batch, ctx.batch_digest(batch)))
        else:
            batches.append((seq, cert.pre_prepare.batch, cert.pre_prepare.digest))
    return NewViewPlan(base.stable_state, base.checkpoint_proof, tuple(batches))


def check_new_view(nv: NewView, ctx: Context) -> tuple[str | None, NewViewPlan | None]:
    """Check ``nv`` by recomputing O from its V; returns (problem, plan)."""
    if nv.channel != ctx.channel:
        return "new view for another channel", None
    primary = ctx.primary(nv.view)
    if nv.sender != primary:
        return f"new view {nv.view} not sent by its primary {primary}", None
    problem = ctx.check(nv)
    if problem:
        return problem, None
    senders = set()
    for vc in nv.view_changes:
        if vc.view != nv.view:
            return f"view change for view {vc.view} inside new view {nv.view}", None
        if vc.sender in senders:
            return f"two view changes from {vc.sender}", None
        problem = check_view_change(vc, ctx, in_new_view=True)
        if problem:
            return f"view change from {vc.sender}: {problem}", None
        senders.add(vc.sender)
    if len(senders) < ctx.quorum:
        return f"new view carries {len(senders)} view changes, needs {ctx.quorum}", None
    plan = compute_new_view(nv.view_changes, nv.view, ctx)
    if len(nv.pre_prepares) != len(plan.batches):
        return f"O has {len(nv.pre_prepares)} pre-prepares, V implies {len(plan.batches)}", None
    for pp, (seq, batch, d) in zip(nv.pre_prepares, plan.batches):
        if (pp.channel, pp.view, pp.seq, pp.digest, pp.sender) != (ctx.channel, nv.view, seq, d, primary):
            return f"pre-prepare for seq {pp.seq} in O differs from the one V implies", None
        if ctx.batch_digest(pp.batch) != d:
            return f"batch of seq {pp.seq} in O does not match its digest", None
        problem = ctx.check(pp)
        if problem:
            return problem, None
    return None, plan
