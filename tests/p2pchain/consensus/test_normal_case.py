"""One message in, exact actions out: the normal case of PBFT (OSDI'99 §4.2)."""

from __future__ import annotations

from dataclasses import replace

from p2pchain.consensus import (BlockExecuted, Broadcast, CancelTimer, ExecuteBatch, Fault,
                                FaultKind, Persist, Received, RequestReceived, SendReply,
                                SetTimer, TimerFired)
from p2pchain.consensus.messages import Commit, PrePrepare, Prepare, Reply
from p2pchain.consensus.requests import BATCH_MAX_BYTES
from p2pchain.ordering import CommitCertificate

from .conftest import CHANNEL, CONFIG, PUBLIC


def kinds(actions):
    return [type(a).__name__ for a in actions]


def faults(actions):
    return [a.kind for a in actions if type(a) is Fault]


def prepared_replica(cluster, name="node1", seq=1, **options):
    """A backup that accepted a pre-prepare and one other backup's prepare (prepared)."""
    replica = cluster.replica(name, **options)
    pp = cluster.pre_prepare(seq)
    replica.handle(Received(1, pp))
    replica.handle(Received(2, cluster.prepare(pp, "node2")))
    return replica, pp


def test_backup_answers_a_valid_pre_prepare_with_exactly_one_signed_prepare(cluster):
    replica = cluster.replica("node1")
    pp = cluster.pre_prepare(1)
    actions = replica.handle(Received(1, pp))
    expected = cluster.sign(Prepare(CHANNEL, 0, 1, pp.digest, "node1"))
    assert actions == [Persist(), Broadcast(expected)]


def test_backup_commits_once_prepared_with_2f_matching_prepares(cluster):
    replica = cluster.replica("node1")
    pp = cluster.pre_prepare(1)
    replica.handle(Received(1, pp))
    actions = replica.handle(Received(2, cluster.prepare(pp, "node2")))
    assert actions == [Persist(), Broadcast(cluster.sign(Commit(CHANNEL, 0, 1, pp.digest, "node1")))]


def test_a_prepare_from_the_primary_does_not_count_toward_prepared(cluster):
    replica = cluster.replica("node1")
    pp = cluster.pre_prepare(1)
    replica.handle(Received(1, pp))
    actions = replica.handle(Received(2, cluster.prepare(pp, "node0")))
    assert faults(actions) == [FaultKind.NOT_PRIMARY]
    assert not any(type(a) is Broadcast for a in actions)


def test_committed_local_executes_with_a_commit_certificate_that_checks(cluster):
    replica, pp = prepared_replica(cluster)
    assert replica.handle(Received(3, cluster.commit(pp, "node0"))) == [Persist()]
    actions = replica.handle(Received(4, cluster.commit(pp, "node2")))
    assert kinds(actions) == ["Persist", "ExecuteBatch"]
    execute = actions[1]
    assert (execute.seq, execute.view, execute.batch) == (1, 0, pp.batch)
    assert isinstance(execute.certificate, CommitCertificate)
    assert execute.certificate.check(PUBLIC, f=1) is None
    assert [name for name, _ in execute.certificate.signatures] == ["node0", "node1", "node2"]


def test_batches_execute_in_sequence_order_even_when_committed_out_of_order(cluster):
    replica = cluster.replica("node1")
    pps = [cluster.pre_prepare(seq) for seq in (1, 2)]
    for pp in reversed(pps):
        replica.handle(Received(1, pp))
        replica.handle(Received(2, cluster.prepare(pp, "node2")))
    second = [replica.handle(Received(3, cluster.commit(pps[1], s))) for s in ("node0", "node2")]
    assert not any(type(a) is ExecuteBatch for out in second for a in out)
    replica.handle(Received(4, cluster.commit(pps[0], "node0")))
    actions = replica.handle(Received(5, cluster.commit(pps[0], "node2")))
    assert [a.seq for a in actions if type(a) is ExecuteBatch] == [1, 2]


def test_execution_result_goes_back_to_the_client_as_a_signed_reply(cluster):
    replica, pp = prepared_replica(cluster)
    for sender in ("node0", "node2"):
        replica.handle(Received(3, cluster.commit(pp, sender)))
    actions = replica.handle(BlockExecuted(5, 1, b"state", (("alice", 1, b"result"),)))
    reply = cluster.sign(Reply(CHANNEL, 0, 1, "alice", 1, b"result", "node1"))
    assert actions == [Persist(), SendReply("alice", reply)]


def test_a_replica_told_its_shell_answers_clients_itself_signs_and_keeps_no_reply(cluster):
    replica, pp = prepared_replica(cluster, replies=False)
    for sender in ("node0", "node2"):
        replica.handle(Received(3, cluster.commit(pp, sender)))
    actions = replica.handle(BlockExecuted(5, 1, b"state", (("alice", 1, b"result"),)))
    assert actions == [Persist()]
    assert replica.last_executed == 1 and replica.clients == {"alice": 1} and not replica.replies
    # a retransmission of the executed request is still recognised as a duplicate
    assert replica.handle(RequestReceived(6, pp.batch.requests[0])) == []


def test_a_retransmitted_request_gets_the_cached_reply_not_a_new_execution(cluster):
    replica, pp = prepared_replica(cluster)
    for sender in ("node0", "node2"):
        replica.handle(Received(3, cluster.commit(pp, sender)))
    [_, sent] = replica.handle(BlockExecuted(5, 1, b"state", (("alice", 1, b"result"),)))
    assert replica.handle(RequestReceived(6, pp.batch.requests[0])) == [sent]


def test_pre_prepare_from_a_backup_is_a_fault(cluster):
    replica = cluster.replica("node1")
    pp = cluster.pre_prepare(1, sender="node2")
    assert faults(replica.handle(Received(1, pp))) == [FaultKind.NOT_PRIMARY]


def test_forged_signature_is_a_fault_and_changes_nothing(cluster):
    replica = cluster.replica("node1")
    pp = cluster.sign(cluster.pre_prepare(1), as_node="node3")  # node3 signs in node0's name
    assert replica.handle(Received(1, pp)) == [
        Fault(FaultKind.BAD_SIGNATURE, "node0", replica.ctx.check(pp))]
    assert replica.slots == {}


def test_message_from_a_non_member_is_a_fault(cluster):
    replica = cluster.replica("node1")
    pp = cluster.pre_prepare(1)
    prepare = replace(cluster.prepare(pp, "node2"), sender="mallory")
    assert faults(replica.handle(Received(1, prepare))) == [FaultKind.NOT_MEMBER]


def test_message_for_another_channel_is_a_fault(cluster):
    replica = cluster.replica("node1")
    pp = cluster.sign(replace(cluster.pre_prepare(1), channel="matching"))
    assert faults(replica.handle(Received(1, pp))) == [FaultKind.WRONG_CHANNEL]


def test_message_for_an_old_view_is_stale(cluster):
    replica = cluster.replica("node1")
    replica.handle(TimerFired(1, "request"))  # no pending request: nothing happens
    replica._start_view_change(1)
    pp = cluster.pre_prepare(1)
    assert faults(replica.handle(Received(2, pp))) == [FaultKind.STALE]


def test_message_for_a_future_view_waits_silently_for_its_new_view(cluster):
    replica = cluster.replica("node1")
    pp = cluster.pre_prepare(1, view=1)
    assert replica.handle(Received(1, pp)) == []
    assert replica.future == [pp]


def test_sequence_number_above_the_high_watermark_is_refused(cluster):
    replica = cluster.replica("node1")
    pp = cluster.pre_prepare(CONFIG.watermark_window + 1)
    assert faults(replica.handle(Received(1, pp))) == [FaultKind.OUTSIDE_WATERMARKS]


def test_equivocating_primary_second_pre_prepare_is_a_conflict(cluster):
    replica = cluster.replica("node1")
    first = cluster.pre_prepare(1)
    other_batch = replace(first.batch, timestamp_ms=99)
    second = cluster.sign(replace(first, batch=other_batch, digest=other_batch.digest()))
    replica.handle(Received(1, first))
    assert replica.handle(Received(2, second)) == [
        Fault(FaultKind.CONFLICT, "node0", "second pre-prepare for view 0 seq 1")]
    assert replica.slots[1].pre_prepare == first


def test_pre_prepare_whose_batch_does_not_match_its_digest_is_refused(cluster):
    replica = cluster.replica("node1")
    pp = cluster.pre_prepare(1)
    forged = cluster.sign(replace(pp, batch=replace(pp.batch, timestamp_ms=1)))
    assert faults(replica.handle(Received(1, forged))) == [FaultKind.DIGEST_MISMATCH]


def test_replica_double_voting_a_prepare_is_a_conflict_and_only_its_first_vote_counts(cluster):
    replica = cluster.replica("node1")
    pp = cluster.pre_prepare(1)
    replica.handle(Received(1, pp))
    fake = cluster.prepare(pp, "node2", digest=b"\x01" * 32)
    assert replica.handle(Received(2, fake)) == [Persist()]  # first vote of node2: kept, no match
    actions = replica.handle(Received(3, cluster.prepare(pp, "node2")))
    assert faults(actions) == [FaultKind.CONFLICT]
    assert not any(type(a) is Broadcast for a in actions)


def test_replica_double_voting_a_commit_is_a_conflict(cluster):
    replica, pp = prepared_replica(cluster)
    replica.handle(Received(3, cluster.commit(pp, "node2")))
    actions = replica.handle(Received(4, cluster.commit(pp, "node2", digest=b"\x02" * 32)))
    assert faults(actions) == [FaultKind.CONFLICT]


def test_batch_that_replays_a_committed_nonce_is_refused(cluster):
    replica, pp = prepared_replica(cluster)
    for sender in ("node0", "node2"):
        replica.handle(Received(3, cluster.commit(pp, sender)))
    replay = cluster.pre_prepare(2, batch=cluster.batch(pp.batch.requests[0]))
    assert faults(replica.handle(Received(4, replay))) == [FaultKind.REQUEST_ORDER]


def test_primary_cannot_order_a_clients_later_nonce_before_an_earlier_one(cluster):
    replica = cluster.replica("node1")
    replica.handle(Received(1, cluster.pre_prepare(2, batch=cluster.batch(cluster.request(nonce=1)))))
    late = cluster.pre_prepare(1, batch=cluster.batch(cluster.request(nonce=2)))
    assert faults(replica.handle(Received(2, late))) == [FaultKind.REQUEST_ORDER]


def test_the_same_request_twice_in_one_batch_is_refused(cluster):
    replica = cluster.replica("node1")
    request = cluster.request()
    pp = cluster.pre_prepare(1, batch=cluster.batch(request, request))
    assert faults(replica.handle(Received(1, pp))) == [FaultKind.REQUEST_ORDER]


def test_batch_with_a_request_the_verifier_refuses_is_refused(cluster):
    replica = cluster.replica("node1")
    bad = cluster.request()[:-1] + b"\x00"  # signature byte flipped
    pp = cluster.pre_prepare(1, batch=cluster.batch(bad))
    assert faults(replica.handle(Received(1, pp))) == [FaultKind.BAD_REQUEST]


def test_unsigned_client_request_is_refused(cluster):
    replica = cluster.replica("node0")
    assert faults(replica.handle(RequestReceived(1, b"not a request"))) == [FaultKind.BAD_REQUEST]
    assert replica.pending == {}


def test_primary_cuts_a_batch_at_once_when_it_is_full(cluster):
    primary = cluster.replica("node0")
    assert primary.handle(RequestReceived(1, cluster.request("alice"))) == [
        SetTimer("request", CONFIG.view_change_timeout_ms), SetTimer("batch", CONFIG.batch_timeout_ms)]
    actions = primary.handle(RequestReceived(2, cluster.request("bob")))
    [broadcast] = [a for a in actions if type(a) is Broadcast]
    pp = broadcast.message
    assert type(pp) is PrePrepare and (pp.view, pp.seq) == (0, 1)
    assert pp.batch.requests == (cluster.request("alice"), cluster.request("bob"))
    assert pp.batch.timestamp_ms == 2 and pp.batch.proposer == "node0"
    assert CancelTimer("batch") in actions


def test_primary_cuts_a_partial_batch_when_the_batch_timer_fires(cluster):
    primary = cluster.replica("node0")
    primary.handle(RequestReceived(1, cluster.request("alice")))
    actions = primary.handle(TimerFired(6, "batch"))
    [broadcast] = [a for a in actions if type(a) is Broadcast]
    assert broadcast.message.batch.requests == (cluster.request("alice"),)
    assert broadcast.message.batch.timestamp_ms == 6


def test_primary_cuts_batches_at_batch_max_bytes_as_well_as_at_batch_max(cluster):
    # A PRE-PREPARE carries its batch: 100 transactions of the ledger's largest size would
    # make a frame no backup accepts. Five 30 KiB requests go out two, two and one.
    primary = cluster.replica("node0", config=replace(CONFIG, batch_max=100, watermark_window=10))
    big = [cluster.request(client, nonce, b"x" * 30_000) for nonce in (1, 2, 3) for client in ("alice", "bob")][:5]
    for k, request in enumerate(big):
        primary.handle(RequestReceived(k + 1, request))
    batches = []
    for now in (10, 20, 30, 40):
        batches += [a.message.batch.requests for a in primary.handle(TimerFired(now, "batch"))
                    if type(a) is Broadcast]
    assert [len(b) for b in batches] == [2, 2, 1]
    assert all(sum(map(len, b)) <= BATCH_MAX_BYTES for b in batches)
    assert sorted(r for b in batches for r in b) == sorted(big)


def test_a_request_of_the_largest_size_fills_a_batch_alone(cluster):
    primary = cluster.replica("node0", config=replace(CONFIG, batch_max=100))
    huge = cluster.request("alice", 1, b"x" * (BATCH_MAX_BYTES - 200))  # the verifier's limit is 64 KiB
    small = cluster.request("bob", 1, b"y" * 300)
    assert len(huge) <= BATCH_MAX_BYTES < len(huge) + len(small)
    primary.handle(RequestReceived(1, huge))
    primary.handle(RequestReceived(2, small))
    batches = [[a.message.batch.requests for a in primary.handle(TimerFired(now, "batch"))
                if type(a) is Broadcast] for now in (10, 20)]
    assert batches == [[(huge,)], [(small,)]]


def test_primary_orders_one_clients_requests_by_nonce_whatever_their_arrival(cluster):
    primary = cluster.replica("node0")
    primary.handle(RequestReceived(1, cluster.request("alice", 2)))
    actions = primary.handle(RequestReceived(2, cluster.request("alice", 1)))
    [broadcast] = [a for a in actions if type(a) is Broadcast]
    assert broadcast.message.batch.requests == (cluster.request("alice", 1), cluster.request("alice", 2))


def test_a_commit_drops_the_waiting_requests_its_nonces_reached_and_keeps_the_rest(cluster):
    replica = cluster.replica("node1")
    superseded = cluster.request("alice", 1, op=b"first")  # the batch commits another nonce 1 of alice's
    later, other = cluster.request("alice", 2), cluster.request("bob", 1)
    for t, request in enumerate((superseded, later, other)):
        replica.handle(RequestReceived(t, request))
    assert replica.pending_of == {"alice": {superseded: 1, later: 2}, "bob": {other: 1}}
    pp = cluster.pre_prepare(1, batch=cluster.batch(cluster.request("alice", 1, op=b"second")))
    replica.handle(Received(4, pp))
    replica.handle(Received(5, cluster.prepare(pp, "node2")))
    for sender in ("node0", "node2"):
        replica.handle(Received(6, cluster.commit(pp, sender)))
    assert replica.last_committed == 1
    assert list(replica.pending) == [later, other]
    assert replica.pending_of == {"alice": {later: 2}, "bob": {other: 1}}


def test_waiting_request_timeout_starts_a_view_change(cluster):
    replica = cluster.replica("node1")
    replica.handle(RequestReceived(1, cluster.request()))
    actions = replica.handle(TimerFired(101, "request"))
    [broadcast] = [a for a in actions if type(a) is Broadcast]
    vc = broadcast.message
    assert (vc.view, vc.stable_seq, vc.prepared, vc.sender) == (1, 0, (), "node1")
    assert SetTimer("view-change", CONFIG.view_change_timeout_ms) in actions
    assert (replica.view, replica.active) == (1, False)


def _committed_but_unexecuted(cluster, seqs, name="node1"):
    """A backup that committed ``seqs`` (alice's nonces) and has executed none of them."""
    replica = cluster.replica(name)
    for seq in seqs:
        pp = cluster.pre_prepare(seq)
        replica.handle(Received(1, pp))
        replica.handle(Received(2, cluster.prepare(pp, "node2")))
        for sender in ("node0", "node2"):
            replica.handle(Received(3, cluster.commit(pp, sender)))
    assert replica.last_committed == max(seqs) and replica.last_executed == 0
    return replica


def test_a_request_timeout_while_committed_batches_still_execute_here_waits_instead_of_changing_view(cluster):
    replica = _committed_but_unexecuted(cluster, (1,))
    replica.handle(RequestReceived(4, cluster.request("bob")))  # waits behind the execution
    actions = replica.handle(TimerFired(105, "request"))
    assert not [a for a in actions if type(a) is Broadcast]
    assert SetTimer("request", CONFIG.view_change_timeout_ms) in actions
    assert (replica.view, replica.active) == (0, True)
    replica.handle(BlockExecuted(106, 1, b"s1"))  # caught up: now the wait is the primary's
    actions = replica.handle(TimerFired(210, "request"))
    assert [type(a.message).__name__ for a in actions if type(a) is Broadcast] == ["ViewChange"]
    assert replica.view == 1


def test_a_request_timeout_with_the_whole_window_committed_waits_for_the_checkpoint(cluster):
    replica = _committed_but_unexecuted(cluster, range(1, CONFIG.watermark_window + 1))
    for seq in range(1, CONFIG.watermark_window + 1):
        replica.handle(BlockExecuted(10 + seq, seq, b"s%d" % seq))
    # executed everything, but no checkpoint became stable: the primary cannot order more
    assert (replica.low, replica.last_executed, replica.last_committed) == (0, CONFIG.watermark_window, CONFIG.watermark_window)
    replica.handle(RequestReceived(30, cluster.request("bob")))
    actions = replica.handle(TimerFired(140, "request"))
    assert not [a for a in actions if type(a) is Broadcast] and replica.view == 0


def test_the_batch_digest_cache_keeps_only_recent_batches_and_always_answers_right(cluster):
    from p2pchain.consensus.context import DIGEST_CACHE_LIMIT

    ctx = cluster.replica("node1").ctx
    batches = [cluster.batch(cluster.request("alice", n)) for n in range(1, DIGEST_CACHE_LIMIT + 50)]
    for batch in batches:
        assert ctx.batch_digest(batch) == batch.digest()
    assert len(ctx._digests) == DIGEST_CACHE_LIMIT  # bounded: a held batch is memory
    assert ctx.batch_digest(batches[0]) == batches[0].digest()  # evicted, computed again
    assert ctx.batch_digest(batches[-1]) == batches[-1].digest()


def test_the_signature_cache_is_bounded_oldest_out_and_never_accepts_a_forgery(monkeypatch):
    import p2pchain.consensus.keys as keys
    from p2pchain.consensus import Keyring

    from .conftest import KEYS

    monkeypatch.setattr(keys, "CACHE_LIMIT", 16)
    ring = Keyring("node1", KEYS["node1"], PUBLIC)
    payloads = [b"prepare %d" % i for i in range(40)]
    signatures = [KEYS["node2"].sign(p) for p in payloads]
    for payload, signature in zip(payloads, signatures):
        assert ring.check("node2", payload, signature) is None
    assert list(ring._verified) == [("node2", p, s) for p, s in zip(payloads, signatures)][-16:]  # the newest 16
    assert ring.check("node2", payloads[0], signatures[0]) is None  # evicted: verified again
    assert ring.check("node2", payloads[1], signatures[0]) is not None  # a mismatch is refused
    assert ring.check("node3", payloads[-1], signatures[-1]) is not None  # cached for node2, not for node3
