#!/usr/bin/env python3
"""Start the p2pchain consortium on this machine: one command for a newcomer.

Today this creates the consortium (organisations, CAs, node and client identities, genesis)
in ``--dir`` if none is there, and prints its summary. Starting the four node processes and
running the paper's market day through them is wired in as those parts land (see the README).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from p2pchain.consortium import ConsortiumError, create_consortium, summary
from p2pchain.genesis import Genesis, GenesisError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="./cluster", help="consortium directory (default ./cluster)")
    parser.add_argument("--nodes", type=int, default=4, help="number of nodes, 3f+1 (default 4)")
    parser.add_argument("--base-port", type=int, default=7050, help="node i listens on base-port + i")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    directory = Path(args.dir)
    try:
        if (directory / "genesis.json").exists():
            genesis = Genesis.load(directory)
            print(f"using the consortium already in {directory}")
        else:
            genesis = create_consortium(
                directory, nodes=args.nodes, base_port=args.base_port,
                now=dt.datetime.now(dt.timezone.utc),
            )
            print(f"created a consortium in {directory}")
    except (ConsortiumError, GenesisError) as exc:
        print(f"run_cluster: {exc}", file=sys.stderr)
        return 2
    print(summary(genesis, directory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
