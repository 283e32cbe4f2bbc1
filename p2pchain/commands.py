"""The chain's command-line subcommands (thin adapters; ``nodes/cli.py`` wires them).

Each handler takes the parsed arguments and returns an exit status. The clock is read by
``nodes/cli.py`` and passed in as ``args.now``: nothing in ``p2pchain`` reads it itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .consortium import ConsortiumError, create_consortium, summary
from .genesis import Genesis, GenesisError

__all__ = ["add_commands"]


def _init(args: argparse.Namespace) -> int:
    try:
        genesis = create_consortium(
            Path(args.dir), nodes=args.nodes, host=args.hosts.split(",") if args.hosts else args.host,
            base_port=args.base_port,
            now=args.now, force=args.force, load_clients=args.load_clients,
        )
    except ConsortiumError as exc:
        print(f"p2pchain init: {exc}", file=sys.stderr)
        return 2
    print(summary(genesis, Path(args.dir)))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    try:
        genesis = Genesis.load(Path(args.dir))
    except GenesisError as exc:
        print(f"p2pchain inspect: {exc}", file=sys.stderr)
        return 2
    print(summary(genesis, Path(args.dir)))
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    init = subparsers.add_parser(
        "init",
        help="create a consortium: CAs, keys, certificates and the genesis",
        description="Create three organisations (mgo, dno, reg), N nodes, the paper's 15 EV, "
        "5 PV and 1 SMES client identities, an operator and an admin per organisation, and "
        "the genesis file with the three channels.",
    )
    init.add_argument("--dir", required=True, help="directory to create the consortium in")
    init.add_argument("--nodes", type=int, default=4, help="number of nodes, N = 3f+1 (default 4)")
    init.add_argument("--host", default="127.0.0.1", help="host recorded for every node (default 127.0.0.1)")
    init.add_argument("--hosts", help="one host per node, comma-separated (several machines; see docs/deploy.md)")
    init.add_argument("--base-port", type=int, default=7050, help="node i listens on base-port + i (default 7050)")
    init.add_argument("--force", action="store_true", help="replace a consortium already in DIR")
    init.add_argument("--load-clients", type=int, default=0, metavar="N",
                      help="also issue N benchmark client identities load0000.. (default 0)")
    init.set_defaults(func=_init)

    inspect = subparsers.add_parser(
        "inspect",
        help="print a summary of a consortium directory",
        description="Print the organisations, nodes with addresses, channels, identities by "
        "kind and the genesis digest of a consortium directory.",
    )
    inspect.add_argument("dir", help="the consortium directory")
    inspect.set_defaults(func=_inspect)
