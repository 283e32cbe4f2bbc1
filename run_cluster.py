#!/usr/bin/env python3
"""Start a p2pchain consortium of four nodes on this machine and run a day through it.

    python run_cluster.py [--dir ./cluster] [--nodes 4] [--base-port 7050] [--no-day] [--once] [--seed N]
                          [--hours H] [--no-smes] [--demo]

Creates the consortium in DIR if there is none (three organisations, their CAs, the node and
client identities, the genesis), starts one process per node (node i listens on
base-port + i, for peers and clients alike), waits until every node answers, prints each
node's API and dashboard address with the admin token, runs the day through the cluster,
and keeps the cluster running until Ctrl-C (``--once``: stop after the day). Logs are in
DIR/logs.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import signal
import sys
import time
from pathlib import Path

import aiohttp

from nodes.admin import token_for
from nodes.launcher import Cluster, NodeWatch
from p2pchain.client import ApiError, ClusterError
from p2pchain.consortium import ConsortiumError, create_consortium
from p2pchain.genesis import Genesis, GenesisError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Start a p2pchain consortium on this machine and run a day through it.")
    parser.add_argument("--dir", default="./cluster", help="consortium directory (default ./cluster)")
    parser.add_argument("--nodes", type=int, help="number of nodes, 3f+1 (default 4; for a new consortium only)")
    parser.add_argument("--base-port", type=int, help="node i listens on base-port + i (default 7050; for a new "
                        "consortium only: an existing one keeps the addresses in its genesis)")
    parser.add_argument("--no-day", action="store_true", help="start the cluster but run no workload")
    parser.add_argument("--once", action="store_true", help="stop the cluster after the day instead of waiting for Ctrl-C")
    parser.add_argument("--seed", type=int, default=7, help="seed of the day's workload (default 7)")
    parser.add_argument("--hours", type=int, default=24, help="hourly rounds of the day (default 24; the demo day: 6)")
    parser.add_argument("--no-smes", action="store_true", help="run only the market day without the SMES")
    parser.add_argument("--tamper", metavar="NODE", help="demonstration: start NODE with tampered execution on the "
                        "transaction channel; it detects that its state root parts from the others' at the next "
                        "checkpoint and halts that channel, while the other nodes go on")
    parser.add_argument("--demo", action="store_true",
                        help="run the old demonstration workload (signed records) instead of the market day")
    args = parser.parse_args(argv)
    if not 1 <= args.hours <= 24:
        parser.error(f"--hours takes 1 to 24 (the hourly rounds of one day), not {args.hours}")
    return args


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_or_create(args: argparse.Namespace) -> Genesis:
    directory = Path(args.dir)
    if (directory / "genesis.json").exists():
        genesis = Genesis.load(directory)
        say(f"using the consortium in {directory} (genesis {genesis.digest.hex()[:16]}…)")
        first_port = genesis.nodes[0].port
        if args.nodes is not None and args.nodes != len(genesis.nodes) or \
                args.base_port is not None and args.base_port != first_port:
            say(f"note: {directory} holds a consortium of {len(genesis.nodes)} nodes on ports {first_port}–"
                f"{genesis.nodes[-1].port}; --nodes and --base-port only shape a new one (use another --dir)")
        return genesis
    genesis = create_consortium(directory, nodes=4 if args.nodes is None else args.nodes,
                                base_port=7050 if args.base_port is None else args.base_port,
                                now=dt.datetime.now(dt.timezone.utc))
    say(f"created a consortium in {directory}: orgs mgo, dno, reg; {len(genesis.nodes)} nodes; "
        f"15 EV, 5 PV, 1 SMES clients (genesis {genesis.digest.hex()[:16]}…)")
    return genesis


def workload_urls(args: argparse.Namespace, cluster: Cluster) -> dict[str, str]:
    """The nodes the day's clients talk to and check: all, but a tampered node."""
    return {name: cluster.url(name) for name in cluster.genesis.node_names if name != args.tamper}


async def report_tampered(cluster: Cluster, name: str) -> None:
    from p2pchain.client import Client

    async with Client(cluster.url(name)) as client:
        status = await client.status()
    for channel, state in status["channels"].items():
        if state["halted"]:
            say(f"{name} (tampered) halted {channel}: {state['halted']}")
        else:
            say(f"{name} (tampered) {channel}: height {state['height']}, running")


async def run(args: argparse.Namespace, cluster: Cluster) -> int:
    genesis = cluster.genesis
    say(f"starting {len(genesis.nodes)} node processes (logs in {cluster.directory / 'logs'})")
    watch = NodeWatch(cluster, say)     # a node process that exits is started again, from now on
    cluster.start_all()
    await cluster.wait_healthy(timeout_s=60, watch=watch)
    watching = asyncio.create_task(watch.run())
    try:
        return await _run_day(args, cluster)
    finally:
        watching.cancel()


async def _run_day(args: argparse.Namespace, cluster: Cluster) -> int:
    """The nodes are up: print their addresses, run the day, keep the cluster running."""
    genesis = cluster.genesis
    token = token_for(cluster.directory, genesis)
    say("all nodes are up:")
    for node in genesis.nodes:
        url = cluster.url(node.name)
        print(f"    {node.name} ({node.org}): API {url}/v1/status   dashboard {url}/ui?token={token}", flush=True)
    print(f"    admin token: {token}", flush=True)
    if not args.no_day and not args.demo:
        from nodes.marketday import MarketDayError, run_market_day

        urls = workload_urls(args, cluster)
        modes = (False,) if args.no_smes else (True, False)
        say(f"running the paper's market day (seed {args.seed}) through the cluster: quotations signed by each "
            f"prosumer; quotations closed, rounds run and prices set by operator-mgo; SMES and metering by "
            f"operator-dno; statistics by operator-reg")
        try:
            result = await run_market_day(cluster.directory, genesis, urls, hours=args.hours, seed=args.seed,
                                          smes_modes=modes, say=say)
        except (MarketDayError, *WORKLOAD_ERRORS) as exc:
            return await day_failed(args, "the market day", exc)
        agreement = result["agreement"]
        on = (f"same on {len(urls) - len(agreement.behind)} of {len(urls)} nodes; "
              f"{', '.join(agreement.behind)} not with them") if agreement.behind else "same on every node"
        for channel, (height, head, root) in agreement.items():
            say(f"{channel:12} height {height:4d}  head {head[:16]}…  state root {root[:16]}…  ({on})")
        say(f"round latency close -> settled: p50 {result['latency_p50_s']:.3f} s")
    elif not args.no_day:
        from nodes.demo import run_demo

        urls = workload_urls(args, cluster)
        say(f"running the demonstration day: {args.hours} hours of signed transactions on all three channels")
        try:
            result = await run_demo(cluster.directory, genesis, urls, hours=min(args.hours, 6), seed=args.seed,
                                    say=say)
        except WORKLOAD_ERRORS as exc:
            return await day_failed(args, "the demonstration day", exc)
        for channel, (height, head, root) in result["agreement"].items():
            say(f"{channel:12} height {height:4d}  head {head[:16]}…  state root {root[:16]}…  (same on every node)")
        say(f"day done: {result['transactions']} transactions committed")
    if args.tamper:
        await report_tampered(cluster, args.tamper)
    if args.once:
        return 0
    say("the cluster keeps running; press Ctrl-C to stop it")
    return await keep_running()


# what a day driven through the nodes' APIs may end with, short of a bug in this program
WORKLOAD_ERRORS = (ClusterError, ApiError, TimeoutError, AssertionError, aiohttp.ClientError)


async def day_failed(args: argparse.Namespace, what: str, exc: Exception) -> int:
    """Say in one line why the day stopped; exit 1 with --once, else keep the cluster running."""
    print(f"run_cluster: {what} stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
    if args.once:
        return 1
    say("the cluster keeps running (see its logs); press Ctrl-C to stop it")
    return await keep_running()


async def keep_running() -> int:
    """Until Ctrl-C (the caller stops the nodes); a node process that exits meanwhile is
    started again by the watch that ``run`` keeps (:class:`nodes.launcher.NodeWatch`)."""
    await asyncio.Event().wait()
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM/SIGHUP stop the cluster as Ctrl-C does: nodes first


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    args = parse_args(argv)
    try:
        genesis = load_or_create(args)
    except (ConsortiumError, GenesisError) as exc:
        print(f"run_cluster: {exc}", file=sys.stderr)
        return 2
    if args.tamper and args.tamper not in genesis.node_names:
        print(f"run_cluster: --tamper names no node of the consortium ({', '.join(genesis.node_names)})", file=sys.stderr)
        return 2
    tampered = {args.tamper: ["--tamper", "transaction"]} if args.tamper else {}
    cluster = Cluster(Path(args.dir), genesis, extra_args=tampered)
    try:
        return asyncio.run(run(args, cluster))
    except KeyboardInterrupt:
        say("Ctrl-C: stopping the cluster")
        return 0
    except (RuntimeError, TimeoutError, AssertionError) as exc:
        print(f"run_cluster: {exc}", file=sys.stderr)
        return 1
    finally:
        # a second Ctrl-C or SIGTERM (a supervisor's, or `timeout` passing its own on) must
        # not cut the nodes' stop short; it is bounded anyway (SIGKILL after a few seconds)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        cluster.stop_all()
        say("all node processes stopped")


if __name__ == "__main__":
    sys.exit(main())
