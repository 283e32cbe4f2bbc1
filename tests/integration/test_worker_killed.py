"""A node's contract worker killed from outside (the kernel's OOM killer, say) while the
cluster runs: that channel halts on the node with the reason, the other nodes go on; the
node's other channels, whose blocks anchor the halted one, fall behind a stable checkpoint
and start a state transfer that cannot finish. Restarted, the node must fetch those
checkpoints again (a transfer's progress is not persisted) and catch up on all three
channels, keeping every commit the cluster answered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from pathlib import Path

import pytest

from nodes.launcher import Cluster
from p2pchain.client import Signer
from p2pchain.consortium import create_consortium
from p2pchain.genesis import CHANNELS

from ..ports import free_port_block
from .clusters import agree, channel_states, commit_records, deploy_and_resume, restart_and_catch_up, running, verify

pytestmark = pytest.mark.integration
PROSUMERS = [f"ev{i:02d}" for i in range(1, 10)]
OTHERS = ["node0", "node1", "node3"]


def _workers_of(pid: int) -> list[int]:
    """The contract worker processes node process ``pid`` started, oldest first."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children
            if b"p2pchain.runtime.worker" in Path(f"/proc/{child}/cmdline").read_bytes()]


def test_a_node_whose_contract_worker_is_killed_halts_that_channel_and_catches_up_once_restarted(tmp_path):
    genesis = create_consortium(tmp_path, now=dt.datetime.now(dt.timezone.utc), base_port=free_port_block(4))
    cluster = Cluster(tmp_path, genesis)
    signers = {name: Signer.load(tmp_path, name) for name in PROSUMERS}
    commits: list = []

    async def scenario():
        await deploy_and_resume(cluster, signers)
        await commit_records(cluster, signers, 27, commits, through=OTHERS)
        workers = _workers_of(cluster.processes["node2"].pid)
        assert len(workers) == len(CHANNELS), workers
        os.kill(workers[CHANNELS.index("matching")], signal.SIGKILL)
        for _ in range(10):          # until node2's other channels lag behind a stable checkpoint
            await commit_records(cluster, signers, 45, commits, through=OTHERS)
            channels = await channel_states(cluster, "node2")
            if any(state["stable_checkpoint"] > state["height"] for state in channels.values()):
                break
        assert "contract worker failed (killed by SIGKILL)" in (channels["matching"]["halted"] or ""), channels
        assert any(state["stable_checkpoint"] > state["height"] for state in channels.values()), channels
        await agree(cluster, OTHERS, timeout_s=60)     # the others went on

        await restart_and_catch_up(cluster, "node2", signers, commits, through=OTHERS)

    with running(cluster):
        asyncio.run(scenario())
    for name in genesis.node_names:
        report = verify(tmp_path, name)
        assert report.returncode == 0, report.stdout + report.stderr
