"""The hour's nucleolus prices as the market contracts record them (plain values only).

One function, so that the ``pricing`` contract that writes the record and the
``settlement`` and ``statistics`` contracts that are handed it compute it the same way:
they run on the same channel as ``pricing`` and may not read its state (a contract never
reads another contract's namespace), so they recompute the record from the round's record
(read across channels at the anchors) and refuse prices that differ. Pricing is the
nucleolus of the hour's assignment game (:func:`market.experiment.stage_price`), a few
LPs for the paper's hour, so recomputing costs little.
"""

from __future__ import annotations

from market.experiment import stage_price
from market.matching import Matching, Trade
from market.model import Kind, Quotation, Side, build_market, pair_terms
from market.pricing import PricedTrade
from market.scenario import ScenarioParams, market_params
from market.smes import SmesDispatch, SmesLeg, SmesState

__all__ = ["QUOTE_FIELDS", "TRADE_FIELDS", "PricesMismatch", "price_record", "quotations", "round_prices",
           "smes_actions", "smes_dispatch", "trade"]

QUOTE_FIELDS = ("energy_wh", "limit_price_milli_per_kwh", "bus", "distance_m", "consumption_wh_per_km",
                "depreciation_milli", "efficiency_ppm", "max_trades", "charging_price_milli_per_kwh")
TRADE_FIELDS = ("buyer", "seller", "buyer_bus", "seller_bus", "energy_wh", "weight_milli")


class PricesMismatch(ValueError):
    """Prices handed to a stage do not price exactly the round's delivered trades."""


def trade(t: dict) -> Trade:
    """A trade of a round's record."""
    return Trade(*[t[k] for k in TRADE_FIELDS])


def quotations(round_record: dict, hour: int) -> list[Quotation]:
    """The quotations a round's record froze."""
    return [Quotation(prosumer=q["prosumer"], kind=Kind(q["kind"]), side=Side(q["side"]), hour=hour,
                      **{k: q[k] for k in QUOTE_FIELDS}) for q in round_record["quotations"]]


def smes_dispatch(round_record: dict) -> tuple[SmesDispatch | None, SmesState | None]:
    """The SMES dispatch of a round's record and its state after, as the later stages read
    them (``None`` twice without the SMES). ``unhelped`` and the injections are the dispatch's
    own working; no later stage reads them, so the record does not carry them."""
    r = round_record
    if not r["with_smes"]:
        return None, None
    legs = tuple(SmesLeg(trade(g["trade"]), g["action"], g["counterparty"], g["counterparty_bus"], g["energy_wh"])
                 for g in r["smes_legs"])
    after = SmesState(r["smes_after"]["stored_wh"], r["smes_after"]["throughput_wh"])
    return SmesDispatch(legs, (), r["smes_sold_wh"], r["smes_standby_loss_wh"], after, None), after


def round_prices(round_record: dict, priced: dict) -> dict[tuple[str, str], PricedTrade]:
    """The priced delivered trades of a round from a price record; :class:`PricesMismatch`
    unless the record prices exactly the round's delivered trades."""
    delivered = {(t["buyer"], t["seller"]): trade(t) for t in round_record["delivered"]}
    if sorted((p["buyer"], p["seller"]) for p in priced["trades"]) != sorted(delivered):
        raise PricesMismatch("the prices given do not price exactly the round's delivered trades")
    return {(p["buyer"], p["seller"]): PricedTrade(delivered[(p["buyer"], p["seller"])], p["price_milli_per_kwh"],
                                                   p["payment_milli"]) for p in priced["trades"]}


def price_record(round_record: dict, run: int, hour: int) -> dict:
    """The prices of the round's delivered trades: per trade its price, payment and both
    sides' shares of its weight Q, and per player its nucleolus share, in milli-currency.

    A trade's shares are read back from its payment through the pair's terms
    (:func:`market.model.pair_terms`): buyer share = value - travel - payment, seller share =
    Q - buyer share, the identity :func:`market.pricing.price_trades` prices by. Raises
    ``KeyError``/``TypeError``/``ValueError`` on a malformed round record.
    """
    quotes = quotations(round_record, hour)
    delivered = [trade(t) for t in round_record["delivered"]]
    matching = Matching(tuple((p[0], p[1]) for p in round_record["pairs"]), round_record["total_weight_milli"])
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
    return {"run": run, "hour": hour, "trades": trades,
            "shares": [[name, shares[name]] for name in sorted(shares)]}


def smes_actions(round_record: dict) -> dict:
    """What a round made the SMES do, as the ``smes`` contract records it: the state the round
    started from and ended in, each leg, and what the SMES sold in the market."""
    return {"run": round_record["run"], "hour": round_record["hour"], "before": round_record["smes_before"],
            "after": round_record["smes_after"], "sold_wh": round_record["smes_sold_wh"],
            "legs": [{"action": g["action"], "counterparty": g["counterparty"], "energy_wh": g["energy_wh"]}
                     for g in round_record["smes_legs"]]}
