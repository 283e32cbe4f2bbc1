"""``p2pchain verify DIR``: offline verification of a node's ledgers (thin CLI adapter)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..genesis import CHANNELS, Genesis, GenesisError
from .verify import verify_node

__all__ = ["add_commands"]


def _find_genesis(node_dir: Path, given: str | None) -> Path:
    """``--genesis``, else DIR/genesis.json, else the consortium's (DIR = CONSORTIUM/nodes/NAME)."""
    if given:
        return Path(given)
    for candidate in (node_dir / "genesis.json", node_dir.parent.parent / "genesis.json"):
        if candidate.exists():
            return candidate
    return node_dir / "genesis.json"


def _verify(args: argparse.Namespace) -> int:
    node_dir = Path(args.dir)
    if not (node_dir / "ledger").is_dir():
        print(f"p2pchain verify: {node_dir} holds no ledger/ directory", file=sys.stderr)
        return 2
    try:
        genesis = Genesis.load(_find_genesis(node_dir, args.genesis))
    except GenesisError as exc:
        print(f"p2pchain verify: {exc}", file=sys.stderr)
        return 2
    channels = tuple(args.channel) if args.channel else CHANNELS
    print(f"genesis {genesis.digest.hex()[:16]}…  node directory {node_dir}")
    reports = verify_node(node_dir, genesis, channels)
    for report in reports:
        print(report.describe())
    return 0 if all(report.ok for report in reports) else 1


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    verify = subparsers.add_parser(
        "verify",
        help="verify a node's ledgers offline against the genesis",
        description="Check every stored block of each channel of a node: hash links, "
        "transaction signatures and policies, commit certificates (2f+1 node signatures), "
        "state roots re-computed from the stored write sets, the node's state tables, and "
        "each block's anchors to the other two channels. Prints per channel the "
        "height verified, or the first bad block and what is wrong with it. Exit status 0 "
        "if all is well, 1 on any fault, 2 if DIR or the genesis cannot be read.",
    )
    verify.add_argument("dir", help="the node directory (holding ledger/<channel>.db)")
    verify.add_argument("--genesis", help="genesis.json (default: DIR/genesis.json, else DIR/../../genesis.json)")
    verify.add_argument("--channel", action="append", choices=CHANNELS,
                        help="verify only this channel (repeatable; default: all three)")
    verify.set_defaults(func=_verify)
