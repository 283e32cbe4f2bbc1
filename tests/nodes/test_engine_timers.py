"""When a request timeout may wait instead of suspecting the primary (nodes/engine.py)."""

from __future__ import annotations

from types import SimpleNamespace

from nodes.engine import CUT_OFF_S, LOOP_LAG_S, MAX_LATE_REARMS, ChannelEngine


def _engine(held: bool = False, heard: list | None = None) -> ChannelEngine:
    """An engine of a four-node channel (f = 1) that has heard ``heard[0]`` peers within CUT_OFF_S."""
    engine = object.__new__(ChannelEngine)  # only the timer decision is exercised
    engine.channel, engine._late_rearms, engine._cut_off = "transaction", 0, False
    engine.replica = SimpleNamespace(f=1, pending={b"request-1": ("ev01", 3), b"request-2": ("ev02", 1)})
    heard = heard if heard is not None else [3]
    windows = []

    def peers_heard(within_s: float) -> int:
        windows.append(within_s)
        return heard[0]
    relayed = []
    engine.hooks = SimpleNamespace(held_for_execution=lambda: held, peers_heard=peers_heard,
                                   relay=lambda channel, requests: relayed.append((channel, requests)))
    engine.windows, engine.relayed = windows, relayed
    return engine


def test_a_timeout_on_time_suspects_the_primary():
    assert _engine()._request_wait_is_ours(0.0) is False


def test_a_late_timeout_waits_at_most_max_late_rearms_times_in_a_row():
    engine = _engine()
    late = LOOP_LAG_S + 1.0
    assert [engine._request_wait_is_ours(late) for _ in range(MAX_LATE_REARMS + 1)] == [True] * MAX_LATE_REARMS + [False]
    # a timeout that is delivered resets the count: the next late one may wait again
    assert engine._request_wait_is_ours(late) is True


def test_a_timeout_on_time_resets_the_count_of_late_ones():
    engine = _engine()
    assert engine._request_wait_is_ours(LOOP_LAG_S * 2) is True
    assert engine._request_wait_is_ours(0.0) is False
    assert engine._late_rearms == 0


def test_a_pre_prepare_held_for_this_nodes_own_execution_always_waits():
    engine = _engine(held=True)
    assert all(engine._request_wait_is_ours(0.0) for _ in range(5))


def test_a_node_that_hears_no_peer_waits_instead_of_starting_a_view_change_alone():
    heard = [0]
    engine = _engine(heard=heard)
    assert all(engine._request_wait_is_ours(0.0) for _ in range(10))     # for as long as it hears nobody
    assert engine._cut_off and set(engine.windows) == {CUT_OFF_S}
    assert engine.relayed == []
    heard[0] = 2                                                         # 2f peers heard again:
    assert engine._request_wait_is_ours(0.0) is True and not engine._cut_off   # one more timeout, to catch up
    # and what it holds goes to every peer again (the primary never saw what came in meanwhile)
    assert engine.relayed == [("transaction", [b"request-1", b"request-2"])]
    assert engine._request_wait_is_ours(0.0) is False                   # then the primary is suspected


def test_a_node_on_the_side_of_a_two_two_split_waits_too():
    # it hears f = 1 peer: with itself two VIEW-CHANGEs of the 2f+1 = 3 a view change needs
    heard = [1]
    engine = _engine(heard=heard)
    assert all(engine._request_wait_is_ours(0.0) for _ in range(10)) and engine._cut_off
    heard[0] = 3                                                         # the split healed
    assert [engine._request_wait_is_ours(0.0) for _ in range(2)] == [True, False] and not engine._cut_off


def test_a_node_that_hears_2f_peers_suspects_the_primary():
    # the primary crashed: the two other backups are heard, and a view change can complete
    assert _engine(heard=[2])._request_wait_is_ours(0.0) is False
