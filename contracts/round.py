"""The hour's round on the matching channel: matching, security check, SMES interactions.

The second stage of the market round (DESIGN.md, "The market round", steps 3-5;
docs/market-on-chain.md gives the whole flow). On the operator's ``close(run, hour)`` the
round reads, through ``ctx.read`` as of the heights this block anchors, the hour's frozen
quotations (``closed/{run}/{hh}`` of the ``quotation`` contract on the transaction channel)
and the SMES's state of charge before the hour (``state/{run}`` of the ``smes`` contract on
the electricity channel), and runs the pure stages of ``market.experiment``: the SMES's offer
is added, the many-to-many matching maximising eq. (5) under eq. (6)-(8), the security check
on the IEEE 33-bus feeder, and the SMES dispatch on the refused trades. It records, in
integer units, every matched pair with its weight, the trades admitted directly, every
refusal with the limit it broke, every SMES leg and the SMES state after, under
``round/{run}/{hh}``; the same record is returned, for the stages that follow.

Every block anchors the other two channels (docs/ledger.md), so every node reads the same
inputs. An input not visible yet at the anchored heights -- the hour not closed yet as of
the transaction anchor, or the SMES's previous hour not recorded yet as of the electricity
anchor -- refuses the call with the anchored height; the driver waits for it and retries.

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
from market.records import QUOTE_FIELDS

OPERATOR = "operator-mgo"


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


def _not_anchored(ctx, what, channel):
    return RoundRefused(what + " not anchored yet: " + channel + " anchored at height "
                        + str(ctx.block.anchors.get(channel)))


def close(ctx, run, hour):
    """Run the round of ``hour`` of run ``run`` on its frozen quotations and the SMES state."""
    if ctx.caller.name != OPERATOR:
        raise RoundRefused(ctx.caller.name + " may not close a round; only " + OPERATOR + " may")
    if not isinstance(run, int) or not isinstance(hour, int):
        raise RoundRefused("run and hour are integers")
    closed = ctx.read("transaction", "closed/" + str(run) + "/" + _hh(hour), "quotation")
    if closed is None:
        raise _not_anchored(ctx, "close of hour " + str(hour) + " of run " + str(run), "transaction")
    with_smes = bool(closed.get("with_smes"))
    progress = ctx.get("progress/" + str(run), {"next_hour": 0, "with_smes": with_smes})
    if hour != progress["next_hour"]:
        raise RoundRefused("hour " + str(hour) + " of run " + str(run) + " cannot run; the next is "
                           + str(progress["next_hour"]))
    if with_smes != progress["with_smes"]:
        raise RoundRefused("run " + str(run) + " was opened " + ("with" if progress["with_smes"] else "without")
                           + " the SMES")
    state = None
    if with_smes:
        smes = ctx.read("electricity", "state/" + str(run), "smes")
        if smes is None or smes.get("next_hour") != hour:
            raise _not_anchored(ctx, "SMES state before hour " + str(hour) + " of run " + str(run), "electricity")
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
