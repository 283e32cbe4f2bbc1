"""The hour's round on the matching channel: matching, security check, SMES interactions.

The second stage of the market round (DESIGN.md, "The market round", steps 3-5;
docs/market-on-chain.md gives the whole flow). On the operator's ``close(run, hour,
closed, smes)`` the round takes the hour's frozen quotations (``closed``, exactly what
``quotation.close`` recorded and returned on the transaction channel) and the SMES's state
of charge before the hour (``smes``, exactly what the ``smes`` contract holds on the
electricity channel), and runs the pure stages of ``market.experiment``: the SMES's offer
is added, the many-to-many matching maximising eq. (5) under eq. (6)-(8), the security check
on the IEEE 33-bus feeder, and the SMES dispatch on the refused trades. It records, in
integer units, every matched pair with its weight, the trades admitted directly, every
refusal with the limit it broke, every SMES leg and the SMES state after, under
``round/{run}/{hh}``; the same record is returned, for the stages that follow.

Why the inputs are carried rather than read: side-chain blocks anchor no other channel, so
a matching-channel contract cannot read the transaction or electricity channel
(docs/market-on-chain.md, "Carried inputs, checked links"). The record keeps the inputs it
was given, so each carried link is checked against its source.

Who may call what: ``close`` -- ``operator-mgo``, hours of a run in order, each once;
``result`` -- anyone.
"""

from market.experiment import delivered_trades, stage_quotations, stage_security, stage_smes
from market.grid import load_feeder
from market.matching import match, trades_from_matching
from market.model import Kind, Quotation, Side, build_market
from market.scenario import HourInputs, ScenarioParams, market_params
from market.security import HourState, SecurityLimits
from market.smes import SmesState

OPERATOR = "operator-mgo"
QUOTE_FIELDS = ("energy_wh", "limit_price_milli_per_kwh", "bus", "distance_m", "consumption_wh_per_km",
                "depreciation_milli", "efficiency_ppm", "max_trades", "charging_price_milli_per_kwh")


class RoundRefused(Exception):
    """A call the round contract does not accept; the message says why."""


def _hh(hour):
    return str(hour).zfill(2)


def _quotation(r, hour):
    try:
        extra = {k: r[k] for k in QUOTE_FIELDS if k in r}
        return Quotation(prosumer=r["prosumer"], kind=Kind(r["kind"]), side=Side(r["side"]), hour=hour, **extra)
    except (KeyError, TypeError, ValueError) as exc:
        raise RoundRefused("malformed quotation " + repr(r.get("prosumer")) + ": " + str(exc))


def quotation_record(q):
    """Every field of a quotation, so a later stage rebuilds it exactly."""
    return {"prosumer": q.prosumer, "kind": q.kind.value, "side": q.side.value, "energy_wh": q.energy_wh,
            "limit_price_milli_per_kwh": q.limit_price_milli_per_kwh, "bus": q.bus, "distance_m": q.distance_m,
            "consumption_wh_per_km": q.consumption_wh_per_km, "depreciation_milli": q.depreciation_milli,
            "efficiency_ppm": q.efficiency_ppm, "max_trades": q.max_trades,
            "charging_price_milli_per_kwh": q.charging_price_milli_per_kwh}


def trade_record(t):
    return {"buyer": t.buyer, "seller": t.seller, "buyer_bus": t.buyer_bus, "seller_bus": t.seller_bus,
            "energy_wh": t.energy_wh, "weight_milli": t.weight_milli}


def _smes_value(state):
    return None if state is None else {"stored_wh": state.stored_wh, "throughput_wh": state.throughput_wh}


def close(ctx, run, hour, closed, smes):
    """Run the round of ``hour`` of run ``run`` on its frozen quotations and the SMES state."""
    if ctx.caller.name != OPERATOR:
        raise RoundRefused(ctx.caller.name + " may not close a round; only " + OPERATOR + " may")
    if not isinstance(closed, dict) or closed.get("run") != run or closed.get("hour") != hour:
        raise RoundRefused("the frozen quotations given are not those of hour " + str(hour) + " of run " + str(run))
    with_smes = bool(closed.get("with_smes"))
    progress = ctx.get("progress/" + str(run), {"next_hour": 0, "with_smes": with_smes})
    if hour != progress["next_hour"]:
        raise RoundRefused("hour " + str(hour) + " of run " + str(run) + " cannot run; the next is "
                           + str(progress["next_hour"]))
    if with_smes != progress["with_smes"]:
        raise RoundRefused("run " + str(run) + " was opened " + ("with" if progress["with_smes"] else "without")
                           + " the SMES")
    if with_smes != (smes is not None):
        raise RoundRefused("an SMES state is given exactly when the run has the SMES")
    state = None
    if with_smes:
        if not isinstance(smes, dict) or not isinstance(smes.get("stored_wh"), int) \
                or not isinstance(smes.get("throughput_wh"), int):
            raise RoundRefused("the SMES state is {stored_wh, throughput_wh}, integers")
        state = SmesState(smes["stored_wh"], smes["throughput_wh"])
    quotes = tuple(sorted((_quotation(r, hour) for r in closed["quotations"]), key=lambda q: q.prosumer))
    params = ScenarioParams()
    offered = sum(q.energy_wh for q in quotes if q.kind == Kind.PV)
    inputs = HourInputs(hour, market_params(params, hour), quotes, offered)
    feeder = load_feeder()
    # The stages of market.experiment.run_round up to delivery; pricing follows on the
    # transaction channel.
    quotations = stage_quotations(inputs, params, state)
    market = build_market(quotations, inputs.params)
    matching = match(market.weights_milli, market.buyer_caps, market.seller_caps)
    trades = trades_from_matching(market, matching)
    hour_state = HourState.for_hour(hour)
    security, envelope = stage_security(feeder, hour_state, trades, SecurityLimits())
    dispatch = stage_smes(feeder, hour_state, envelope, params, state, security)
    legs = dispatch.legs if dispatch is not None else ()
    record = {
        "run": run, "hour": hour, "with_smes": with_smes, "pv_offered_wh": offered,
        "quotations": [quotation_record(q) for q in quotations],
        "pairs": [[i, j] for i, j in matching.pairs], "total_weight_milli": matching.total_weight,
        "matched": [trade_record(t) for t in trades],
        "direct": [trade_record(t) for t in security.admitted],
        "refused": [dict(trade_record(f.trade), limit=f.violation.kind + " at " + f.violation.element,
                         kind=f.violation.kind, element=f.violation.element, value=f.violation.value,
                         limit_value=f.violation.limit, excess=f.violation.excess, unit=f.violation.unit)
                    for f in security.refused],
        "smes_legs": [{"action": g.action, "counterparty": g.counterparty, "counterparty_bus": g.counterparty_bus,
                       "energy_wh": g.energy_wh, "trade": trade_record(g.trade),
                       "buyer": g.trade.buyer, "seller": g.trade.seller} for g in legs],
        "delivered": [trade_record(t) for t in delivered_trades(security, dispatch)],
        "smes_before": _smes_value(state),
        "smes_after": _smes_value(dispatch.state_after) if dispatch is not None else None,
        "smes_sold_wh": dispatch.market_discharge_wh if dispatch is not None else 0,
        "smes_standby_loss_wh": dispatch.standby_loss_wh if dispatch is not None else 0,
        "smes_capacity_wh": params.smes.capacity_wh,
    }
    ctx.put("round/" + str(run) + "/" + _hh(hour), record)
    ctx.put("progress/" + str(run), {"next_hour": hour + 1, "with_smes": with_smes})
    ctx.emit({"kind": "round", "run": run, "hour": hour, "quotations": len(quotations), "matched": len(trades),
              "refused": len(record["refused"]), "smes_legs": len(legs)})
    return record


def result(ctx, run, hour):
    """The recorded round of ``hour`` of run ``run``, or None."""
    return ctx.get("round/" + str(run) + "/" + _hh(hour))
