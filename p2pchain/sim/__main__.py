"""``python -m p2pchain.sim simulate ...``: the ``simulate`` command without the node CLI."""

from __future__ import annotations

import argparse
import sys

from .commands import add_commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m p2pchain.sim")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_commands(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
