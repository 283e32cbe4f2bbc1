"""Do all nodes agree? Compare the heads and state roots the nodes report, channel by channel."""

from __future__ import annotations

import asyncio
import time

from p2pchain.client import ApiError, Client
from p2pchain.genesis import CHANNELS

__all__ = ["Agreement", "wait_for_agreement"]


class Agreement(dict):
    """channel -> (height, head, state_root) that every answering node reports."""


async def _statuses(clients: dict[str, Client]) -> dict[str, dict]:
    async def one(name: str, client: Client):
        try:
            return name, await client.status()
        except (ApiError, OSError, asyncio.TimeoutError):
            return name, None
    answers = await asyncio.gather(*(one(n, c) for n, c in clients.items()))
    return {name: status for name, status in answers if status is not None and not status.get("crashed")}


async def wait_for_agreement(clients: dict[str, Client], *, timeout_s: float = 30.0,
                             at_least: dict[str, int] | None = None) -> Agreement:
    """Wait until every reachable node reports the same head and state root on every channel.

    Raises ``AssertionError`` naming the channel and the nodes that disagree if they are at
    the same height with different roots (a divergence, never a matter of waiting), and
    ``TimeoutError`` if the heights do not meet in time.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = await _statuses(clients)
        agreement, settled = Agreement(), True
        for channel in CHANNELS:
            # A node that halted the channel (its state parted from the certified one) has
            # said so and stopped: agreement is among the nodes still running it.
            views = {name: s["channels"][channel] for name, s in statuses.items()
                     if channel in s["channels"] and not s["channels"][channel].get("halted")}
            heights = {v["height"] for v in views.values()}
            if len(heights) != 1 or (at_least and min(heights) < at_least.get(channel, 0)):
                settled = False
                continue
            roots = {(v["head"], v["state_root"]) for v in views.values()}
            if len(roots) != 1:
                detail = ", ".join(f"{n}: root {v['state_root'][:12]}" for n, v in views.items())
                raise AssertionError(f"{channel}: nodes disagree at height {heights.pop()}: {detail}")
            head, root = roots.pop()
            agreement[channel] = (heights.pop(), head, root)
        if settled and statuses:
            return agreement
        if time.monotonic() > deadline:
            raise TimeoutError(f"nodes did not reach the same heights within {timeout_s:.0f} s")
        await asyncio.sleep(0.05)
