"""When a request timeout may wait instead of suspecting the primary (nodes/engine.py)."""

from __future__ import annotations

from types import SimpleNamespace

from nodes.engine import CUT_OFF_S, LOOP_LAG_S, MAX_LATE_REARMS, ChannelEngine


def _engine(held: bool = False, silence: list | None = None) -> ChannelEngine:
    engine = object.__new__(ChannelEngine)  # only the timer decision is exercised
    engine.channel, engine._late_rearms, engine._cut_off = "transaction", 0, False
    silence = silence if silence is not None else [0.0]
    engine.hooks = SimpleNamespace(held_for_execution=lambda: held, silence_s=lambda: silence[0])
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
    silence = [CUT_OFF_S + 0.5]
    engine = _engine(silence=silence)
    assert all(engine._request_wait_is_ours(0.0) for _ in range(10))     # for as long as it hears nobody
    assert engine._cut_off
    silence[0] = 0.2                                                     # a peer heard again
    assert engine._request_wait_is_ours(0.0) is False and not engine._cut_off


def test_a_node_that_heard_a_peer_lately_suspects_the_primary():
    assert _engine(silence=[CUT_OFF_S - 0.1])._request_wait_is_ours(0.0) is False
