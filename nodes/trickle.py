"""A steady trickle of signed transactions, so that a dashboard has consensus to show.

The demonstration day of ``run_cluster.py`` is over in seconds; a class watching the
dashboard needs batches to keep coming while they crash a primary or cut a link. This
submits one ``demo.record`` transaction every ``interval_s`` on the transaction channel
(and now and then one on each side chain), from the prosumers in turn, to the nodes in
turn, skipping any node that refuses or does not answer. Nothing waits for commitment, so
a stalled cluster (a crashed primary before the view change) is visible, not hidden.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sys
from pathlib import Path

from p2pchain.client import ApiError, Client, ClusterClient, ClusterError
from p2pchain.genesis import Genesis

from .demo import demo_writers, prepare_demo
from .launcher import api_url

__all__ = ["trickle", "add_commands"]


async def trickle(directory: Path, genesis: Genesis, urls: dict[str, str], *, interval_s: float = 0.25,
                  seed: int = 11, stop: asyncio.Event | None = None, count: int | None = None, say=print) -> int:
    """Submit transactions until ``stop`` is set (or ``count`` were accepted); return how many were."""
    rng = random.Random(seed)
    stop = stop or asyncio.Event()
    clients = {name: Client(url, timeout_s=5) for name, url in urls.items()}
    cluster = ClusterClient(clients, give_up_s=0.0)    # one round over the nodes per transaction
    await cluster.__aenter__()
    try:
        signers = await cluster.ask(lambda client: prepare_demo(client, directory, genesis, say))
        writers = demo_writers(genesis)
        prosumers = writers["transaction"]
        turn = itertools.cycle(prosumers)
        nodes = itertools.cycle(list(clients))
        accepted = 0
        for tick in itertools.count():
            if stop.is_set() or (count is not None and accepted >= count):
                break
            channel = "transaction" if tick % 8 else rng.choice(("matching", "electricity"))
            name = next(turn) if channel == "transaction" else writers[channel][0]
            tx = signers[name].transaction(channel, "demo", "record",
                                           {"topic": f"t{tick}", "value": {"energy_wh": rng.randrange(500, 8000)}})
            try:
                await cluster.submit(tx, wait=False, prefer=next(nodes))  # or the next node that takes it
                accepted += 1
            except (ApiError, ClusterError):
                pass
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except asyncio.TimeoutError:
                pass
        return accepted
    finally:
        await cluster.__aexit__(None, None, None)


def _run(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    try:
        genesis = Genesis.load(directory)
    except Exception as exc:  # a missing or broken consortium directory: say which
        print(f"p2pchain trickle: cannot load the consortium in {directory}: {exc}", file=sys.stderr)
        return 2
    if not args.interval >= 0 or (args.count is not None and args.count < 1):
        print("p2pchain trickle: --interval takes seconds >= 0, --count a number >= 1", file=sys.stderr)
        return 2
    urls = {node.name: api_url(node) for node in genesis.nodes}
    print(f"submitting a transaction every {args.interval:.2f} s to {len(urls)} nodes; Ctrl-C to stop", flush=True)
    try:
        accepted = asyncio.run(trickle(directory, genesis, urls, interval_s=args.interval, count=args.count))
    except (ApiError, ClusterError) as exc:     # deploying the demo contract, before the first transaction
        print(f"p2pchain trickle: cannot start: {exc}", file=sys.stderr)
        return 1
    print(f"{accepted} transactions accepted")
    return 0


DESCRIPTION = ("Deploy the demo contract if needed, then submit one signed demo.record transaction every "
               "INTERVAL seconds, from the prosumers in turn, to the nodes in turn, until Ctrl-C or --count. Use it "
               "beside run_cluster.py --no-day so that the dashboard at /ui always has batches to show.")


def _options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--dir", default="./cluster", help="consortium directory (default ./cluster)")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between transactions (default 0.25)")
    parser.add_argument("--count", type=int, default=None, help="stop after this many accepted transactions")
    return parser


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "trickle", help="keep a running cluster busy with a steady trickle of transactions (for the dashboard)",
        description=DESCRIPTION)
    _options(parser).set_defaults(func=_run)


if __name__ == "__main__":  # python -m nodes.trickle --dir DIR, the same as p2pchain trickle
    sys.exit(_run(_options(argparse.ArgumentParser(prog="python -m nodes.trickle", description=DESCRIPTION)).parse_args()))
