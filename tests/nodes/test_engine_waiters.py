"""A client's wait given up is dropped from the engine at once (no waiter kept for good); a
wait is answered with its own transaction's commit, never another's with the same nonce."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from nodes.engine import ChannelEngine
from nodes.execution import NonceTaken


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
        given_up = engine.submit(b"tx", "ev01", 7, wait=b"id7")
        live = engine.submit(b"tx", "ev01", 7, wait=b"id7")
        engine._arrivals[("ev01", 7)] = 1.0
        given_up.cancel()
        await asyncio.sleep(0)
        assert engine._waiters == {("ev01", 7): [(b"id7", live)]} and ("ev01", 7) in engine._arrivals
        live.cancel()
        await asyncio.sleep(0)
        assert engine._waiters == {} and engine._arrivals == {}

    asyncio.run(run())


def test_a_wait_that_timed_out_in_the_api_leaves_nothing_behind():
    async def run():
        engine = _bare_engine()
        future = engine.submit(b"tx", "ev01", 3, wait=b"id3")
        try:
            await asyncio.wait_for(future, 0.01)  # what the API does with ?wait=commit
        except asyncio.TimeoutError:
            pass
        await asyncio.sleep(0)
        assert engine._waiters == {}

    asyncio.run(run())


def test_a_wait_is_answered_with_its_own_commit_and_one_whose_nonce_another_took_is_told_so():
    async def run():
        engine = _bare_engine()
        mine = engine.submit(b"tx", "ev01", 5, wait=b"\x01" * 32)
        same = engine.submit(b"tx", "ev01", 5, wait=b"\x01" * 32)       # the same transaction sent twice
        other = engine.submit(b"tx2", "ev01", 5, wait=b"\x02" * 32)     # signed again with the nonce
        tx = SimpleNamespace(creator="ev01", nonce=5, tx_id=b"\x01" * 32)
        engine._answer_waiters(("ev01", 5), SimpleNamespace(height=9), tx, "ok")  # what a committed block does
        assert (await mine)[1:] == (await same)[1:] == (b"\x01" * 32, "ok")
        try:
            await other
        except NonceTaken as taken:
            assert str(taken).startswith(f"nonce 5 of ev01 was taken by transaction {'01' * 32} at height 9")
        else:
            raise AssertionError("the other transaction's wait was answered with this one's commit")
        assert engine._waiters == {}

    asyncio.run(run())
