"""Keeping a long-running node's C heap from creeping.

A node's Python objects and SQLite's caches stay flat after a few minutes (measured: see
``docs/performance.md``, "nodes and the cluster"), but glibc's allocator gives each thread
that allocates its own arena — the event loop, one execution thread per channel, the durable
writer — and freed memory scattered through many arenas is neither reused across them nor
returned to the system, so the resident size creeps up over a long run. Two remedies, both
glibc-only and harmless elsewhere (they report that they did nothing):

* :func:`cap_arenas` limits the arenas to two, before the node starts any thread;
* :func:`trim_forever` returns the arenas' free pages to the system once a minute.

Neither changes what a node computes, only how much memory it keeps.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # from glibc's malloc.h
ARENAS = 2
TRIM_INTERVAL_S = 60.0


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
