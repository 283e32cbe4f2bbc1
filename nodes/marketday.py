"""The paper's market day on the cluster, driven as real clients (docs/market-on-chain.md).

Each prosumer signs its quotation and submits it through a node's API (prosumers are spread
over the nodes). Then, per hour, the stage contracts run in this order, each transaction
waiting for its commit:

    transaction  quotation.close(hour)              operator-mgo   freezes the quotations
    matching     round.close(run, hour)             operator-mgo   reads them and the SMES state
    electricity  smes.apply, then metering.record   operator-dno   } in parallel with
    transaction  pricing.price(run, hour)           operator-mgo   } each other; reads the round
    transaction  settlement.settle ‖ statistics.record  mgo ‖ reg   one block; read the round
                                                                    (and the SMES's actions)

A stage reads its inputs on another channel through ``ctx.read`` as of the heights its block
anchors, so before submitting it the driver waits until the primary of the stage's channel
has committed the blocks it needs (:func:`wait_anchored`): the next block that primary
proposes anchors them. A stage refused with "not anchored yet" (a view change moved the
primary, say) is waited for and submitted again. Every node must then report the same heads
and state roots before the next hour, and every hour is compared value for value with the
pure experiment's round for the same seed.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from pathlib import Path


from market.scenario import ScenarioParams
from p2pchain.client import ApiError, Client, ClusterClient, Signer
from p2pchain.genesis import Genesis

from .agreement import wait_for_agreement
from .deploy import deploy_contract
from .marketcore import (compare_hour, expected_day, expected_hour, hour_view, metered_readings, quote_args,
                         scenario, smes_apply_args)

__all__ = ["run_market_day", "wait_anchored", "CONTRACTS"]

ROOT = Path(__file__).resolve().parents[1] / "contracts"
CONTRACTS = tuple((channel, name, ROOT / f"{name}.py") for channel, name in (
    ("transaction", "quotation"), ("matching", "round"), ("electricity", "smes"), ("electricity", "metering"),
    ("transaction", "pricing"), ("transaction", "settlement"), ("transaction", "statistics")))
OPERATOR, DNO, REGULATOR = "operator-mgo", "operator-dno", "operator-reg"
# A round or a pricing runs inside one transaction; a paper-sized nucleolus can take longer
# than the client's default timeout.
STAGE_TIMEOUT_S = 600.0
ANCHOR_POLL_S = 0.005  # how often the primary's status is asked while a stage waits for its anchors
ANCHOR_WAIT_S = 30.0
STAGE_ATTEMPTS = 20  # a stage refused as "not anchored yet" is retried at most this often
NOT_ANCHORED = "not anchored yet"
NONCE_ATTEMPTS = 10  # a call whose nonce another transaction took is signed again at most this often
NONCE_BACKOFF_S = 0.2
FAILOVER_WAIT_S = 8.0  # a node that has not committed a submission in this long: the next node gets it
# (a view change takes 2-4 s; sending the same transaction to another node too is harmless)
SUSPECT_S = 60.0  # a node that failed a call, or lagged at an agreement check, is asked last for this long
AGREEMENT_GRACE_S = 5.0  # after an hour, how long every node is waited for before 2f+1 agreeing do
AGREEMENT_RECHECK_S = 0.5  # the same for an hour after one that left a node behind


class MarketDayError(RuntimeError):
    """The chain's day differs from the pure experiment, or a transaction failed."""


def _mean_price(milli_per_kwh: int) -> str:
    """The round's energy-weighted mean price, or that no trade was delivered (the
    statistics hold 0 then)."""
    return f"mean price {milli_per_kwh / 1000:.3f}/kWh" if milli_per_kwh else "no trade delivered"


def _agreeing(agreement, clients) -> str:
    """'all 4 nodes agree', or how many do and which are left out (crashed, isolated, ...)."""
    if not agreement.behind:
        return f"all {len(clients)} nodes agree"
    return (f"{len(clients) - len(agreement.behind)} of {len(clients)} nodes agree "
            f"({', '.join(agreement.behind)} not with them)")


def _rate(ppm) -> str:
    return "n/a" if ppm is None else f"{ppm / 10_000:.1f} %"


@dataclass(frozen=True)
class _Call:
    """A contract call one identity signs: a new transaction (the signer's next nonce) each
    time it is sent."""

    signer: Signer
    channel: str
    contract: str
    function: str
    args: dict

    def tx(self):
        return self.signer.transaction(self.channel, self.contract, self.function, self.args)


async def _committed(nodes: ClusterClient, call: _Call, prefer: str | None = None) -> dict:
    """Sign ``call``, submit it and wait for its commit; the node's answer.

    Signed again with a fresh nonce while the nonce is refused as taken: a driver killed
    in the middle of a day leaves transactions its nodes had prepared, which commit after
    the restart, possibly after this run resumed its nonces from a node not yet past them."""
    for attempt in range(NONCE_ATTEMPTS):
        try:
            return await nodes.submit(call.tx(), wait=True, prefer=prefer)
        except ApiError as exc:
            if exc.code != "replayed_nonce" or attempt == NONCE_ATTEMPTS - 1:
                raise
            await asyncio.sleep(NONCE_BACKOFF_S * (attempt + 1))
            await nodes.ask(lambda client: call.signer.resume(client, call.channel), prefer)
    raise AssertionError("unreachable")


async def _commit(nodes: ClusterClient, call: _Call, what: str, prefer: str | None = None):
    """Submit and wait for the commit; (the contract's return value, the block height), or
    MarketDayError with its reason."""
    answer = await _committed(nodes, call, prefer)
    if answer["result"]["status"] != "ok":
        raise MarketDayError(f"{what} failed: {answer['result']['reason']}")
    return answer["result"]["value"], answer["height"]


async def _submit(nodes: ClusterClient, call: _Call, what: str, prefer: str | None = None):
    """Submit and wait for the commit; the contract's return value, or MarketDayError with its reason."""
    return (await _commit(nodes, call, what, prefer))[0]


async def wait_anchored(nodes: ClusterClient, channel: str, needs: dict[str, int],
                        timeout_s: float = ANCHOR_WAIT_S) -> bool:
    """Wait until the primary of ``channel`` has committed ``needs`` (channel -> height), so the
    next block it proposes anchors them; whether it did within ``timeout_s``. The primary is
    asked directly; one that cannot be asked, is crashed or was left behind lately (isolated,
    say: its own heights would keep the stage waiting) is waited for through the first node
    that answers instead, and the stage's "not anchored yet" refusal covers the rest."""
    if not needs:
        return True
    deadline = time.monotonic() + timeout_s
    while True:
        status = await nodes.status()
        primary = status["channels"][channel]["primary"]
        if primary in nodes.clients and primary != status["node"] and not nodes.is_suspect(primary):
            try:
                other = await nodes.clients[primary].status()
                if not other.get("crashed"):
                    status = other
            except Exception:  # noqa: BLE001 - a primary that does not answer: the first node's view
                pass
        heights = status["channels"]
        if all(heights[c]["height"] >= h for c, h in needs.items()):
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(ANCHOR_POLL_S)


async def _stage(nodes: ClusterClient, call: _Call, channel: str, needs: dict[str, int], what: str):
    """A stage that reads another channel: wait for its anchors, submit, and submit again
    (a new transaction) while it is refused as not anchored yet; (value, height)."""
    for attempt in range(STAGE_ATTEMPTS):
        await wait_anchored(nodes, channel, needs)
        answer = await _committed(nodes, call)
        result = answer["result"]
        if result["status"] == "ok":
            return result["value"], answer["height"]
        if NOT_ANCHORED not in result["reason"] or attempt == STAGE_ATTEMPTS - 1:
            raise MarketDayError(f"{what} failed: {result['reason']}")
        await asyncio.sleep(ANCHOR_POLL_S * (attempt + 1))
    raise AssertionError("unreachable")


async def _hour_stages(nodes: ClusterClient, signers: dict[str, Signer], run: int, hour: int,
                       smes_height: int | None):
    """Close ``hour`` and run every stage after it (the module's table); each stage's record,
    and the electricity height at which the SMES's actions of the hour were committed."""
    mgo, dno, reg = signers[OPERATOR], signers[DNO], signers[REGULATOR]
    closed, closed_at = await _commit(nodes, _Call(mgo, "transaction", "quotation", "close", {"run": run, "hour": hour}),
                                      f"close of hour {hour}")
    # The round reads the close (transaction) and the SMES state after the previous hour (electricity).
    needs = {"transaction": closed_at} | ({} if smes_height is None else {"electricity": smes_height})
    record, round_at = await _stage(nodes, _Call(mgo, "matching", "round", "close", {
        "run": run, "hour": hour}), "matching", needs, f"round of hour {hour}")

    async def electricity():
        after, at = None, None
        if record["with_smes"]:
            # smes.apply checks its actions against the round, read at its anchors
            after, at = await _stage(nodes, _Call(dno, "electricity", "smes", "apply",
                                                    smes_apply_args(record)),
                                     "electricity", {"matching": round_at}, f"SMES actions of hour {hour}")
        # one dno transaction at a time: PBFT orders a client's requests by nonce
        await _submit(nodes, _Call(dno, "electricity", "metering", "record", {
            "run": run, "hour": hour, "readings": metered_readings(record)}), f"metering of hour {hour}")
        return after, at

    (smes_after, smes_at), (priced, _) = await asyncio.gather(electricity(), _stage(
        nodes, _Call(mgo, "transaction", "pricing", "price", {"run": run, "hour": hour}),
        "transaction", {"matching": round_at}, f"pricing of hour {hour}"))
    args = {"run": run, "hour": hour, "priced": priced}
    needs = {"matching": round_at} | ({} if smes_at is None else {"electricity": smes_at})
    # Settlement reads the round and the SMES's actions; wait for both before either goes in.
    (settled, _), (stats, _) = await asyncio.gather(
        _stage(nodes, _Call(mgo, "transaction", "settlement", "settle", args), "transaction", needs,
               f"settlement of hour {hour}"),
        _stage(nodes, _Call(reg, "transaction", "statistics", "record", args), "transaction", needs,
               f"statistics of hour {hour}"))
    return closed, record, smes_after, smes_at, priced, settled, stats


async def fresh_run(nodes: ClusterClient, prefer: str | None = None) -> int:
    """A run id no day on this cluster has opened: the clock's second, or one past the last
    run the quotation contract opened when that is later (a day started within a second of
    the last one, or a clock set back)."""
    try:
        config = await nodes.ask(lambda client: client.state("transaction", "quotation", "config"), prefer)
    except ApiError as exc:
        if exc.status != 404:
            raise
        return int(time.time())    # no day opened yet
    return max(int(time.time()), config["value"]["run"] + 1)


async def run_market_day(directory: Path, genesis: Genesis, urls: dict[str, str], *, hours: int = 24,
                         seed: int = 7, smes_modes: tuple[bool, ...] = (True, False),
                         params: ScenarioParams | None = None, say=print, first_run: int | None = None) -> dict:
    """Run one day per SMES mode; return the records, rates, latencies and the agreement."""
    params = params or ScenarioParams()
    clients = {name: Client(url, timeout_s=FAILOVER_WAIT_S) for name, url in urls.items()}
    nodes = ClusterClient(clients, say=say, suspect_s=SUSPECT_S, give_up_s=STAGE_TIMEOUT_S)
    quorum = 2 * genesis.consensus.f + 1
    await nodes.__aenter__()
    try:
        deployed_any = False
        for channel, name, path in CONTRACTS:
            deployed = await nodes.ask(lambda client: deploy_contract(client, directory, genesis, channel, name,
                                                                      path.read_text()))
            if deployed:
                deployed_any = True
                say(f"deployed contract '{name}' v{deployed} on {channel} (install, approvals of a majority of orgs, commit)")
        if deployed_any:
            # 2f+1 nodes have executed the deployments before any is asked to run a contract (one
            # still behind rightly refuses a contract it has not seen committed: 404
            # unknown_contract); one left behind is asked last
            nodes.suspect((await wait_for_agreement(clients, quorum=quorum, grace_s=AGREEMENT_GRACE_S)).behind)
        sc = scenario(params, seed)
        names = sorted({q.prosumer for h in sc.hours for q in h.quotations})
        signers = {n: Signer.load(directory, n) for n in names + [OPERATOR, DNO, REGULATOR]}
        for signer in signers.values():
            for channel in ("transaction", "matching", "electricity"):
                await nodes.ask(lambda client: signer.resume(client, channel))
        node_names = list(clients)
        if first_run is None:
            first_run = await fresh_run(nodes)
        runs, latencies = [], []
        for k, with_smes in enumerate(smes_modes):
            run = first_run + k
            label = "with the SMES" if with_smes else "without the SMES"
            say(f"market day, seed {seed}, {label} (run {run}): {len(names)} prosumers, {hours} hourly rounds")
            await _submit(nodes, _Call(signers[OPERATOR], "transaction", "quotation", "open_day",
                                                              {"run": run, "with_smes": with_smes}), "open_day")
            smes_height = None
            if with_smes:
                _, smes_height = await _commit(nodes, _Call(signers[DNO], "electricity", "smes", "open_day",
                                                            {"run": run}), "the SMES's open_day")
            expected = expected_day(params, sc, with_smes=with_smes, hours=hours)
            records, behind = [], ()
            for hour in range(hours):
                started = time.monotonic()
                quotes = sc.hours[hour].quotations
                await asyncio.gather(*(
                    _submit(nodes, _Call(signers[q.prosumer], "transaction", "quotation", "quote", quote_args(q, run)),
                            f"quotation of {q.prosumer} for hour {hour}", prefer=node_names[i % len(node_names)])
                    for i, q in enumerate(quotes)))
                closed_at = time.monotonic()
                closed, record, smes_after, smes_at, priced, settled, stats = await _hour_stages(
                    nodes, signers, run, hour, smes_height)
                latencies.append(time.monotonic() - closed_at)
                smes_height = smes_at
                view = hour_view(record, priced, settled, stats)
                diffs = compare_hour(view, expected_hour(expected, hour))
                if diffs:
                    raise MarketDayError(f"hour {hour}: the chain differs from the pure experiment: " + "; ".join(diffs))
                # a node left behind at the last check is waited for only briefly
                agreed = await wait_for_agreement(clients, quorum=quorum,
                                                  grace_s=AGREEMENT_GRACE_S if not behind else AGREEMENT_RECHECK_S)
                behind = agreed.behind
                nodes.suspect(behind)
                s = view["stats"]
                say(f"hour {hour:2d}: {len(view['quotations']):2d} quotations, {s['matched_trades']:2d} matched, "
                    f"{len(view['refused']):2d} refused by the security check, {len(view['smes_legs']):2d} served by "
                    f"the SMES, {_mean_price(s['mean_price_milli_per_kwh'])}; "
                    f"{time.monotonic() - started:.2f} s; {_agreeing(agreed, clients)}")
                records.append(view)
            day = (await nodes.ask(lambda client: client.state("transaction", "statistics", f"run/{run}")))["value"]
            pure_success, pure_renewable = expected.success_rate(), expected.renewable_consumption_rate()
            for ppm, pure, what in ((day["success_rate_ppm"], pure_success, "success"),
                                    (day["renewable_rate_ppm"], pure_renewable, "renewable consumption")):
                if (ppm is None) != (pure is None) or (pure is not None and abs(ppm / 1e6 - pure) > 1e-6):
                    raise MarketDayError(f"{what} rate: chain {ppm} ppm, experiment {pure}")
            say(f"day {label}: transaction success rate {_rate(day['success_rate_ppm'])}, renewable consumption "
                f"rate {_rate(day['renewable_rate_ppm'])}; every hour equals the pure experiment (seed {seed})")
            runs.append({"run": run, "with_smes": with_smes, "records": records, "day": day})
        agreement = await wait_for_agreement(clients, quorum=quorum, grace_s=AGREEMENT_GRACE_S)
        return {"runs": runs, "agreement": agreement, "latencies_s": latencies,
                "latency_p50_s": statistics.median(latencies) if latencies else None}
    finally:
        await nodes.__aexit__(None, None, None)
