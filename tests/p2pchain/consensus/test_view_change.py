"""View changes (OSDI'99 §4.4, TOCS §4.5): NEW-VIEW computation, verification, liveness rules."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchain.consensus import Broadcast, Fault, FaultKind, Received, Send, SetTimer, TimerFired
from p2pchain.consensus.messages import (CheckpointState, NewView, PrePrepare, Prepare,
                                         PreparedCertificate, ViewChange, null_batch)
from p2pchain.consensus.viewchange import check_new_view, compute_new_view
from p2pchain.sim.app import GENESIS_DIGEST

from .conftest import CHANNEL, CONFIG

GENESIS = CheckpointState(0, GENESIS_DIGEST, ())


def certificate(cluster, seq, view, batch):
    primary = f"node{view % 4}"
    pp = cluster.sign(PrePrepare(CHANNEL, view, seq, batch.digest(), batch, primary))
    backups = [n for n in ("node0", "node1", "node2", "node3") if n != primary][:2]
    return PreparedCertificate(pp, tuple(cluster.sign(Prepare(CHANNEL, view, seq, pp.digest, b)) for b in backups))


def view_change(cluster, sender, view=1, prepared=()):
    return cluster.sign(ViewChange(CHANNEL, view, 0, GENESIS, (), tuple(prepared), sender))


def sent(actions, kind):
    return [a.message for a in actions if type(a) in (Broadcast, Send) and type(a.message) is kind]


def test_new_view_reissues_the_highest_view_certificate_and_fills_gaps_with_null_batches(cluster):
    a = cluster.batch(cluster.request("alice", 1), proposer="node0")
    b = cluster.batch(cluster.request("bob", 1), proposer="node1")
    c = cluster.batch(cluster.request("alice", 2), proposer="node0")
    vcs = (view_change(cluster, "node0", 2, [certificate(cluster, 1, 0, a), certificate(cluster, 3, 0, c)]),
           view_change(cluster, "node1", 2, [certificate(cluster, 1, 1, b)]),
           view_change(cluster, "node3", 2))
    plan = compute_new_view(vcs, 2, cluster.replica("node2").ctx)
    assert [(seq, batch) for seq, batch, _ in plan.batches] == [(1, b), (2, null_batch("node2")), (3, c)]
    assert plan.stable_state == GENESIS and plan.max_seq == 3


def test_new_view_plan_does_not_depend_on_the_order_of_the_view_changes(cluster):
    a = cluster.batch(cluster.request("alice", 1), proposer="node0")
    vcs = [view_change(cluster, n, 1, [certificate(cluster, 2, 0, a)] if n == "node2" else []) for n in ("node1", "node2", "node3")]
    ctx = cluster.replica("node0").ctx
    assert compute_new_view(tuple(vcs), 1, ctx) == compute_new_view(tuple(reversed(vcs)), 1, ctx)


def test_backup_refuses_a_new_view_whose_O_differs_from_what_V_implies(cluster):
    vcs = tuple(view_change(cluster, n) for n in ("node1", "node2", "node3"))
    sneaked = cluster.batch(cluster.request("alice", 1), proposer="node1")
    pp = cluster.sign(PrePrepare(CHANNEL, 1, 1, sneaked.digest(), sneaked, "node1"))
    nv = cluster.sign(NewView(CHANNEL, 1, vcs, (pp,), "node1"))
    replica = cluster.replica("node2")
    assert check_new_view(nv, replica.ctx)[0] == "O has 1 pre-prepares, V implies 0"
    assert [a.kind for a in replica.handle(Received(1, nv)) if type(a) is Fault] == [FaultKind.BAD_NEW_VIEW]
    assert replica.view == 0


def test_new_view_with_only_2f_view_changes_is_refused(cluster):
    vcs = tuple(view_change(cluster, n) for n in ("node1", "node2"))
    nv = cluster.sign(NewView(CHANNEL, 1, vcs, (), "node1"))
    assert check_new_view(nv, cluster.replica("node3").ctx)[0] == "new view carries 2 view changes, needs 3"


def test_view_change_carrying_a_certificate_with_too_few_prepares_is_refused(cluster):
    a = cluster.batch(cluster.request("alice", 1), proposer="node0")
    cert = certificate(cluster, 1, 0, a)
    weak = replace(cert, prepares=cert.prepares[:1])
    vc = view_change(cluster, "node2", 1, [weak])
    replica = cluster.replica("node3")
    assert [a.kind for a in replica.handle(Received(1, vc)) if type(a) is Fault] == [FaultKind.BAD_VIEW_CHANGE]


def test_one_other_replicas_view_change_does_not_move_a_replica(cluster):
    replica = cluster.replica("node3")
    assert replica.handle(Received(1, view_change(cluster, "node2"))) == []
    assert (replica.view, replica.active) == (0, True)


def test_f_plus_1_view_changes_from_others_make_a_replica_join_without_its_timer(cluster):
    replica = cluster.replica("node3")
    replica.handle(Received(1, view_change(cluster, "node2")))
    actions = replica.handle(Received(2, view_change(cluster, "node0")))
    assert [vc.view for vc in sent(actions, ViewChange)] == [1]
    assert (replica.view, replica.active) == (1, False)


def test_join_picks_the_smallest_view_that_f_plus_1_others_support(cluster):
    replica = cluster.replica("node3")
    replica.handle(Received(1, view_change(cluster, "node2", view=5)))
    actions = replica.handle(Received(2, view_change(cluster, "node0", view=2)))
    assert [vc.view for vc in sent(actions, ViewChange)] == [2]


def test_n4_new_primary_sends_exactly_one_new_view_however_many_view_changes_arrive(cluster):
    primary = cluster.replica("node1")  # primary of view 1
    outputs = [primary.handle(Received(t, view_change(cluster, n))) for t, n in enumerate(("node2", "node3", "node0"))]
    broadcasts = [a.message for out in outputs for a in out if type(a) is Broadcast and type(a.message) is NewView]
    assert len(broadcasts) == 1 and broadcasts[0].view == 1
    relayed = [a.message for out in outputs for a in out if type(a) is Send]
    assert all(m == broadcasts[0] for m in relayed)  # a late view change gets the same one
    assert (primary.view, primary.active) == (1, True)
    again = primary.handle(Received(9, view_change(cluster, "node2")))
    assert all(type(a) is Send and a.message == broadcasts[0] for a in again)


def test_backup_entering_a_new_view_prepares_every_reissued_pre_prepare(cluster):
    a = cluster.batch(cluster.request("alice", 1), proposer="node0")
    vcs = tuple(view_change(cluster, n, 1, [certificate(cluster, 1, 0, a)] if n == "node2" else [])
                for n in ("node1", "node2", "node3"))
    plan = compute_new_view(vcs, 1, cluster.replica("node1").ctx)
    pps = tuple(cluster.sign(PrePrepare(CHANNEL, 1, s, d, b, "node1")) for s, b, d in plan.batches)
    nv = cluster.sign(NewView(CHANNEL, 1, vcs, pps, "node1"))
    replica = cluster.replica("node3")
    actions = replica.handle(Received(1, nv))
    assert [(p.view, p.seq, p.digest) for p in sent(actions, Prepare)] == [(1, 1, a.digest())]
    assert (replica.view, replica.active, replica.new_view) == (1, True, nv)


def test_new_view_timeout_with_a_quorum_moves_on_with_a_doubled_timeout(cluster):
    replica = cluster.replica("node2")
    replica._start_view_change(1)
    replica.handle(Received(1, view_change(cluster, "node0")))
    replica.handle(Received(2, view_change(cluster, "node3")))
    actions = replica.handle(TimerFired(300, "view-change"))
    assert [vc.view for vc in sent(actions, ViewChange)] == [2]
    assert SetTimer("view-change", 2 * CONFIG.view_change_timeout_ms) in actions


def test_new_view_timeout_without_a_quorum_retransmits_instead_of_moving_on(cluster):
    replica = cluster.replica("node2")
    replica._start_view_change(1)
    actions = replica.handle(TimerFired(100, "view-change"))
    assert [vc.view for vc in sent(actions, ViewChange)] == [1]
    assert replica.view == 1


def test_replica_in_the_new_view_relays_its_new_view_to_a_late_peer(cluster):
    primary = cluster.replica("node1")
    for t, n in enumerate(("node2", "node3")):
        primary.handle(Received(t, view_change(cluster, n)))
    actions = primary.handle(Received(5, view_change(cluster, "node0")))
    assert actions == [Send("node0", primary.new_view)]


def test_prepared_certificates_survive_view_changes_until_garbage_collected(cluster):
    replica = cluster.replica("node1")
    pp = cluster.pre_prepare(1)
    replica.handle(Received(1, pp))
    replica.handle(Received(2, cluster.prepare(pp, "node2")))
    replica._start_view_change(1)
    first = replica.my_view_change
    replica.handle(TimerFired(3, "view-change"))  # no quorum: retransmits only
    replica._start_view_change(2)
    second = replica.my_view_change
    for vc in (first, second):
        [cert] = vc.prepared
        assert (cert.view, cert.seq, cert.pre_prepare.digest) == (0, 1, pp.digest)


def full_window_view_changes(cluster, view=1):
    """2f+1 VIEW-CHANGEs to ``view``, each holding the consortium's window (40) of prepared
    batches at BATCH_MAX_BYTES: the largest a VIEW-CHANGE can be, and the most a NEW-VIEW
    can be asked to carry."""
    from p2pchain.consensus.requests import BATCH_MAX_BYTES
    from p2pchain.consortium import CONSENSUS_DEFAULTS
    window = CONSENSUS_DEFAULTS["watermark_window"]
    certs = []
    for seq in range(1, window + 1):
        requests = [cluster.request("alice", 100 * seq + k, b"x" * 7_000) for k in range(9)]
        assert sum(map(len, requests)) <= BATCH_MAX_BYTES < sum(map(len, requests)) + len(requests[0])
        certs.append(certificate(cluster, seq, 0, cluster.batch(*requests, proposer="node0")))
    return tuple(view_change(cluster, n, view, certs) for n in ("node0", "node2", "node3"))


def test_a_view_change_with_a_full_window_of_the_largest_batches_fits_a_peer_frame(cluster):
    # What BATCH_MAX_BYTES is for: the consortium's window (40) of prepared batches, each
    # at the bound, in one VIEW-CHANGE, still decodes and passes the peer links' limit.
    from p2pchain.consensus.messages import decode_message, encode_message
    from p2pchain.net.peers import LinkSettings
    vc = full_window_view_changes(cluster)[0]
    assert len(vc.prepared) == 40
    data = encode_message(vc)
    assert len(data) < LinkSettings().max_frame_bytes
    assert decode_message(data) == vc


def test_a_new_view_after_full_windows_of_the_largest_batches_fits_a_peer_frame_and_checks(cluster):
    # V travels by digests, O with the batches: one window of batches, not 2f+1 of them
    # (with V's batches this NEW-VIEW encoded to ~10 MB; the peer links refuse frames
    # above 4 MiB, so no backup could enter the view and every later primary failed alike)
    from p2pchain.consensus.messages import decode_message, encode_message
    from p2pchain.net.peers import LinkSettings
    vcs = full_window_view_changes(cluster)
    primary = cluster.replica("node1", config=replace(CONFIG, watermark_window=40))  # primary of view 1
    out = [a for t, vc in enumerate(vcs) for a in primary.handle(Received(t, vc))]
    assert not [a for a in out if type(a) is Fault]
    [nv] = [a.message for a in out if type(a) is Broadcast and type(a.message) is NewView]
    assert len(nv.pre_prepares) == 40 and all(pp.batch is not None for pp in nv.pre_prepares)
    assert all(c.pre_prepare.batch is None for vc in nv.view_changes for c in vc.prepared)
    data = encode_message(nv)
    assert len(data) < LinkSettings().max_frame_bytes
    assert len(data) < 1.1 * sum(len(encode_message(pp)) for pp in nv.pre_prepares)
    received = decode_message(data)
    assert received == nv
    backup = cluster.replica("node3", config=replace(CONFIG, watermark_window=40))
    actions = backup.handle(Received(1, received))
    assert not [a for a in actions if type(a) is Fault]
    assert (backup.view, backup.active) == (1, True)
    assert [p.seq for p in sent(actions, Prepare)] == list(range(1, 41))
    assert [p.digest for p in sent(actions, Prepare)] == [c.pre_prepare.digest for c in vcs[0].prepared]


def test_a_view_change_on_its_own_must_carry_its_certificates_batches(cluster):
    # the next primary re-issues them from the VIEW-CHANGEs: a digest alone is no batch
    a = cluster.batch(cluster.request("alice", 1), proposer="node0")
    vc = view_change(cluster, "node2", 1, [certificate(cluster, 1, 0, a)])
    bare = vc.without_batches()
    assert bare.signature == vc.signature and bare.signing_bytes() == vc.signing_bytes()
    replica = cluster.replica("node1")
    assert [a.kind for a in replica.handle(Received(1, bare)) if type(a) is Fault] == [FaultKind.BAD_VIEW_CHANGE]
    from p2pchain.consensus.messages import MalformedMessage, decode_message, encode_message
    try:
        decode_message(encode_message(bare))
    except MalformedMessage:
        pass
    else:
        raise AssertionError("a VIEW-CHANGE without its batches decoded")


def test_a_new_view_whose_O_batch_differs_from_the_digest_in_V_is_refused(cluster):
    a = cluster.batch(cluster.request("alice", 1), proposer="node0")
    other = cluster.batch(cluster.request("bob", 1), proposer="node0")
    vcs = tuple(view_change(cluster, n, 1, [certificate(cluster, 1, 0, a)]).without_batches()
                for n in ("node1", "node2", "node3"))
    swapped = cluster.sign(PrePrepare(CHANNEL, 1, 1, a.digest(), other, "node1"))
    nv = cluster.sign(NewView(CHANNEL, 1, vcs, (swapped,), "node1"))
    assert check_new_view(nv, cluster.replica("node2").ctx)[0] == "batch of seq 1 in O does not match its digest"
    relabelled = cluster.sign(PrePrepare(CHANNEL, 1, 1, other.digest(), other, "node1"))
    nv = cluster.sign(NewView(CHANNEL, 1, vcs, (relabelled,), "node1"))
    assert check_new_view(nv, cluster.replica("node2").ctx)[0] == \
        "pre-prepare for seq 1 in O differs from the one V implies"


def test_a_new_view_that_carries_V_with_its_batches_still_decodes_and_checks(cluster):
    # as the code before V went by digests sent and stored them
    from p2pchain.consensus.messages import decode_message, encode_message
    a = cluster.batch(cluster.request("alice", 1), proposer="node0")
    vcs = tuple(view_change(cluster, n, 1, [certificate(cluster, 1, 0, a)]) for n in ("node1", "node2", "node3"))
    pp = cluster.sign(PrePrepare(CHANNEL, 1, 1, a.digest(), a, "node1"))
    nv = cluster.sign(NewView(CHANNEL, 1, vcs, (pp,), "node1"))
    assert decode_message(encode_message(nv)) == nv
    assert check_new_view(nv, cluster.replica("node2").ctx)[0] is None


CERTS = st.lists(st.tuples(st.integers(1, 6), st.integers(0, 4), st.integers(0, 3)), max_size=6)


@settings(max_examples=40, deadline=None)
@given(st.tuples(CERTS, CERTS, CERTS))
def test_a_new_view_by_digests_implies_what_the_full_view_changes_imply_and_checks_after_the_wire(cluster, picks):
    # any V (certificates of any views and batches, conflicting ones included): stripping
    # V's batches changes nothing O is computed from, and the NEW-VIEW the primary builds
    # that way passes a backup's check after encoding and decoding
    from p2pchain.consensus.messages import decode_message, encode_message
    pool = [cluster.batch(cluster.request("alice", k + 1), proposer="node0") for k in range(4)]
    vcs = []
    for sender, pick in zip(("node0", "node2", "node3"), picks):
        by_seq = {seq: (view, k) for seq, view, k in pick}  # one certificate per seq and view change
        certs = [certificate(cluster, seq, view, replace(pool[k], proposer=f"node{view % 4}"))
                 for seq, (view, k) in sorted(by_seq.items())]
        vcs.append(view_change(cluster, sender, 5, certs))
    vcs = tuple(vcs)
    primary = cluster.replica("node1")  # primary of view 5
    full = compute_new_view(vcs, 5, primary.ctx)
    bare = tuple(vc.without_batches() for vc in vcs)
    by_digests = compute_new_view(bare, 5, primary.ctx)
    assert [(s, d) for s, _, d in by_digests.batches] == [(s, d) for s, _, d in full.batches]
    assert (by_digests.stable_state, by_digests.max_seq) == (full.stable_state, full.max_seq)
    assert all(b is not None and primary.ctx.batch_digest(b) == d for _, b, d in full.batches)
    pps = tuple(cluster.sign(PrePrepare(CHANNEL, 5, s, d, b, "node1")) for s, b, d in full.batches)
    nv = decode_message(encode_message(cluster.sign(NewView(CHANNEL, 5, bare, pps, "node1"))))
    problem, plan = check_new_view(nv, cluster.replica("node2").ctx)
    assert problem is None
    assert [(s, d) for s, _, d in plan.batches] == [(s, d) for s, _, d in full.batches]
