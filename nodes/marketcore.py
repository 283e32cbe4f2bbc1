"""What the market day sends and checks, without the network (docs/market-on-chain.md).

:func:`quote_args` turns a scenario quotation into the arguments of ``quotation.quote``;
:func:`smes_apply_args` and :func:`metered_readings` derive the electricity channel's
transactions from a round's record; :func:`hour_view` joins an hour's stage records,
and :func:`expected_day` runs the pure experiment (``p2pchain market paper``) for the same
seed, so that view can be compared value for value with :func:`compare_hour`.
"""

from __future__ import annotations

from market.experiment import DayResult, run_round
from market.smes import SmesState
from market.grid import load_feeder
from market.model import Quotation
from market.scenario import DayScenario, ScenarioParams, build_day
from market.records import QUOTE_FIELDS, smes_actions

__all__ = ["quote_args", "scenario", "expected_day", "expected_hour", "compare_hour", "metered_readings",
           "smes_apply_args", "hour_view", "QUOTE_FIELDS"]



def quote_args(q: Quotation, run: int) -> dict:
    """Arguments of ``quotation.quote`` for ``q`` in run ``run`` (its prosumer signs the transaction)."""
    args = {"run": run, "hour": q.hour, "side": q.side.value}
    args.update({k: getattr(q, k) for k in QUOTE_FIELDS})
    return args


def scenario(params: ScenarioParams, seed: int, day: int = 0) -> DayScenario:
    return build_day(params, load_feeder(), seed, day)


def expected_day(params: ScenarioParams, sc: DayScenario, *, with_smes: bool, hours: int = 24) -> DayResult:
    """The pure experiment's day (``market.experiment.run_day``) for the same scenario, cut
    after its first ``hours`` rounds: what the chain must reproduce."""
    feeder = load_feeder()
    state = SmesState.empty(params.smes) if with_smes else None
    rounds = []
    for inputs in sc.hours[:hours]:
        r = run_round(feeder, inputs, params, state)
        state = r.smes_state_after
        rounds.append(r)
    return DayResult(sc.day, with_smes, feeder.rating_scale, tuple(rounds))


def expected_hour(day: DayResult, hour: int) -> dict:
    """The values of one pure round that the on-chain record holds."""
    r = day.rounds[hour]
    s = r.stats
    stats = {k: getattr(s, k) for k in s.__slots__}
    return {"stats": stats,
            "trades": sorted([p.trade.buyer, p.trade.seller, p.trade.energy_wh, p.price_milli_per_kwh,
                              p.payment_milli] for p in r.prices.values()),
            "settlement": [list(x) for x in r.settlement.balances_milli],
            "refused": len(r.security.refused),
            "smes_legs": len(r.smes.legs) if r.smes else 0}


def hour_view(round_record: dict, priced: dict, settled: dict, stats: dict) -> dict:
    """One hour as the stages recorded it on the chain: the round (matching channel), its
    prices, settlement and statistics (transaction channel) in one dict, the dashboard's and
    :func:`compare_hour`'s shape."""
    return {"run": round_record["run"], "hour": round_record["hour"], "with_smes": round_record["with_smes"],
            "quotations": round_record["quotations"], "matched": round_record["matched"],
            "direct": round_record["direct"], "refused": round_record["refused"],
            "smes_legs": round_record["smes_legs"], "smes_after": round_record["smes_after"],
            "trades": priced["trades"], "shares": priced["shares"], "settlement": settled["settlement"],
            "smes_revenue_milli": settled["smes_revenue_milli"], "stats": stats}


def compare_hour(record: dict, expected: dict) -> list[str]:
    """Differences between an on-chain hour (:func:`hour_view`) and the pure round (empty when equal)."""
    got = {"stats": {k: record["stats"].get(k) for k in expected["stats"]},
           "trades": sorted([t["buyer"], t["seller"], t["energy_wh"], t["price_milli_per_kwh"],
                             t["payment_milli"]] for t in record["trades"]),
           "settlement": record["settlement"],
           "refused": len(record["refused"]),
           "smes_legs": len(record["smes_legs"])}
    return [f"{k}: chain {got[k]!r} != experiment {expected[k]!r}" for k in expected if got[k] != expected[k]]


def metered_readings(record: dict, smes_name: str = "smes") -> list[list]:
    """Net Wh per prosumer the dno meters for a recorded hour: a direct trade delivers its
    energy from seller to buyer; an SMES leg between the SMES and its counterparty."""
    net: dict[str, int] = {}

    def flow(src: str, dst: str, wh: int) -> None:
        net[src] = net.get(src, 0) - wh
        net[dst] = net.get(dst, 0) + wh

    for t in record["direct"]:
        flow(t["seller"], t["buyer"], t["energy_wh"])
    for leg in record["smes_legs"]:
        if leg["action"] == "absorb":
            flow(leg["counterparty"], smes_name, leg["energy_wh"])
        else:
            flow(smes_name, leg["counterparty"], leg["energy_wh"])
    return [[name, wh] for name, wh in sorted(net.items())]


def smes_apply_args(record: dict) -> dict:
    """Arguments of ``smes.apply`` for a round's record (the contract checks them against the
    round it reads itself)."""
    return smes_actions(record)
