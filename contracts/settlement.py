"""Settlement of the hour's trades in integer money, on the transaction channel.

The fourth stage of the market round (DESIGN.md, "The market round", step 7;
docs/market-on-chain.md). ``settle(run, hour, priced)`` reads the round's record from the
matching channel and, in a run with the SMES, what the SMES recorded doing that hour from
the electricity channel (``ctx.read``, as of the heights this block anchors), takes the
hour's prices (the ``pricing`` contract's record: the same channel, so it is carried -- a
contract never reads another contract's state on its own channel -- and refused unless it
equals ``market.records.price_record`` of the round) and moves money with
``market.experiment.stage_settle``: a direct trade's buyer pays its seller
the priced payment; an SMES leg pays, or is paid by, the SMES at the price of the trade it
stands in for. Balances are cumulative, in milli-currency, under ``balance/{prosumer}``;
each hour's movements sum to exactly zero (checked before anything is written), and the
SMES's eq. (1) revenue is recorded with them under ``settled/{run}/{hh}``. Money moves for
an SMES leg only if the SMES recorded that leg: the round's legs and state after must equal
the ``smes`` contract's record of the hour. An input not visible yet at the anchored
heights refuses the call with the height; the driver waits and retries.

Who may call what: ``settle`` -- ``operator-mgo``, each hour once; ``balance``,
``settled`` -- anyone.
"""

from market.experiment import stage_settle
from market.records import PricesMismatch, price_record, round_prices, smes_dispatch, trade
from market.scenario import ScenarioParams
from market.security import Refusal, SecurityResult, Violation

OPERATOR = "operator-mgo"


class SettlementRefused(Exception):
    """A call the settlement contract does not accept; the message says why."""


def _outcome(r, priced):
    """The round's security result, SMES dispatch and prices as the market stages take them."""
    security = SecurityResult(tuple(trade(t) for t in r["direct"]), tuple(
        Refusal(trade(f), Violation(f["kind"], f["element"], f["limit_value"], f["value"], f["excess"], f["unit"]))
        for f in r["refused"]))
    dispatch, _after = smes_dispatch(r)
    return security, dispatch, round_prices(r, priced)


def _anchored(ctx, channel, contract, key, what):
    value = ctx.read(channel, key, contract)
    if value is None:
        raise SettlementRefused(what + " not anchored yet: " + channel + " anchored at height "
                                + str(ctx.block.anchors.get(channel)))
    return value


def _check_smes(r, actions):
    """The round's SMES legs and state after must be what the SMES recorded doing."""
    legs = [{"action": g["action"], "counterparty": g["counterparty"], "energy_wh": g["energy_wh"]}
            for g in r["smes_legs"]]
    if actions["legs"] != legs or actions["after"] != r["smes_after"] or actions["sold_wh"] != r["smes_sold_wh"]:
        raise SettlementRefused("the SMES recorded other actions for hour " + str(r["hour"]) + " than the round's")


def settle(ctx, run, hour, priced):
    """Move the money of ``hour`` of run ``run``; returns the hour's movements per prosumer."""
    if ctx.caller.name != OPERATOR:
        raise SettlementRefused(ctx.caller.name + " may not settle a round; only " + OPERATOR + " may")
    if not isinstance(priced, dict) or priced.get("run") != run or priced.get("hour") != hour:
        raise SettlementRefused("the prices given are not those of hour " + str(hour) + " of run " + str(run))
    hh = str(hour).zfill(2)
    key = "settled/" + str(run) + "/" + hh
    if ctx.get(key) is not None:
        raise SettlementRefused("hour " + str(hour) + " of run " + str(run) + " is already settled")
    what = " of hour " + str(hour) + " of run " + str(run)
    round_record = _anchored(ctx, "matching", "round", "round/" + str(run) + "/" + hh, "round" + what)
    if round_record["with_smes"]:
        _check_smes(round_record, _anchored(ctx, "electricity", "smes", "hour/" + str(run) + "/" + hh,
                                            "SMES actions" + what))
    try:
        security, dispatch, prices = _outcome(round_record, priced)
    except PricesMismatch as exc:
        raise SettlementRefused(str(exc))
    except (KeyError, TypeError, ValueError) as exc:
        raise SettlementRefused("malformed round or prices: " + str(exc))
    if priced != price_record(round_record, run, hour):
        raise SettlementRefused("the prices given are not the nucleolus prices of hour " + str(hour) + " of run " + str(run))
    smes = ScenarioParams().smes
    s = stage_settle(security, dispatch, prices, smes.name, smes.om_milli_per_kwh)
    if sum(amount for _, amount in s.balances_milli) != 0:
        raise SettlementRefused("settlement of hour " + str(hour) + " does not conserve money")
    for name, amount in s.balances_milli:
        ctx.put("balance/" + name, ctx.get("balance/" + name, 0) + amount)
    record = {"run": run, "hour": hour, "settlement": [[name, amount] for name, amount in s.balances_milli],
              "smes_revenue_milli": s.smes_revenue_milli}
    ctx.put(key, record)
    ctx.emit({"kind": "settled", "run": run, "hour": hour, "movements": len(s.balances_milli)})
    return record


def balance(ctx, who):
    """``who``'s balance in milli-currency, the sum of every settlement so far."""
    return ctx.get("balance/" + who, 0)


def settled(ctx, run, hour):
    """The money moved in ``hour`` of run ``run``, or None."""
    return ctx.get("settled/" + str(run) + "/" + str(hour).zfill(2))
