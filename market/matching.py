"""Exact many-to-many matching of buyers and sellers: the paper's eq. (5)-(8).

Maximise sum Q[i,j] T[i,j] over binary T with at most ``buyer_caps[i]`` trades per
buyer, at most ``seller_caps[j]`` per seller, each pair at most once, only pairs
with Q > 0.  The paper's eq. (7) is an equality (every seller fully matched); it
cannot hold when sellers outnumber what buyers can take, so both degree
constraints are ``<=`` here.

This is a bipartite b-matching.  Its LP relaxation has a totally unimodular
constraint matrix, so a basic optimal LP solution is integral (Schrijver,
*Combinatorial Optimization*, Thm 21.1); we solve it with HiGHS' dual simplex,
check integrality and an exact integer dual certificate, and fall back to
``scipy.optimize.milp`` if either check fails.  Plain replication of rows and
columns into an assignment problem is *not* exact: it can pair the same two
prosumers twice.  For unit capacities the problem is an assignment problem and we
call ``scipy.optimize.linear_sum_assignment`` (Crouse 2016) directly.

Tie-break (docs/market.md): among all maximum-weight matchings, the result is the
one that is lexicographically greatest in row-major pair order of the *ranks*
(default: index order, which is name order in a :class:`~market.model.Market`):
scan pairs in that order and keep a pair whenever some optimal matching contains it
together with every pair kept so far and none of those rejected.  The rule is
applied exactly for every capacity; it only costs extra work when ties exist.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.optimize import LinearConstraint, linear_sum_assignment, linprog, milp

from market.model import Market, pair_terms
from market.tie_break import canonicalise, changeable_edges

__all__ = ["Matching", "Trade", "MatchingError", "match", "trades_from_matching"]

_DUAL_SIMPLEX = {"presolve": True}


class MatchingError(ValueError):
    """Bad matching input (shapes, capacities, weight dtype)."""


@dataclass(frozen=True, slots=True)
class Matching:
    """Chosen pairs (buyer index, seller index), sorted, and their total weight."""

    pairs: tuple[tuple[int, int], ...]
    total_weight: int


@dataclass(frozen=True, slots=True)
class Trade:
    """One matched trade, in ledger units; ``weight_milli`` is Q of the pair."""

    buyer: str
    seller: str
    buyer_bus: int
    seller_bus: int
    energy_wh: int
    weight_milli: int


def _validate(weights, buyer_caps, seller_caps):
    w = np.asarray(weights)
    if w.ndim != 2:
        raise MatchingError(f"weights must be 2-D, got shape {w.shape}")
    if w.size and not np.issubdtype(w.dtype, np.integer):
        raise MatchingError(f"weights must be integers (milli-currency), got {w.dtype}")
    w = np.asarray(w, dtype=np.int64)
    bc = np.asarray(buyer_caps, dtype=np.int64).reshape(-1)
    sc = np.asarray(seller_caps, dtype=np.int64).reshape(-1)
    if bc.shape[0] != w.shape[0] or sc.shape[0] != w.shape[1]:
        raise MatchingError(f"caps {bc.shape[0]}x{sc.shape[0]} do not fit weights {w.shape}")
    if (bc < 0).any() or (sc < 0).any():
        raise MatchingError("capacities must be >= 0")
    if w.size and max(int(w.max()), -int(w.min())) > 2**40:
        raise MatchingError("weights exceed 2**40 milli: LP arithmetic would not be exact")
    return w, bc, sc


def _ranks(order: Sequence[int] | None, size: int) -> np.ndarray:
    if order is None:
        return np.arange(size)
    r = np.asarray(order, dtype=np.int64)
    if sorted(r.tolist()) != list(range(size)):
        raise MatchingError("rank orders must be permutations of 0..size-1")
    return r


def _lp_b_matching(I, J, w, bc, sc, m, n, lower=None, upper=None, deg_eq=None):
    """Max-weight b-matching LP on edge list; returns (x, res) with x integral or None."""
    E = len(w)
    A = sp.csr_matrix((np.ones(2 * E), (np.r_[I, m + J], np.r_[np.arange(E), np.arange(E)])),
                      shape=(m + n, E))
    lo = np.zeros(E) if lower is None else lower
    hi = np.ones(E) if upper is None else upper
    caps = np.r_[bc, sc].astype(float)
    if deg_eq is None:
        res = linprog(-w.astype(float), A_ub=A, b_ub=caps, bounds=np.c_[lo, hi],
                      method="highs-ds", options=_DUAL_SIMPLEX)
    else:  # degree equalities where the dual says the vertex is saturated
        eq = np.flatnonzero(deg_eq)
        ub = np.flatnonzero(~deg_eq)
        res = linprog(-w.astype(float), A_ub=A[ub] if len(ub) else None,
                      b_ub=caps[ub] if len(ub) else None,
                      A_eq=A[eq] if len(eq) else None, b_eq=caps[eq] if len(eq) else None,
                      bounds=np.c_[lo, hi], method="highs-ds", options=_DUAL_SIMPLEX)
    if res.status != 0:
        return None, res
    x = np.round(res.x)
    if np.abs(res.x - x).max(initial=0) > 1e-6:
        return None, res
    return x.astype(np.int64), res


def _milp_b_matching(I, J, w, bc, sc, m, n):
    E = len(w)
    A = sp.csr_matrix((np.ones(2 * E), (np.r_[I, m + J], np.r_[np.arange(E), np.arange(E)])),
                      shape=(m + n, E))
    res = milp(-w.astype(float), constraints=LinearConstraint(A, -np.inf, np.r_[bc, sc]),
               integrality=np.ones(E), bounds=(0, 1))
    if res.status != 0:
        raise MatchingError(f"b-matching MILP failed: {res.message}")
    return np.round(res.x).astype(np.int64)


def _candidate_edges(w, bc, sc):
    """Each buyer's and each seller's best edges: a sparse support to solve on first."""
    m, n = w.shape
    keep = np.zeros((m, n), dtype=bool)
    k_row = np.minimum(n, 2 * bc + 8)
    k_col = np.minimum(m, 2 * sc + 8)
    order_r = np.argsort(-w, axis=1, kind="stable")
    order_c = np.argsort(-w, axis=0, kind="stable")
    for i in range(m):
        keep[i, order_r[i, :k_row[i]]] = True
    for j in range(n):
        keep[order_c[:k_col[j], j], j] = True
    return keep & (w > 0)


def _solve_certified(w, bc, sc):
    """Optimal integral x on the positive edges plus an exact integer dual.

    Solves on a sparse candidate support, then checks the LP dual (u, v, z) on every
    positive edge; violated edges join the support until the dual certifies
    optimality.  Returns (I, J, x, u, v, z) over the final support.
    """
    m, n = w.shape
    pos = w > 0
    support = _candidate_edges(w, bc, sc)
    while True:
        I, J = np.nonzero(support)
        we = w[I, J]
        x, res = _lp_b_matching(I, J, we, bc, sc, m, n)
        if x is None:
            break
        duals = -np.round(res.ineqlin.marginals).astype(np.int64)
        u, v = np.maximum(duals[:m], 0), np.maximum(duals[m:], 0)
        z = np.maximum(-np.round(res.upper.marginals).astype(np.int64), 0)
        # exact integer certificate: dual feasible on support and on every other edge,
        # and dual objective == primal objective
        reduced = u[:, None] + v[None, :] - w
        reduced[I, J] += z
        if (int(bc @ u) + int(sc @ v) + int(z.sum()) == int(we @ x)
                and not (pos & (reduced < 0) & ~support).any()
                and (reduced[I, J] >= 0).all()):
            return I, J, x, u, v, z
        viol = pos & (reduced < 0) & ~support
        if not viol.any():
            break  # certificate failed on the support itself: numerics; use the safe path
        support |= viol
    I, J = np.nonzero(pos)
    x = _milp_b_matching(I, J, w[I, J], bc, sc, m, n)
    return I, J, x, None, None, None


def _one_sided_certified(w, bc, sc):
    """Like :func:`_solve_certified` when one side has capacities <= 1, without an LP.

    A buyer of capacity 1 trades once, so it can never pair with the same seller
    twice: replicating each seller into ``cap`` copies gives an assignment problem
    whose optima are exactly the b-matchings (unlike replication with capacities
    above 1 on both sides).  ``linear_sum_assignment`` solves it; the dual comes
    from :func:`_unit_duals` on the replicated matrix.  Its potentials are shortest
    distances, the unique extreme dual, so the copies of a seller get the same
    v_j; with z = 0 (a unit buyer's edge bonus can move into u_i) that is an
    exact integer dual of the b-matching LP.  Mirrored when the sellers are the
    unit side.  Returns None if neither side is unit, or the copies' potentials
    differ (the caller then uses the LP).
    """
    if (bc <= 1).all():
        flip = False
    elif (sc <= 1).all():
        w, bc, sc, flip = w.T, sc, bc, True
    else:
        return None
    cols = np.repeat(np.arange(w.shape[1]), sc)
    rep = np.where(bc[:, None] > 0, w[:, cols], 0)
    rows, rcols = _unit_assignment(rep, None, None)
    if len(rows) == 0:
        return None
    duals = _unit_duals(rep, rows, rcols)
    if duals is None:
        return None
    u, vrep = duals[0], duals[1]
    v = np.zeros(w.shape[1], dtype=np.int64)
    v[cols] = vrep
    if not np.array_equal(v[cols], vrep):
        return None
    I, J = rows, cols[rcols]
    x = np.ones(len(I), dtype=np.int64)
    if flip:
        I, J, u, v = J, I, v, u
    order = np.lexsort((J, I))
    return I[order], J[order], x, u, v, None


def _canonicalise_by_value(w, bc, sc, I, J, x, rb, rs):
    m, n = w.shape
    we = w[I, J]
    best = int(we @ x)
    lower, upper = np.zeros(len(we)), np.ones(len(we))
    cur = x.copy()
    for e in np.lexsort((rs[J], rb[I])):
        if cur[e] == 1:
            lower[e] = 1.0
            continue
        lower[e] = 1.0
        trial, _ = _lp_b_matching(I, J, we, bc, sc, m, n, lower, upper)
        if trial is not None and int(trial @ we) == best:
            cur = trial
        else:
            lower[e], upper[e] = 0.0, 0.0
    return cur


def _unit_assignment(w, rb, rs):
    """One-to-one case: linear_sum_assignment on Q clipped at 0, zero pairs dropped."""
    clipped = np.maximum(w, 0)
    rows, cols = linear_sum_assignment(clipped, maximize=True)
    keep = clipped[rows, cols] > 0
    return rows[keep], cols[keep]


def match(weights, buyer_caps, seller_caps, *, buyer_order=None, seller_order=None) -> Matching:
    """Maximum-weight bipartite b-matching, exact, with a fixed tie-break.

    Parameters
    ----------
    weights : array_like of int, shape (m, n)
        Q[i, j] in milli-currency; pairs with Q <= 0 are never matched.
    buyer_caps, seller_caps : sequence of int
        Most trades per buyer / seller (eq. 7, 8 with ``<=``).
    buyer_order, seller_order : sequence of int, optional
        Tie-break ranks (a permutation); default index order.

    Returns
    -------
    Matching
        Sorted ``(buyer, seller)`` pairs and their exact integer total weight.

    References
    ----------
    Paper Section III-B, eq. (5)-(8); Zhu et al., TCS 618 (2016) for the
    capacitated Kuhn-Munkres the paper cites; Schrijver (2003) Ch. 21 for total
    unimodularity of bipartite b-matching.

    Examples
    --------
    >>> match([[5, 1], [4, 0]], [1, 1], [2, 1]).pairs
    ((0, 0), (1, 0))
    """
    w, bc, sc = _validate(weights, buyer_caps, seller_caps)
    m, n = w.shape
    rb, rs = _ranks(buyer_order, m), _ranks(seller_order, n)
    if m == 0 or n == 0 or not (w > 0).any():
        return Matching((), 0)
    if (bc == 1).all() and (sc == 1).all() and buyer_order is None and seller_order is None:
        rows, cols = _unit_assignment(w, rb, rs)
        duals = _unit_duals(w, rows, cols)
        if duals is not None:
            x = np.ones(len(rows), dtype=np.int64)
            change = changeable_edges(w, bc, sc, rows, cols, x, duals[0], duals[1], None,
                                       tight=duals[2])
            if change.any():
                I, J, x = canonicalise(w, bc, sc, rows, cols, x, duals[0], duals[1], None,
                                        change, rb, rs)
                sel = x == 1
                return _result(w, I[sel], J[sel])
            return _result(w, rows, cols)
    one_sided = _one_sided_certified(w, bc, sc)
    I, J, x, u, v, z = one_sided if one_sided is not None else _solve_certified(w, bc, sc)
    if u is None:
        x = _canonicalise_by_value(w, bc, sc, I, J, x, rb, rs)
    else:
        change = changeable_edges(w, bc, sc, I, J, x, u, v, z)
        if change.any():
            I, J, x = canonicalise(w, bc, sc, I, J, x, u, v, z, change, rb, rs)
    sel = x == 1
    return _result(w, I[sel], J[sel])


_FAR = 1 << 62   # "unreached" in integer distances (weights are below 2**40)


def _shortest_from_root(src, dst, length, size, root):
    """Exact integer shortest distances from ``root`` (Bellman-Ford, vectorised).

    Jacobi-style rounds over all arcs at once, stopping at the first round that
    changes nothing; more than ``size`` rounds means a negative cycle (None).
    Unreached nodes get ``_FAR``.
    """
    dist = np.full(size, _FAR, dtype=np.int64)
    dist[root] = 0
    if len(dst) == 0:
        return dist
    order = np.argsort(dst, kind="stable")
    src, dst, length = src[order], dst[order], length.astype(np.int64)[order]
    heads, starts = np.unique(dst, return_index=True)
    for _ in range(size + 1):
        base = dist[src]
        cand = np.where(base >= _FAR, _FAR, base + length)
        best = np.minimum(dist[heads], np.minimum.reduceat(cand, starts))
        if (best == dist[heads]).all():
            return dist
        dist[heads] = best
    return None


def _unit_duals(w, rows, cols):
    """An optimal dual (u, v) of the one-to-one LP from the assignment (rows, cols).

    Seller potentials are shortest distances in the difference-constraint graph of
    the dual (arc j -> sigma(i) of length Q[i,sigma(i)] - Q[i,j], arc source ->
    sigma(i) of length Q[i,sigma(i)] for u_i >= 0), first on each buyer's best
    edges, then re-checked on all edges; violated edges join the graph.  Returns
    None if no integral dual certifies the matching (the caller then uses the LP).
    """
    m, n = w.shape
    sig = np.full(m, -1)
    sig[rows] = cols
    # start from the edges at least as good as the buyer's own partner (they bind
    # hardest); the loop below adds any edge the potentials still violate
    own = np.full(m, np.iinfo(np.int64).max)
    own[rows] = w[rows, cols]
    er, ec = _nonzero(w >= own[:, None])
    widened = False
    for _ in range(20):
        ok = (sig[er] >= 0) & (w[er, ec] > 0) & (ec != sig[er])
        r2, c2 = er[ok], ec[ok]
        length = np.r_[w[r2, sig[r2]] - w[r2, c2], w[rows, cols]]
        dist = _shortest_from_root(np.r_[c2, np.full(len(rows), n)], np.r_[sig[r2], cols],
                                   length, n + 1, n)
        if dist is None:
            return None
        v = np.where(dist[:n] >= _FAR, 0, dist[:n])
        if not widened:
            # potentials from the best edges only are rarely feasible; before the
            # full check, widen the arc set once to the edges within their spread
            # of each buyer's own (cheaper than a failing check; twice the spread
            # gives the shortest-path rounds ~2x the arcs at 1000x1000 and is ~20 % slower)
            widened = True
            spread = int(v.max() - v.min())
            er, ec = _nonzero(w > (own - spread - 1)[:, None])
            continue
        u = np.zeros(m, dtype=np.int64)
        u[rows] = w[rows, cols] - v[cols]
        # slack of the dual constraint u_i + v_j >= Q_ij, one temporary for both
        # tests; u, v >= 0, so Q <= 0 is never violated
        slack = w - v[None, :]
        slack -= u[:, None]
        if slack.max() <= 0:
            if (u < 0).any() or (v < 0).any():
                return None
            return u, v, _nonzero(slack == 0)
        # add the violated edges and every edge within the potentials' spread of
        # being violated: the next potentials move by about that much, so this
        # saves rounds of full-matrix checks (any superset gives the same v)
        spread = int(v.max() - v.min())
        vr, vc = _nonzero(slack > -spread)
        er, ec = np.r_[er, vr], np.r_[ec, vc]
    return None


def _nonzero(mask):
    """np.nonzero of a 2-D mask, via the flat index (several times faster)."""
    flat = np.flatnonzero(mask.ravel())
    return flat // mask.shape[1], flat % mask.shape[1]


def _result(w, rows, cols) -> Matching:
    pairs = tuple(sorted(zip(rows.tolist(), cols.tolist())))
    return Matching(pairs, int(sum(int(w[i, j]) for i, j in pairs)))


def trades_from_matching(market: Market, matching: Matching) -> tuple[Trade, ...]:
    """Trades of a matching: one lot of each side, ``min(lot_b, lot_s)`` Wh.

    A prosumer with capacity k offers k lots of ``energy_wh // k``, so the sum of
    its trades never exceeds its quotation (model.lot_energy_wh).
    """
    if market.params is None:
        raise MatchingError("market has no params: build it with build_market")
    trades = []
    for i, j in matching.pairs:
        b, s = market.buyers[i], market.sellers[j]
        terms = pair_terms(b, s, market.params)
        trades.append(Trade(b.prosumer, s.prosumer, b.bus, s.bus, terms.energy_wh,
                            terms.weight_milli))
    return tuple(trades)
