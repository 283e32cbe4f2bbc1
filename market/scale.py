"""``market scale``: one round with many prosumers on several 33-bus feeders.

The population is the paper's mix repeated: every copy of the feeder (all fed from
one substation bus, :func:`market.grid.replicate_feeder`) hosts 15 EVs and 5 PV
arrays drawn as in :mod:`market.scenario`, and one SMES sits on copy 0.  The round
is 15:00-16:00, the scenario's busiest trading hour (EVs topping up after the peak
tariff while PV still produces), run stage by stage with an injected clock so each
stage's time can be reported.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

from market.experiment import (delivered_trades, stage_price, stage_quotations, stage_security,
                               stage_settle, stage_smes)
from market.grid import Feeder, replicate_feeder
from market.matching import match, trades_from_matching
from market.model import build_market
from market.scenario import HourInputs, ScenarioParams, build_day
from market.security import HourState, SecurityLimits
from market.smes import SmesState

__all__ = ["ScaleTiming", "scale_round"]

STAGES = ("quotations", "build_market", "match", "trades", "security", "smes", "price", "settle")


@dataclass(frozen=True, slots=True)
class ScaleTiming:
    prosumers: int
    buses: int
    quotations: int
    trades: int
    admitted: int
    stage_seconds: tuple[tuple[str, float], ...]

    @property
    def total_seconds(self) -> float:
        return sum(s for _n, s in self.stage_seconds if s == s)     # NaN: skipped


def scale_inputs(feeder: Feeder, params: ScenarioParams, prosumers: int, seed: int,
                 hour: int = 15) -> tuple[Feeder, HourInputs]:
    """The hour's inputs of ``prosumers`` prosumers on enough copies of ``feeder``."""
    per_copy = params.n_ev + params.n_pv
    copies = max(1, math.ceil(prosumers / per_copy))
    big = replicate_feeder(feeder, copies)
    shift = feeder.n_bus - 1
    quotes, offered = [], 0
    for c in range(copies):
        day = build_day(params, feeder, seed, c)
        inputs = day.hours[hour]
        room = prosumers - c * per_copy
        for q in inputs.quotations:
            idx = int(q.prosumer[2:]) if q.prosumer.startswith("ev") else params.n_ev + int(q.prosumer[2:])
            if idx > room:
                continue
            quotes.append(dataclasses.replace(q, prosumer=f"{q.prosumer}-{c:03d}", bus=q.bus + c * shift))
            offered += q.energy_wh if q.prosumer.startswith("pv") else 0
        params_h = inputs.params
    return big, HourInputs(hour, params_h, tuple(sorted(quotes, key=lambda q: q.prosumer)), offered)


def scale_round(feeder: Feeder, params: ScenarioParams, prosumers: int, seed: int,
                clock: Callable[[], float], limits: SecurityLimits = SecurityLimits(),
                with_pricing: bool = True) -> ScaleTiming:
    """Run one round of ``prosumers`` prosumers and time each stage with ``clock``.

    ``with_pricing=False`` skips the nucleolus pricing and settlement (reported as
    NaN), to time the other stages where pricing is too slow to wait for.
    """
    big, inputs = scale_inputs(feeder, params, prosumers, seed)
    times = []
    state = SmesState.empty(params.smes)

    def timed(name, fn, *args):
        t0 = clock()
        out = fn(*args)
        times.append((name, clock() - t0))
        return out

    quotes = timed("quotations", stage_quotations, inputs, params, state)
    market = timed("build_market", build_market, quotes, inputs.params)
    matching = timed("match", match, market.weights_milli, market.buyer_caps, market.seller_caps)
    trades = timed("trades", trades_from_matching, market, matching)
    hour = HourState.for_hour(inputs.hour)
    security, env = timed("security", stage_security, big, hour, trades, limits)
    dispatch = timed("smes", stage_smes, big, hour, env, params, state, security)
    if with_pricing:
        prices = timed("price", stage_price, market, matching, delivered_trades(security, dispatch))
        timed("settle", stage_settle, security, dispatch, prices, params.smes.name,
              params.smes.om_milli_per_kwh)
    else:
        times += [("price", float("nan")), ("settle", float("nan"))]
    return ScaleTiming(prosumers, big.n_bus, len(quotes), len(trades), len(security.admitted),
                       tuple(times))
