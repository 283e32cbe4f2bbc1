#!/usr/bin/env python3
"""The paper's market day through a 4-node cluster: wall time of 24 rounds, close -> settled p50.

    python bench/market_day.py [--seed 7] [--hours 24] [--base-port 7750]

Baseline, measured in the same run: the pure experiment's day (``market.experiment`` round by
round, the same stage functions the contracts call) for the same seed and SMES mode. The figures
are the cluster's wall time for the rounds (quotations signed and submitted through the nodes'
APIs, the stage contracts on the three channels -- close, round, SMES and metering, pricing,
settlement, statistics -- the checks and an agreement check per hour) and the ratio to that
baseline; the close -> settled latency runs from the close's submission to the commit of the
hour's settlement and statistics.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from market.scenario import ScenarioParams  # noqa: E402
from nodes.launcher import Cluster  # noqa: E402
from nodes.marketcore import expected_day, scenario  # noqa: E402
from nodes.marketday import run_market_day  # noqa: E402
from p2pchain.consortium import create_consortium  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--base-port", type=int, default=7750)
    args = ap.parse_args()
    params = ScenarioParams()
    t0 = time.perf_counter()
    expected_day(params, scenario(params, args.seed), with_smes=True, hours=args.hours)
    pure_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        genesis = create_consortium(directory, now=dt.datetime.now(dt.timezone.utc), base_port=args.base_port)
        cluster = Cluster(directory, genesis)
        cluster.start_all()
        try:
            asyncio.run(cluster.wait_healthy(timeout_s=90))
            urls = {n.name: cluster.url(n.name) for n in genesis.nodes}
            t0 = time.perf_counter()
            result = asyncio.run(run_market_day(directory, genesis, urls, hours=args.hours, seed=args.seed,
                                                smes_modes=(True,), say=print, first_run=0))
            chain_s = time.perf_counter() - t0
        finally:
            cluster.stop_all()
    lat = sorted(result["latencies_s"])
    print(f"pure experiment, {args.hours} rounds (baseline): {pure_s:.2f} s")
    print(f"cluster, {args.hours} rounds with the SMES:       {chain_s:.2f} s  ({chain_s / pure_s:.2f}x the baseline)")
    print(f"round latency close -> settled: p50 {statistics.median(lat):.3f} s, max {lat[-1]:.3f} s "
          f"(p50 {statistics.median(lat) / (pure_s / args.hours):.2f}x the baseline's mean round)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
