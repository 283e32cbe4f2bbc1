"""The market day's hourly check settles for 2f+1 agreeing nodes (nodes/agreement.py,
``quorum``); how its calls go around a node that is down is tested with the cluster client
(tests/p2pchain/test_cluster_client.py)."""

from __future__ import annotations

import asyncio

from nodes.agreement import wait_for_agreement

class _Status:
    def __init__(self, heights, crashed=False):
        self.heights, self.crashed = heights, crashed

    async def status(self):
        if self.crashed:
            return {"crashed": True, "channels": {}}
        return {"channels": {c: {"height": h, "head": f"h{h}", "state_root": f"r{h}"}
                             for c, h in zip(("transaction", "matching", "electricity"), self.heights)}}


def test_the_hourly_check_waits_for_every_node_then_settles_for_a_quorum_and_names_the_others():
    clients = {"node0": _Status((5, 2, 2)), "node1": _Status((7, 3, 2)), "node2": _Status((7, 3, 2)),
               "node3": _Status((7, 3, 2))}
    agreement = asyncio.run(wait_for_agreement(clients, quorum=3, grace_s=0.2, timeout_s=5))
    assert agreement == {"transaction": (7, "h7", "r7"), "matching": (3, "h3", "r3"), "electricity": (2, "h2", "r2")}
    assert agreement.behind == ("node0",)
    clients["node0"] = _Status((), crashed=True)
    agreement = asyncio.run(wait_for_agreement(clients, quorum=3, grace_s=10, timeout_s=5))
    assert agreement.behind == ("node0",) and agreement["transaction"] == (7, "h7", "r7")   # at once: all up agree
    clients["node1"] = _Status((6, 3, 2))           # two of four behind: no quorum of 3 at any height
    try:
        asyncio.run(wait_for_agreement(clients, quorum=3, grace_s=0.1, timeout_s=0.5))
    except TimeoutError:
        pass
    else:
        raise AssertionError("settled without 2f+1 agreeing nodes")
