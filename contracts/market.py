"""The paper's market round on the transaction channel (docs/market-on-chain.md).

Quotations, the hour's close and every stage that follows it -- matching, the
security check, the SMES dispatch, nucleolus pricing, settlement and the
statistics -- live in this one namespace, ``market``, on the transaction channel.
The close runs the round from the committed quotations alone, calling the pure
stages of ``market.experiment`` (the same code as ``p2pchain market paper``), so
every node, and the pure experiment, get the same result value for value.

Who may call what (identities from the genesis):

* ``quote`` -- an EV or PV prosumer, for itself only, for an hour still open;
* ``open_day`` / ``close`` -- the microgrid operator ``operator-mgo``;
* ``balance``, ``hour_result``, ``day`` -- anyone (read-only).

A run is one simulated day, numbered by the operator; its hours close in order
because the SMES state of charge carries from one hour to the next.
"""

from market.experiment import run_round
from market.grid import load_feeder
from market.model import Kind, Quotation, Side
from market.scenario import HourInputs, ScenarioParams, market_params
from market.smes import SmesState

OPERATOR = "operator-mgo"
QUOTE_FIELDS = ("energy_wh", "limit_price_milli_per_kwh", "bus", "distance_m", "consumption_wh_per_km",
                "depreciation_milli", "efficiency_ppm", "max_trades", "charging_price_milli_per_kwh")
STAT_FIELDS = ("matched_trades", "direct_trades", "absorb_legs", "serve_legs", "demand_wh", "supply_wh",
               "matched_wh", "direct_wh", "pv_offered_wh", "pv_consumed_wh", "smes_absorbed_wh",
               "smes_served_wh", "smes_sold_wh", "smes_stored_wh", "grid_price_milli_per_kwh",
               "mean_price_milli_per_kwh")
TOTALS = ("matched_trades", "delivered_sides", "pv_offered_wh", "pv_consumed_wh", "quotations",
          "refused", "smes_legs")


class MarketRefused(Exception):
    """A call the market does not accept; the message says why."""


def _hh(hour):
    return str(hour).zfill(2)


def _need_operator(ctx, what):
    if ctx.caller.name != OPERATOR:
        raise MarketRefused(ctx.caller.name + " may not " + what + "; only " + OPERATOR + " may")


def _current(ctx):
    config = ctx.get("config")
    if config is None:
        raise MarketRefused("no market day is open; " + OPERATOR + " opens one with open_day")
    return config


def open_day(ctx, run, with_smes):
    """Open run ``run`` (a new simulated day); ``with_smes`` adds the SMES to its rounds."""
    _need_operator(ctx, "open a market day")
    if ctx.get("run/" + str(run)) is not None:
        raise MarketRefused("run " + str(run) + " was already opened")
    params = ScenarioParams()
    smes = SmesState.empty(params.smes) if with_smes else None
    config = {"run": run, "with_smes": bool(with_smes), "next_hour": 0,
              "smes_stored_wh": smes.stored_wh if smes else None,
              "smes_throughput_wh": smes.throughput_wh if smes else None}
    ctx.put("config", config)
    ctx.put("run/" + str(run), {"with_smes": bool(with_smes), "hours": [],
                                "totals": dict.fromkeys(TOTALS, 0)})
    ctx.emit({"kind": "open_day", "run": run, "with_smes": bool(with_smes)})
    return run


def quote(ctx, hour, side, **fields):
    """The caller's quotation for ``hour`` of the open run; a later one before close replaces it."""
    kind = ctx.caller.kind
    if kind not in ("ev", "pv"):
        raise MarketRefused(ctx.caller.name + " (kind " + str(kind) + ") may not quote; only EV and PV prosumers may")
    who = fields.pop("prosumer", ctx.caller.name)
    if who != ctx.caller.name:
        raise MarketRefused(ctx.caller.name + " may not quote for " + str(who))
    config = _current(ctx)
    if not isinstance(hour, int) or hour < 0 or hour > 23:
        raise MarketRefused("hour must be 0..23")
    if hour < config["next_hour"]:
        raise MarketRefused("hour " + str(hour) + " of run " + str(config["run"]) + " is closed")
    if side not in ("buy", "sell") or (kind == "pv" and side != "sell"):
        raise MarketRefused("side must be buy or sell (a PV only sells)")
    unknown = [k for k in sorted(fields) if k not in QUOTE_FIELDS]
    if unknown:
        raise MarketRefused("unknown quotation fields: " + ", ".join(unknown))
    for k in sorted(fields):
        if not isinstance(fields[k], int) or isinstance(fields[k], bool) or fields[k] < 0:
            raise MarketRefused(k + " must be a non-negative integer")
    if fields.get("energy_wh", 0) <= 0:
        raise MarketRefused("energy_wh must be positive")
    record = {"kind": kind, "side": side}
    for k in QUOTE_FIELDS:
        if k in fields:
            record[k] = fields[k]
    key = "quote/" + str(config["run"]) + "/" + _hh(hour) + "/" + ctx.caller.name
    replaced = ctx.get(key) is not None
    ctx.put(key, record)
    ctx.emit({"kind": "quote", "run": config["run"], "hour": hour, "by": ctx.caller.name, "replaced": replaced})
    return replaced


def _quotation(name, hour, r):
    extra = {k: r[k] for k in QUOTE_FIELDS if k in r and k not in ("energy_wh", "limit_price_milli_per_kwh", "bus")}
    return Quotation(prosumer=name, kind=Kind(r["kind"]), side=Side(r["side"]), hour=hour,
                     energy_wh=r["energy_wh"], limit_price_milli_per_kwh=r["limit_price_milli_per_kwh"],
                     bus=r["bus"], **extra)


def close(ctx, hour):
    """Close ``hour`` of the open run and run its round from the committed quotations."""
    _need_operator(ctx, "close a round")
    config = _current(ctx)
    run = config["run"]
    if hour != config["next_hour"]:
        raise MarketRefused("hour " + str(hour) + " cannot close; the next hour of run " + str(run)
                            + " is " + str(config["next_hour"]))
    prefix = "quote/" + str(run) + "/" + _hh(hour) + "/"
    quotes = [_quotation(key[len(prefix):], hour, r) for key, r in ctx.scan(prefix, prefix + "~")]
    quotes = sorted(quotes, key=lambda q: q.prosumer)
    params = ScenarioParams()
    offered = sum(q.energy_wh for q in quotes if q.kind == Kind.PV)
    inputs = HourInputs(hour, market_params(params, hour), tuple(quotes), offered)
    state = None
    if config["with_smes"]:
        state = SmesState(config["smes_stored_wh"], config["smes_throughput_wh"])
    r = run_round(load_feeder(), inputs, params, state)
    stats = _stats(r.stats)
    legs = r.smes.legs if r.smes is not None else ()
    priced = [r.prices[k] for k in sorted(r.prices)]
    record = {
        "run": run, "hour": hour, "with_smes": config["with_smes"], "stats": stats,
        "quotations": [{"id": q.prosumer, "role": q.side.value, "energy_wh": q.energy_wh,
                        "price_milli_per_kwh": q.limit_price_milli_per_kwh} for q in r.quotations],
        "matched": [{"buyer": t.buyer, "seller": t.seller, "energy_wh": t.energy_wh,
                     "weight_milli": t.weight_milli} for t in r.trades],
        "direct": [{"buyer": t.buyer, "seller": t.seller, "energy_wh": t.energy_wh}
                   for t in r.security.admitted],
        "trades": [{"buyer": p.trade.buyer, "seller": p.trade.seller, "energy_wh": p.trade.energy_wh,
                    "price_milli_per_kwh": p.price_milli_per_kwh, "payment_milli": p.payment_milli}
                   for p in priced],
        "refused": [{"buyer": f.trade.buyer, "seller": f.trade.seller, "limit": f.violation.kind + " at "
                     + f.violation.element, "value": f.violation.value, "limit_value": f.violation.limit,
                     "unit": f.violation.unit} for f in r.security.refused],
        "smes_legs": [{"action": g.action, "counterparty": g.counterparty, "energy_wh": g.energy_wh,
                       "buyer": g.trade.buyer, "seller": g.trade.seller} for g in legs],
        "settlement": [[name, amount] for name, amount in r.settlement.balances_milli],
        "smes_revenue_milli": r.settlement.smes_revenue_milli,
        "smes": None if r.smes_state_after is None else {"soc_wh": r.smes_state_after.stored_wh,
                                                          "capacity_wh": params.smes.capacity_wh},
    }
    if sum(amount for _, amount in r.settlement.balances_milli) != 0:
        raise MarketRefused("settlement does not conserve money")     # never expected: a bug guard
    for name, amount in r.settlement.balances_milli:
        ctx.put("balance/" + name, ctx.get("balance/" + name, 0) + amount)
    ctx.put("result/" + str(run) + "/" + _hh(hour), record)
    ctx.put("hour/" + str(hour), record)
    after = r.smes_state_after
    config["next_hour"] = hour + 1
    config["smes_stored_wh"] = after.stored_wh if after else None
    config["smes_throughput_wh"] = after.throughput_wh if after else None
    ctx.put("config", config)
    _tally(ctx, run, hour, r, record)
    ctx.emit({"kind": "close", "run": run, "hour": hour, "quotations": len(r.quotations),
              "matched": stats["matched_trades"], "refused": len(record["refused"]),
              "smes_legs": len(legs), "mean_price_milli_per_kwh": stats["mean_price_milli_per_kwh"]})
    return stats


def _stats(s):
    return {
        "matched_trades": s.matched_trades,
        "direct_trades": s.direct_trades,
        "absorb_legs": s.absorb_legs,
        "serve_legs": s.serve_legs,
        "demand_wh": s.demand_wh,
        "supply_wh": s.supply_wh,
        "matched_wh": s.matched_wh,
        "direct_wh": s.direct_wh,
        "pv_offered_wh": s.pv_offered_wh,
        "pv_consumed_wh": s.pv_consumed_wh,
        "smes_absorbed_wh": s.smes_absorbed_wh,
        "smes_served_wh": s.smes_served_wh,
        "smes_sold_wh": s.smes_sold_wh,
        "smes_stored_wh": s.smes_stored_wh,
        "grid_price_milli_per_kwh": s.grid_price_milli_per_kwh,
        "mean_price_milli_per_kwh": s.mean_price_milli_per_kwh,
    }


def _ppm(num, den):
    return None if den == 0 else (num * 1_000_000 + den // 2) // den


def _tally(ctx, run, hour, r, record):
    """Per-day statistics: integer tallies and the two rates in ppm (docs/market.md)."""
    day = ctx.get("run/" + str(run))
    t = day["totals"]
    t["matched_trades"] += r.stats.matched_trades
    t["delivered_sides"] += r.stats.delivered_sides
    t["pv_offered_wh"] += r.stats.pv_offered_wh
    t["pv_consumed_wh"] += r.stats.pv_consumed_wh
    t["quotations"] += len(r.quotations)
    t["refused"] += len(record["refused"])
    t["smes_legs"] += len(record["smes_legs"])
    day["hours"] = day["hours"] + [hour]
    day["success_rate_ppm"] = _ppm(t["delivered_sides"], 2 * t["matched_trades"])
    day["renewable_rate_ppm"] = _ppm(t["pv_consumed_wh"], t["pv_offered_wh"])
    ctx.put("run/" + str(run), day)
    view = ctx.get("day", {})
    suffix = "" if day["with_smes"] else "_without_smes"
    view["hours"] = day["hours"]
    view["run"] = run
    view["success_rate" + suffix] = None if day["success_rate_ppm"] is None else day["success_rate_ppm"] // 10_000
    view["renewable_rate" + suffix] = (None if day["renewable_rate_ppm"] is None
                                       else day["renewable_rate_ppm"] // 10_000)
    ctx.put("day", view)


def balance(ctx, who):
    """``who``'s balance in milli-currency, the sum of every settlement so far."""
    return ctx.get("balance/" + who, 0)


def hour_result(ctx, run, hour):
    """The recorded round of ``hour`` in run ``run``, or None."""
    return ctx.get("result/" + str(run) + "/" + _hh(hour))


def day(ctx, run):
    """Run ``run``'s hours, integer tallies and rates (ppm)."""
    return ctx.get("run/" + str(run))
