"""A client's wait given up is dropped from the engine at once (no waiter kept for good)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from nodes.engine import ChannelEngine


def _bare_engine() -> ChannelEngine:
    """An engine with only the waiter bookkeeping: its replica has already committed ev01's
    nonces up to 100, so ``submit`` registers the wait and feeds nothing to consensus."""
    engine = object.__new__(ChannelEngine)
    engine._waiters, engine._arrivals = {}, {}
    engine.replica = SimpleNamespace(clients={"ev01": 100})
    return engine


def test_a_cancelled_wait_is_forgotten_and_a_live_one_on_the_same_request_is_kept():
    async def run():
        engine = _bare_engine()
        given_up = engine.submit(b"tx", "ev01", 7, wait=True)
        live = engine.submit(b"tx", "ev01", 7, wait=True)
        engine._arrivals[("ev01", 7)] = 1.0
        given_up.cancel()
        await asyncio.sleep(0)
        assert engine._waiters == {("ev01", 7): [live]} and ("ev01", 7) in engine._arrivals
        live.cancel()
        await asyncio.sleep(0)
        assert engine._waiters == {} and engine._arrivals == {}

    asyncio.run(run())


def test_a_wait_that_timed_out_in_the_api_leaves_nothing_behind():
    async def run():
        engine = _bare_engine()
        future = engine.submit(b"tx", "ev01", 3, wait=True)
        try:
            await asyncio.wait_for(future, 0.01)  # what the API does with ?wait=commit
        except asyncio.TimeoutError:
            pass
        await asyncio.sleep(0)
        assert engine._waiters == {}

    asyncio.run(run())


def test_a_wait_answered_normally_is_not_disturbed():
    async def run():
        engine = _bare_engine()
        future = engine.submit(b"tx", "ev01", 5, wait=True)
        for waiting in engine._waiters.pop(("ev01", 5)):  # what a committed block does
            waiting.set_result("committed")
        assert await future == "committed" and engine._waiters == {}

    asyncio.run(run())
