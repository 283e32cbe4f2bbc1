"""``p2pchain contract check PATH``: run the contract validator on a module."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .validator import validate

__all__ = ["add_commands"]


def _check(args: argparse.Namespace) -> int:
    status = 0
    for path in args.paths:
        try:
            source = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{path}: cannot read: {exc}", file=sys.stderr)
            status = 2
            continue
        _, refusals = validate(source, filename=str(path))
        prefix = f"{path}: " if len(args.paths) > 1 else ""
        if refusals:
            for refusal in refusals:
                print(f"{path}:{refusal.line}: {refusal.reason}")
            status = max(status, 1)
        else:
            print(f"{prefix}ok")
    return status


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    contract = subparsers.add_parser(
        "contract", help="work with contract modules",
        description="Tools for contract authors: check a module against the runtime's rules.",
    )
    actions = contract.add_subparsers(dest="contract_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="validate a contract module",
        description="Run the contract validator on each module and print 'ok', or every refusal "
        "as PATH:LINE: REASON. Exit status 0 if all are accepted, 1 if any is refused, 2 if a file "
        "cannot be read. The rules are in docs/contracts.md.",
    )
    check.add_argument("paths", nargs="+", metavar="PATH", help="a contract module (.py)")
    check.set_defaults(func=_check)
