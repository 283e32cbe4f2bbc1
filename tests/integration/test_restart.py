"""The whole cluster stopped, or killed, together and started again: it resumes where it was.

A node executes a committed batch (and stores its block, with the commit certificate, in
its ledger) before its replica's record of that commit is on disk: the record waits for a
lazy write (``nodes.engine.LAZY_WRITE_S``). A clean stop writes it (``engine.stop(flush=
True)``); a crash can lose it, and if every node loses the same commit no peer can hand it
back -- the channel then waited for it for good. The restart takes such commits from the
ledger (``nodes.engine.with_ledger_commits``).

And one node down: the command line takes a transaction to the next node.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodes.durablestore import DurableReplicaStore
from nodes.launcher import Cluster
from p2pchain.client import Client, Signer
from p2pchain.consensus.durable import encode_durable_state
from p2pchain.consortium import create_consortium
from p2pchain.genesis import CHANNELS, Genesis
from p2pchain.ledger.store import ChannelLedger, ledger_path
from p2pchain.ledger.transaction import Transaction

from ..ports import free_port_block
from .clusters import agree as _agree, deploy_demo, running, verify

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "transaction"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    directory = tmp_path_factory.mktemp("restart")
    genesis = create_consortium(directory, now=dt.datetime.now(dt.timezone.utc), base_port=free_port_block(4))
    with running(Cluster(directory, genesis)) as cluster:
        asyncio.run(deploy_demo(cluster, [CHANNEL], timeout_s=60))
        yield cluster


async def _record(cluster: Cluster, node: str, count: int) -> list[int]:
    """Submit ``count`` demo records one after the other, each waited for; their heights."""
    signer = Signer.load(cluster.directory, "ev01")
    # every node's last nonce, not only ``node``'s: the last transaction was answered by
    # another node, and this one may not have seen its commit yet
    for name in cluster.genesis.node_names:
        async with Client(cluster.url(name), timeout_s=30) as client:
            await signer.resume(client, CHANNEL)
    heights = []
    async with Client(cluster.url(node), timeout_s=30) as client:
        for _ in range(count):
            tx = signer.transaction(CHANNEL, "demo", "record", {"topic": "restart", "value": 1})
            heights.append((await client.submit(tx, wait=True))["height"])
    return heights


def _restart(cluster: Cluster) -> None:
    cluster.start_all()
    asyncio.run(cluster.wait_healthy(timeout_s=90))


def _persisted(cluster: Cluster, name: str) -> tuple:
    """(the replica's persisted last committed and executed seq, the ledger's height)."""
    store = DurableReplicaStore(cluster.directory / "nodes" / name / "node.sqlite")
    try:
        state = store.load(CHANNEL)
    finally:
        store.close()
    with sqlite3.connect(cluster.directory / "nodes" / name / "ledger" / f"{CHANNEL}.db") as ledger:
        (height,) = ledger.execute("SELECT max(height) FROM blocks").fetchone()
    return state.last_committed, state.last_executed, height


def _forget_last_commit(cluster: Cluster, name: str) -> int:
    """Write node ``name``'s replica state back to before it learnt that its last block
    committed, as a crash between the block's append and the lazy write leaves it: the
    slot prepared, its own COMMIT sent, the commit, the execution and the client's nonce
    gone. Returns that block's height."""
    path = cluster.directory / "nodes" / name / "node.sqlite"
    store = DurableReplicaStore(path)
    try:
        state = store.load(CHANNEL)
        top = state.last_committed
        assert state.last_executed == top and top % cluster.genesis.consensus.checkpoint_interval, \
            "the test needs its last block executed, not at a checkpoint"
        [entry] = [e for e in state.committed if e.seq == top]
        clients = dict(state.clients)
        for request in entry.batch.requests:
            tx = Transaction.from_bytes(request)
            clients[tx.creator] = tx.nonce - 1
        slots = tuple(dataclasses.replace(slot, committed=False,
                                          commits=tuple(c for c in slot.commits if c.sender == name))
                      if slot.seq == top else slot for slot in state.slots)
        rolled = dataclasses.replace(
            state, last_committed=top - 1, last_executed=top - 1, slots=slots,
            committed=tuple(e for e in state.committed if e.seq != top),
            clients=tuple(sorted((c, n) for c, n in clients.items() if n > 0)))
        store.write(store.snapshot_statements(CHANNEL, encode_durable_state(rolled)))
    finally:
        store.close()
    return top


def test_a_cluster_stopped_together_writes_its_last_commits_and_resumes(cluster):
    heights = asyncio.run(_record(cluster, "node1", 3))
    cluster.stop_all()
    # stopped the moment node1 answered: the others may still be committing or executing
    # the last block, but no ledger holds a block its replica has not written as committed
    persisted = {name: _persisted(cluster, name) for name in cluster.genesis.node_names}
    assert all(committed >= height >= executed for committed, executed, height in persisted.values()), persisted
    assert persisted["node1"][2] == heights[-1]
    _restart(cluster)
    assert asyncio.run(_record(cluster, "node2", 1)) == [heights[-1] + 1]


def test_a_commit_every_node_lost_in_a_crash_comes_back_from_the_ledgers(cluster):
    interval = cluster.genesis.consensus.checkpoint_interval
    heights = asyncio.run(_record(cluster, "node1", 1))
    while heights[-1] % interval == 0:      # the rolled-back block must not be a checkpoint
        heights += asyncio.run(_record(cluster, "node1", 1))
    asyncio.run(_agree(cluster))
    cluster.stop_all()
    tops = {_forget_last_commit(cluster, name) for name in cluster.genesis.node_names}
    assert tops == {heights[-1]}
    for name in cluster.genesis.node_names:
        assert _persisted(cluster, name) == (heights[-1] - 1, heights[-1] - 1, heights[-1])
    _restart(cluster)
    # the next transaction commits right after the lost one, in the same view: no view change was needed
    assert asyncio.run(_record(cluster, "node3", 1)) == [heights[-1] + 1]
    agreement = asyncio.run(_agree(cluster))
    assert agreement[CHANNEL][0] == heights[-1] + 1
    for name in cluster.genesis.node_names:
        log = (cluster.directory / "logs" / f"{name}.log").read_text()
        assert "transaction: 1 committed block(s) the replica's persisted state lacks" in log, name

    async def views():
        async with Client(cluster.url("node0")) as client:
            return (await client.status())["channels"][CHANNEL]["view"]
    assert asyncio.run(views()) == 0


def _cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nodes.cli", *args[:1], "--dir", str(cluster.directory), *args[1:]],
                          capture_output=True, text=True, timeout=120)


def test_the_cli_submits_through_the_next_node_when_the_first_is_down(cluster):
    assert _cli(cluster, "fault", "crash", "node0").returncode == 0
    try:
        done = _cli(cluster, "submit", "--as", "ev02", "--channel", CHANNEL, "--contract", "demo",
                    "--function", "record", "--args", '{"topic": "cli", "value": 2}', "--wait")
        assert done.returncode == 0, done.stderr
        assert "p2pchain: node0 did not answer (503 node_crashed:" in done.stderr
        assert "asking node1" in done.stderr
        assert json.loads(done.stdout)["height"] > 0
        # named explicitly, a node that is down is an error, with its reason
        refused = _cli(cluster, "blocks", "--node", "node0", "--channel", CHANNEL)
        assert refused.returncode == 1 and "node0 does not answer: 503 node_crashed" in refused.stderr
    finally:
        assert _cli(cluster, "fault", "restart", "node0").returncode == 0
    asyncio.run(_agree(cluster))


def _kill_nodes_of(directory: Path, name: str | None = None) -> int:
    """SIGKILL every node process running on ``directory`` (only node ``name``'s, if given);
    how many there were."""
    killed = 0
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"nodes.cli" in argv and b"node" in argv and str(directory).encode() in argv and \
                (name is None or name.encode() in argv):
            try:
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, ValueError):
                pass
    return killed


@pytest.mark.slow
def test_run_cluster_killed_whole_at_random_instants_of_its_day_goes_on_each_time(tmp_path):
    """The README's main command, its driver and all four nodes SIGKILLed together in the
    middle of the market day, three times; each time it is started again it goes on, and at
    the end a whole day runs through and every node's chain verifies, all alike."""
    rng = random.Random(16)
    directory, port = tmp_path / "cluster", free_port_block(4)
    command = [sys.executable, str(ROOT / "run_cluster.py"), "--dir", str(directory), "--base-port", str(port)]
    for _ in range(3):
        with open(tmp_path / "run.log", "ab") as log:
            run = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(rng.uniform(12.0, 28.0))
        assert run.poll() is None, (tmp_path / "run.log").read_text()[-2000:]
        run.kill()
        run.wait()
        assert _kill_nodes_of(directory) == 4
        time.sleep(0.5)
    once = subprocess.run([*command, "--once"], capture_output=True, text=True, timeout=400)
    assert once.returncode == 0, once.stdout[-3000:] + once.stderr[-3000:]
    assert "every hour equals the pure experiment" in once.stdout
    roots = set()
    for name in ("node0", "node1", "node2", "node3"):
        verified = verify(directory, name)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        roots.add(tuple(line.split("state root ")[1] for line in verified.stdout.splitlines() if "state root" in line))
    assert len(roots) == 1


@pytest.mark.slow
def test_run_cluster_restarts_node_processes_killed_one_at_a_time_during_its_day(tmp_path):
    """kill -9 of one node process after another while the README's main command runs its
    day: each is started again (NodeWatch) and catches up, the day equals the pure
    experiment, and every node's chain verifies, all alike."""
    rng = random.Random(17)
    directory, port = tmp_path / "cluster", free_port_block(4)
    command = [sys.executable, str(ROOT / "run_cluster.py"), "--dir", str(directory), "--base-port", str(port), "--once"]
    with open(tmp_path / "run.log", "wb") as log:
        run = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    killed = []
    try:
        time.sleep(8.0)
        for _ in range(4):
            name = rng.choice(["node0", "node1", "node2", "node3"])
            if run.poll() is not None:
                break
            killed += [name] * _kill_nodes_of(directory, name)
            time.sleep(rng.uniform(5.0, 9.0))
        assert run.wait(timeout=400) == 0, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        if run.poll() is None:
            run.kill()
    out = (tmp_path / "run.log").read_text()
    assert killed, "the day ended before any node was killed: nothing was tested"
    assert out.count("starting it again") >= len(killed) - 1, out[-3000:]   # the last kill may meet the day's end
    assert out.count("every hour equals the pure experiment") == 2
    for name in ("node0", "node1", "node2", "node3"):
        verified = verify(directory, name)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    # a node killed near the end may not have caught up when the day stopped the cluster: the
    # chains must be one chain, each a prefix of the longest (hash-linked, so equal heads at
    # the lowest height say it)
    genesis = Genesis.load(directory)
    for channel in CHANNELS:
        ledgers = [ChannelLedger.open(ledger_path(directory / "nodes" / name, channel), channel, genesis)
                   for name in genesis.node_names]
        try:
            common = min(ledger.height for ledger in ledgers)
            assert common > 0 and len({ledger.block_hash(common) for ledger in ledgers}) == 1, channel
        finally:
            for ledger in ledgers:
                ledger.close()
