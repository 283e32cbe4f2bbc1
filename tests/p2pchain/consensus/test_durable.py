"""A replica restarted from its durable state never contradicts what it signed."""

from __future__ import annotations

from dataclasses import replace

from p2pchain.consensus import Broadcast, FaultKind, Received, Start
from p2pchain.consensus.messages import FetchRequest, NewView, Prepare, ViewChange
from p2pchain.consensus.messages import CheckpointState
from p2pchain.sim.app import GENESIS_DIGEST

from .conftest import CHANNEL

GENESIS = CheckpointState(0, GENESIS_DIGEST, ())


def test_restarted_backup_refuses_to_prepare_a_second_digest_for_the_same_slot(cluster):
    replica = cluster.replica("node1")
    pp = cluster.pre_prepare(1)
    replica.handle(Received(1, pp))
    restarted = cluster.replica("node1", durable=replica.durable_state())
    other = cluster.sign(replace(pp, batch=replace(pp.batch, timestamp_ms=9), digest=replace(pp.batch, timestamp_ms=9).digest()))
    actions = restarted.handle(Received(2, other))
    assert [a.kind for a in actions if hasattr(a, "kind")] == [FaultKind.CONFLICT]
    assert not any(type(a) is Broadcast and type(a.message) is Prepare for a in actions)


def test_restarted_replica_that_left_a_view_stays_out_of_it(cluster):
    replica = cluster.replica("node1")
    replica._start_view_change(1)
    restarted = cluster.replica("node1", durable=replica.durable_state())
    assert (restarted.view, restarted.active) == (1, False)
    actions = restarted.handle(Received(1, cluster.pre_prepare(1)))
    assert [a.kind for a in actions if hasattr(a, "kind")] == [FaultKind.STALE]


def test_restarted_replica_retransmits_its_view_change_and_asks_to_catch_up(cluster):
    replica = cluster.replica("node1")
    replica._start_view_change(1)
    restarted = cluster.replica("node1", durable=replica.durable_state())
    messages = [a.message for a in restarted.handle(Start(5)) if type(a) is Broadcast]
    assert messages == [replica.my_view_change, cluster.sign(FetchRequest(CHANNEL, 0, "node1"))]


def test_restarted_primary_never_sends_a_second_new_view_for_its_view(cluster):
    primary = cluster.replica("node1")
    for t, n in enumerate(("node2", "node3")):
        primary.handle(Received(t, cluster.sign(ViewChange(CHANNEL, 1, 0, GENESIS, (), (), n))))
    assert primary.new_view_sent == 1
    restarted = cluster.replica("node1", durable=primary.durable_state())
    late = cluster.sign(ViewChange(CHANNEL, 1, 0, GENESIS, (), (), "node0"))
    actions = restarted.handle(Received(9, late))
    assert not any(type(a) is Broadcast and type(a.message) is NewView for a in actions)
    assert restarted.new_view == primary.new_view


def test_durable_state_survives_its_byte_encoding_at_every_point_of_a_run():
    from p2pchain.consensus import decode_durable_state, encode_durable_state
    from p2pchain.sim.faults import Schedule
    from p2pchain.sim.network import NetworkConditions
    from p2pchain.sim.runner import build_simulation, finish

    schedule = Schedule(seed=3, crashes=(("node0", 40, 900),), heal_ms=900,
                        conditions=NetworkConditions(drop=0.1))
    sim = build_simulation(schedule)
    checked = 0
    original = sim._perform

    def perform_and_roundtrip(host, action):
        nonlocal checked
        if type(action).__name__ == "Persist" and checked < 400:
            state = host.replica.durable_state()
            assert decode_durable_state(encode_durable_state(state)) == state
            checked += 1
        return original(host, action)
    sim._perform = perform_and_roundtrip
    assert finish(sim, schedule).ok
    assert checked == 400


def test_corrupt_durable_state_bytes_are_refused():
    import pytest

    from p2pchain.consensus import MalformedMessage, decode_durable_state
    from p2pchain.encoding import encode

    with pytest.raises(MalformedMessage):
        decode_durable_state(encode({"format": 1, "view": 0}))


def test_restarted_replica_resends_its_old_view_change_to_a_peer_still_in_that_view_change(cluster):
    replica = cluster.replica("node3")
    replica._start_view_change(1)
    old = replica.my_view_change
    replica._start_view_change(2)
    current = replica.my_view_change
    restarted = cluster.replica("node3", durable=replica.durable_state())
    late = cluster.sign(ViewChange(CHANNEL, 1, 0, GENESIS, (), (), "node0"))
    actions = restarted.handle(Received(5, late))
    assert [(a.to, a.message) for a in actions] == [("node0", old), ("node0", current)]


def test_a_durable_state_ahead_of_the_applications_execution_is_refused_as_stores_that_disagree(cluster):
    """The replica persisted seq 8 as executed, but the ledger handed in stands at 5 (lost,
    or replaced by an older copy): the node must not resume from the two."""
    import pytest

    from p2pchain.consensus.recovery import StoresDisagree

    durable = replace(cluster.replica("node1").durable_state(), last_committed=8, last_executed=8)
    with pytest.raises(StoresDisagree, match="application at 5 is behind the executed seq 8"):
        cluster.replica("node1", durable=durable, executed_seq=5)
    assert cluster.replica("node1", durable=durable, executed_seq=8).last_executed == 8
