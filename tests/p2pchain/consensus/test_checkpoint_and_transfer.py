"""Checkpoints, garbage collection and state transfer (OSDI'99 §4.3)."""

from __future__ import annotations

from dataclasses import replace

from p2pchain.consensus import (BlockExecuted, Broadcast, CatchUp, ExecuteBatch, Fault, FaultKind,
                                FetchState, Received, RequestReceived, Send, SetTimer, Start,
                                StateTransferred, TimerFired)
from p2pchain.consensus.events import TIMER_REQUEST
from p2pchain.consensus.messages import (CheckpointState, Commit, CommittedEntry, FetchReply,
                                         FetchRequest, ViewChange)
from p2pchain.ordering import CommitCertificate

from .conftest import CHANNEL


def committed_replica(cluster, seqs, name="node1"):
    replica = cluster.replica(name)
    backup = "node3" if name == "node2" else "node2"
    for seq in seqs:
        pp = cluster.pre_prepare(seq)
        replica.handle(Received(1, pp))
        replica.handle(Received(2, cluster.prepare(pp, backup)))
        for sender in ("node0", backup):
            replica.handle(Received(3, cluster.commit(pp, sender)))
    assert replica.last_committed == max(seqs)
    return replica


def entry(cluster, seq):
    pp = cluster.pre_prepare(seq)
    commits = [cluster.sign(Commit(CHANNEL, 0, seq, pp.digest, n)) for n in ("node0", "node2", "node3")]
    cert = CommitCertificate(CHANNEL, 0, seq, pp.digest, tuple((c.sender, c.signature) for c in commits))
    return CommittedEntry(seq, pp.batch, cert)


def test_executing_a_checkpoint_seq_broadcasts_a_signed_checkpoint(cluster):
    replica = committed_replica(cluster, (1, 2))
    replica.handle(BlockExecuted(4, 1, b"s1"))
    actions = replica.handle(BlockExecuted(5, 2, b"s2"))
    [ckpt] = [a.message for a in actions if type(a) is Broadcast]
    state = CheckpointState(2, b"s2", (("alice", 2),))
    assert ckpt == cluster.checkpoint(state, "node1")


def test_checkpoint_becomes_stable_at_2f_plus_1_and_collects_garbage(cluster):
    replica = committed_replica(cluster, (1, 2, 3))
    replica.handle(BlockExecuted(4, 1, b"s1"))
    replica.handle(BlockExecuted(5, 2, b"s2"))
    state = CheckpointState(2, b"s2", (("alice", 2),))
    replica.handle(Received(6, cluster.checkpoint(state, "node0")))
    assert replica.low == 0
    replica.handle(Received(7, cluster.checkpoint(state, "node3")))
    assert replica.low == 2 and replica.stable_state == state
    assert sorted(replica.slots) == [3] and sorted(replica.committed) == [3]
    assert sorted(replica.prepared) == [3]
    assert {c.sender for c in replica.stable_proof} == {"node0", "node1", "node3"}


def test_checkpoints_with_different_digests_do_not_make_a_quorum(cluster):
    replica = committed_replica(cluster, (1, 2))
    replica.handle(BlockExecuted(4, 1, b"s1"))
    replica.handle(BlockExecuted(5, 2, b"s2"))
    for sender in ("node0", "node3"):
        replica.handle(Received(6, cluster.checkpoint(CheckpointState(2, b"other", ()), sender)))
    assert replica.low == 0


def test_replica_behind_a_stable_checkpoint_asks_its_peers_for_state(cluster):
    replica = cluster.replica("node1")
    state = CheckpointState(4, b"s4", (("alice", 4),))
    replica.handle(Received(1, cluster.checkpoint(state, "node0")))
    replica.handle(Received(2, cluster.checkpoint(state, "node2")))
    actions = replica.handle(Received(3, cluster.checkpoint(state, "node3")))
    assert [a.message for a in actions if type(a) is Broadcast] == [
        cluster.sign(FetchRequest(CHANNEL, 0, "node1"))]


def test_replica_whose_timer_runs_out_behind_f_plus_one_checkpoints_fetches(cluster):
    # One checkpoint may be a faulty replica's claim; f+1 are one honest replica's word.
    # Waiting for 2f+1 may be waiting for ever: with one replica silent, this replica's vote
    # may be the one the checkpoint lacks, while the primary, its window full, waits for the
    # checkpoint (simulator seed 97001874). So a timer that runs out fetches at f+1.
    replica = cluster.replica("node1")
    state = CheckpointState(4, b"s4", (("alice", 4),))
    replica.handle(RequestReceived(1, cluster.request(nonce=1)))
    replica.handle(Received(2, cluster.checkpoint(state, "node0")))
    lone = replica.handle(TimerFired(3, TIMER_REQUEST))
    assert not [a for a in lone if type(a) is Broadcast and type(a.message) is FetchRequest]
    replica.handle(Received(4, cluster.checkpoint(state, "node2")))      # f+1: no fetch yet, no timer out
    assert not replica.fetching
    actions = replica.handle(TimerFired(5, TIMER_REQUEST))
    assert cluster.sign(FetchRequest(CHANNEL, 0, "node1")) in [a.message for a in actions if type(a) is Broadcast]
    assert replica.low == 0 and replica.fetching     # not stable before 2f+1


def test_replica_alone_in_a_view_change_behind_f_plus_one_checkpoints_fetches_meanwhile(cluster):
    from p2pchain.consensus.events import TIMER_VIEW_CHANGE

    replica = cluster.replica("node1")
    replica._start_view_change(1)
    state = CheckpointState(4, b"s4", (("alice", 4),))
    for t, sender in enumerate(("node0", "node2")):
        replica.handle(Received(t, cluster.checkpoint(state, sender)))
    actions = replica.handle(TimerFired(5, TIMER_VIEW_CHANGE))
    assert cluster.sign(FetchRequest(CHANNEL, 0, "node1")) in [a.message for a in actions if type(a) is Broadcast]


def test_state_transfer_installs_a_proven_checkpoint_then_executes_certified_batches(cluster):
    replica = cluster.replica("node1")
    state = CheckpointState(4, b"s4", (("alice", 4),))
    proof = tuple(cluster.checkpoint(state, n) for n in ("node0", "node2", "node3"))
    reply = cluster.sign(FetchReply(CHANNEL, state, proof, (entry(cluster, 5),), None, "node2"))
    actions = replica.handle(Received(1, reply))
    [fetch] = [a for a in actions if type(a) is FetchState]
    assert (fetch.seq, fetch.state_digest) == (4, b"s4")
    assert not any(type(a) is ExecuteBatch for a in actions)  # not before the snapshot is in
    actions = replica.handle(StateTransferred(2, 4, b"s4"))
    assert [a.seq for a in actions if type(a) is ExecuteBatch] == [5]
    assert (replica.low, replica.last_committed, replica.clients) == (4, 5, {"alice": 5})


def test_a_replica_restarted_during_a_state_transfer_fetches_its_stable_checkpoint_again(cluster):
    # The transfer's progress is not persisted, but the checkpoint it adopted is: restarted
    # with its stable checkpoint above what it committed, the replica must fetch that state
    # again -- a peer's FETCH-REPLY with the same checkpoint is no news to it (not above low),
    # and the batches up to low are gone from every peer's log. It used to wait for ever.
    replica = cluster.replica("node1")
    state = CheckpointState(4, b"s4", (("alice", 4),))
    proof = tuple(cluster.checkpoint(state, n) for n in ("node0", "node2", "node3"))
    reply = cluster.sign(FetchReply(CHANNEL, state, proof, (entry(cluster, 5),), None, "node2"))
    assert [a.seq for a in replica.handle(Received(1, reply)) if type(a) is FetchState] == [4]
    restarted = cluster.replica("node1", durable=replica.durable_state())   # killed before the snapshot came
    assert (restarted.low, restarted.last_committed) == (4, 0)
    [fetch] = [a for a in restarted.handle(Start(2)) if type(a) is FetchState]
    assert (fetch.seq, fetch.state_digest) == (4, b"s4")
    actions = restarted.handle(StateTransferred(3, 4, b"s4"))
    assert [a.seq for a in actions if type(a) is ExecuteBatch] == [5]
    assert (restarted.low, restarted.last_committed, restarted.clients) == (4, 5, {"alice": 5})


def test_checkpoint_proof_with_only_2f_signatures_is_refused(cluster):
    replica = cluster.replica("node1")
    state = CheckpointState(4, b"s4", ())
    proof = tuple(cluster.checkpoint(state, n) for n in ("node0", "node2"))
    reply = cluster.sign(FetchReply(CHANNEL, state, proof, (), None, "node2"))
    assert [a.kind for a in replica.handle(Received(1, reply)) if type(a) is Fault] == [FaultKind.BAD_STATE]
    assert replica.low == 0


def test_certified_batch_whose_certificate_does_not_match_is_refused(cluster):
    replica = cluster.replica("node1")
    good = entry(cluster, 1)
    forged = replace(good, batch=replace(good.batch, timestamp_ms=123))
    reply = cluster.sign(FetchReply(CHANNEL, replica.stable_state, (), (forged,), None, "node2"))
    assert [a.kind for a in replica.handle(Received(1, reply)) if type(a) is Fault] == [FaultKind.BAD_STATE]
    assert replica.last_committed == 0


def test_peer_answers_a_fetch_request_with_its_committed_batches(cluster):
    replica = committed_replica(cluster, (1, 2), name="node2")
    actions = replica.handle(Received(1, cluster.sign(FetchRequest(CHANNEL, 1, "node3"))))
    [send] = actions
    assert type(send) is Send and send.to == "node3"
    assert [e.seq for e in send.message.entries] == [2]


def test_a_catch_up_hint_makes_a_replica_ask_its_peers_for_what_it_lacks(cluster):
    replica = cluster.replica("node1")
    actions = replica.handle(CatchUp(1, 7))
    [request] = [a.message for a in actions if type(a) is Broadcast]
    assert request == cluster.sign(FetchRequest(CHANNEL, 0, "node1"))
    assert replica.fetching


def test_a_catch_up_hint_at_or_below_what_is_committed_does_nothing(cluster):
    replica = committed_replica(cluster, (1, 2))
    assert [a for a in replica.handle(CatchUp(1, 2)) if type(a) is Broadcast] == []


def test_a_replica_catching_up_does_not_blame_the_primary_for_its_own_delay(cluster):
    replica = cluster.replica("node1")
    replica.handle(RequestReceived(1, cluster.request(nonce=1)))
    replica.handle(CatchUp(2, 9))
    actions = replica.handle(TimerFired(200, TIMER_REQUEST))
    assert replica.active and replica.view == 0
    assert any(type(a) is SetTimer and a.timer == TIMER_REQUEST for a in actions)


def test_a_fetch_goal_no_peer_serves_holds_the_view_change_back_only_once(cluster):
    # a faulty primary orders nothing and names a height nobody has (the node's catch-up
    # hint takes any message's seq); or every replica lost the same commit in a crash
    replica = cluster.replica("node1")
    replica.handle(RequestReceived(1, cluster.request(nonce=1)))
    replica.handle(CatchUp(2, 10**9))
    replica.handle(TimerFired(200, TIMER_REQUEST))
    assert replica.active and replica.view == 0 and replica.fetching
    actions = replica.handle(TimerFired(400, TIMER_REQUEST))      # the fetch brought nothing
    assert not replica.active and replica.view == 1
    assert [a.message.view for a in actions if type(a) is Broadcast and type(a.message) is ViewChange] == [1]


def test_a_fetch_that_moves_keeps_the_view_change_back(cluster):
    replica = cluster.replica("node1")
    replica.handle(RequestReceived(1, cluster.request(nonce=5)))
    replica.handle(CatchUp(2, 3))
    for now, seq in ((200, 1), (400, 2)):
        replica.handle(TimerFired(now, TIMER_REQUEST))
        assert replica.active and replica.view == 0
        replica.handle(Received(now + 1, cluster.sign(FetchReply(CHANNEL, replica.stable_state, (),
                                                                 (entry(cluster, seq),), None, "node2"))))
        replica.handle(BlockExecuted(now + 2, seq, b"s%d" % seq))
        assert replica.last_committed == replica.last_executed == seq    # not executing: fetching
    actions = replica.handle(TimerFired(600, TIMER_REQUEST))
    assert replica.active and replica.view == 0
    assert any(type(a) is SetTimer and a.timer == TIMER_REQUEST for a in actions)


def test_a_fetch_reply_holds_batches_up_to_its_byte_budget_and_the_peer_asks_again(cluster, monkeypatch):
    from p2pchain.consensus import recovery
    replica = committed_replica(cluster, (1, 2, 3, 4), name="node2")
    size = sum(map(len, replica.committed[1].batch.requests))
    monkeypatch.setattr(recovery, "FETCH_REPLY_BYTES", 2 * size)
    [send] = replica.handle(Received(1, cluster.sign(FetchRequest(CHANNEL, 0, "node3"))))
    assert [e.seq for e in send.message.entries] == [1, 2]
    [send] = replica.handle(Received(2, cluster.sign(FetchRequest(CHANNEL, 2, "node3"))))
    assert [e.seq for e in send.message.entries] == [3, 4]
    monkeypatch.setattr(recovery, "FETCH_REPLY_BYTES", 1)  # one batch goes whatever its size
    [send] = replica.handle(Received(3, cluster.sign(FetchRequest(CHANNEL, 0, "node3"))))
    assert [e.seq for e in send.message.entries] == [1]


def test_a_replica_short_of_its_goal_asks_again_at_once_after_a_reply_brought_batches(cluster):
    replica = cluster.replica("node1")
    replica.handle(CatchUp(1, 4))
    reply = cluster.sign(FetchReply(CHANNEL, replica.stable_state, (), (entry(cluster, 1), entry(cluster, 2)),
                                    None, "node2"))
    actions = replica.handle(Received(2, reply))
    assert replica.last_committed == 2
    assert [a.message for a in actions if type(a) is Broadcast] == [cluster.sign(FetchRequest(CHANNEL, 2, "node1"))]
    # the same batches again (another peer's answer) bring nothing: no new request
    actions = replica.handle(Received(3, cluster.sign(replace(reply, sender="node3"))))
    assert [a for a in actions if type(a) is Broadcast] == []
    reply = cluster.sign(FetchReply(CHANNEL, replica.stable_state, (), (entry(cluster, 3), entry(cluster, 4)),
                                    None, "node2"))
    actions = replica.handle(Received(4, reply))
    assert replica.last_committed == 4 and not replica.fetching
    assert [a for a in actions if type(a) is Broadcast] == []
