"""The ``p2pchain`` command: one entry point, subcommands contributed by each layer.

Every layer that offers commands has a module with ``add_commands(subparsers)``; each parser
sets ``func`` to a handler ``handler(args) -> int``. This module is the only place that reads
the clock for them (``args.now``), so the layers below stay free of it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from market import cli as market_commands
from p2pchain import commands as chain_commands
from p2pchain.crypto import KeyFileError
from p2pchain.genesis import GenesisError
from p2pchain.ledger import commands as ledger_commands
from p2pchain.runtime import commands as runtime_commands
from p2pchain.sim import commands as sim_commands

from . import commands as node_commands
from . import trickle

COMMAND_MODULES = (chain_commands, ledger_commands, sim_commands, runtime_commands, node_commands, trickle, market_commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2pchain",
        description="p2pchain: a PBFT consortium blockchain with an EV peer-to-peer energy market.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in COMMAND_MODULES:
        module.add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.now = dt.datetime.now(dt.timezone.utc)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (GenesisError, KeyFileError) as exc:
        # a name the genesis does not hold (--name, --node), an identity without a key here
        # (--as, --admin): the person's input to mend, in one line, not a traceback
        print(f"p2pchain {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
