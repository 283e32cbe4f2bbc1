"""The paper's market day on the cluster, driven as real clients (docs/market-on-chain.md).

Each prosumer signs its quotation and submits it through a node's API (prosumers are spread
over the nodes), the microgrid operator closes the hour (the ``market`` contract then runs
the round), the distribution network operator writes the metering, and every node must
report the same heads and state roots before the next hour. Every hour's on-chain record is
compared value for value with the pure experiment's round for the same seed.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

from market.scenario import ScenarioParams
from p2pchain.client import Client, Signer
from p2pchain.genesis import Genesis

from .agreement import wait_for_agreement
from .deploy import deploy_contract
from .marketcore import compare_hour, expected_day, expected_hour, metered_readings, quote_args, scenario

__all__ = ["run_market_day", "CONTRACTS"]

ROOT = Path(__file__).resolve().parents[1] / "contracts"
CONTRACTS = (("transaction", "market", ROOT / "market.py"), ("electricity", "metering", ROOT / "metering.py"))
OPERATOR, DNO = "operator-mgo", "operator-dno"
CLOSE_TIMEOUT_S = 600.0


class MarketDayError(RuntimeError):
    """The chain's day differs from the pure experiment, or a transaction failed."""


def _rate(ppm) -> str:
    return "n/a" if ppm is None else f"{ppm / 10_000:.1f} %"


async def _submit(client: Client, tx, what: str) -> dict:
    answer = await client.submit(tx, wait=True)
    if answer["result"]["status"] != "ok":
        raise MarketDayError(f"{what} failed: {answer['result']['reason']}")
    return answer


async def run_market_day(directory: Path, genesis: Genesis, urls: dict[str, str], *, hours: int = 24,
                         seed: int = 7, smes_modes: tuple[bool, ...] = (True, False),
                         params: ScenarioParams | None = None, say=print, first_run: int | None = None) -> dict:
    """Run one day per SMES mode; return the records, rates, latencies and the agreement."""
    params = params or ScenarioParams()
    # A close runs the whole round, nucleolus included, inside one transaction: with the
    # paper's population that can take tens of seconds, beyond the client's default timeout.
    clients = {name: Client(url, timeout_s=CLOSE_TIMEOUT_S) for name, url in urls.items()}
    for client in clients.values():
        await client.__aenter__()
    try:
        entry = next(iter(clients.values()))  # the first node given
        for channel, name, path in CONTRACTS:
            if await deploy_contract(entry, directory, genesis, channel, name, path.read_text()):
                say(f"deployed contract '{name}' on {channel} (install, approvals of a majority of orgs, commit)")
        sc = scenario(params, seed)
        names = sorted({q.prosumer for h in sc.hours for q in h.quotations})
        signers = {n: Signer.load(directory, n) for n in names + [OPERATOR, DNO]}
        for signer in signers.values():
            for channel in ("transaction", "electricity"):
                await signer.resume(entry, channel)
        node_names = list(clients)
        if first_run is None:
            first_run = int(time.time())   # a fresh run id per invocation on a reused cluster
        runs, latencies = [], []
        for k, with_smes in enumerate(smes_modes):
            run = first_run + k
            label = "with the SMES" if with_smes else "without the SMES"
            say(f"market day, seed {seed}, {label} (run {run}): {len(names)} prosumers, {hours} hourly rounds")
            await _submit(entry, signers[OPERATOR].transaction("transaction", "market", "open_day",
                                                              {"run": run, "with_smes": with_smes}), "open_day")
            expected = expected_day(params, sc, with_smes=with_smes, hours=hours)
            records = []
            for hour in range(hours):
                started = time.monotonic()
                quotes = sc.hours[hour].quotations
                await asyncio.gather(*(
                    _submit(clients[node_names[i % len(node_names)]],
                            signers[q.prosumer].transaction("transaction", "market", "quote", quote_args(q)),
                            f"quotation of {q.prosumer} for hour {hour}")
                    for i, q in enumerate(quotes)))
                closed_at = time.monotonic()
                await _submit(entry, signers[OPERATOR].transaction("transaction", "market", "close", {"hour": hour}),
                              f"close of hour {hour}")
                latencies.append(time.monotonic() - closed_at)
                record = (await entry.state("transaction", "market", f"result/{run}/{hour:02d}"))["value"]
                diffs = compare_hour(record, expected_hour(expected, hour))
                if diffs:
                    raise MarketDayError(f"hour {hour}: the chain differs from the pure experiment: " + "; ".join(diffs))
                await _submit(entry, signers[DNO].transaction("electricity", "metering", "record", {
                    "run": run, "hour": hour, "readings": metered_readings(record)}), f"metering of hour {hour}")
                agreement = await wait_for_agreement(clients)
                s = record["stats"]
                say(f"hour {hour:2d}: {len(record['quotations']):2d} quotations, {s['matched_trades']:2d} matched, "
                    f"{len(record['refused']):2d} refused by the security check, {len(record['smes_legs']):2d} served by "
                    f"the SMES, mean price {s['mean_price_milli_per_kwh'] / 1000:.3f}/kWh; "
                    f"{time.monotonic() - started:.2f} s; all {len(clients)} nodes agree")
                records.append(record)
            day = (await entry.state("transaction", "market", f"run/{run}"))["value"]
            pure_success, pure_renewable = expected.success_rate(), expected.renewable_consumption_rate()
            for ppm, pure, what in ((day["success_rate_ppm"], pure_success, "success"),
                                    (day["renewable_rate_ppm"], pure_renewable, "renewable consumption")):
                if (ppm is None) != (pure is None) or (pure is not None and abs(ppm / 1e6 - pure) > 1e-6):
                    raise MarketDayError(f"{what} rate: chain {ppm} ppm, experiment {pure}")
            say(f"day {label}: transaction success rate {_rate(day['success_rate_ppm'])}, renewable consumption "
                f"rate {_rate(day['renewable_rate_ppm'])}; every hour equals the pure experiment (seed {seed})")
            runs.append({"run": run, "with_smes": with_smes, "records": records, "day": day})
        agreement = await wait_for_agreement(clients)
        return {"runs": runs, "agreement": agreement, "latencies_s": latencies,
                "latency_p50_s": statistics.median(latencies) if latencies else None}
    finally:
        for client in clients.values():
            await client.__aexit__(None, None, None)
