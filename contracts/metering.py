"""Metered energy per prosumer per hour, on the electricity channel (docs/market-on-chain.md).

Only the distribution network operator ``operator-dno`` writes readings; each hour of a run
is written once. A reading is the prosumer's net delivered energy in Wh (positive: drawn
from the feeder, negative: fed in), an integer.
"""

DNO = "operator-dno"


class MeteringRefused(Exception):
    """A call the metering contract does not accept; the message says why."""


def record(ctx, run, hour, readings):
    """Store ``readings`` (a list of ``[prosumer, net_wh]``) for ``hour`` of run ``run``."""
    if ctx.caller.name != DNO:
        raise MeteringRefused(ctx.caller.name + " may not write metering; only " + DNO + " may")
    if not isinstance(hour, int) or hour < 0 or hour > 23:
        raise MeteringRefused("hour must be 0..23")
    key = "hour/" + str(run) + "/" + str(hour).zfill(2)
    if ctx.get(key) is not None:
        raise MeteringRefused("hour " + str(hour) + " of run " + str(run) + " is already metered")
    clean = []
    for item in readings:
        if len(item) != 2 or not isinstance(item[0], str) or not isinstance(item[1], int):
            raise MeteringRefused("each reading is [prosumer, net_wh] with an integer net_wh")
        clean.append([item[0], item[1]])
    clean = sorted(clean)
    ctx.put(key, clean)
    for name, wh in clean:
        ctx.put("total/" + name, ctx.get("total/" + name, 0) + wh)
    ctx.emit({"kind": "metered", "run": run, "hour": hour, "readings": len(clean)})
    return len(clean)


def reading(ctx, run, hour):
    """The readings of ``hour`` of run ``run``, or None."""
    return ctx.get("hour/" + str(run) + "/" + str(hour).zfill(2))
