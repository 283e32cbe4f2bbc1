"""Quotations for the hourly rounds, on the transaction channel (docs/market-on-chain.md).

The first stage of the market round (DESIGN.md, "The market round", step 1-2). A run is
one simulated day, opened by the microgrid operator; each EV or PV prosumer submits its
own signed quotation for an hour of the open run (a later one before the close replaces
it: one key per prosumer and hour); the operator's ``close(run, hour)`` freezes the hour's
quotations -- any quotation for it afterwards is refused -- and records them, sorted by
prosumer, under ``closed/{run}/{hh}``.

Both name their run, and a call for a run other than the open one is refused: a quotation
or close that a stopped driver had signed for its day, committed after the next day was
opened, must not land in that day's book; and a day's transactions then differ from the
same prosumer's equal quotation on another day (a transaction is known by its id, so two
byte-identical ones of two days would be taken for one). That frozen list is what the ``round`` contract on
the matching channel reads (``ctx.read`` at the transaction height its block anchors).

Who may call what (identities from the genesis):

* ``quote`` -- an identity of kind ``ev`` or ``pv``, for itself only (a PV only sells),
  with every field in the range ``market.model.Quotation`` takes and a bus of the feeder;
* ``open_day`` / ``close`` -- the microgrid operator ``operator-mgo``; hours close in
  order, each once;
* ``closed`` -- anyone (read-only).
"""

from market.grid import DEFAULT_BUSES
from market.model import Kind, Quotation, Side
from market.records import QUOTE_FIELDS

OPERATOR = "operator-mgo"


class QuotationRefused(Exception):
    """A call the quotation contract does not accept; the message says why."""


def _hh(hour):
    return str(hour).zfill(2)


def _need_operator(ctx, what):
    if ctx.caller.name != OPERATOR:
        raise QuotationRefused(ctx.caller.name + " may not " + what + "; only " + OPERATOR + " may")


def _current(ctx, run):
    config = ctx.get("config")
    if config is None:
        raise QuotationRefused("no market day is open; " + OPERATOR + " opens one with open_day")
    if run != config["run"]:
        raise QuotationRefused("run " + str(run) + " is not the open one; run " + str(config["run"]) + " is")
    return config


def open_day(ctx, run, with_smes):
    """Open run ``run`` (a new simulated day); ``with_smes`` says whether its rounds have the SMES."""
    _need_operator(ctx, "open a market day")
    if not isinstance(run, int) or isinstance(run, bool) or run < 0:
        raise QuotationRefused("run must be a non-negative integer")
    if ctx.get("run/" + str(run)) is not None:
        raise QuotationRefused("run " + str(run) + " was already opened")
    ctx.put("config", {"run": run, "with_smes": bool(with_smes), "next_hour": 0})
    ctx.put("run/" + str(run), {"with_smes": bool(with_smes)})
    ctx.emit({"kind": "open_day", "run": run, "with_smes": bool(with_smes)})
    return run


def quote(ctx, run, hour, side, **fields):
    """The caller's quotation for ``hour`` of run ``run``, the open one; a later one before
    close replaces it."""
    kind = ctx.caller.kind
    if kind not in ("ev", "pv"):
        raise QuotationRefused(ctx.caller.name + " (kind " + str(kind) + ") may not quote; only EV and PV prosumers may")
    who = fields.pop("prosumer", ctx.caller.name)
    if who != ctx.caller.name:
        raise QuotationRefused(ctx.caller.name + " may not quote for " + str(who))
    config = _current(ctx, run)
    if not isinstance(hour, int) or isinstance(hour, bool) or hour < 0 or hour > 23:
        raise QuotationRefused("hour must be 0..23")
    if hour < config["next_hour"]:
        raise QuotationRefused("hour " + str(hour) + " of run " + str(run) + " is closed")
    if side not in ("buy", "sell") or (kind == "pv" and side != "sell"):
        raise QuotationRefused("side must be buy or sell (a PV only sells)")
    unknown = [k for k in sorted(fields) if k not in QUOTE_FIELDS]
    if unknown:
        raise QuotationRefused("unknown quotation fields: " + ", ".join(unknown))
    for k in ("energy_wh", "limit_price_milli_per_kwh", "bus"):
        if k not in fields:
            raise QuotationRefused("a quotation needs " + k)
    # The round rebuilds a Quotation from these fields and prices it on this feeder: what it
    # would refuse is refused here (an integer in each field's range: the one check of a
    # quotation's values), or one prosumer's quotation would stop the hour's round, and
    # with it every later hour of the run.
    try:
        Quotation(prosumer=ctx.caller.name, kind=Kind(kind), side=Side(side), hour=hour, **fields)
    except ValueError as exc:
        raise QuotationRefused(str(exc))
    if fields["bus"] not in DEFAULT_BUSES:
        raise QuotationRefused("bus " + str(fields["bus"]) + " is not a bus of the feeder (1.."
                               + str(max(DEFAULT_BUSES)) + ")")
    record = {"kind": kind, "side": side}
    for k in QUOTE_FIELDS:
        if k in fields:
            record[k] = fields[k]
    key = "quote/" + str(run) + "/" + _hh(hour) + "/" + ctx.caller.name
    replaced = ctx.get(key) is not None
    ctx.put(key, record)
    ctx.emit({"kind": "quote", "run": run, "hour": hour, "by": ctx.caller.name, "replaced": replaced})
    return replaced


def close(ctx, run, hour):
    """Close ``hour`` of run ``run``, the open one: freeze its quotations and return them
    (sorted by prosumer)."""
    _need_operator(ctx, "close a round")
    config = _current(ctx, run)
    if hour != config["next_hour"]:
        raise QuotationRefused("hour " + str(hour) + " cannot close; the next hour of run " + str(run)
                               + " is " + str(config["next_hour"]))
    prefix = "quote/" + str(run) + "/" + _hh(hour) + "/"
    # Key order is prosumer order, so the frozen list cannot depend on arrival order.
    quotations = []
    for key, record in ctx.scan(prefix, prefix + "~"):
        entry = {"prosumer": key[len(prefix):]}
        entry.update(record)
        quotations.append(entry)
    closed = {"run": run, "hour": hour, "with_smes": config["with_smes"], "quotations": quotations}
    ctx.put("closed/" + str(run) + "/" + _hh(hour), closed)
    config["next_hour"] = hour + 1
    ctx.put("config", config)
    ctx.emit({"kind": "close", "run": run, "hour": hour, "quotations": len(quotations)})
    return closed


def closed(ctx, run, hour):
    """The frozen quotations of ``hour`` of run ``run``, or None while it is open."""
    return ctx.get("closed/" + str(run) + "/" + _hh(hour))
