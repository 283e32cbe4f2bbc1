"""The watchdog's catch-up hint needs f+1 peers (nodes/catchup.py): one faulty peer naming a
height far ahead must not make a replica fetch for it."""

from __future__ import annotations

from types import SimpleNamespace

from nodes.engine import ChannelEngine
from p2pchain.consensus import CatchUp


def _engine(f: int = 1, executed: int = 5) -> ChannelEngine:
    engine = object.__new__(ChannelEngine)  # only the watchdog's decision is exercised
    engine.genesis = SimpleNamespace(consensus=SimpleNamespace(f=f))
    engine.halted = None
    engine._peer_heights = {}
    engine.replica = SimpleNamespace(last_executed=executed)
    engine._progress = (executed, -1e9)  # nothing executed for a long time
    engine.hooks = SimpleNamespace(now_ms=lambda: 0)
    engine.fed = []
    engine.feed = engine.fed.append
    engine._arm_watchdog = lambda: None
    return engine


def test_one_peer_far_ahead_vouches_for_nothing():
    engine = _engine()
    engine.note_peer_height("node3", 1_000_000)
    engine.note_peer_height("node1", 5)
    engine._check_lag()
    assert engine.vouched_height() == 5
    assert engine.fed == []


def test_f_plus_one_peers_ahead_start_a_catch_up_to_the_lower_of_their_heights():
    engine = _engine()
    engine.note_peer_height("node3", 1_000_000)
    engine.note_peer_height("node1", 40)
    engine.note_peer_height("node2", 30)
    engine._check_lag()
    assert [type(event) for event in engine.fed] == [CatchUp]
    assert engine.fed[0].goal == 40


def test_a_peer_height_only_rises():
    engine = _engine(f=0)
    engine.note_peer_height("node1", 40)
    engine.note_peer_height("node1", 7)
    assert engine.vouched_height() == 40


def test_no_catch_up_while_the_replica_moves():
    engine = _engine()
    engine.replica.last_executed = 6  # it executed since the last look
    engine.note_peer_height("node1", 40)
    engine.note_peer_height("node2", 40)
    engine._check_lag()
    assert engine.fed == []
    assert engine._progress[0] == 6
