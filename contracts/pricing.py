"""Nucleolus pricing of the hour's delivered trades, on the transaction channel.

The third stage of the market round (DESIGN.md, "The market round", step 6;
docs/market-on-chain.md). ``price(run, hour)`` reads the round's record from the matching
channel through ``ctx.read`` (``round/{run}/{hh}`` of the ``round`` contract, as of the
height this block anchors; refused with that height while it is not visible yet) and prices
the trades it delivered (directly, or completed by the SMES) with ``market.experiment.stage_price``: the
nucleolus of the hour's assignment game (eq. 9-11) gives each player's share of each trade's
weight Q, and the trade's payment follows from the buyer's share.

It records under ``price/{run}/{hh}`` each trade's price and payment and both sides' shares
of its Q, and each player's nucleolus share (the sum over its delivered trades), in
milli-currency. A trade's shares are read back from its payment through the pair's terms
(``market.model.pair_terms``): buyer share = value - travel - payment, seller share =
Q - buyer share, the identity ``market.pricing.price_trades`` prices by.

Who may call what: ``price`` -- ``operator-mgo``, each hour once; ``prices`` -- anyone.
"""

from market.experiment import stage_price
from market.matching import Matching, Trade
from market.model import Kind, Quotation, Side, build_market, pair_terms
from market.scenario import ScenarioParams, market_params

OPERATOR = "operator-mgo"
QUOTE_FIELDS = ("energy_wh", "limit_price_milli_per_kwh", "bus", "distance_m", "consumption_wh_per_km",
                "depreciation_milli", "efficiency_ppm", "max_trades", "charging_price_milli_per_kwh")
TRADE_FIELDS = ("buyer", "seller", "buyer_bus", "seller_bus", "energy_wh", "weight_milli")


class PricingRefused(Exception):
    """A call the pricing contract does not accept; the message says why."""


def _key(run, hour):
    return "price/" + str(run) + "/" + str(hour).zfill(2)


def price(ctx, run, hour):
    """Price the delivered trades of the round of ``hour`` of run ``run``; returns the record."""
    if ctx.caller.name != OPERATOR:
        raise PricingRefused(ctx.caller.name + " may not price a round; only " + OPERATOR + " may")
    if not isinstance(run, int) or not isinstance(hour, int):
        raise PricingRefused("run and hour are integers")
    if ctx.get(_key(run, hour)) is not None:
        raise PricingRefused("hour " + str(hour) + " of run " + str(run) + " is already priced")
    round_record = ctx.read("matching", "round/" + str(run) + "/" + str(hour).zfill(2), "round")
    if round_record is None:
        raise PricingRefused("round of hour " + str(hour) + " of run " + str(run) + " not anchored yet: matching "
                             "anchored at height " + str(ctx.block.anchors.get("matching")))
    try:
        quotes = [Quotation(prosumer=q["prosumer"], kind=Kind(q["kind"]), side=Side(q["side"]), hour=hour,
                            **{k: q[k] for k in QUOTE_FIELDS}) for q in round_record["quotations"]]
        delivered = [Trade(*[t[k] for k in TRADE_FIELDS]) for t in round_record["delivered"]]
        matching = Matching(tuple((p[0], p[1]) for p in round_record["pairs"]), round_record["total_weight_milli"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PricingRefused("malformed round record: " + str(exc))
    params = market_params(ScenarioParams(), hour)
    market = build_market(quotes, params)
    priced = stage_price(market, matching, delivered)
    by_name = {q.prosumer: q for q in quotes}
    trades, shares = [], {}
    for key in sorted(priced):
        p = priced[key]
        terms = pair_terms(by_name[p.trade.buyer], by_name[p.trade.seller], params)
        buyer_share = terms.buyer_value_milli - terms.buyer_travel_milli - p.payment_milli
        seller_share = terms.weight_milli - buyer_share
        trades.append({"buyer": p.trade.buyer, "seller": p.trade.seller, "energy_wh": p.trade.energy_wh,
                       "weight_milli": p.trade.weight_milli, "price_milli_per_kwh": p.price_milli_per_kwh,
                       "payment_milli": p.payment_milli, "buyer_share_milli": buyer_share,
                       "seller_share_milli": seller_share})
        shares[p.trade.buyer] = shares.get(p.trade.buyer, 0) + buyer_share
        shares[p.trade.seller] = shares.get(p.trade.seller, 0) + seller_share
    record = {"run": run, "hour": hour, "trades": trades,
              "shares": [[name, shares[name]] for name in sorted(shares)]}
    ctx.put(_key(run, hour), record)
    ctx.emit({"kind": "priced", "run": run, "hour": hour, "trades": len(trades)})
    return record


def prices(ctx, run, hour):
    """The priced trades and nucleolus shares of ``hour`` of run ``run``, or None."""
    return ctx.get(_key(run, hour))
