"""A node whose disk fills up while the cluster runs: its channels halt with the disk's own
reason, the other three nodes go on, and its peers' links are not cut over and over; once
given room again and restarted, it catches up, and every commit the cluster answered is on
it at the height answered.

node3's directory is a tmpfs that a ballast file fills: mounting needs root, so elsewhere
the test is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest

from nodes.launcher import Cluster
from p2pchain.client import Client, ClusterClient, Signer
from p2pchain.consortium import create_consortium
from p2pchain.genesis import CHANNELS

from ..ports import free_port_block
from .clusters import agree, assert_commits_kept, deploy_demo, running, verify

pytestmark = pytest.mark.integration
PROSUMERS = [f"ev{i:02d}" for i in range(1, 16)]


def _mount(path: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` at ``path``; the reason it cannot be, or None."""
    if shutil.which("mount") is None:
        return "no mount command"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    return None if done.returncode == 0 else f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})"


def _fill(directory: Path) -> Path:
    """A ballast file taking every free byte of ``directory``'s file system."""
    ballast = directory / "ballast"
    with open(ballast, "wb") as out:
        try:
            while True:
                out.write(bytes(1 << 16))
                out.flush()
        except OSError:
            pass
    return ballast


async def _load(cluster: Cluster, signers: dict, count: int, commits: list, group: int = len(PROSUMERS)) -> None:
    """``count`` signed demo transactions with 2 kB values over the three channels, through
    node0..node2, ``group`` at a time (3: about a block per channel each time), each waited
    for; every answer kept as (channel, answer)."""
    names = ["node0", "node1", "node2"]
    async with ClusterClient({n: Client(cluster.url(n), timeout_s=30) for n in names}, give_up_s=30) as client:
        client.say = lambda *_: None
        for start in range(0, count, group):
            sent = []
            for k, name in enumerate(PROSUMERS[:group]):
                channel = CHANNELS[(start + k) % 3]
                tx = signers[name].transaction(channel, "demo", "record", {"topic": f"t{k}", "value": "x" * 2000})
                sent.append((channel, client.submit(tx, wait=True, prefer=names[k % 3])))
            answers = await asyncio.gather(*(job for _, job in sent))
            commits.extend((channel, answer) for (channel, _), answer in zip(sent, answers))


async def _halted(cluster: Cluster, name: str) -> dict[str, str | None]:
    async with Client(cluster.url(name), timeout_s=10) as client:
        status = await client.status()
    return {channel: state["halted"] for channel, state in status["channels"].items()}


async def _refused_halted(cluster: Cluster, name: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(cluster.url(name) + "/metrics") as response:
        text = await response.text()
    line = 'p2pchain_refused_total{edge="peer",reason="channel_halted"}'
    return sum(float(row.split()[-1]) for row in text.splitlines() if row.startswith(line))


def test_a_node_whose_disk_fills_halts_with_the_reason_and_catches_up_once_given_room(tmp_path):
    directory = tmp_path / "cluster"
    genesis = create_consortium(directory, now=dt.datetime.now(dt.timezone.utc), base_port=free_port_block(4))
    disk = directory / "nodes" / "node3"
    disk.mkdir(parents=True)
    reason = _mount(disk, "48m")
    if reason:
        pytest.skip(f"disk-full test skipped: {reason}")
    try:
        cluster = Cluster(directory, genesis)
        signers = {name: Signer.load(directory, name) for name in PROSUMERS}
        commits: list = []

        async def scenario():
            await deploy_demo(cluster, CHANNELS, timeout_s=90)
            async with Client(cluster.url("node0")) as client:
                for signer in signers.values():
                    for channel in CHANNELS:
                        await signer.resume(client, channel)
            ballast = _fill(disk)
            for _ in range(40):                      # until a write of node3 fails
                await _load(cluster, signers, 60, commits)
                if all((await _halted(cluster, "node3")).values()):
                    break
            halted = await _halted(cluster, "node3")
            assert all(halted.values()), halted
            assert any("database or disk is full" in why for why in halted.values()), halted
            logs = {name: directory / "logs" / f"{name}.log" for name in ("node0", "node3")}
            links_before = logs["node0"].read_text().count("link to node3 up")
            closed_before = logs["node3"].read_text().count("closing the link")
            # the three others go on: ~60 blocks a channel, past the hold of PRE-PREPAREs (40)
            # that waiting on a halted channel's heights would fill
            await _load(cluster, signers, 180, commits, group=3)
            await agree(cluster, ["node0", "node1", "node2"], timeout_s=60)
            assert await _refused_halted(cluster, "node3") > 0
            closed = logs["node3"].read_text().count("closing the link") - closed_before
            relinked = logs["node0"].read_text().count("link to node3 up") - links_before
            assert (closed, relinked) == (0, 0), f"node3 closed {closed} links, node0 linked to it {relinked} times"

            ballast.unlink()                         # room again; the operator restarts the node
            cluster.stop("node3")
            cluster.start("node3")
            await cluster.wait_healthy(["node3"], timeout_s=60)
            await _load(cluster, signers, 30, commits)
            await agree(cluster, timeout_s=120)
            assert not any((await _halted(cluster, "node3")).values())
            await assert_commits_kept(cluster, commits)

        with running(cluster):
            asyncio.run(scenario())
        for name in genesis.node_names:
            report = verify(directory, name)
            assert report.returncode == 0, report.stdout + report.stderr
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
