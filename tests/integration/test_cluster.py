"""A real 4-node cluster on loopback: agreement, crash recovery, view change, partitions, bad input.

Each node is its own process (``nodes.launcher.Cluster``), killed with SIGKILL where the test
says so. The tests share one cluster (starting one costs seconds) and run in file order;
each leaves the cluster healthy for the next.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import time

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nodes.admin import token_for
from nodes.deploy import committed_version, deploy_contract
from nodes.launcher import Cluster
from p2pchain.client import ApiError, Client, Signer, transaction_to_json
from p2pchain.consortium import create_consortium
from p2pchain.crypto import SigningKey
from p2pchain.encoding import encode
from p2pchain.genesis import CHANNELS, Genesis
from p2pchain.identity import serial_hex
from p2pchain.ledger.transaction import Transaction

from ..ports import free_port_block
from .clusters import agree as _agree, assert_commits_kept, clients as _clients, deploy_demo, running, verify

pytestmark = pytest.mark.integration
PROSUMERS = [f"ev{i:02d}" for i in range(1, 15)] + [f"pv{i}" for i in range(1, 6)] + ["smes"]
REVOKED = "ev15"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cluster")
    genesis = create_consortium(directory, now=dt.datetime.now(dt.timezone.utc), base_port=free_port_block(4))
    document = dict(genesis.document)  # revoke one EV's certificate, to test the refusal
    document["revoked"] = [{"org": "mgo", "serial": serial_hex(genesis.certificate(REVOKED))}]
    Genesis.from_document(document).save(directory / "genesis.json")
    cluster = Cluster(directory, Genesis.load(directory))
    try:
        with running(cluster):
            asyncio.run(deploy_demo(cluster, CHANNELS, timeout_s=90))
            yield cluster
    finally:
        for name in cluster.genesis.node_names:
            print(f"--- tail of {name}.log ---")
            log = directory / "logs" / f"{name}.log"
            print("\n".join(log.read_text().splitlines()[-15:]) if log.exists() else "(none)")


class Load:
    """Signed demo transactions from the prosumers, spread over nodes and channels."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.signers = {name: Signer.load(cluster.directory, name) for name in PROSUMERS}
        self.resumed = False
        self.commits: list[tuple[str, dict]] = []   # (channel, answer) of every commit answered

    async def run(self, count: int, nodes: list[str], *, concurrency: int = 40) -> list[dict]:
        clients = _clients(self.cluster, nodes)
        for client in clients.values():
            await client.__aenter__()
        try:
            if not self.resumed:
                for signer in self.signers.values():
                    for channel in CHANNELS:
                        await signer.resume(clients[nodes[0]], channel)
                self.resumed = True
            semaphore = asyncio.Semaphore(concurrency)
            # one in-flight transaction per signer and channel keeps each signer's nonces in order
            locks = {(name, channel): asyncio.Lock() for name in PROSUMERS for channel in CHANNELS}

            async def one(i: int) -> dict:
                name, channel = PROSUMERS[i % len(PROSUMERS)], CHANNELS[(i // len(PROSUMERS)) % 3]
                async with locks[(name, channel)], semaphore:
                    tx = self.signers[name].transaction(channel, "demo", "record", {"topic": f"t{i}", "value": i})
                    answer = await clients[nodes[i % len(nodes)]].submit(tx, wait=True)
                    self.commits.append((channel, answer))
                    return answer
            return await asyncio.gather(*(one(i) for i in range(count)))
        finally:
            for client in clients.values():
                await client.__aexit__(None, None, None)


@pytest.fixture(scope="module")
def load(cluster):
    return Load(cluster)


async def _status(cluster: Cluster, name: str) -> dict:
    async with Client(cluster.url(name), timeout_s=10) as client:
        return await client.status()


def test_2000_transactions_over_three_channels_reach_identical_ledgers(cluster, load):
    answers = asyncio.run(load.run(2000, list(cluster.genesis.node_names)))
    assert all(a["result"]["status"] == "ok" for a in answers)
    agreement = asyncio.run(_agree(cluster))
    assert sum(height for height, _, _ in agreement.values()) >= 3  # blocks on every channel
    for name in cluster.genesis.node_names:
        report = verify(cluster.directory, name)
        assert report.returncode == 0, report.stdout + report.stderr
        for channel in CHANNELS:
            assert f"{channel}" in report.stdout


def test_a_killed_backup_restarts_and_catches_up(cluster, load):
    primary = asyncio.run(_status(cluster, "node0"))["channels"]["transaction"]["primary"]
    backup = next(n for n in reversed(cluster.genesis.node_names) if n != primary)
    others = [n for n in cluster.genesis.node_names if n != backup]

    async def kill_under_load():
        running = asyncio.ensure_future(load.run(300, others))
        await asyncio.sleep(0.5)
        cluster.kill(backup)
        answers = await running
        assert all(a["result"]["status"] == "ok" for a in answers)

    asyncio.run(kill_under_load())
    asyncio.run(load.run(150, others))  # progress without it, beyond a checkpoint or two
    cluster.start(backup)
    asyncio.run(cluster.wait_healthy([backup], timeout_s=60))
    agreement = asyncio.run(_agree(cluster, timeout_s=90))
    assert agreement["transaction"][0] > 0


def _journal_rows(cluster: Cluster, name: str) -> int:
    """Rows in the node's durable-state journal (nodes/durablestore.py), read while it is down."""
    import sqlite3
    conn = sqlite3.connect(cluster.directory / "nodes" / name / "node.sqlite")
    try:
        return conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
    finally:
        conn.close()


def _crash_rounds(cluster, load, rounds: int, seed: int) -> None:
    import random
    rng = random.Random(seed)
    replayed = 0
    answered = len(load.commits)
    for _ in range(rounds):
        primary = asyncio.run(_status(cluster, "node0"))["channels"]["transaction"]["primary"]
        victim = rng.choice([n for n in cluster.genesis.node_names if n != primary])
        others = [n for n in cluster.genesis.node_names if n != victim]

        async def kill_at_a_random_instant():
            running = asyncio.ensure_future(load.run(240, others))
            await asyncio.sleep(rng.uniform(0.05, 1.5))
            cluster.kill(victim)  # SIGKILL: whatever write was in flight is cut short
            answers = await running
            assert all(a["result"]["status"] == "ok" for a in answers)

        asyncio.run(kill_at_a_random_instant())
        replayed += _journal_rows(cluster, victim) > 0
        cluster.start(victim)
        asyncio.run(cluster.wait_healthy([victim], timeout_s=60))
        asyncio.run(load.run(60, list(cluster.genesis.node_names)))
    agreement = asyncio.run(_agree(cluster, timeout_s=90))
    assert agreement["transaction"][0] > 0
    for name in cluster.genesis.node_names:
        report = verify(cluster.directory, name)
        assert report.returncode == 0, report.stdout + report.stderr
    asyncio.run(assert_commits_kept(cluster, load.commits[answered:]))
    assert replayed >= 1  # at least one restart went through snapshot + journal replay


def test_backups_sigkilled_at_random_instants_restart_from_their_journal_and_agree(cluster, load):
    _crash_rounds(cluster, load, rounds=2, seed=8)


@pytest.mark.slow
def test_many_sigkills_at_random_instants_leave_valid_agreeing_chains(cluster, load):
    _crash_rounds(cluster, load, rounds=8, seed=9)


def test_killing_the_primary_brings_a_view_change_and_progress(cluster, load):
    before = asyncio.run(_status(cluster, "node1"))["channels"]
    primary = before["transaction"]["primary"]
    survivors = [n for n in cluster.genesis.node_names if n != primary]
    answered = len(load.commits)

    async def kill_the_primary_under_load():
        running = asyncio.ensure_future(load.run(90, survivors))
        await asyncio.sleep(0.3)
        cluster.kill(primary)       # batches in flight: what the backups committed must survive the view change
        return await running
    answers = asyncio.run(kill_the_primary_under_load())
    assert all(a["result"]["status"] == "ok" for a in answers)
    after = asyncio.run(_status(cluster, survivors[0]))["channels"]["transaction"]
    assert after["view"] > before["transaction"]["view"]
    assert after["primary"] != primary
    cluster.start(primary)
    asyncio.run(cluster.wait_healthy([primary], timeout_s=60))
    asyncio.run(load.run(30, list(cluster.genesis.node_names)))
    asyncio.run(_agree(cluster, timeout_s=90))
    asyncio.run(assert_commits_kept(cluster, load.commits[answered:]))


def test_an_isolated_node_falls_behind_and_converges_after_heal(cluster, load):
    token = token_for(cluster.directory, cluster.genesis)
    status = asyncio.run(_status(cluster, "node0"))["channels"]["transaction"]
    isolated = next(n for n in cluster.genesis.node_names if n != status["primary"])
    others = [n for n in cluster.genesis.node_names if n != isolated]

    async def fault(action: str):
        async with aiohttp.ClientSession() as session:
            async with session.post(cluster.url(isolated) + "/v1/admin/fault", json={"action": action},
                                    headers={"Authorization": f"Bearer {token}"}) as response:
                assert response.status == 200, await response.text()

    asyncio.run(fault("isolate"))
    height_before = asyncio.run(_status(cluster, isolated))["channels"]["transaction"]["height"]
    answers = asyncio.run(load.run(120, others))
    assert all(a["result"]["status"] == "ok" for a in answers)
    assert asyncio.run(_status(cluster, isolated))["channels"]["transaction"]["height"] == height_before
    asyncio.run(fault("heal"))
    asyncio.run(load.run(30, others))
    asyncio.run(_agree(cluster, timeout_s=90))


async def _fault_answer(cluster: Cluster, name: str, order: dict) -> tuple[int, dict]:
    """Node ``name``'s answer to the admin fault ``order``: (status, JSON body)."""
    token = token_for(cluster.directory, cluster.genesis)
    async with aiohttp.ClientSession() as session:
        async with session.post(cluster.url(name) + "/v1/admin/fault", json=order,
                                headers={"Authorization": f"Bearer {token}"}) as response:
            return response.status, await response.json()


async def _admin(cluster: Cluster, name: str, order: dict) -> None:
    status, answer = await _fault_answer(cluster, name, order)
    assert status == 200, answer


async def _next_event(stream) -> tuple[str, dict]:
    """The next server-sent event of ``stream`` (comments and keep-alives skipped)."""
    kind, data = None, None
    while True:
        line = (await stream.readline()).decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[len("event: "):]
        elif line.startswith("data: "):
            data = json.loads(line[len("data: "):])
        elif line == "" and kind is not None:
            return kind, data


def test_the_event_stream_carries_blocks_consensus_traces_and_contract_events(cluster, load):
    async def go():
        async with aiohttp.ClientSession() as session:
            async with session.get(cluster.url("node2") + "/v1/events") as response:
                assert response.status == 200 and response.headers["Content-Type"] == "text/event-stream"
                submitted = asyncio.create_task(load.run(1, ["node1"]))    # a demo record on the transaction channel
                seen: list[tuple[str, dict]] = []

                async def read():
                    while True:
                        seen.append(await _next_event(response.content))

                async def until_the_block_and_its_contract_event():
                    while True:
                        if submitted.done():
                            height = submitted.result()[0]["height"]
                            if any(k == "contract" and e["height"] == height for k, e in seen) and \
                                    any(k == "block" and e["height"] == height for k, e in seen):
                                return height
                        await asyncio.sleep(0.1)
                reader = asyncio.create_task(read())
                try:
                    height = await asyncio.wait_for(until_the_block_and_its_contract_event(), 30)
                finally:
                    reader.cancel()
                return height, seen
    height, seen = asyncio.run(go())
    [block] = [e for k, e in seen if k == "block" and e["channel"] == "transaction" and e["height"] == height]
    assert block["node"] == "node2" and block["transactions"] == 1 and len(block["hash"]) == 64
    assert len(block["state_root"]) == 64
    [contract] = [e for k, e in seen if k == "contract" and e["height"] == height]
    assert contract["event"]["topic"] == "t0" and contract["channel"] == "transaction"
    kinds = {e["kind"] for k, e in seen if k == "trace" and e["channel"] == "transaction"}
    assert "send" in kinds, kinds       # node2's votes for that block, in the simulator's trace format
    sends = [e for k, e in seen if k == "trace" and e["kind"] == "send"]
    assert all(e["node"] == "node2" and e["to"] for e in sends)


def test_a_node_serves_a_bounded_number_of_event_streams(cluster):
    from nodes.api import MAX_SUBSCRIBERS, STREAM_CHECK_S

    async def go():
        connector = aiohttp.TCPConnector(limit=MAX_SUBSCRIBERS + 2)
        async with aiohttp.ClientSession(connector=connector) as session:
            streams = [await session.get(cluster.url("node3") + "/v1/events") for _ in range(MAX_SUBSCRIBERS)]
            try:
                assert all(s.status == 200 for s in streams)
                async with session.get(cluster.url("node3") + "/v1/events") as refused:
                    answer = (refused.status, await refused.json())
            finally:
                for s in streams:
                    s.close()
            # a closed stream frees its place within STREAM_CHECK_S, with no event written to it
            await asyncio.sleep(2 * STREAM_CHECK_S + 0.5)
            async with session.get(cluster.url("node3") + "/v1/events") as again:
                return answer, again.status
    (status, body), again = asyncio.run(go())
    assert (status, body["error"]) == (503, "too_many_subscribers") and str(MAX_SUBSCRIBERS) in body["detail"]
    assert again == 200


def test_a_node_that_hears_only_the_primary_waits_instead_of_stranding_itself_a_view_ahead(cluster, load):
    # A backup cut off from the two other backups hears the primary alone: its requests are
    # ordered by the other three without it, its request timer fires, and a view change
    # begun alone would leave it a view ahead of them after heal, out of the ordering until
    # their next view change. Hearing fewer than 2f peers, it waits instead (nodes/engine.py).
    asyncio.run(load.run(6, list(cluster.genesis.node_names)))     # (the signers resumed)
    before = asyncio.run(_status(cluster, "node0"))["channels"]["transaction"]
    primary, view = before["primary"], before["view"]
    backup = next(n for n in cluster.genesis.node_names if n != primary)
    others = [n for n in cluster.genesis.node_names if n not in (primary, backup)]
    asyncio.run(_admin(cluster, backup, {"action": "isolate", "from": others}))
    try:
        async def submit_to_backup():
            signer = load.signers["ev03"]
            async with Client(cluster.url(backup)) as client:
                for i in range(3):
                    tx = signer.transaction("transaction", "demo", "record", {"topic": "cut", "value": i})
                    await client.submit(tx, wait=False)
        asyncio.run(submit_to_backup())
        time.sleep(3 * cluster.genesis.consensus.view_change_timeout_ms / 1000)   # its timer fired
        assert asyncio.run(_status(cluster, backup))["channels"]["transaction"]["view"] == view
    finally:
        asyncio.run(_admin(cluster, backup, {"action": "heal"}))
    answers = asyncio.run(load.run(30, list(cluster.genesis.node_names)))
    assert all(a["result"]["status"] == "ok" for a in answers)
    asyncio.run(_agree(cluster, timeout_s=90))
    views = {name: asyncio.run(_status(cluster, name))["channels"]["transaction"]["view"]
             for name in cluster.genesis.node_names}
    assert views == dict.fromkeys(cluster.genesis.node_names, view), views
    log = (cluster.directory / "logs" / f"{backup}.log").read_text()
    assert "fewer than the 2 a view change needs" in log


def test_a_two_two_split_commits_nothing_and_goes_on_in_the_same_view_after_heal(cluster, load):
    # {primary, a backup} | {two backups}: no side has a quorum (2f+1 = 3), so nothing commits,
    # and no node starts a view change it could not finish (each hears f = 1 peer). After heal
    # the backups that held requests the primary never saw relay them again: they commit in
    # the same view, with no view change.
    names = list(cluster.genesis.node_names)
    asyncio.run(load.run(6, names))     # (the signers resumed)
    before = asyncio.run(_status(cluster, "node0"))["channels"]["transaction"]
    primary, view = before["primary"], before["view"]
    with_primary = [primary, next(n for n in names if n != primary)]
    without = [n for n in names if n not in with_primary]
    for name in with_primary:
        asyncio.run(_admin(cluster, name, {"action": "isolate", "from": without}))
    signer = load.signers["ev04"]
    txs = [signer.transaction("transaction", "demo", "record", {"topic": "split", "value": i}) for i in range(3)]
    try:
        heights = {n: asyncio.run(_status(cluster, n))["channels"]["transaction"]["height"] for n in names}

        async def submit_without_the_primary():
            async with Client(cluster.url(without[0])) as client:
                for tx in txs:
                    await client.submit(tx, wait=False)
        asyncio.run(submit_without_the_primary())
        time.sleep(3 * cluster.genesis.consensus.view_change_timeout_ms / 1000)   # timers fired on that side
        for name in names:
            channel = asyncio.run(_status(cluster, name))["channels"]["transaction"]
            assert (channel["height"], channel["view"]) == (heights[name], view), name
    finally:
        for name in with_primary:
            asyncio.run(_admin(cluster, name, {"action": "heal"}))

    async def committed():
        async with Client(cluster.url(primary)) as client:
            for _ in range(150):
                try:
                    return [await client.transaction("transaction", tx.tx_id) for tx in txs]
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                await asyncio.sleep(0.2)
            raise AssertionError("the requests held during the split did not commit within 30 s of heal")
    assert len(asyncio.run(committed())) == 3
    asyncio.run(_agree(cluster, timeout_s=90))
    views = {n: asyncio.run(_status(cluster, n))["channels"]["transaction"]["view"] for n in names}
    assert views == dict.fromkeys(names, view), views
    relayed = (cluster.directory / "logs" / f"{without[0]}.log").read_text()
    assert "request(s) held here relayed to them again" in relayed


def test_a_fault_order_out_of_form_is_refused(cluster):
    for bad, words in (({"action": "slow", "delay_ms": "fast"}, "delay_ms must be an integer"),
                       ({"action": "slow", "delay_ms": -5}, "delay_ms must be an integer"),
                       ({"action": "slow", "delay_ms": None}, "delay_ms must be an integer"),
                       ({"action": "isolate", "from": ["node0"]}, "not peers of this node: node0"),
                       ({"action": "isolate", "from": ["node9", "node1"]}, "not peers of this node: node9"),
                       ({"action": "isolate", "from": "node1"}, "non-empty list"),
                       ({"action": "isolate", "from": []}, "non-empty list")):
        status, answer = asyncio.run(_fault_answer(cluster, "node0", bad))
        assert (status, answer["error"]) == (400, "bad_parameter") and words in answer["detail"], answer
    assert asyncio.run(_status(cluster, "node0"))["faults"] == {"byzantine": None, "slow_ms": 0, "isolated": []}


def test_a_json_submission_without_a_content_type_is_taken_as_json(cluster, load):
    asyncio.run(load.run(3, ["node0"]))  # the load's signers know their nonces
    tx = load.signers["pv2"].transaction("transaction", "demo", "record", {"topic": "bare", "value": 1})

    async def post():
        async with aiohttp.ClientSession() as session:
            url = f"{cluster.url('node2')}/v1/channels/transaction/transactions?wait=commit"
            async with session.post(url, data=json.dumps(transaction_to_json(tx)).encode(),
                                    skip_auto_headers=["Content-Type"]) as response:
                assert "Content-Type" not in response.request_info.headers
                return response.status, await response.json()
    status, answer = asyncio.run(post())
    assert status == 200 and answer["tx_id"] == tx.tx_id.hex() and answer["result"]["status"] == "ok", answer


def test_the_cli_isolates_a_node_from_the_peers_it_names(cluster):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "nodes.cli", "fault", "--dir", str(cluster.directory), *args],
                              capture_output=True, text=True, timeout=60)
    wrong = cli("crash", "node0", "--from", "node1")
    assert wrong.returncode == 2 and "--from goes with isolate only" in wrong.stderr
    assert asyncio.run(_status(cluster, "node0"))["crashed"] is False
    done = cli("isolate", "node0", "--from", "node2,node3")
    assert done.returncode == 0, done.stderr
    try:
        assert asyncio.run(_status(cluster, "node0"))["faults"]["isolated"] == ["node2", "node3"]
        refused = cli("isolate", "node0", "--from", "node0")
        assert refused.returncode == 1 and "not peers of this node: node0" in refused.stderr, refused.stderr
    finally:
        assert cli("heal", "node0").returncode == 0
    assert asyncio.run(_status(cluster, "node0"))["faults"]["isolated"] == []


async def _refused_anchors(cluster: Cluster, names, reason: str) -> int:
    """How many PRE-PREPAREs ``names`` refused for ``reason`` at the anchor check (their metrics)."""
    total = 0
    async with aiohttp.ClientSession() as session:
        for name in names:
            async with session.get(cluster.url(name) + "/metrics") as response:
                for line in (await response.text()).splitlines():
                    if line.startswith(f'p2pchain_refused_total{{edge="anchors",reason="{reason}"}}'):
                        total += int(float(line.split()[-1]))
    return total


@pytest.mark.parametrize("mode, reason", [("bad-anchors", "forged_anchor"), ("malformed-anchors", "malformed_anchors")])
def test_a_primary_proposing_bad_anchors_is_refused_by_the_backups_and_replaced(cluster, load, mode, reason):
    before = asyncio.run(_status(cluster, "node0"))["channels"]["transaction"]
    primary = before["primary"]
    honest = [n for n in cluster.genesis.node_names if n != primary]
    refused_before = asyncio.run(_refused_anchors(cluster, honest, reason))
    asyncio.run(_admin(cluster, primary, {"action": "byzantine", "mode": mode}))
    try:
        answers = asyncio.run(load.run(60, honest))
        assert all(a["result"]["status"] == "ok" for a in answers)
        after = asyncio.run(_status(cluster, honest[0]))["channels"]["transaction"]
        assert after["view"] > before["view"] and after["primary"] != primary
        assert asyncio.run(_refused_anchors(cluster, honest, reason)) > refused_before
    finally:
        asyncio.run(_admin(cluster, primary, {"action": "heal"}))
    asyncio.run(load.run(30, list(cluster.genesis.node_names)))
    asyncio.run(_agree(cluster, timeout_s=90))
    assert verify(cluster.directory, honest[0]).returncode == 0


# -- bad input: the exact status and reason, and no ledger changes -----------------------------

def _signed(cluster: Cluster, creator: str, *, channel="transaction", contract="demo", nonce=10**9, key=None) -> Transaction:
    key = key or Signer.load(cluster.directory, creator).key
    return Transaction.create(key, channel=channel, contract=contract, function="record",
                              args={"topic": "bad", "value": 0}, creator=creator, nonce=nonce)


def _bad_inputs(cluster: Cluster):
    peer_key = Signer.load(cluster.directory, "node0").key
    good = _signed(cluster, "ev01")
    forged = _signed(cluster, "ev01", key=SigningKey.generate())
    return [
        ("malformed body", "transaction", b"\xc1\x00", "application/msgpack", 400, "malformed"),
        ("not canonical", "transaction", b"\x82\xa1b\x01\xa1a\x02", "application/msgpack", 400, "non_canonical"),
        ("malformed JSON", "transaction", b"{not json", "application/json", 400, "malformed"),
        ("JSON nested past the parser", "transaction", b"[" * 100_000, "application/json", 400, "malformed"),
        ("oversized body", "transaction", b"\x00" * (300 * 1024), "application/msgpack", 413, "oversized"),
        ("bad signature", "transaction", forged.to_bytes(), "application/msgpack", 401, "bad_signature"),
        ("unknown identity", "transaction", _signed(cluster, "ev99", key=SigningKey.generate()).to_bytes(),
         "application/msgpack", 403, "unknown_creator"),
        ("revoked identity", "transaction", _signed(cluster, REVOKED).to_bytes(), "application/msgpack", 403, "invalid_creator"),
        ("not allowed on the channel", "transaction", _signed(cluster, "node0", key=peer_key).to_bytes(),
         "application/msgpack", 403, "not_permitted"),
        ("replayed nonce", "transaction", _signed(cluster, "ev02", nonce=1).to_bytes(), "application/msgpack", 409, "replayed_nonce"),
        ("unknown channel", "gossip", good.to_bytes(), "application/msgpack", 404, "unknown_channel"),
        ("wrong channel", "matching", good.to_bytes(), "application/msgpack", 400, "wrong_channel"),
        ("unknown contract", "transaction", _signed(cluster, "ev03", contract="nosuch").to_bytes(),
         "application/msgpack", 404, "unknown_contract"),
        ("JSON with a float", "transaction", json.dumps({**transaction_to_json(good), "args": {"x": 1.5}}).encode(),
         "application/json", 400, "non_canonical"),
        ("unsupported media type", "transaction", good.to_bytes(), "text/plain", 415, "unsupported_media_type"),
    ]


def test_each_kind_of_bad_input_is_refused_with_its_reason_and_changes_nothing(cluster, load):
    asyncio.run(load.run(3, ["node0"]))  # ev02 has committed a nonce, so nonce 1 is a replay
    before = asyncio.run(_agree(cluster))

    async def post_all():
        results = []
        async with aiohttp.ClientSession() as session:
            for label, channel, body, media, status, code in _bad_inputs(cluster):
                url = f"{cluster.url('node1')}/v1/channels/{channel}/transactions"
                async with session.post(url, data=body, headers={"Content-Type": media}) as response:
                    answer = await response.json()
                    results.append((label, status, code, response.status, answer))
            good = _signed(cluster, "ev04").to_bytes()    # refused for its wait, never admitted
            for query in ("wait=commit&timeout=-5", "wait=commit&timeout=nan", "wait=commit&timeout=soon",
                          "wait=true", "wait="):
                url = f"{cluster.url('node1')}/v1/channels/transaction/transactions?{query}"
                async with session.post(url, data=good, headers={"Content-Type": "application/msgpack"}) as response:
                    results.append((query, 400, "bad_parameter", response.status, await response.json()))
        return results

    for label, status, code, got_status, answer in asyncio.run(post_all()):
        assert (got_status, answer.get("error")) == (status, code), f"{label}: {got_status} {answer}"
        assert answer.get("detail"), label
    asyncio.run(asyncio.sleep(1.0))
    assert asyncio.run(_agree(cluster)) == before


def test_a_batch_submission_commits_the_good_transactions_and_refuses_each_bad_one_with_its_reason(cluster, load):
    asyncio.run(load.run(3, ["node0"]))  # the load's signers know their nonces
    signer = load.signers["pv1"]
    good = [signer.transaction("transaction", "demo", "record", {"topic": f"batch{i}", "value": i}) for i in range(5)]
    forged = _signed(cluster, "ev01", key=SigningKey.generate())
    replayed = _signed(cluster, "ev02", nonce=1)

    async def run():
        async with Client(cluster.url("node2"), timeout_s=60) as client:
            answers = await client.submit_batch("transaction", [good[0], forged, *good[1:3], replayed, *good[3:]], wait=True)
            again = await client.submit_batch("transaction", [good[4]], wait=True)  # already committed
            refusals = []
            async with aiohttp.ClientSession() as session:
                url = f"{cluster.url('node2')}/v1/channels/transaction/batch"
                for body, media in ((b"\xc1", "application/msgpack"), (b"\x90", "application/msgpack"),
                                    (b"\x91\x01", "application/msgpack"), (b"\x91\xc4\x00", "text/plain"),
                                    (b"\x00" * (3 * 1024 * 1024), "application/msgpack")):
                    async with session.post(url, data=body, headers={"Content-Type": media}) as response:
                        refusals.append((response.status, (await response.json())["error"]))
            return answers, again, refusals

    answers, again, refusals = asyncio.run(run())
    assert [a.get("error") for a in answers] == [None, "bad_signature", None, None, "replayed_nonce", None, None]
    committed = [a for a in answers if "error" not in a]
    assert [a["tx_id"] for a in committed] == [tx.tx_id.hex() for tx in good]
    assert all(a["result"]["status"] == "ok" for a in committed)
    assert again[0]["error"] == "replayed_nonce"
    assert refusals == [(400, "non_canonical"), (400, "bad_batch_size"), (400, "malformed"),
                        (415, "unsupported_media_type"), (413, "oversized")]
    asyncio.run(_agree(cluster))


def _refused_count(cluster: Cluster, node: str, reason: str) -> float:
    async def metrics():
        async with aiohttp.ClientSession() as session:
            async with session.get(cluster.url(node) + "/metrics") as response:
                return await response.text()
    prefix = f'p2pchain_refused_total{{edge="api",reason="{reason}"}} '
    return sum(float(line[len(prefix):]) for line in asyncio.run(metrics()).splitlines() if line.startswith(prefix))


def test_a_wait_that_runs_out_answers_commit_timeout_and_is_counted_alike_single_or_batched(cluster, load):
    asyncio.run(load.run(3, ["node0"]))  # the load's signers know their nonces
    signer = load.signers["ev03"]
    single, batched = (signer.transaction("transaction", "demo", "record", {"topic": f"late{i}", "value": i})
                       for i in range(2))
    before = _refused_count(cluster, "node0", "commit_timeout")

    async def run():
        # a millisecond is far less than any commit takes (four fsync'd writes, three hops)
        params = {"wait": "commit", "timeout": "0.001"}
        base = f"{cluster.url('node0')}/v1/channels/transaction"
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/transactions", params=params, data=single.to_bytes(),
                                    headers={"Content-Type": "application/msgpack"}) as response:
                one = response.status, await response.json()
            async with session.post(f"{base}/batch", params=params, data=encode([batched.to_bytes()]),
                                    headers={"Content-Type": "application/msgpack"}) as response:
                many = response.status, await response.json()
        return one, many

    (status, answer), (batch_status, batch_answer) = asyncio.run(run())
    assert (status, answer["error"]) == (504, "commit_timeout")
    assert answer["detail"] == "not committed within 0.001 s; it may still commit"
    assert batch_status == 200
    assert batch_answer["results"] == [answer]
    assert _refused_count(cluster, "node0", "commit_timeout") == before + 2
    asyncio.run(_agree(cluster))  # both still commit


def test_refusals_are_counted_in_metrics(cluster):
    forged = _signed(cluster, "ev01", key=SigningKey.generate())
    before = _refused_count(cluster, "node1", "bad_signature")

    async def post_and_read():
        async with aiohttp.ClientSession() as session:
            async with session.post(cluster.url("node1") + "/v1/channels/transaction/transactions", data=forged.to_bytes(),
                                    headers={"Content-Type": "application/msgpack"}) as response:
                assert response.status == 401
            async with session.get(cluster.url("node1") + "/metrics") as response:
                return await response.text()
    text = asyncio.run(post_and_read())
    assert _refused_count(cluster, "node1", "bad_signature") == before + 1
    assert "p2pchain_commit_latency_seconds_bucket" in text
    assert 'p2pchain_height{channel="transaction"}' in text


def test_the_latency_stages_of_committed_transactions_add_up_to_their_commit_latency(cluster, load):
    asyncio.run(load.run(6, ["node3"]))

    async def metrics():
        async with aiohttp.ClientSession() as session:
            async with session.get(cluster.url("node3") + "/metrics") as response:
                return await response.text()
    totals: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(asyncio.run(metrics())):
        for sample in family.samples:
            if sample.name in ("p2pchain_latency_stage_seconds_sum", "p2pchain_latency_stage_seconds_count"):
                key = (sample.labels["stage"], sample.name.rsplit("_", 1)[1])
                totals[key] = totals.get(key, 0.0) + sample.value
            elif sample.name == "p2pchain_commit_latency_seconds_sum":
                totals[("commit", "sum")] = totals.get(("commit", "sum"), 0.0) + sample.value
    stages = ("propose", "agree", "wait", "execute")
    counts = {totals.get((stage, "count"), 0.0) for stage in stages}
    assert len(counts) == 1 and counts.pop() >= 6  # every stage observed once per transaction timed
    # the stages partition the commit latency of the transactions they time (a relayed copy
    # that arrived after its batch was proposed is not timed by stage)
    spent = sum(totals[(stage, "sum")] for stage in stages)
    assert 0 < spent <= totals[("commit", "sum")] + 1e-6


def test_the_admin_api_refuses_without_a_valid_token(cluster):
    async def attempt(headers):
        async with aiohttp.ClientSession() as session:
            async with session.post(cluster.url("node2") + "/v1/admin/fault", json={"action": "crash"},
                                    headers=headers) as response:
                return response.status, await response.json()
    status, answer = asyncio.run(attempt({}))
    assert (status, answer["error"]) == (403, "admin_refused")
    status, answer = asyncio.run(attempt({"Authorization": "Bearer not-a-token"}))
    assert (status, answer["error"]) == (403, "admin_refused")
    assert asyncio.run(_status(cluster, "node2"))["crashed"] is False


async def _block(cluster: Cluster, channel: str, height: int) -> dict:
    async with Client(cluster.url("node3")) as client:
        return await client.block(channel, height)


def test_client_reads_of_blocks_transactions_and_state(cluster, load):
    answer = asyncio.run(load.run(1, ["node0"]))[0]

    async def reads():
        async with Client(cluster.url("node3")) as client:
            await _agree(cluster)
            tx = await client.transaction(CHANNELS[0], answer["tx_id"])
            block = await client.block(CHANNELS[0], answer["height"])
            page = await client.blocks(CHANNELS[0], 1, 3)
            state = await client.state(CHANNELS[0], "demo", f"count/{tx['creator']}")
            with pytest.raises(ApiError) as missing:
                await client.block(CHANNELS[0], 10**6)
            return tx, block, page, state, missing.value
    tx, block, page, state, missing = asyncio.run(reads())
    assert tx["height"] == answer["height"] and tx["result"]["status"] == "ok"
    assert block["hash"] == answer["block"] and len(block["certificate"]["signers"]) >= 3
    assert "anchors" in block and set(block["anchors"]) == {"matching", "electricity"}
    side = asyncio.run(_block(cluster, "matching", 1))  # a side-chain block anchors the other two channels
    assert set(side["anchors"]) == {"transaction", "electricity"}
    assert [b["height"] for b in page["blocks"]] == [1, 2, 3]
    assert state["value"] >= 1
    assert (missing.status, missing.code) == (404, "unknown_block")


def test_a_height_that_is_not_a_decimal_number_is_a_bad_parameter(cluster):
    async def get_all():
        answers = []
        async with aiohttp.ClientSession() as session:
            for path in ("blocks/abc", "blocks/-1", "blocks/+1", "blocks/1_0", "blocks/%EF%BC%91",
                         "blocks/" + "9" * 30, "blocks?from=x", "blocks?to=-2", "raw-blocks?from=1.5"):
                async with session.get(f"{cluster.url('node1')}/v1/channels/transaction/{path}") as response:
                    answers.append((path, response.status, await response.json()))
        return answers
    for path, status, answer in asyncio.run(get_all()):
        assert (status, answer["error"]) == (400, "bad_parameter"), path
        assert "integer >= 0" in answer["detail"], path


def test_deploying_a_changed_source_upgrades_the_contract_and_the_same_source_is_a_no_op(cluster):
    first = 'def answer(ctx):\n    """The first version."""\n    return 1\n'
    second = 'def answer(ctx):\n    """The second version."""\n    return 2\n'
    signer = Signer.load(cluster.directory, "ev05")

    async def run():
        async with Client(cluster.url("node0")) as client:
            deployed = [await deploy_contract(client, cluster.directory, cluster.genesis, "transaction", "answer", source)
                        for source in (first, first, second, second)]
            await signer.resume(client, "transaction")
            called = await client.submit(signer.transaction("transaction", "answer", "answer", {}), wait=True)
            return deployed, called["result"], await committed_version(client, "transaction", "answer")
    deployed, result, version = asyncio.run(run())
    assert deployed == [1, None, 2, None]
    assert (result["status"], result["value"], version) == ("ok", 2, 2)
