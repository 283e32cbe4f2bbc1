"""A long-running node's memory: the C heap kept from creeping, the garbage collector's work cut.

A node's Python objects and SQLite's caches stay flat after a few minutes (measured: see
``docs/performance.md``, "nodes and the cluster"), but glibc's allocator gives each thread
that allocates its own arena — the event loop, one execution thread per channel, the durable
writer — and freed memory scattered through many arenas is neither reused across them nor
returned to the system, so the resident size creeps up over a long run. Two remedies, both
glibc-only and harmless elsewhere (they report that they did nothing):

* :func:`cap_arenas` limits the arenas to two, before the node starts any thread;
* :func:`trim_forever` returns the arenas' free pages to the system once a minute.

And one for Python's cyclic garbage collector, :func:`settle_collector`, once the node has
started: everything alive then (the modules of numpy, scipy, aiohttp and the market, ~50,000
objects) lives as long as the process, so it is frozen out of the collector's generations,
and the youngest generation is collected every 7,000 allocations instead of 700. Measured
on a node at saturation: full collections walked ~95,000 objects (50-70 ms of CPU each,
in the middle of consensus), and the ~0.6 ms young collections ran ~15 times a second
while finding ~7 objects of cyclic garbage each (the rest is freed by reference counting).

None of this changes what a node computes, only how much memory it keeps and how often it
looks for cycles.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # from glibc's malloc.h
ARENAS = 2
TRIM_INTERVAL_S = 60.0
YOUNG_THRESHOLD = 7_000  # allocations between collections of the youngest generation (CPython's default: 700)


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_trim  # both exist only in glibc
    except (OSError, AttributeError):
        return None
    return libc


def cap_arenas(arenas: int = ARENAS) -> bool:
    """Limit glibc's malloc arenas to ``arenas``; call before starting threads.

    Returns whether the limit was set (False where the C library is not glibc).
    """
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas) == 1)


async def trim_forever(interval_s: float = TRIM_INTERVAL_S, libc: ctypes.CDLL | None = None) -> None:
    """Every ``interval_s`` seconds, hand the allocator's free pages back to the system."""
    libc = libc or _glibc()
    if libc is None:
        log.info("not glibc: the node's free heap pages are not trimmed")
        return
    while True:
        await asyncio.sleep(interval_s)
        libc.malloc_trim(0)


def settle_collector(young_threshold: int = YOUNG_THRESHOLD) -> int:
    """Freeze every object alive now out of the cyclic collector's reach and collect the
    youngest generation less often; call once the node has started, and again whenever
    long-lived parts were dropped or replaced (a crash and restart in the process): what was
    frozen before is first given back to the collector, so dropped cycles are freed, not
    kept forever. Returns how many objects are frozen."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
    return gc.get_freeze_count()
