"""The market round as pure stages, and the paper's experiment (Sec. IV.B, Fig. 4).

One round (DESIGN.md, "The market round") is the composition of stage functions,
each data in -> data out, so the on-chain contracts can call them one at a time and
get identical results:

    stage_quotations -> build_market -> match -> trades_from_matching
      -> stage_security -> stage_smes -> stage_price -> stage_settle -> stage_statistics

:func:`run_round` chains them; :func:`run_day` runs 24 rounds carrying the SMES
state; :func:`run_experiment` runs D seeded days with and without the SMES for each
``rating_scale`` and summarises the two rates of Fig. 4 (definitions in
docs/market.md, "Success rate and renewable consumption rate").
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Sequence

import numpy as np
from scipy import stats as sps

from market.grid import Feeder
from market.matching import Matching, Trade, match, trades_from_matching
from market.model import Kind, Market, Quotation, Side, build_market, round_half_up
from market.pricing import PricedTrade, price_trades
from market.scenario import DayScenario, HourInputs, ScenarioParams, build_day, smes_quotation
from market.security import (Envelope, HourState, SecurityLimits, SecurityResult,
                             hour_envelope, security_check)
from market.smes import SmesDispatch, SmesState, dispatch_smes, smes_revenue_milli

__all__ = [
    "DayResult", "ExperimentResult", "PAPER", "paired_effect", "RateSummary", "RoundResult", "RoundStats",
    "Settlement", "mean_ci95", "run_day", "run_experiment", "run_round", "stage_price",
    "stage_quotations", "stage_security", "stage_settle", "stage_smes", "stage_statistics",
]

# The paper's Fig. 4 (Sec. IV.B): without SMES -> with SMES.
PAPER = {"success_rate": (0.545, 0.745), "renewable_consumption_rate": (0.646, 0.783)}


# --- stages -------------------------------------------------------------------------

def stage_quotations(inputs: HourInputs, params: ScenarioParams,
                     smes_state: SmesState | None) -> tuple[Quotation, ...]:
    """The hour's EV/PV quotations plus the SMES's offer when it is enabled and has energy."""
    quotes = list(inputs.quotations)
    if smes_state is not None:
        q = smes_quotation(params, smes_state, inputs.hour)
        if q is not None:
            quotes.append(q)
    return tuple(sorted(quotes, key=lambda q: q.prosumer))


def stage_security(feeder: Feeder, hour: HourState, trades: Sequence[Trade],
                   limits: SecurityLimits) -> tuple[SecurityResult, Envelope]:
    env = hour_envelope(feeder, hour, limits)
    return security_check(feeder, hour, trades, limits=limits, envelope=env), env


def stage_smes(feeder: Feeder, hour: HourState, env: Envelope, params: ScenarioParams,
               state: SmesState | None, security: SecurityResult) -> SmesDispatch | None:
    """SMES dispatch on the refused trades; None when the run has no SMES."""
    if state is None:
        return None
    return dispatch_smes(feeder, hour, env, params.smes, state, security.admitted,
                         security.refused)


def delivered_trades(security: SecurityResult, dispatch: SmesDispatch | None) -> tuple[Trade, ...]:
    """Trades delivered directly, then those the SMES completed at least one side of."""
    rescued = [] if dispatch is None else list(dict.fromkeys(leg.trade for leg in dispatch.legs))
    return tuple(security.admitted) + tuple(rescued)


def stage_price(market: Market, matching: Matching,
                delivered: Sequence[Trade]) -> dict[tuple[str, str], PricedTrade]:
    """Nucleolus prices of the delivered trades, keyed by (buyer, seller)."""
    priced = price_trades(market, matching, tuple(delivered)) if delivered else ()
    return {(p.trade.buyer, p.trade.seller): p for p in priced}


@dataclass(frozen=True, slots=True)
class Settlement:
    """Money moved this round (milli-currency, sums to zero) and the SMES's eq. (1) revenue."""

    balances_milli: tuple[tuple[str, int], ...]    # sorted by prosumer
    smes_revenue_milli: int


def stage_settle(security: SecurityResult, dispatch: SmesDispatch | None,
                 prices: dict[tuple[str, str], PricedTrade], smes_name: str,
                 smes_om_milli_per_kwh: int) -> Settlement:
    """Direct trades pay their counterparty; an SMES leg pays or is paid by the SMES
    at the price of the trade it stands in for."""
    bal: dict[str, int] = {}

    def move(payer: str, payee: str, amount: int) -> None:
        bal[payer] = bal.get(payer, 0) - amount
        bal[payee] = bal.get(payee, 0) + amount

    revenue = 0
    for t in security.admitted:
        p = prices[(t.buyer, t.seller)]
        move(t.buyer, t.seller, p.payment_milli)
        if t.seller == smes_name:
            revenue += smes_revenue_milli(t.energy_wh, p.price_milli_per_kwh, smes_om_milli_per_kwh)
    for leg in (dispatch.legs if dispatch else ()):
        p = prices[(leg.trade.buyer, leg.trade.seller)]
        amount = round_half_up(Fraction(p.price_milli_per_kwh * leg.energy_wh, 1000))
        if leg.action == "absorb":
            move(smes_name, leg.counterparty, amount)
            revenue += smes_revenue_milli(-leg.energy_wh, p.price_milli_per_kwh, smes_om_milli_per_kwh)
        else:
            move(leg.counterparty, smes_name, amount)
            revenue += smes_revenue_milli(leg.energy_wh, p.price_milli_per_kwh, smes_om_milli_per_kwh)
    return Settlement(tuple(sorted(bal.items())), revenue)


@dataclass(frozen=True, slots=True)
class RoundStats:
    """Integer tallies of one round (docs/market.md gives the rate definitions)."""

    matched_trades: int
    direct_trades: int
    absorb_legs: int
    serve_legs: int
    demand_wh: int
    supply_wh: int
    matched_wh: int
    direct_wh: int
    pv_offered_wh: int
    pv_consumed_wh: int
    smes_absorbed_wh: int
    smes_served_wh: int
    smes_sold_wh: int
    smes_stored_wh: int
    grid_price_milli_per_kwh: int
    mean_price_milli_per_kwh: int        # energy-weighted over delivered trades; 0 if none

    @property
    def delivered_sides(self) -> int:
        return 2 * self.direct_trades + self.absorb_legs + self.serve_legs


def stage_statistics(inputs: HourInputs, quotations: Sequence[Quotation], trades: Sequence[Trade],
                     security: SecurityResult, dispatch: SmesDispatch | None,
                     prices: dict[tuple[str, str], PricedTrade], smes_state: SmesState | None) -> RoundStats:
    kind = {q.prosumer: q.kind for q in quotations}
    legs = dispatch.legs if dispatch else ()
    absorbed = [leg for leg in legs if leg.action == "absorb"]
    served = [leg for leg in legs if leg.action == "serve"]
    pv_direct = sum(t.energy_wh for t in security.admitted if kind[t.seller] is Kind.PV)
    pv_absorbed = sum(leg.energy_wh for leg in absorbed if kind[leg.trade.seller] is Kind.PV)
    priced = list(prices.values())
    e = sum(p.trade.energy_wh for p in priced)
    mean_price = round_half_up(Fraction(sum(p.price_milli_per_kwh * p.trade.energy_wh
                                            for p in priced), e)) if e else 0
    return RoundStats(
        matched_trades=len(trades), direct_trades=len(security.admitted),
        absorb_legs=len(absorbed), serve_legs=len(served),
        demand_wh=sum(q.energy_wh for q in quotations if q.side is Side.BUY),
        supply_wh=sum(q.energy_wh for q in quotations if q.side is Side.SELL),
        matched_wh=sum(t.energy_wh for t in trades),
        direct_wh=sum(t.energy_wh for t in security.admitted),
        pv_offered_wh=inputs.pv_offered_wh, pv_consumed_wh=pv_direct + pv_absorbed,
        smes_absorbed_wh=sum(leg.energy_wh for leg in absorbed),
        smes_served_wh=sum(leg.energy_wh for leg in served),
        smes_sold_wh=dispatch.market_discharge_wh if dispatch else 0,
        smes_stored_wh=smes_state.stored_wh if smes_state else 0,
        grid_price_milli_per_kwh=inputs.params.grid_price_milli_per_kwh,
        mean_price_milli_per_kwh=mean_price)


# --- one round, one day ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RoundResult:
    hour: int
    quotations: tuple[Quotation, ...]
    market: Market
    matching: Matching
    trades: tuple[Trade, ...]
    security: SecurityResult
    smes: SmesDispatch | None
    prices: dict
    settlement: Settlement
    stats: RoundStats
    smes_state_after: SmesState | None


def run_round(feeder: Feeder, inputs: HourInputs, params: ScenarioParams,
              smes_state: SmesState | None, limits: SecurityLimits = SecurityLimits(),
              memo: dict | None = None, with_pricing: bool = True) -> RoundResult:
    """Run every stage of one hourly round; ``smes_state`` None runs without the SMES.

    ``memo`` (a dict the caller keeps) reuses the grid-independent stages -- market,
    matching and prices -- for a round whose quotations were seen before (the same
    day under another rating scale, or without an SMES offer).  A trade's price does
    not depend on which other trades are delivered (the nucleolus is that of the
    whole hour's game), so pricing every matched trade once and keeping the
    delivered ones gives exactly what :func:`stage_price` gives on the delivered set.

    ``with_pricing=False`` skips pricing and settlement (no prices, no money moved,
    mean price 0): delivery, and so both of the experiment's rates, never depend on
    prices, and the nucleolus is by far the slowest stage.
    """
    quotes = stage_quotations(inputs, params, smes_state)
    key = (quotes, inputs.params)
    if memo is not None and key in memo:
        market, matching, trades, all_prices = memo[key]
    else:
        market = build_market(quotes, inputs.params)
        matching = match(market.weights_milli, market.buyer_caps, market.seller_caps)
        trades = trades_from_matching(market, matching)
        all_prices = (stage_price(market, matching, trades)
                      if memo is not None and with_pricing else None)
        if memo is not None:
            memo[key] = (market, matching, trades, all_prices)
    hour = HourState.for_hour(inputs.hour)
    security, env = stage_security(feeder, hour, trades, limits)
    dispatch = stage_smes(feeder, hour, env, params, smes_state, security)
    delivered = delivered_trades(security, dispatch)
    if not with_pricing:
        prices = {}
    elif all_prices is None:
        prices = stage_price(market, matching, delivered)
    else:
        prices = {(t.buyer, t.seller): all_prices[(t.buyer, t.seller)] for t in delivered}
    settlement = (stage_settle(security, dispatch, prices, params.smes.name,
                               params.smes.om_milli_per_kwh) if with_pricing else Settlement((), 0))
    after = dispatch.state_after if dispatch else None
    stats = stage_statistics(inputs, quotes, trades, security, dispatch, prices, after)
    return RoundResult(inputs.hour, quotes, market, matching, tuple(trades), security, dispatch,
                       prices, settlement, stats, after)


@dataclass(frozen=True, slots=True)
class DayResult:
    day: int
    with_smes: bool
    rating_scale: float
    rounds: tuple[RoundResult, ...]

    def success_rate(self) -> float | None:
        matched = sum(r.stats.matched_trades for r in self.rounds)
        sides = sum(r.stats.delivered_sides for r in self.rounds)
        return sides / (2 * matched) if matched else None

    def renewable_consumption_rate(self) -> float | None:
        offered = sum(r.stats.pv_offered_wh for r in self.rounds)
        used = sum(r.stats.pv_consumed_wh for r in self.rounds)
        return used / offered if offered else None


def run_day(feeder: Feeder, scenario: DayScenario, params: ScenarioParams, *, with_smes: bool,
            limits: SecurityLimits = SecurityLimits(), memo: dict | None = None,
            with_pricing: bool = True) -> DayResult:
    """24 rounds; the SMES starts each day at its state-of-charge floor."""
    state = SmesState.empty(params.smes) if with_smes else None
    rounds = []
    for inputs in scenario.hours:
        r = run_round(feeder, inputs, params, state, limits, memo, with_pricing)
        state = r.smes_state_after
        rounds.append(r)
    return DayResult(scenario.day, with_smes, feeder.rating_scale, tuple(rounds))


# --- the experiment -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RateSummary:
    """Mean of the daily rates and its 95 % t-interval (None bounds with fewer than 2 days)."""

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    days: int


def mean_ci95(values: Sequence[float | None],
              bounds: tuple[float, float] = (0.0, 1.0)) -> RateSummary:
    """Student-t 95 % confidence interval of the mean of the non-None ``values``,
    clipped to ``bounds`` (a rate lies in [0, 1]; with few days the t-interval
    alone can reach past them)."""
    xs = np.array([v for v in values if v is not None], dtype=float)
    if xs.size == 0:
        return RateSummary(None, None, None, 0)
    mean = float(xs.mean())
    if xs.size < 2:
        return RateSummary(mean, None, None, 1)
    half = float(sps.t.ppf(0.975, xs.size - 1) * xs.std(ddof=1) / np.sqrt(xs.size))
    return RateSummary(mean, max(bounds[0], mean - half), min(bounds[1], mean + half), int(xs.size))


def paired_effect(without: Sequence[DayResult], with_: Sequence[DayResult],
                  rate: str) -> RateSummary:
    """Mean and 95 % interval of the per-day difference (with - without SMES) of ``rate``
    (a :class:`DayResult` method name); the days are paired on identical quotations."""
    diffs = []
    for a, b in zip(without, with_):
        x, y = getattr(a, rate)(), getattr(b, rate)()
        diffs.append(None if x is None or y is None else y - x)
    return mean_ci95(diffs, bounds=(-1.0, 1.0))


@dataclass(frozen=True, slots=True)
class ExperimentResult:
    seed: int
    days: int
    rating_scales: tuple[float, ...]
    smes_modes: tuple[bool, ...]
    runs: tuple[DayResult, ...]           # ordered by rating scale, SMES mode, day
    summary: tuple[tuple[float, bool, RateSummary, RateSummary], ...]


def run_experiment(feeder: Feeder, params: ScenarioParams, *, days: int, seed: int,
                   rating_scales: Sequence[float] = (1.0,), smes_modes: Sequence[bool] = (False, True),
                   limits: SecurityLimits = SecurityLimits(), with_pricing: bool = True,
                   progress: Callable[[int, int], None] | None = None) -> ExperimentResult:
    """Run ``days`` seeded days for every (rating scale, SMES mode) and summarise.

    The same day scenarios (quotations) are used for every scale and mode, so the
    comparisons are paired.  ``progress(done, total)`` is called after each day run.
    """
    scenarios = [build_day(params, feeder, seed, d) for d in range(days)]
    total = len(rating_scales) * len(smes_modes) * days
    runs, summary, done = [], [], 0
    memo: dict = {}
    for scale in rating_scales:
        f = feeder.with_rating_scale(scale)
        for mode in smes_modes:
            day_runs = []
            for sc in scenarios:
                day_runs.append(run_day(f, sc, params, with_smes=mode, limits=limits, memo=memo,
                                        with_pricing=with_pricing))
                done += 1
                if progress:
                    progress(done, total)
            runs.extend(day_runs)
            summary.append((float(scale), mode,
                            mean_ci95([d.success_rate() for d in day_runs]),
                            mean_ci95([d.renewable_consumption_rate() for d in day_runs])))
    return ExperimentResult(seed, days, tuple(float(s) for s in rating_scales), tuple(smes_modes),
                            tuple(runs), tuple(summary))
