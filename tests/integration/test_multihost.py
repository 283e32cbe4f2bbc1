"""Four nodes on four hosts: network namespaces joined by a bridge, one host partitioned.

Each node runs in its own network namespace (``ip netns``) with its own address, so peers
and clients reach it only across the virtual network, exactly as across machines
(docs/deploy.md). One host is then cut off — with iptables inside its namespace where
iptables exists, else by taking its link down — and the other three must keep committing;
after the heal it must converge. The test needs root and ``ip``; where the machine does not
allow network namespaces it is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nodes.agreement import wait_for_agreement
from nodes.deploy import deploy_contract
from nodes.launcher import Cluster
from p2pchain.client import Client, Signer
from p2pchain.consortium import create_consortium
from p2pchain.genesis import CHANNELS

pytestmark = pytest.mark.integration
PREFIX = f"p2pc{os.getpid() % 10000}"
SUBNET = "10.231.{}.{}"  # the test's own hosts, inside namespaces this test creates
BRIDGE = f"{PREFIX}br"
NODES = 4


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _namespaces_allowed() -> str | None:
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = _ip("netns", "add", f"{PREFIX}probe", check=False)
    if probe.returncode != 0:
        return f"this machine does not allow network namespaces: {probe.stderr.strip()}"
    _ip("netns", "del", f"{PREFIX}probe", check=False)
    return None


class VirtualHosts:
    """NODES namespaces n0..n3 on a bridge; the test itself talks to them from the root namespace."""

    def __init__(self) -> None:
        self.octet = 100 + os.getpid() % 100
        self.names = [f"{PREFIX}n{i}" for i in range(NODES)]
        self.addresses = [SUBNET.format(self.octet, i + 1) for i in range(NODES)]

    def up(self) -> None:
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", SUBNET.format(self.octet, 254) + "/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        for i, ns in enumerate(self.names):
            _ip("netns", "add", ns)
            _ip("link", "add", f"{ns}h", "type", "veth", "peer", "name", f"{ns}c")
            _ip("link", "set", f"{ns}c", "netns", ns)
            _ip("link", "set", f"{ns}h", "master", BRIDGE)
            _ip("link", "set", f"{ns}h", "up")
            _ip("netns", "exec", ns, "ip", "addr", "add", self.addresses[i] + "/24", "dev", f"{ns}c")
            _ip("netns", "exec", ns, "ip", "link", "set", f"{ns}c", "up")
            _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def down(self) -> None:
        for ns in self.names:
            _ip("link", "del", f"{ns}h", check=False)
            _ip("netns", "del", ns, check=False)
        _ip("link", "del", BRIDGE, check=False)

    def partition(self, i: int) -> str:
        ns = self.names[i]
        if shutil.which("iptables"):
            subprocess.run(["ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-s", SUBNET.format(self.octet, 0) + "/24",
                            "-j", "DROP"], check=True)
            return "iptables"
        _ip("link", "set", f"{ns}h", "down")
        return "link down"

    def heal(self, i: int, how: str) -> None:
        ns = self.names[i]
        if how == "iptables":
            subprocess.run(["ip", "netns", "exec", ns, "iptables", "-F", "INPUT"], check=True)
        else:
            _ip("link", "set", f"{ns}h", "up")


@pytest.fixture(scope="module")
def hosts():
    reason = _namespaces_allowed()
    if reason:
        pytest.skip(f"multi-host test skipped: {reason}")
    virtual = VirtualHosts()
    try:
        virtual.up()
        yield virtual
    finally:
        virtual.down()


def _clients(cluster, names):
    return {n: Client(cluster.url(n), timeout_s=60) for n in names}


async def _run(cluster, names, signer, count):
    """``count`` transactions submitted round-robin to ``names`` (with ``signer`` None,
    none), then the agreement of those nodes."""
    clients = _clients(cluster, names)
    for client in clients.values():
        await client.__aenter__()
    try:
        if signer is not None:
            await signer.resume(clients[names[0]], "transaction")
        for i in range(count):
            tx = signer.transaction("transaction", "demo", "record", {"topic": f"m{i}", "value": i})
            answer = await clients[names[i % len(names)]].submit(tx, wait=True)
            assert answer["result"]["status"] == "ok"
        return await wait_for_agreement(clients, timeout_s=90)
    finally:
        for client in clients.values():
            await client.__aexit__(None, None, None)


def test_four_hosts_commit_and_survive_a_partitioned_host(hosts, tmp_path):
    genesis = create_consortium(tmp_path, now=dt.datetime.now(dt.timezone.utc), host=hosts.addresses, base_port=7050)
    cluster = Cluster(tmp_path, genesis, prefix={name: ["ip", "netns", "exec", ns]
                                                 for name, ns in zip(genesis.node_names, hosts.names)})
    source = (Path(__file__).resolve().parents[2] / "contracts" / "demo.py").read_text()
    try:
        cluster.start_all()
        asyncio.run(cluster.wait_healthy(timeout_s=90))

        async def deploy():
            async with Client(cluster.url("node0")) as client:
                for channel in CHANNELS:
                    await deploy_contract(client, tmp_path, genesis, channel, "demo", source)
        asyncio.run(deploy())
        everyone = list(genesis.node_names)
        # every node has executed the deployment before the test submits to it: a node
        # still behind rightly refuses a contract it has not seen (404 unknown_contract)
        asyncio.run(_run(cluster, everyone, None, 0))
        signer = Signer.load(tmp_path, "ev01")
        asyncio.run(_run(cluster, everyone, signer, 5))
        how = hosts.partition(3)
        others = everyone[:3]
        agreement = asyncio.run(_run(cluster, others, signer, 8))
        assert agreement["transaction"][0] > 0
        hosts.heal(3, how)
        asyncio.run(_run(cluster, everyone, signer, 3))
    finally:
        cluster.stop_all()
