"""From nucleolus shares to one integer price and payment per trade.

Each trade (i, j) has integer money terms (model.PairTerms): the buyer's value V,
its travel cost T, the seller's cost C, with Q = V - T - C.  A payment P gives the
buyer the relative income V - T - P and the seller P - C; these sum to Q whatever P
is.  So dividing Q is choosing P, and the buyer's share a fixes it:

    P = V - T - a.

The nucleolus gives one share per *player*.  With unit capacities the player has
one trade and, the nucleolus lying in the core of the assignment game (Shapley &
Shubik 1972), x_i + y_j = Q[i, j] on every matched pair, so a = x_i.  With larger
capacities a player's share is split over its trades: we solve a small
transportation LP for per-trade buyer shares a_ij in [0, Q_ij] with
sum_j a_ij = x_i and sum_i (Q_ij - a_ij) = y_j (feasible for any core point:
the b-matching dual is a core point and the nucleolus is in the core, which the
LP certifies or we raise).

Rounding rule (one rule, documented in docs/market.md): the buyer's share is
rounded to integer milli by round-half-up after snapping to 1e-6 milli, then
clamped to [0, Q].  The payment P is an integer computed from it, paid by the
buyer and received by the seller, so money is conserved exactly per trade, and
C <= P <= V - T: every price lies between the seller's cost and the buyer's value.
``price_milli_per_kwh`` = round_half_up(1000 P / E) is the unit price reported for
statistics; the payment is authoritative.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from market.matching import Matching, Trade
from market.model import Market, pair_terms, round_half_up
from market.nucleolus import market_nucleolus

__all__ = ["PricedTrade", "PricingError", "price_trades", "trade_shares", "quantise_share"]


class PricingError(ValueError):
    """A trade that is not in the matching, a market without params, or an LP failure."""


@dataclass(frozen=True, slots=True)
class PricedTrade:
    trade: Trade
    price_milli_per_kwh: int
    payment_milli: int


def quantise_share(share: float, weight_milli: int) -> int:
    """Round a float share to integer milli: snap to 1e-6, half up, clamp to [0, Q]."""
    snapped = Fraction(round(share * 1_000_000), 1_000_000)
    return min(max(round_half_up(snapped), 0), weight_milli)


def trade_shares(weights, pairs, buyer_shares, seller_shares) -> dict[tuple[int, int], float]:
    """Buyer's share of each matched pair's weight, splitting per-player shares.

    Raises PricingError if no split within [0, Q] matches the shares (the point is
    then not in the core).
    """
    w = np.asarray(weights, dtype=np.int64)
    pairs = sorted(pairs)
    if not pairs:
        return {}
    buyers = sorted({i for i, _ in pairs})
    sellers = sorted({j for _, j in pairs})
    if all(sum(1 for p in pairs if p[0] == i) == 1 for i in buyers):
        return {(i, j): float(buyer_shares[i]) for i, j in pairs}
    E = len(pairs)
    q = np.array([w[i, j] for i, j in pairs], dtype=float)
    bi = {i: k for k, i in enumerate(buyers)}
    si = {j: k for k, j in enumerate(sellers)}
    rows = [bi[i] for i, _ in pairs] + [len(buyers) + si[j] for _, j in pairs]
    A = sp.csr_matrix((np.r_[np.ones(E), -np.ones(E)], (rows, np.r_[np.arange(E), np.arange(E)])),
                      shape=(len(buyers) + len(sellers), E))
    seller_recv = np.zeros(len(sellers))
    for (i, j), qq in zip(pairs, q):
        seller_recv[si[j]] += qq
    b = np.r_[[buyer_shares[i] for i in buyers],
              [seller_shares[j] - seller_recv[si[j]] for j in sellers]]
    # stay near the proportional split Q_ij / Q_i(.) x_i: minimise |a - target|
    tot = {i: sum(w[a, c] for a, c in pairs if a == i) for i in buyers}
    target = np.array([buyer_shares[i] * w[i, j] / tot[i] for i, j in pairs])
    # variables a (E), d (E) with d >= |a - target|
    c = np.r_[np.zeros(E), np.ones(E)]
    eye = sp.eye(E)
    A_ub = sp.vstack([sp.hstack([eye, -eye]), sp.hstack([-eye, -eye])])
    b_ub = np.r_[target, -target]
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=sp.hstack([A, sp.csr_matrix(A.shape)]), b_eq=b,
                  bounds=[(0, qq) for qq in q] + [(0, None)] * E, method="highs")
    if res.status != 0:
        raise PricingError(f"shares cannot be split over the trades: {res.message}")
    return {p: float(a) for p, a in zip(pairs, res.x[:E])}


def price_trades(market: Market, matching: Matching, trades) -> tuple[PricedTrade, ...]:
    """Price the given trades (a subset of the matching's) from the nucleolus.

    The nucleolus is that of the whole hour's trading game; each trade's payment
    follows from its buyer's share (module docstring).  Returns trades in the
    given order.
    """
    if market.params is None:
        raise PricingError("market has no params: build it with build_market")
    buyer_index = {q.prosumer: k for k, q in enumerate(market.buyers)}
    seller_index = {q.prosumer: k for k, q in enumerate(market.sellers)}
    matched = set(matching.pairs)
    keys = []
    for t in trades:
        key = (buyer_index.get(t.buyer), seller_index.get(t.seller))
        if key not in matched:
            raise PricingError(f"trade {t.buyer} -> {t.seller} is not in the matching")
        keys.append(key)
    if not keys:
        return ()
    xb, xs = market_nucleolus(market.weights_milli, market.buyer_caps, market.seller_caps)
    shares = trade_shares(market.weights_milli, matching.pairs, xb, xs)
    out = []
    for t, (i, j) in zip(trades, keys):
        terms = pair_terms(market.buyers[i], market.sellers[j], market.params)
        a = quantise_share(shares[(i, j)], terms.weight_milli)
        payment = terms.buyer_value_milli - terms.buyer_travel_milli - a
        price = round_half_up(Fraction(payment * 1000, terms.energy_wh))
        out.append(PricedTrade(t, price, payment))
    return tuple(out)
