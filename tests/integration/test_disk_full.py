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
from p2pchain.client import Signer
from p2pchain.consortium import create_consortium

from ..ports import free_port_block
from .clusters import agree, commit_records, deploy_and_resume, halted_reasons, restart_and_catch_up, running, verify

pytestmark = pytest.mark.integration
PROSUMERS = [f"ev{i:02d}" for i in range(1, 16)]
OTHERS = ["node0", "node1", "node2"]
BIG = "x" * 2000        # a value that fills the disk sooner


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
            await deploy_and_resume(cluster, signers)
            ballast = _fill(disk)
            for _ in range(40):                      # until a write of node3 fails
                await commit_records(cluster, signers, 60, commits, through=OTHERS, value=BIG)
                if all((await halted_reasons(cluster, "node3")).values()):
                    break
            halted = await halted_reasons(cluster, "node3")
            assert all(halted.values()), halted
            # SQLite's own reason (which write hits the full disk first decides which one),
            # never the failed ROLLBACK's after it
            assert any("database or disk is full" in why or "disk I/O error" in why for why in halted.values()), halted
            assert not any("cannot rollback" in why for why in halted.values()), halted
            logs = {name: directory / "logs" / f"{name}.log" for name in ("node0", "node3")}
            links_before = logs["node0"].read_text().count("link to node3 up")
            closed_before = logs["node3"].read_text().count("closing the link")
            # the three others go on: ~60 blocks a channel, past the hold of PRE-PREPAREs (40)
            # that waiting on a halted channel's heights would fill
            await commit_records(cluster, signers, 180, commits, through=OTHERS, group=3, value=BIG)
            await agree(cluster, ["node0", "node1", "node2"], timeout_s=60)
            assert await _refused_halted(cluster, "node3") > 0
            closed = logs["node3"].read_text().count("closing the link") - closed_before
            relinked = logs["node0"].read_text().count("link to node3 up") - links_before
            assert (closed, relinked) == (0, 0), f"node3 closed {closed} links, node0 linked to it {relinked} times"

            ballast.unlink()                         # room again; the operator restarts the node
            await restart_and_catch_up(cluster, "node3", signers, commits, through=OTHERS, value=BIG)

        with running(cluster):
            asyncio.run(scenario())
        for name in genesis.node_names:
            report = verify(directory, name)
            assert report.returncode == 0, report.stdout + report.stderr
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
