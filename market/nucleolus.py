"""The nucleolus: generic, certified, and for the (capacitated) trading game.

The nucleolus (Schmeidler 1969) of a TU game is the imputation that lexicographically
minimises the non-increasingly ordered vector of excesses e(S, x) = v(S) - x(S)
(the paper's eq. 9-11).  We compute it by the sequential LP method (Kopelowitz 1967;
Maschler, Peleg & Shapley 1979): stage k minimises the largest excess eps over the
coalitions not yet settled, then fixes the coalitions whose excess equals eps* in
*every* optimal solution.  Fixing those tight in just one LP solution is a known
error that yields wrong points; we find the always-tight set exactly: a coalition
with a positive dual is always tight (complementary slackness), and the rest are
tested by LPs that try to make them slack (a convex combination of solutions that
each make one coalition slack makes all of them slack, so one LP per round tests
them together).  A coalition whose characteristic vector lies in the span of the
fixed ones has constant excess from then on and leaves the problem.

Three front ends share this core:

* :func:`nucleolus` enumerates all 2^n - 2 coalitions (small n);
* :func:`market_nucleolus` for unit capacities uses only singletons and
  buyer-seller pairs with positive weight, the essential coalitions of an
  assignment game (Shapley & Shubik 1972; Huberman 1980; Solymosi & Raghavan
  1994), so LPs have O(m n) rows;
* :func:`market_nucleolus` with capacities > 1 uses constraint generation
  (Hallefjord, Helming & Joernsten 1995): a seeded working set of coalitions, and an
  exact separation MILP (``scipy.optimize.milp``) that finds the unsettled coalition
  of largest excess, with v(S) itself a b-matching written inside the MILP and
  "unsettled" (outside the span of the fixed rows) an exact integer disjunction;
  each stage is certified at the optimal-face point nearest to a feasible one, from
  a core point on, over a cut pool (:meth:`market.sequential_lp.Stages.use_pool`).

For the trading game the first stage is usually at level 0 (the least core is the
core) with a huge always-tight set; :mod:`market.core_hull` reads it off the optimal
matchings (exactly, by strict complementarity, when one side has unit capacities; the
optimal matching's components otherwise) and fixes it in one step.

:func:`is_nucleolus` checks a point independently by Kohlberg's (1971) criterion.

Numerics: values are scaled by s = max(1, max |v|) before the LPs; HiGHS runs with
feasibility tolerances 1e-10; two excesses within ``TOL`` = 1e-7 (scaled, i.e.
1e-7 s in value units) count as equal.  Results are floats; pricing rounds them.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog
from scipy.sparse.linalg import spsolve

from market.core_hull import core_equalities, independent_rows, matching_equalities
from market.essential import list_separator, market_components, star_coalitions, star_separator, unfixed_first
from market.separation import core_point, mask_value, market_separator, seed_coalitions
from market.sequential_lp import TOL, NucleolusError, Stages

__all__ = ["nucleolus", "is_nucleolus", "market_nucleolus", "market_game_values", "NucleolusError", "TOL"]


# -- generic games ------------------------------------------------------------------

def _value_table(n: int, value) -> np.ndarray:
    size = 1 << n
    if callable(value):
        table = np.empty(size)
        for mask in range(size):
            table[mask] = value(frozenset(i for i in range(n) if mask >> i & 1))
        table[0] = 0.0
        return table
    if isinstance(value, Mapping):
        table = np.zeros(size)
        for coalition, val in value.items():
            mask = sum(1 << i for i in coalition)
            table[mask] = val
        return table
    table = np.asarray(value, dtype=float)
    if table.shape != (size,):
        raise NucleolusError(f"value table must have 2**n = {size} entries, got {table.shape}")
    return table


def nucleolus(n: int, value: Callable[[frozenset], float] | Mapping | Sequence[float]) -> np.ndarray:
    """Nucleolus of an n-player TU game by the sequential LP method.

    Parameters
    ----------
    n : int
        Number of players, 0..n-1 (all 2^n coalitions are enumerated: n <= ~16).
    value : callable, mapping or array
        v(S): a function of a frozenset of players, a mapping frozenset -> value
        (missing coalitions are 0), or an array indexed by bitmask (bit i = player i).

    Returns
    -------
    numpy.ndarray
        The nucleolus (Schmeidler 1969) over the imputation set.

    References
    ----------
    Schmeidler, SIAM J. Appl. Math. 17 (1969); Kopelowitz, RM-31, Hebrew Univ.
    (1967); Maschler, Peleg & Shapley, Math. Oper. Res. 4 (1979).

    Examples
    --------
    >>> import numpy as np
    >>> v = {frozenset({0, 1}): 100.0, frozenset({0, 1, 2}): 100.0}
    >>> bool(np.allclose(nucleolus(3, v), [50.0, 50.0, 0.0]))
    True
    """
    if n < 1:
        raise NucleolusError("a game needs at least one player")
    table = _value_table(n, value)
    grand = float(table[(1 << n) - 1])
    lower = np.array([table[1 << i] for i in range(n)])
    if lower.sum() > grand + TOL * max(1.0, abs(grand)):
        raise NucleolusError("empty imputation set: sum of v({i}) exceeds v(N)")
    if n == 1:
        return np.array([grand])
    masks = list(range(1, (1 << n) - 1))
    return Stages(n, grand, lower, masks, table[1:-1]).solve()


def is_nucleolus(n: int, value, x: Sequence[float], tol: float = 1e-6) -> bool:
    """Kohlberg's criterion: is x the nucleolus (over imputations) of the game?

    x must be an imputation; then with D_0 = {i : x_i = v(i)} and B_1, B_2, ... the
    coalitions grouped by decreasing excess, x is the nucleolus iff for every k
    some weights y_S >= 1 on B_1 u ... u B_k and z_i >= 0 on D_0 give
    sum y_S 1_S + sum z_i e_i = mu 1_N (Kohlberg 1971; Peleg & Sudholter,
    *Introduction to the Theory of Cooperative Games*, 2nd ed., Sec. 5.2).
    Equivalently no direction improves the top excess levels without leaving
    the imputation set.  ``tol`` is relative to max(1, max |v|).
    """
    table = _value_table(n, value)
    x = np.asarray(x, dtype=float)
    scale = max(1.0, float(np.max(np.abs(table))))
    t = tol * scale
    lower = np.array([table[1 << i] for i in range(n)])
    if x.shape != (n,) or abs(x.sum() - table[-1]) > t or (x < lower - t).any():
        return False
    if n == 1:
        return True
    masks = np.arange(1, (1 << n) - 1)
    member = ((masks[:, None] >> np.arange(n)[None, :]) & 1).astype(float)
    excess = table[1:-1] - member @ x
    order = np.argsort(-excess, kind="stable")
    d0 = np.flatnonzero(x - lower <= t)
    k = 0
    while k < len(order):
        level = excess[order[k]]
        while k < len(order) and excess[order[k]] >= level - t:
            k += 1
        coll = member[order[:k]]
        nc, nz = len(coll), len(d0)
        # columns: y (nc), z (nz), mu
        A_eq = np.c_[coll.T, np.eye(n)[:, d0], -np.ones(n)]
        res = linprog(np.zeros(nc + nz + 1), A_eq=A_eq, b_eq=np.zeros(n),
                      bounds=[(1, None)] * nc + [(0, None)] * nz + [(None, None)],
                      method="highs")
        if res.status != 0:
            return False
        if np.linalg.matrix_rank(np.r_[coll, np.ones((1, n))]) == n:
            return True  # later coalitions lie in the span: weights can absorb them
    return True


# -- the trading game ---------------------------------------------------------------

def _pair_separator(w, m):
    """Exact separation for the assignment game: scan every positive pair at once.

    Only pairs and singletons are essential (Solymosi & Raghavan 1994), singletons
    are always in the working set, so the most violated coalitions are pairs:
    returns every violated pair outside the span, most violated first, at most
    2 (m + n) per call to keep the LPs small.
    """
    I, J = np.nonzero(w > 0)
    wv = w[I, J].astype(float)
    masks = np.array([(1 << i) | (1 << (m + j)) for i, j in zip(I.tolist(), J.tolist())],
                     dtype=object)
    limit = 2 * (w.shape[0] + w.shape[1])

    def separate(x, threshold, stages):
        excess = wv - x[I] - x[m + J]
        cand = np.flatnonzero(excess > threshold)
        if len(cand) == 0:
            return []
        proj = stages.basis[I[cand]] + stages.basis[m + J[cand]]
        cand = cand[2.0 - (proj ** 2).sum(axis=1) > 1e-9]
        return unfixed_first(cand[np.lexsort((cand, -excess[cand]))], masks, wv, stages, limit)

    return separate


def market_nucleolus(weights, buyer_caps, seller_caps) -> tuple[np.ndarray, np.ndarray]:
    """Nucleolus of the trading game: v(S) = best b-matching weight within S.

    Players are the m buyers then the n sellers.  The game first splits into the
    connected components of its positive pairs, each solved on its own (exact:
    :mod:`market.essential`).  Unit capacities give an assignment game, solved on
    singletons and positive buyer-seller pairs; unit capacities on one side give
    stars as the only essential coalitions, scanned explicitly while there are at
    most ``STAR_LIMIT``; otherwise constraint generation with an exact MILP
    separation.

    Returns
    -------
    (buyer_shares, seller_shares) : tuple of numpy.ndarray (float)

    References
    ----------
    Shapley & Shubik, Int. J. Game Theory 1 (1972); Solymosi & Raghavan, Int. J.
    Game Theory 23 (1994); Hallefjord, Helming & Joernsten, Int. J. Game Theory
    24 (1995); Huberman, LNCIS 28 (1980) (essential coalitions).
    """
    w = np.asarray(weights)
    if w.ndim != 2:
        raise NucleolusError(f"weights must be 2-D, got shape {w.shape}")
    w = w.astype(np.int64)
    bc = np.asarray(buyer_caps, dtype=np.int64)
    sc = np.asarray(seller_caps, dtype=np.int64)
    m, n = w.shape
    xb, xs = np.zeros(m), np.zeros(n)
    if m == 0 or n == 0:
        return xb, xs
    for B, T in market_components(w, bc, sc):
        xb[B], xs[T] = _connected_nucleolus(w[np.ix_(B, T)], bc[B], sc[T])
    return xb, xs


STAR_LIMIT = 200_000


def _connected_nucleolus(w, bc, sc) -> tuple[np.ndarray, np.ndarray]:
    """market_nucleolus of a market whose positive pairs form one connected graph.

    The level-0 stage's always-tight set comes from :mod:`market.core_hull`; if it
    pins x down alone (a one-point core) that point is the nucleolus, else the
    sequential LPs continue from it.
    """
    from market.matching import match
    m, n = w.shape
    N = m + n
    full = (1 << N) - 1
    unit = (bc <= 1).all() and (sc <= 1).all()
    one_sided = not unit and ((bc <= 1).all() or (sc <= 1).all())
    matched = match(w, bc, sc)         # the core's equalities and the seeds use it too
    grand = float(matched.total_weight)
    hull = core_equalities(w, bc, sc) if unit or one_sided else None
    if hull is None:
        hull = matching_equalities(w, bc, sc, matched.pairs)
    if hull is not None and _proper(hull, full):
        # the first stage's level is 0 (a proper coalition is tight in the whole
        # core) and its always-tight set is read off the optimal matchings
        rows, rhs = independent_rows(N, (full, grand), *hull)
        F, f = sp.csr_matrix(np.array(rows)), np.array(rhs)
        if len(rows) == N:          # the core is a single point: the nucleolus
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")     # a singular F is caught below
                x = spsolve(F.tocsc(), f)
            if np.isfinite(x).all() and np.abs(F @ x - f).max() <= TOL * max(1.0, grand):
                return x[:m], x[m:]
            hull = None             # rank misjudged (numerics): the plain cut loop
        else:
            hull = (rows, rhs, [mk for mk, _v in hull[0]])
    else:
        hull = None
    stars = star_coalitions(w, bc, sc, STAR_LIMIT) if one_sided else None
    I, J = np.nonzero(w > 0)
    if unit or one_sided:
        # working set: each player's 3 best pairs and the matched pairs; the
        # separator adds any other essential coalition the moment it is violated
        keep = np.zeros(w.shape, dtype=bool)
        for i in range(m):
            keep[i, np.argsort(-w[i], kind="stable")[:3]] = True
        for j in range(n):
            keep[np.argsort(-w[:, j], kind="stable")[:3], j] = True
        for i, j in matched.pairs:
            keep[i, j] = True
        I, J = np.nonzero(keep & (w > 0))
    masks = [1 << p for p in range(N)] + [(1 << i) | (1 << (m + j)) for i, j in zip(I.tolist(), J.tolist())]
    values = [0.0] * N + w[I, J].astype(float).tolist()
    if unit:
        separate = _pair_separator(w, m)
    elif stars is not None:
        separate = list_separator(stars[0], stars[1], N, 2 * N)
    elif one_sided:     # too many stars to list: search them at each separation
        separate = star_separator(w, bc, sc, 2 * N)
    else:
        separate = market_separator(w, bc, sc)
        seeds, seed_values = seed_coalitions(w, bc, sc, m, matched)
        masks += seeds
        values += seed_values
    stages = Stages(N, grand, np.zeros(N), masks, values, separate)
    if hull is not None:
        stages.settle_level_zero(*hull)
    if not (unit or one_sided):
        # in-out separation from a core point (level 0) and a cut pool: the LPs
        # hold only the coalitions that have mattered so far
        stages.use_pool(core_point(w, bc, sc), 0.0, 4 * N)
    x = stages.solve()
    return x[:m], x[m:]


def _proper(hull, full) -> bool:
    """Does the core's always-tight set hold a proper coalition (level 0)?"""
    stars, ties, fixed = hull
    return bool(ties or fixed or any(mask != full for mask, _v in stars))


def market_game_values(weights, buyer_caps, seller_caps) -> np.ndarray:
    """The trading game's characteristic function by enumeration: v(S) for every coalition.

    Bit i of the index is buyer i, bit m + j is seller j; v(S) is the best matching weight
    S reaches on its own (:func:`market.b_matching.b_matching_value`, equal to
    :func:`market.matching.match`'s total weight). There are 2^(m+n) coalitions, so
    this is for small games only: the input of the generic :func:`nucleolus`, against which
    :func:`market_nucleolus` is checked.
    """
    weights = np.asarray(weights, dtype=np.int64)
    buyer_caps = np.asarray(buyer_caps, dtype=np.int64)
    seller_caps = np.asarray(seller_caps, dtype=np.int64)
    m, n = weights.shape
    table = np.zeros(1 << (m + n))
    for mask in range(1, 1 << (m + n)):
        table[mask] = mask_value(weights, buyer_caps, seller_caps, mask)
    return table
