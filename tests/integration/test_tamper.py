"""A node whose execution is tampered with parts from the others at the next checkpoint,
detects it, halts that channel with a clear reason, and the other three go on (DESIGN.md
decision 5)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from nodes.agreement import wait_for_agreement
from nodes.demo import prepare_demo
from nodes.launcher import Cluster
from p2pchain.client import Client
from p2pchain.consortium import create_consortium

from ..ports import free_port_block

pytestmark = pytest.mark.integration


async def _day(cluster: Cluster, count: int, nodes: list[str]) -> dict:
    clients = {name: Client(cluster.url(name), timeout_s=60) for name in nodes}
    for client in clients.values():
        await client.__aenter__()
    try:
        signers = await prepare_demo(clients[nodes[0]], cluster.directory, cluster.genesis, say=lambda _: None)
        for i in range(count):
            tx = signers["ev01"].transaction("transaction", "demo", "record", {"topic": f"t{i}", "value": i})
            answer = await clients[nodes[i % len(nodes)]].submit(tx, wait=True)
            assert answer["result"]["status"] == "ok"
        return await wait_for_agreement(clients, timeout_s=60)
    finally:
        for client in clients.values():
            await client.__aexit__(None, None, None)


async def _status(cluster: Cluster, name: str) -> dict:
    async with Client(cluster.url(name)) as client:
        return await client.status()


def test_a_tampered_node_halts_its_channel_and_the_others_go_on(tmp_path):
    genesis = create_consortium(tmp_path, now=dt.datetime.now(dt.timezone.utc), base_port=free_port_block(4))
    cluster = Cluster(tmp_path, genesis, extra_args={"node3": ["--tamper", "transaction"]})
    honest = ["node0", "node1", "node2"]
    try:
        cluster.start_all()
        asyncio.run(cluster.wait_healthy(timeout_s=90))
        interval = genesis.consensus.checkpoint_interval
        asyncio.run(_day(cluster, 2 * interval + 2, honest))

        async def halted():
            for _ in range(100):
                channel = (await _status(cluster, "node3"))["channels"]["transaction"]
                if channel["halted"]:
                    return channel["halted"]
                await asyncio.sleep(0.1)
            return None
        reason = asyncio.run(halted())
        # Either at its own checkpoint ("state root differs from the one 2f+1 nodes certified") or,
        # when it fell behind, on catching up ("state after block N differs from the certified
        # checkpoint"): its transaction blocks' hashes part from the others' after the first
        # tampered block, so it refuses the side chains' PRE-PREPAREs that anchor the honest
        # ones (nodes/anchoring.py), lags there, and its transaction blocks wait for those anchors.
        assert reason and ("state root differs" in reason or "differs from the certified checkpoint" in reason), reason
        before = asyncio.run(_status(cluster, "node0"))["channels"]["transaction"]["height"]
        agreement = asyncio.run(_day(cluster, 5, honest))
        assert agreement["transaction"][0] > before
        log = (tmp_path / "logs" / "node3.log").read_text()
        assert "CHANNEL HALTED" in log
        other = asyncio.run(_status(cluster, "node3"))["channels"]["matching"]
        assert other["halted"] is None  # only the tampered channel stops
    finally:
        cluster.stop_all()
