"""Shared generators for the market-algorithm tests (small, seeded, replayable)."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from market.highs import FixedChargeLP
from market.nucleolus import is_nucleolus, market_game_values, market_nucleolus, nucleolus


@st.composite
def markets(draw, max_buyers=4, max_sellers=4, max_cap=3, low=-20, high=40):
    """(weights, buyer_caps, seller_caps): a small random market with int weights."""
    m = draw(st.integers(1, max_buyers))
    n = draw(st.integers(1, max_sellers))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    w = rng.integers(low, high, size=(m, n))
    bc = rng.integers(1, max_cap + 1, size=m)
    sc = rng.integers(1, max_cap + 1, size=n)
    return w, bc, sc


def fixed_charge_case(inst, seed):
    """(players, a generator, the largest sensible membership cost, the market's
    branch-and-bound LP)."""
    w, bc, sc = inst
    return len(bc) + len(sc), np.random.default_rng(seed), max(1.0, float(w.clip(0).sum())), FixedChargeLP(w, bc, sc)


def random_box(rng, n: int, fixed_share: float):
    """A box of memberships for that LP: each player fixed (with probability
    ``fixed_share``) to a random 0 or 1, else free; (which are fixed, lower, upper)."""
    fixed = rng.random(n) < fixed_share
    z = (rng.random(n) < 0.5).astype(float)
    return fixed, np.where(fixed, z, 0.0), np.where(fixed, z, 1.0)


def assert_nucleolus_equals_enumeration(w, bc, sc, *, kohlberg: bool = False) -> None:
    """``market_nucleolus`` gives the generic enumeration method's nucleolus of the same game
    (every coalition's value listed); with ``kohlberg``, it also passes Kohlberg's check."""
    table = market_game_values(w, bc, sc)
    x = np.r_[market_nucleolus(w, bc, sc)]
    np.testing.assert_allclose(x, nucleolus(len(bc) + len(sc), table), atol=1e-6)
    if kohlberg:
        assert is_nucleolus(len(x), table, x)


def brute_force_value(w, bc, sc) -> int:
    """Best b-matching weight by enumerating every subset of positive edges."""
    m, n = w.shape
    edges = [(i, j) for i in range(m) for j in range(n) if w[i, j] > 0]
    best = 0
    for mask in range(1 << len(edges)):
        chosen = [edges[k] for k in range(len(edges)) if mask >> k & 1]
        if all(sum(1 for a, _ in chosen if a == i) <= bc[i] for i in range(m)) and \
           all(sum(1 for _, b in chosen if b == j) <= sc[j] for j in range(n)):
            best = max(best, sum(int(w[i, j]) for i, j in chosen))
    return best


from market.model import Kind, MarketParams, Quotation, Side  # noqa: E402

PARAMS = MarketParams(grid_price_milli_per_kwh=1_200, feed_in_price_milli_per_kwh=400,
                      pv_om_milli_per_kwh=100, smes_om_milli_per_kwh=50)


def random_quotations(seed: int, n_buyers: int, n_sellers: int, max_cap: int = 1):
    """Seeded quotations of every kind: EV buyers, EV/PV/SMES sellers."""
    rng = np.random.default_rng(seed)
    quotes = []
    for k in range(n_buyers):
        quotes.append(Quotation(
            prosumer=f"evb{k:02d}", kind=Kind.EV, side=Side.BUY, hour=10,
            energy_wh=int(rng.integers(2_000, 20_000)),
            limit_price_milli_per_kwh=int(rng.integers(900, 1_500)), bus=int(rng.integers(2, 34)),
            distance_m=int(rng.integers(0, 5_000)), consumption_wh_per_km=int(rng.integers(120, 200)),
            max_trades=int(rng.integers(1, max_cap + 1))))
    kinds = [Kind.EV, Kind.PV, Kind.SMES]
    for k in range(n_sellers):
        kind = kinds[int(rng.integers(0, 3))]
        ev = kind is Kind.EV
        quotes.append(Quotation(
            prosumer=f"{kind.value}s{k:02d}", kind=kind, side=Side.SELL, hour=10,
            energy_wh=int(rng.integers(2_000, 30_000)),
            limit_price_milli_per_kwh=int(rng.integers(0, 900)), bus=int(rng.integers(2, 34)),
            distance_m=int(rng.integers(0, 5_000)) if ev else 0,
            consumption_wh_per_km=int(rng.integers(120, 200)) if ev else 0,
            depreciation_milli=int(rng.integers(0, 500)) if ev else 0,
            efficiency_ppm=int(rng.integers(850_000, 1_000_001)) if ev else 1_000_000,
            charging_price_milli_per_kwh=int(rng.integers(300, 800)) if ev else 0,
            max_trades=int(rng.integers(1, max_cap + 1))))
    return quotes
