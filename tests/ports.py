"""Free loopback ports for tests that start servers."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands out as the local end of outgoing connections."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999       # Linux's default


def free_port_block(count: int) -> int:
    """A base port such that base .. base+count-1 are all free on 127.0.0.1 right now,
    outside the ephemeral range: a port in it can be taken between this check and the
    server's bind as the local end of some outgoing connection (the cluster's own nodes
    dial each other while the later ones start; CI saw one "address already in use"
    that way)."""
    low, high = _ephemeral_range()
    spans = [(start, end) for start, end in ((10_000, low), (high + 1, 65_536)) if end - start > count]
    if not spans:
        spans = [(10_000, 65_536)]
    rng = random.Random()
    for _ in range(200):
        start, end = rng.choice(spans)
        base = rng.randrange(start, end - count)
        sockets = []
        try:
            for offset in range(count):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", base + offset))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free block of ports found")
