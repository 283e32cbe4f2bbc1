"""The node's allocator settings (nodes/memory.py): arenas capped, free pages trimmed."""

import asyncio
import platform

from nodes.memory import cap_arenas, trim_forever


def test_the_arena_cap_is_set_exactly_where_the_c_library_is_glibc():
    assert cap_arenas() == (platform.libc_ver()[0] == "glibc")


def test_the_node_trims_its_heap_every_interval_until_cancelled():
    trims: list[int] = []

    class Libc:
        @staticmethod
        def malloc_trim(pad: int) -> int:
            trims.append(pad)
            return 1

    async def run() -> int:
        task = asyncio.create_task(trim_forever(0.01, Libc()))
        for _ in range(500):
            if len(trims) >= 3:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        after_cancel = len(trims)
        await asyncio.sleep(0.05)
        return after_cancel

    after_cancel = asyncio.run(run())
    assert len(trims) >= 3 and set(trims) == {0}  # everything above the heap's top is given back
    assert len(trims) == after_cancel


def test_settling_the_collector_freezes_what_is_alive_and_collects_the_young_less_often():
    import gc

    from nodes.memory import YOUNG_THRESHOLD, settle_collector

    before = gc.get_threshold()
    alive = [[i] for i in range(1000)]  # containers alive at "start"
    try:
        frozen = settle_collector()
        assert frozen >= len(alive) and gc.get_freeze_count() == frozen
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:])
        collectable = {id(o) for generation in range(3) for o in gc.get_objects(generation=generation)}
        assert not any(id(x) in collectable for x in alive)  # out of every generation's reach
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_settling_again_frees_cycles_that_were_frozen_and_dropped_since():
    """A node settles the collector at start and again after an in-process crash: the
    closed channels' objects, frozen at start, must then be freed, not kept forever."""
    import gc
    import weakref

    from nodes.memory import settle_collector

    class Part:
        pass

    before = gc.get_threshold()
    part = Part()
    part.me = part  # a cycle: only the cyclic collector frees it
    gone = weakref.ref(part)
    try:
        settle_collector()
        del part
        gc.collect()
        assert gone() is not None  # frozen: out of the collector's reach
        settle_collector()
        assert gone() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
