"""The SMES's state of charge and actions, on the electricity channel (docs/market-on-chain.md).

The superconducting magnetic energy store (DESIGN.md, "The market round", step 5) belongs
to the electricity side: its state of charge is physical state that the distribution
network operator ``operator-dno`` keeps. ``open_day(run)`` starts a run's coil at its floor
(``market.smes.SmesState.empty``); after each hour's round, ``apply(run, hour, before,
after, legs, sold_wh)`` records what the round on the matching channel made the SMES do --
each leg (absorb a seller's surplus, serve a buyer) and the energy it sold in the market --
and its new state. The actions must be those the round recorded (read on the matching
channel at the height this block anchors) and ``before`` must equal the state held here. (The round reads that state
itself, at the electricity height its block anchors; ``settlement`` reads back what is
recorded here and moves money for SMES legs only if they are the round's.)

Who may call what: ``open_day``, ``apply`` -- ``operator-dno``; hours of a run in order,
each once; ``state``, ``hour_actions`` -- anyone.
"""

from market.records import smes_actions
from market.scenario import ScenarioParams
from market.smes import SmesState

DNO = "operator-dno"


class SmesRefused(Exception):
    """A call the SMES contract does not accept; the message says why."""


def _need_dno(ctx, what):
    if ctx.caller.name != DNO:
        raise SmesRefused(ctx.caller.name + " may not " + what + "; only " + DNO + " may")


def _state_value(value, what):
    if not isinstance(value, dict) or not isinstance(value.get("stored_wh"), int) \
            or not isinstance(value.get("throughput_wh"), int):
        raise SmesRefused(what + " is {stored_wh, throughput_wh}, integers")
    return {"stored_wh": value["stored_wh"], "throughput_wh": value["throughput_wh"]}


def open_day(ctx, run):
    """Start run ``run`` with the coil at its floor; returns that state."""
    _need_dno(ctx, "open the SMES's day")
    if ctx.get("state/" + str(run)) is not None:
        raise SmesRefused("the SMES's run " + str(run) + " was already opened")
    empty = SmesState.empty(ScenarioParams().smes)
    state = {"stored_wh": empty.stored_wh, "throughput_wh": empty.throughput_wh, "next_hour": 0}
    ctx.put("state/" + str(run), state)
    ctx.put("latest", {"run": run, "hour": None, "stored_wh": empty.stored_wh})
    ctx.emit({"kind": "smes_open", "run": run, "stored_wh": empty.stored_wh})
    return {"stored_wh": state["stored_wh"], "throughput_wh": state["throughput_wh"]}


def apply(ctx, run, hour, before, after, legs, sold_wh):
    """Record hour ``hour``'s SMES actions and move the state from ``before`` to ``after``."""
    _need_dno(ctx, "record the SMES's actions")
    held = ctx.get("state/" + str(run))
    if held is None:
        raise SmesRefused("the SMES's run " + str(run) + " is not open")
    if hour != held["next_hour"]:
        raise SmesRefused("hour " + str(hour) + " cannot be recorded; the SMES's next hour of run "
                          + str(run) + " is " + str(held["next_hour"]))
    hh = str(hour).zfill(2)
    round_record = ctx.read("matching", "round/" + str(run) + "/" + hh, "round")
    if round_record is None:
        raise SmesRefused("round of hour " + str(hour) + " of run " + str(run) + " not anchored yet: matching "
                          "anchored at height " + str(ctx.block.anchors.get("matching")))
    given = {"run": run, "hour": hour, "before": before, "after": after, "sold_wh": sold_wh, "legs": legs}
    if not round_record.get("with_smes") or given != smes_actions(round_record):
        raise SmesRefused("the SMES actions given are not those the round of hour " + str(hour)
                          + " of run " + str(run) + " recorded")
    before = _state_value(before, "before")
    after = _state_value(after, "after")
    if before != {"stored_wh": held["stored_wh"], "throughput_wh": held["throughput_wh"]}:
        raise SmesRefused("the round of hour " + str(hour) + " started from " + str(before["stored_wh"])
                          + " Wh, but the SMES held " + str(held["stored_wh"]) + " Wh")
    capacity = ScenarioParams().smes.capacity_wh
    if after["stored_wh"] < 0 or after["stored_wh"] > capacity:
        raise SmesRefused("a state of charge of " + str(after["stored_wh"]) + " Wh is outside 0.." + str(capacity))
    if not isinstance(sold_wh, int) or sold_wh < 0:
        raise SmesRefused("sold_wh must be a non-negative integer")
    actions = []
    for leg in legs:
        if not isinstance(leg, dict) or leg.get("action") not in ("absorb", "serve") \
                or not isinstance(leg.get("counterparty"), str) or not isinstance(leg.get("energy_wh"), int):
            raise SmesRefused("each leg is {action: absorb|serve, counterparty, energy_wh}")
        actions.append({"action": leg["action"], "counterparty": leg["counterparty"], "energy_wh": leg["energy_wh"]})
    ctx.put("hour/" + str(run) + "/" + str(hour).zfill(2), {"before": before, "after": after, "legs": actions,
                                                           "sold_wh": sold_wh, "capacity_wh": capacity})
    ctx.put("state/" + str(run), dict(after, next_hour=hour + 1))
    ctx.put("latest", {"run": run, "hour": hour, "stored_wh": after["stored_wh"]})
    ctx.emit({"kind": "smes", "run": run, "hour": hour, "legs": len(actions), "stored_wh": after["stored_wh"]})
    return after


def state(ctx, run):
    """The SMES's state of run ``run`` (with the next hour to record), or None."""
    return ctx.get("state/" + str(run))


def hour_actions(ctx, run, hour):
    """What the SMES did in ``hour`` of run ``run``, or None."""
    return ctx.get("hour/" + str(run) + "/" + str(hour).zfill(2))
