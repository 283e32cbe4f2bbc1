"""Benchmark: a real 4-node cluster on this machine under an offered-load sweep.

    python bench/cluster.py [--rates 100,300,1000,3000] [--seconds 10] [--clients 400]
                            [--view-change] [--soak-minutes 0]

Starts four node processes (a fresh consortium in a temporary directory, with --clients
benchmark identities), deploys the demonstration contract, then for each offered rate R
submits signed transactions open-loop at R per second for --seconds, over HTTP from this
process (the load generator shares the two cores with the nodes, as the issue asks), each
with ``?wait=commit``. A PBFT client has one request outstanding at a time (OSDI'99 §4.1),
so each (identity, channel) lane carries one transaction at a time; an arrival that finds
every lane busy is counted as not offered. Reports per rate: offered and committed tx/s,
commit latency p50 and p99. ``--view-change`` kills the primary under load and reports the
progress lost beyond the configured view-change timeout. ``--soak-minutes`` runs a
constant load and samples the nodes' RSS. The ceiling to compare with is in
../shared/LIMITS.md (about 4,800 tx/s for this setup).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import machine  # noqa: E402
from nodes.deploy import deploy_contract  # noqa: E402
from nodes.launcher import Cluster  # noqa: E402
from nodes.memory import settle_collector  # noqa: E402
from nodes.metrics import STAGES  # noqa: E402
from p2pchain.client import ApiError, Client, Signer  # noqa: E402
from p2pchain.consortium import create_consortium  # noqa: E402
from p2pchain.genesis import CHANNELS  # noqa: E402

DEMO = (Path(__file__).resolve().parents[1] / "contracts" / "demo.py").read_text()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def demo_record(signer: Signer, channel: str):
    """The benchmark's transaction: ``demo.record`` of the signer's next nonce."""
    return signer.transaction(channel, "demo", "record", {"topic": "bench", "value": signer.next_nonce[channel]})


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, from /proc."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cluster_cpu(cluster: Cluster) -> dict[str, float]:
    """CPU seconds so far of the node processes, of their contract workers, and of this process."""
    nodes = workers = 0.0
    for process in cluster.processes.values():
        try:
            nodes += cpu_seconds(process.pid)
            for child in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split():
                workers += cpu_seconds(int(child))
        except (FileNotFoundError, ProcessLookupError):
            pass  # a node killed or restarted during the step (--view-change): its share is lost
    return {"nodes": nodes, "workers": workers, "load": time.process_time()}


async def stage_totals(session: aiohttp.ClientSession, cluster: Cluster) -> dict[str, list[float]]:
    """Per latency stage, [sum of seconds, count] over every node and channel (``/metrics``)."""
    totals = {stage: [0.0, 0.0] for stage in STAGES}
    for name in cluster.genesis.node_names:
        try:
            async with session.get(cluster.url(name) + "/metrics") as response:
                text = await response.text()
        except (aiohttp.ClientError, OSError):
            continue  # a node killed during the step (--view-change)
        for family in text_string_to_metric_families(text):
            if family.name != "p2pchain_latency_stage_seconds":
                continue
            for sample in family.samples:
                stage = sample.labels.get("stage")
                if stage in totals and sample.name.endswith("_sum"):
                    totals[stage][0] += sample.value
                elif stage in totals and sample.name.endswith("_count"):
                    totals[stage][1] += sample.value
    return totals


class LoadGenerator:
    def __init__(self, cluster: Cluster, clients: int, batch_ms: float = 0) -> None:
        self.cluster = cluster
        self.batch_ms = batch_ms  # > 0: arrivals go out every batch_ms, one batch request per node and channel
        self.signers = [Signer.load(cluster.directory, f"load{i:04d}") for i in range(clients)]
        self.free = [(s, ch) for s in self.signers for ch in CHANNELS]
        random.Random(1).shuffle(self.free)
        self.clients: dict[str, Client] = {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self):
        # One request in flight per lane, each on its own keep-alive connection: aiohttp's
        # default of 100 connections per session made requests queue *in this process*
        # (seconds, at a few hundred tx/s), which is the load generator's latency, not the nodes'.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
                                              timeout=aiohttp.ClientTimeout(total=60))
        self.clients = {name: Client(self.cluster.url(name), timeout_s=60, session=self._session)
                        for name in self.cluster.genesis.node_names}
        return self

    async def __aexit__(self, *exc):
        await self._session.close()

    async def one(self, signer: Signer, channel: str, node: str, latencies: list[float], errors: list[str]) -> None:
        tx = demo_record(signer, channel)
        started = time.perf_counter()
        try:
            answer = await self.clients[node].submit(tx, wait=True)
            if answer["result"]["status"] == "ok":
                latencies.append(time.perf_counter() - started)
            else:
                errors.append(answer["result"]["reason"])
        except (ApiError, OSError, asyncio.TimeoutError) as exc:
            errors.append(str(exc)[:80])
        finally:
            self.free.append((signer, channel))

    async def many(self, node: str, channel: str, lanes: list[tuple[Signer, float]], latencies: list[float],
                   errors: list[str]) -> None:
        """One batch request for the lanes' transactions; latency counts from each one's arrival."""
        txs = [demo_record(signer, channel) for signer, _ in lanes]
        try:
            answers = await self.clients[node].submit_batch(channel, txs, wait=True)
            done = time.perf_counter()
            for (_, arrived), answer in zip(lanes, answers):
                if "error" not in answer and answer["result"]["status"] == "ok":
                    latencies.append(done - arrived)
                else:
                    errors.append(answer.get("error") or answer["result"]["reason"])
        except (ApiError, OSError, asyncio.TimeoutError) as exc:
            errors.extend([str(exc)[:80]] * len(lanes))
        finally:
            self.free.extend((signer, channel) for signer, _ in lanes)

    async def offer(self, rate: float, seconds: float, nodes: list[str] | None = None) -> dict:
        nodes = nodes or list(self.clients)
        latencies: list[float] = []
        errors: list[str] = []
        tasks, offered, skipped = [], 0, 0
        cpu_before = cluster_cpu(self.cluster)
        stages_before = await stage_totals(self._session, self.cluster)
        heights_before = await self.heights(nodes[0])
        queued: dict[tuple[str, str], list[tuple[Signer, float]]] = {}
        next_flush = time.perf_counter()

        def flush() -> None:
            for (node, channel), lanes in queued.items():
                tasks.append(asyncio.ensure_future(self.many(node, channel, lanes, latencies, errors)))
            queued.clear()

        start = time.perf_counter()
        i = 0
        while True:
            due = start + i / rate
            now = time.perf_counter()
            if due - start >= seconds:
                break
            if due > now:
                await asyncio.sleep(due - now)
            if self.free:
                signer, channel = self.free.pop(0)
                if self.batch_ms:
                    queued.setdefault((nodes[i % len(nodes)], channel), []).append((signer, time.perf_counter()))
                else:
                    tasks.append(asyncio.ensure_future(self.one(signer, channel, nodes[i % len(nodes)], latencies, errors)))
                offered += 1
            else:
                skipped += 1
            if self.batch_ms and time.perf_counter() >= next_flush:
                flush()
                next_flush = time.perf_counter() + self.batch_ms / 1000
            i += 1
        flush()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
        cpu = {k: v - cpu_before[k] for k, v in cluster_cpu(self.cluster).items()}
        blocks = sum(await self.heights(nodes[0])) - sum(heights_before)
        stages_after = await stage_totals(self._session, self.cluster)
        stage_ms = {}
        for stage in STAGES:
            spent_s, count = (after - before for after, before in zip(stages_after[stage], stages_before[stage]))
            stage_ms[stage] = 1000 * spent_s / count if count else float("nan")
        latencies.sort()
        pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")  # noqa: E731
        return {"rate": rate, "offered": offered / seconds, "skipped": skipped, "committed": len(latencies) / elapsed,
                "p50_ms": pick(0.50), "p99_ms": pick(0.99), "errors": len(errors),
                # CPU per committed transaction: what contention distorts least
                "cpu_ms": {k: 1000 * v / max(1, len(latencies)) for k, v in cpu.items()},
                "tx_per_block": len(latencies) / max(1, blocks),
                # the nodes' own account of a transaction's commit latency, mean ms per stage
                "stage_ms": stage_ms}

    async def heights(self, node: str) -> list[int]:
        channels = (await self.clients[node].status())["channels"]
        return [channels[channel]["height"] for channel in CHANNELS]


async def status(cluster: Cluster, name: str) -> dict:
    async with Client(cluster.url(name), timeout_s=5) as client:
        return await client.status()


async def view_change(cluster: Cluster, gen: LoadGenerator) -> dict:
    primary = (await status(cluster, "node1"))["channels"]["transaction"]["primary"]
    survivors = [n for n in cluster.genesis.node_names if n != primary]
    timeout_ms = cluster.genesis.consensus.view_change_timeout_ms
    load = asyncio.ensure_future(gen.offer(50, 8, survivors))
    await asyncio.sleep(2)
    before = (await status(cluster, survivors[0]))["channels"]["transaction"]
    killed_at = time.perf_counter()
    cluster.kill(primary)
    resumed_at, view_height = None, None
    while time.perf_counter() - killed_at < 30:
        now = (await status(cluster, survivors[0]))["channels"]["transaction"]
        if now["view"] > before["view"]:
            view_height = now["height"] if view_height is None else view_height
            if now["height"] > view_height:  # a block committed in the new view
                resumed_at = time.perf_counter()
                break
        await asyncio.sleep(0.02)
    await load
    cluster.start(primary)
    await cluster.wait_healthy([primary])
    if resumed_at is None:
        return {"primary": primary, "lost_s": float("nan"), "timeout_s": timeout_ms / 1000}
    lost = resumed_at - killed_at
    return {"primary": primary, "lost_s": lost, "timeout_s": timeout_ms / 1000, "beyond_s": lost - timeout_ms / 1000}


async def run(args: argparse.Namespace, cluster: Cluster) -> None:
    cluster.start_all()
    await cluster.wait_healthy(timeout_s=120)
    async with Client(cluster.url("node0")) as client:
        for channel in CHANNELS:
            await deploy_contract(client, cluster.directory, cluster.genesis, channel, "demo", DEMO)
    print(f"machine: {machine()}; 4 nodes, batch <= {cluster.genesis.consensus.batch_max}, "
          f"checkpoint every {cluster.genesis.consensus.checkpoint_interval}; {args.clients} client identities x 3 channels; "
          + (f"batch submissions every {args.batch_ms:g} ms per node and channel" if args.batch_ms
             else "one HTTP request per transaction"))
    async with LoadGenerator(cluster, args.clients, args.batch_ms) as gen:
        for signer in gen.signers:
            for channel in CHANNELS:
                signer.next_nonce[channel] = 1
        await gen.offer(50, 2)  # warm-up
        # The load generator's collector as a node's (nodes/memory.py): what lives now
        # (identities, keys, connections) frozen out of its reach, the youngest generation
        # collected less often. Without it, a third of this process's CPU at saturation
        # went into collections, taken from the cores the nodes share with it.
        settle_collector()
        print(f"{'offered/s':>10} {'committed/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'not offered':>12} {'errors':>7}"
              f" {'tx/block':>9}   CPU ms per committed tx: nodes / workers / load generator"
              f"   node-side mean ms: {' / '.join(STAGES)}")
        for rate in args.rates:
            r = await gen.offer(rate, args.seconds)
            cpu = r["cpu_ms"]
            print(f"{r['offered']:10.0f} {r['committed']:12.0f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['skipped']:12d} {r['errors']:7d}"
                  f" {r['tx_per_block']:9.1f}   {cpu['nodes']:.2f} / {cpu['workers']:.2f} / {cpu['load']:.2f}"
                  f"   {' / '.join(format(r['stage_ms'][stage], '.1f') for stage in STAGES)}", flush=True)
        if args.view_change:
            r = await view_change(cluster, gen)
            print(f"view change after killing {r['primary']}: progress lost {r['lost_s']:.2f} s "
                  f"(timeout {r['timeout_s']:.1f} s, beyond it {r.get('beyond_s', float('nan')):.2f} s)")
        if args.soak_minutes:
            # RSS of each node process once a minute; the first minute is the warm-up (caches
            # filling), so "flat" is judged from minute 1 to the end.
            pids = {name: p.pid for name, p in cluster.processes.items()}
            print(f"soak: {args.soak_minutes:g} min at {args.soak_rate:g} tx/s offered; RSS MB per node, once a minute", flush=True)
            samples = [{name: rss_mb(pid) for name, pid in pids.items()}]
            end = time.time() + 60 * args.soak_minutes
            minute = 0
            while time.time() < end:
                r = await gen.offer(args.soak_rate, 60)
                minute += 1
                samples.append({name: rss_mb(pid) for name, pid in pids.items()})
                print(f"soak minute {minute:3d}: committed {r['committed']:6.1f}/s p50 {r['p50_ms']:7.1f} ms errors {r['errors']}; RSS "
                      + " ".join(f"{name} {mb:.0f}" for name, mb in samples[-1].items()), flush=True)
            for name in pids:
                after_warmup = samples[1][name] if len(samples) > 2 else samples[0][name]
                print(f"soak {args.soak_minutes:g} min at {args.soak_rate:g}/s: {name} RSS start {samples[0][name]:.0f} MB, "
                      f"after minute 1 {after_warmup:.0f} MB, end {samples[-1][name]:.0f} MB "
                      f"(growth after warm-up {samples[-1][name] - after_warmup:+.0f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="100,300,1000,3000", help="offered rates, tx/s")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=400, help="benchmark identities (each x 3 channels)")
    parser.add_argument("--batch-ms", type=float, default=0,
                        help="submit through the batch endpoint: each node and channel gets the arrivals of "
                             "every BATCH_MS in one request (0: one HTTP request per transaction)")
    parser.add_argument("--view-change", action="store_true")
    parser.add_argument("--soak-minutes", type=float, default=0)
    parser.add_argument("--soak-rate", type=float, default=200)
    parser.add_argument("--base-port", type=int, default=7450)
    parser.add_argument("--keep", action="store_true", help="keep the consortium directory and the node logs")
    args = parser.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    if args.keep:
        tmp = tempfile.mkdtemp(prefix="p2pchain-bench-")
        print(f"consortium and node logs kept in {tmp}", flush=True)
    with contextlib.nullcontext(tmp) if args.keep else tempfile.TemporaryDirectory(prefix="p2pchain-bench-") as tmp:
        genesis = create_consortium(Path(tmp), now=dt.datetime.now(dt.timezone.utc), base_port=args.base_port,
                                    load_clients=args.clients)
        cluster = Cluster(Path(tmp), genesis)
        try:
            asyncio.run(run(args, cluster))
        finally:
            cluster.stop_all()


if __name__ == "__main__":
    main()
