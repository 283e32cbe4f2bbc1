"""A block committed to the ledger that the node then cannot record (its index on a full
disk, say) halts the channel with the reason, instead of an exception escaping the event
loop's callback and leaving the replica never told the block was executed."""

from __future__ import annotations

import asyncio
import sqlite3
from types import SimpleNamespace

from nodes.engine import ChannelEngine


def test_a_block_the_node_cannot_record_halts_the_channel_with_the_reason():
    engine = object.__new__(ChannelEngine)
    engine.channel, engine.halted = "matching", None
    fed, released, halts = [], [], []
    engine.feed, engine._release_batch = fed.append, lambda: released.append(1)
    engine.halt = halts.append

    def committed(block):
        raise sqlite3.OperationalError("database or disk is full")
    engine._committed = committed

    async def run():
        done = asyncio.get_running_loop().create_future()
        done.set_result((SimpleNamespace(height=7), b"digest"))
        engine._executed(SimpleNamespace(seq=7), done)

    asyncio.run(run())
    assert halts == ["block 7 committed, but the node could not record it: "
                     "OperationalError('database or disk is full')"]
    assert fed == [] and released == []   # nothing more is reported as executed
