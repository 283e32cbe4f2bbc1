"""The primary's batch timer (nodes/engine.py): fired at once when nothing of ours is in
flight, held while PIPELINE_BATCHES of our batches are, released when one executes, and
held at most MAX_BATCH_HOLD_S."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from nodes.engine import MAX_BATCH_HOLD_S, PIPELINE_BATCHES, ChannelEngine
from p2pchain.consensus.events import TIMER_BATCH, TimerFired


def _engine(in_flight: int) -> tuple[ChannelEngine, list]:
    """An engine with only the timer machinery; ``fed`` records what reaches the replica."""
    engine = object.__new__(ChannelEngine)
    engine._timers, engine._batch_held = {}, False
    engine.replica = SimpleNamespace(next_seq=11 + in_flight, last_executed=10)
    engine.hooks = SimpleNamespace(now_ms=lambda: 0)
    fed: list = []
    engine.feed = fed.append
    return engine, fed


def _batch_timers(fed: list) -> int:
    return sum(1 for event in fed if type(event) is TimerFired and event.timer == TIMER_BATCH)


def test_with_nothing_in_flight_the_batch_is_cut_in_this_turn_of_the_loop():
    async def run():
        engine, fed = _engine(in_flight=0)
        engine._set_timer(TIMER_BATCH, 5)
        await asyncio.sleep(0.002)           # well before the 5 ms
        assert _batch_timers(fed) == 1
    asyncio.run(run())


def test_a_batch_timer_is_held_while_our_batches_are_in_flight_and_released_when_one_executes():
    async def run():
        engine, fed = _engine(in_flight=PIPELINE_BATCHES)
        engine._set_timer(TIMER_BATCH, 1)
        await asyncio.sleep(0.01)
        assert _batch_timers(fed) == 0 and engine._batch_held
        engine.replica.last_executed += 1    # one of ours executed here
        engine._release_batch()
        assert _batch_timers(fed) == 1 and not engine._batch_held
        await asyncio.sleep(MAX_BATCH_HOLD_S + 0.02)
        assert _batch_timers(fed) == 1       # the held timer does not fire a second time
    asyncio.run(run())


def test_a_batch_timer_is_held_at_most_max_batch_hold_s():
    async def run():
        engine, fed = _engine(in_flight=PIPELINE_BATCHES)
        loop = asyncio.get_running_loop()
        started = loop.time()
        engine._set_timer(TIMER_BATCH, 1)
        while not _batch_timers(fed):
            await asyncio.sleep(0.002)
            assert loop.time() - started < MAX_BATCH_HOLD_S + 0.5
        assert loop.time() - started >= MAX_BATCH_HOLD_S
    asyncio.run(run())
