"""Do all nodes agree? Compare the heads and state roots the nodes report, channel by channel."""

from __future__ import annotations

import asyncio
import time

from p2pchain.client import ApiError, Client
from p2pchain.genesis import CHANNELS

__all__ = ["Agreement", "wait_for_agreement"]


class Agreement(dict):
    """channel -> (height, head, state_root) that every answering node reports; ``behind``
    names the nodes left out (crashed, unreachable, or -- with a quorum -- lagging)."""

    behind: tuple[str, ...] = ()


async def _statuses(clients: dict[str, Client]) -> dict[str, dict]:
    async def one(name: str, client: Client):
        try:
            return name, await client.status()
        except (ApiError, OSError, asyncio.TimeoutError):
            return name, None
    answers = await asyncio.gather(*(one(n, c) for n, c in clients.items()))
    return {name: status for name, status in answers if status is not None and not status.get("crashed")}


async def wait_for_agreement(clients: dict[str, Client], *, timeout_s: float = 30.0,
                             at_least: dict[str, int] | None = None, quorum: int | None = None,
                             grace_s: float = 5.0) -> Agreement:
    """Wait until every reachable node reports the same head and state root on every channel.

    With ``quorum``, after ``grace_s`` also settle for that many nodes agreeing on every
    channel at the highest height so many reached: a node isolated, slowed down or made
    silent while a workload runs is then named in ``behind`` instead of holding it up.

    Raises ``AssertionError`` naming the channel and the nodes that disagree if they are at
    the same height with different roots (a divergence, never a matter of waiting), and
    ``TimeoutError`` if the heights do not meet in time.
    """
    started = time.monotonic()
    deadline = started + timeout_s
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
            agreement.behind = tuple(n for n in clients if n not in statuses)
            return agreement
        if quorum and time.monotonic() - started >= grace_s:
            agreement = _quorum_agreement(statuses, list(clients), quorum, at_least or {})
            if agreement is not None:
                return agreement
        if time.monotonic() > deadline:
            raise TimeoutError(f"nodes did not reach the same heights within {timeout_s:.0f} s")
        await asyncio.sleep(0.05)


def _quorum_agreement(statuses: dict[str, dict], names: list[str], quorum: int,
                      at_least: dict[str, int]) -> Agreement | None:
    """The agreement of ``quorum`` or more nodes on every channel, at the highest height
    that many share (``behind``: those of ``names`` outside it on some channel, or not
    answering), or None. A divergence is left to the full comparison, which names it."""
    agreement, nodes = Agreement(), set(statuses)
    for channel in CHANNELS:
        groups: dict[tuple, set[str]] = {}
        for name, status in statuses.items():
            view = status["channels"].get(channel)
            if view is not None and not view.get("halted"):
                groups.setdefault((view["height"], view["head"], view["state_root"]), set()).add(name)
        best = max((key for key, members in groups.items() if len(members) >= quorum), default=None)
        if best is None or best[0] < at_least.get(channel, 0):
            return None
        agreement[channel] = best
        nodes &= groups[best]
    agreement.behind = tuple(n for n in names if n not in nodes)
    return agreement
