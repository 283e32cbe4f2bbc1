"""Per-hour and per-day market statistics, on the transaction channel (docs/market.md).

The last stage of the market round (DESIGN.md, "The market round", step 7;
docs/market-on-chain.md). ``record(run, hour, priced)`` reads the round's record from the
matching channel (``ctx.read`` as of the anchored height; refused with that height while it
is not visible yet), takes the hour's prices (carried: the ``pricing`` contract is on this
channel, and a contract never reads another's state there; refused unless they equal
``market.records.price_record`` of the round) and tallies the hour with
``market.experiment.stage_statistics``; it keeps per hour every ``RoundStats`` tally under
``hour/{run}/{hh}``, and per run (one simulated day) the integer totals and the two rates
of the paper's Fig. 4 under ``run/{run}``:

* transaction success rate = delivered trade sides / (2 x matched trades),
* renewable consumption rate = PV energy consumed / PV energy offered,

in parts per million, rounded half up. ``day`` holds the latest runs with and without the
SMES side by side, in percent (the dashboard's charts).

Who may call what: ``record`` -- the regulator's operator ``operator-reg`` (the market's
statistics are the regulator's report, and a second submitter lets the operator's settlement
go in the same block), each hour once, in order; ``hour_stats``, ``day_stats`` -- anyone.
"""

from market.experiment import stage_statistics
from market.records import PricesMismatch, price_record, quotations, round_prices, smes_dispatch, trade
from market.scenario import HourInputs, ScenarioParams, market_params
from market.security import SecurityResult

REGULATOR = "operator-reg"
TOTALS = ("matched_trades", "delivered_sides", "pv_offered_wh", "pv_consumed_wh", "quotations", "refused",
          "smes_legs")


class StatisticsRefused(Exception):
    """A call the statistics contract does not accept; the message says why."""


def _stats(r, priced):
    """The hour's RoundStats from the round's record and prices (stage_statistics' inputs rebuilt)."""
    hour = r["hour"]
    inputs = HourInputs(hour, market_params(ScenarioParams(), hour), (), r["pv_offered_wh"])
    # stage_statistics reads only the admitted trades, the legs, the SMES's market discharge and
    # the prices; refusals, `unhelped` and the injections stay with the round's record.
    security = SecurityResult(tuple(trade(t) for t in r["direct"]), ())
    dispatch, after = smes_dispatch(r)
    prices = round_prices(r, priced)
    return stage_statistics(inputs, tuple(quotations(r, hour)), tuple(trade(t) for t in r["matched"]), security,
                            dispatch, prices, after)


def _ppm(num, den):
    return None if den == 0 else (num * 1_000_000 + den // 2) // den


def record(ctx, run, hour, priced):
    """Tally ``hour`` of run ``run``; returns the hour's statistics."""
    if ctx.caller.name != REGULATOR:
        raise StatisticsRefused(ctx.caller.name + " may not record statistics; only " + REGULATOR + " may")
    if not isinstance(priced, dict) or priced.get("run") != run or priced.get("hour") != hour:
        raise StatisticsRefused("the prices given are not those of hour " + str(hour) + " of run " + str(run))
    round_record = ctx.read("matching", "round/" + str(run) + "/" + str(hour).zfill(2), "round")
    if round_record is None:
        raise StatisticsRefused("round of hour " + str(hour) + " of run " + str(run) + " not anchored yet: "
                                "matching anchored at height " + str(ctx.block.anchors.get("matching")))
    day = ctx.get("run/" + str(run), {"with_smes": bool(round_record.get("with_smes")), "hours": [],
                                      "totals": dict.fromkeys(TOTALS, 0)})
    expected = len(day["hours"])
    if hour != expected:
        raise StatisticsRefused("hour " + str(hour) + " of run " + str(run) + " cannot be tallied; the next is "
                                + str(expected))
    try:
        s = _stats(round_record, priced)
    except PricesMismatch as exc:
        raise StatisticsRefused(str(exc))
    except (KeyError, TypeError, ValueError) as exc:
        raise StatisticsRefused("malformed round or prices: " + str(exc))
    if priced != price_record(round_record, run, hour):
        raise StatisticsRefused("the prices given are not the nucleolus prices of hour " + str(hour) + " of run " + str(run))
    stats = {"matched_trades": s.matched_trades, "direct_trades": s.direct_trades, "absorb_legs": s.absorb_legs,
             "serve_legs": s.serve_legs, "demand_wh": s.demand_wh, "supply_wh": s.supply_wh,
             "matched_wh": s.matched_wh, "direct_wh": s.direct_wh, "pv_offered_wh": s.pv_offered_wh,
             "pv_consumed_wh": s.pv_consumed_wh, "smes_absorbed_wh": s.smes_absorbed_wh,
             "smes_served_wh": s.smes_served_wh, "smes_sold_wh": s.smes_sold_wh,
             "smes_stored_wh": s.smes_stored_wh, "grid_price_milli_per_kwh": s.grid_price_milli_per_kwh,
             "mean_price_milli_per_kwh": s.mean_price_milli_per_kwh}
    stats["delivered_sides"] = s.delivered_sides
    stats["success_rate_ppm"] = _ppm(s.delivered_sides, 2 * s.matched_trades)
    stats["renewable_rate_ppm"] = _ppm(s.pv_consumed_wh, s.pv_offered_wh)
    ctx.put("hour/" + str(run) + "/" + str(hour).zfill(2), stats)
    t = day["totals"]
    for k, v in (("matched_trades", s.matched_trades), ("delivered_sides", s.delivered_sides),
                 ("pv_offered_wh", s.pv_offered_wh), ("pv_consumed_wh", s.pv_consumed_wh),
                 ("quotations", len(round_record["quotations"])), ("refused", len(round_record["refused"])),
                 ("smes_legs", len(round_record["smes_legs"]))):
        t[k] += v
    day["hours"] = day["hours"] + [hour]
    day["success_rate_ppm"] = _ppm(t["delivered_sides"], 2 * t["matched_trades"])
    day["renewable_rate_ppm"] = _ppm(t["pv_consumed_wh"], t["pv_offered_wh"])
    ctx.put("run/" + str(run), day)
    view = ctx.get("day", {})
    suffix = "" if day["with_smes"] else "_without_smes"
    view["run" + suffix] = run
    view["hours" + suffix] = day["hours"]
    view["success_rate_ppm" + suffix] = day["success_rate_ppm"]
    view["renewable_rate_ppm" + suffix] = day["renewable_rate_ppm"]
    ctx.put("day", view)
    ctx.emit({"kind": "statistics", "run": run, "hour": hour, "matched": s.matched_trades,
              "success_rate_ppm": day["success_rate_ppm"], "renewable_rate_ppm": day["renewable_rate_ppm"]})
    return stats


def hour_stats(ctx, run, hour):
    """The statistics of ``hour`` of run ``run``, or None."""
    return ctx.get("hour/" + str(run) + "/" + str(hour).zfill(2))


def day_stats(ctx, run):
    """Run ``run``'s hours, integer totals and rates (ppm)."""
    return ctx.get("run/" + str(run))
