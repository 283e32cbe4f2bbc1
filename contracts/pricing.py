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
milli-currency (``market.records.price_record``, which ``settlement`` and ``statistics``
recompute to check the prices they are handed).

Who may call what: ``price`` -- ``operator-mgo``, each hour once; ``prices`` -- anyone.
"""

from market.records import price_record

OPERATOR = "operator-mgo"


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
        record = price_record(round_record, run, hour)
    except (KeyError, TypeError, ValueError) as exc:
        raise PricingRefused("malformed round record: " + str(exc))
    ctx.put(_key(run, hour), record)
    ctx.emit({"kind": "priced", "run": run, "hour": hour, "trades": len(record["trades"])})
    return record


def prices(ctx, run, hour):
    """The priced trades and nucleolus shares of ``hour`` of run ``run``, or None."""
    return ctx.get(_key(run, hour))
