"""``p2pchain simulate``: run random fault schedules and report violations.

Wired into ``nodes/cli.py`` through :func:`add_commands` (the CLI protocol of COMMON.md).
"""

from __future__ import annotations

import argparse
import sys
import time

from .faults import FAULT_KINDS, parse_faults
from .runner import run_many
from .trace import TraceWriter

__all__ = ["add_commands", "simulate"]


def simulate(args: argparse.Namespace) -> int:
    try:
        kinds = parse_faults(args.faults)
    except ValueError as exc:
        print(f"p2pchain simulate: {exc}", file=sys.stderr)
        return 2
    if args.nodes < 4 or (args.nodes - 1) % 3:
        print(f"p2pchain simulate: --nodes must be 3f+1 with f >= 1 (4, 7, 10...), got {args.nodes}", file=sys.stderr)
        return 2
    if args.schedules < 1:
        print("p2pchain simulate: --schedules must be at least 1", file=sys.stderr)
        return 2
    try:
        stream = open(args.trace, "w") if args.trace else None
    except OSError as exc:
        print(f"p2pchain simulate: cannot write the trace to {args.trace}: {exc.strerror}", file=sys.stderr)
        return 2
    trace = TraceWriter(stream) if stream else None
    safety = liveness = 0
    started = time.perf_counter()  # wall time for the schedules/minute figure only
    try:
        for result in run_many(args.seed, args.schedules, nodes=args.nodes, kinds=kinds, trace=trace):
            v = result.verdict
            if v.safety or v.validity:
                safety += 1
            if v.liveness:
                liveness += 1
            if not result.ok:
                problems = "; ".join(v.safety + v.validity + v.liveness)
                print(f"FAIL seed {result.schedule.seed} [{result.schedule.describe()}]: {problems}")
    finally:
        if stream:
            stream.close()
    elapsed = time.perf_counter() - started
    print(f"{args.schedules} schedules, {safety} safety violations, {liveness} liveness failures")
    if args.verbose:
        print(f"({elapsed:.1f} s, {60 * args.schedules / max(elapsed, 1e-9):.0f} schedules/minute)")
    return 0 if safety == liveness == 0 else 1


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="run random fault schedules against the PBFT core and check safety and liveness",
        description="Run K random fault schedules (seeds S, S+1, ..., S+K-1) of N simulated "
        "PBFT replicas and clients on a seeded virtual network, then check safety (honest "
        "committed logs are prefixes of one another), validity (only client-signed requests, "
        "each once, in the client's order) and liveness (every request served after the "
        "faults heal). Prints one line per failing schedule with its seed (re-run with "
        "--seed SEED --schedules 1 to replay it exactly) and a summary line. Exit status 0 "
        "only if there is no violation.",
    )
    parser.add_argument("--seed", type=int, default=0, help="first schedule seed (default 0)")
    parser.add_argument("--schedules", type=int, default=100, help="number of schedules K (default 100)")
    parser.add_argument("--nodes", type=int, default=4, help="replicas N = 3f+1 (default 4)")
    parser.add_argument("--faults", default="all",
                        help="comma-separated fault kinds to draw from (default all): " + ",".join(FAULT_KINDS))
    parser.add_argument("--trace", metavar="FILE", help="write every run's events as JSON lines to FILE")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print the rate in schedules/minute")
    parser.set_defaults(func=simulate)
