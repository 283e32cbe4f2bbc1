"""What the integration tests share about a real cluster: running it, deploying the demo
contract, waiting until its nodes agree, and verifying a node's ledgers offline."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from nodes.agreement import wait_for_agreement
from nodes.deploy import deploy_contract
from nodes.launcher import Cluster
from p2pchain.client import Client, ClusterClient, Signer
from p2pchain.genesis import CHANNELS

DEMO = (Path(__file__).resolve().parents[2] / "contracts" / "demo.py").read_text()


@contextmanager
def running(cluster: Cluster):
    """Every node of ``cluster`` started and healthy; all stopped again on the way out."""
    cluster.start_all()
    try:
        asyncio.run(cluster.wait_healthy(timeout_s=90))
        yield cluster
    finally:
        cluster.stop_all()


def clients(cluster: Cluster, names=None) -> dict[str, Client]:
    return {name: Client(cluster.url(name), timeout_s=60) for name in (names or cluster.genesis.node_names)}


async def agree(cluster: Cluster, names=None, timeout_s: float = 60.0):
    """Wait until the nodes ``names`` (default all) report the same heads and roots."""
    opened = clients(cluster, names)
    for client in opened.values():
        await client.__aenter__()
    try:
        return await wait_for_agreement(opened, timeout_s=timeout_s)
    finally:
        for client in opened.values():
            await client.__aexit__(None, None, None)


async def deploy_demo(cluster: Cluster, channels, timeout_s: float) -> None:
    """Deploy ``contracts/demo.py`` on ``channels`` through node0, then wait until every node
    has executed it: a node still behind rightly refuses a contract it has not seen
    committed (404 unknown_contract)."""
    async with Client(cluster.url("node0")) as client:
        for channel in channels:
            await deploy_contract(client, cluster.directory, cluster.genesis, channel, "demo", DEMO)
    await agree(cluster, timeout_s=timeout_s)


async def assert_commits_kept(cluster: Cluster, commits: list[tuple[str, dict]], names=None) -> None:
    """Every commit a node answered -- (channel, ``submit(wait=True)``'s answer) -- is on each
    node of ``names`` (default all) in the very block and at the height that answer named:
    an acknowledged commit is never lost, moved or answered before it was final."""
    semaphore = asyncio.Semaphore(32)

    async def check(client: Client, name: str, channel: str, answer: dict) -> None:
        async with semaphore:
            found = await client.transaction(channel, answer["tx_id"])
        where = (found["height"], found["block"])
        assert where == (answer["height"], answer["block"]), (
            f"{name}: transaction {answer['tx_id']} of channel {channel} was answered committed at height "
            f"{answer['height']} in {answer['block'][:16]}, but is at {where[0]} in {where[1][:16]}")

    opened = clients(cluster, names)
    for client in opened.values():
        await client.__aenter__()
    try:
        await asyncio.gather(*(check(client, name, channel, answer) for name, client in opened.items()
                               for channel, answer in commits))
    finally:
        for client in opened.values():
            await client.__aexit__(None, None, None)


async def deploy_and_resume(cluster: Cluster, signers: dict[str, Signer]) -> None:
    """The demo contract on every channel, and each signer's nonces taken up from node0."""
    await deploy_demo(cluster, CHANNELS, timeout_s=90)
    async with Client(cluster.url("node0")) as client:
        for signer in signers.values():
            for channel in CHANNELS:
                await signer.resume(client, channel)


async def commit_records(cluster: Cluster, signers: dict[str, Signer], count: int, commits: list, *,
                         through: list[str], group: int | None = None, value: object = 1) -> None:
    """``count`` demo records by ``signers`` in turn over the three channels, sent to the
    nodes ``through`` (one that is down is gone around), ``group`` at a time (default one per
    signer; 3 makes about a block per channel each time), each waited for; every (channel,
    answer) is appended to ``commits``."""
    names = list(signers)[:group or len(signers)]
    async with ClusterClient({n: Client(cluster.url(n), timeout_s=30) for n in through}, give_up_s=30) as client:
        client.say = lambda *_: None
        for start in range(0, count, len(names)):
            sent = [(CHANNELS[(start + k) % 3], signers[name]) for k, name in enumerate(names)]
            answers = await asyncio.gather(*(
                client.submit(signer.transaction(channel, "demo", "record", {"topic": f"t{k}", "value": value}),
                              wait=True, prefer=through[k % len(through)])
                for k, (channel, signer) in enumerate(sent)))
            commits.extend((channel, answer) for (channel, _), answer in zip(sent, answers))


async def channel_states(cluster: Cluster, name: str) -> dict[str, dict]:
    """Node ``name``'s status of each channel (height, view, stable_checkpoint, halted, ...)."""
    async with Client(cluster.url(name), timeout_s=10) as client:
        return (await client.status())["channels"]


async def halted_reasons(cluster: Cluster, name: str) -> dict[str, str | None]:
    """Why each channel halted on node ``name`` (None: it runs)."""
    return {channel: state["halted"] for channel, state in (await channel_states(cluster, name)).items()}


async def restart_and_catch_up(cluster: Cluster, name: str, signers: dict[str, Signer], commits: list, *,
                               through: list[str], value: object = 1) -> None:
    """Stop and start node ``name``; once more records commit, every node agrees, none of
    ``name``'s channels is halted, and every commit in ``commits`` is where it was answered."""
    cluster.stop(name)
    cluster.start(name)
    await cluster.wait_healthy([name], timeout_s=60)
    await commit_records(cluster, signers, 30, commits, through=through, value=value)
    await agree(cluster, timeout_s=120)
    halted = await halted_reasons(cluster, name)
    assert not any(halted.values()), halted
    await assert_commits_kept(cluster, commits)


def verify(directory: Path, name: str) -> subprocess.CompletedProcess:
    """``p2pchain verify`` of node ``name``'s ledgers in the consortium at ``directory``."""
    return subprocess.run([sys.executable, "-m", "nodes.cli", "verify", str(directory / "nodes" / name)],
                          capture_output=True, text=True, timeout=300)
