"""Kohlberg's criterion for a capacitated market's nucleolus, certified by one MILP.

:func:`market.nucleolus.is_nucleolus` checks a point against every coalition, so it
stops at ~16 players.  :func:`certify_market_nucleolus` checks the same criterion for
the trading game of any size from a *pool* of coalitions (e.g. those the sequential
LPs used) and two MILPs over all the others, without listing them.

The criterion (Kohlberg 1971, in the form for imputations; Peleg & Sudhoelter 2007,
Sec. 5.2): an imputation x is the nucleolus iff for every t the collection
B(t) = {S : e(S, x) >= t} (not empty, not N) is balanced relative to
D0 = {i : x_i = v(i)}: weights y_S >= 1 on B(t), z_i >= 0 on D0 and some mu give
sum y_S 1_S + sum z_i e_i = mu 1_N.  Two facts split it into a part about the pool P
and a part about everything outside it (proofs in docs/market.md, "Certifying a
point"):

1. If D is balanced and 1_S lies in span(D u {N}), then D u {S} is balanced
   (scale the weights of D up and subtract the expansion of 1_S).
2. Sort P by decreasing excess at x and keep, greedily, the rows that raise the rank
   (the grand coalition first): a basis r_1 = 1_N, r_2, ..., r_n of R^n in which
   r_k has level l_k = e(r_k, x) and the rows of level >= t span every coalition of
   P with excess >= t.  With b_k the dual basis (b_k . r_j = 0 for j != k), 1_S lies
   in the span of the rows of level >= e(S, x) iff b_k . 1_S = 0 for every k with
   l_k < e(S, x).

So x is the nucleolus if (a) the pool's collections B_P(t) are balanced (one LP per
level, until they span R^n), (b) no coalition has excess above the top level l_max
(an MILP without span condition: max_S v(S) - x(S), a b-matching with membership
costs), and (c) no coalition S and k with b_k . 1_S != 0 have e(S, x) > l_k:
one MILP, max e(S, x) - l_k over S and a chosen (k, sign) with sign * b_k . z >= 1
(b_k integral, so "!= 0" is this disjunction, written with big-M binaries as in
:func:`market.separation.market_separator`).  (b) and (c) put every coalition
outside the pool into the span of pool coalitions of at least its excess, and by
fact 1 the full game's B(t) are then balanced.  The check is sufficient, not
necessary: with a pool too small for (a) it answers "not certified" without a
verdict on x; the coalitions that break (b) or (c) are returned, and adding them to
the pool is what a solver would do next.

Numerics: excesses within ``TOL`` x scale are equal, as in the sequential LPs; the
dual basis is integral and checked exactly (R B = D diagonal, in integers).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import LinearConstraint, linprog

from market.b_matching import b_matching_value
from market.separation import _milp, degree_rows, mask_value
from market.exact_linalg import extend_basis, integer_dual_basis
from market.sequential_lp import TOL, NucleolusError, point_mask, rows_matrix

__all__ = ["KohlbergCertificate", "certify_market_nucleolus", "flag_basis"]


@dataclass(frozen=True, slots=True)
class KohlbergCertificate:
    """Outcome of :func:`certify_market_nucleolus`.

    ``certified`` is True only when Kohlberg's criterion holds for the whole game;
    ``violators`` are coalitions (bitmasks, buyers then sellers) outside the pool that
    break (b) or (c); ``unbalanced_level`` is the first pool level whose collection
    is not balanced (None if all are); ``levels`` counts the pool levels whose
    balancedness LP ran (0 when a violator was found first).
    """

    certified: bool
    violators: tuple[int, ...]
    unbalanced_level: float | None
    levels: int


def flag_basis(masks, excess, n: int, tol: float = 1e-9):
    """Rows r_1 = 1_N, r_2, ... chosen greedily from ``masks`` by decreasing excess.

    Ties go to the smaller mask.  Returns (chosen masks, their levels): the rows of
    level >= t span every coalition of ``masks`` with excess >= t (a row is skipped
    only when it lies in the span of rows of at least its excess).  The rank test
    is a float projection; :func:`market.exact_linalg.integer_dual_basis` then checks the
    result exactly.
    """
    order = sorted(range(len(masks)), key=lambda k: (-excess[k], masks[k]))
    chosen, levels = [(1 << n) - 1], [np.inf]
    basis = np.ones((n, 1)) / np.sqrt(n)
    A = rows_matrix([masks[k] for k in order], n).toarray()
    for k, row in zip(order, A):
        extended = extend_basis(basis, row, tol)
        if extended is not None:
            basis = extended
            chosen.append(masks[k])
            levels.append(float(excess[k]))
            if len(chosen) == n:
                break
    return chosen, np.array(levels)


def _pool_is_balanced(member, excess, lower_hit, levels, t):
    """Kohlberg's LP for each pool level until the collection spans R^n.

    Returns (the first level whose collection is not balanced or None, levels checked)."""
    n = member.shape[1]
    d0 = np.flatnonzero(lower_hit)
    for count, level in enumerate(levels, 1):
        coll = member[excess >= level - t]
        nc, nz = len(coll), len(d0)
        A_eq = np.c_[coll.T, np.eye(n)[:, d0], -np.ones(n)]
        res = linprog(np.zeros(nc + nz + 1), A_eq=A_eq, b_eq=np.zeros(n),
                      bounds=[(1, None)] * nc + [(0, None)] * nz + [(None, None)], method="highs")
        if res.status != 0:
            return level, count
        if np.linalg.matrix_rank(np.r_[coll, np.ones((1, n))]) == n:
            return None, count
    return None, len(levels)


def _coalitions(res, n: int) -> list[int]:
    return [point_mask(res.x, n)]


def certify_market_nucleolus(weights, buyer_caps, seller_caps, x, coalitions) -> KohlbergCertificate:
    """Is x the nucleolus of the trading game?  Kohlberg's criterion from a pool.

    Parameters
    ----------
    weights, buyer_caps, seller_caps
        The market, as for :func:`market.nucleolus.market_nucleolus`.
    x : array
        The point, buyers then sellers (value units).
    coalitions : iterable of int
        The pool (bitmasks, bit p = player p); every singleton is added.  Values are
        computed here (exact min-cost flows), not taken from the caller.

    Returns
    -------
    KohlbergCertificate
        certified only if the criterion holds for all 2^n coalitions (see the
        module docstring; sufficient, not necessary).

    References
    ----------
    Kohlberg, SIAM J. Appl. Math. 20 (1971); Peleg & Sudhoelter, Introduction to the
    Theory of Cooperative Games, 2nd ed. (2007), Sec. 5.2.
    """
    w = np.asarray(weights, dtype=np.int64)
    bc = np.asarray(buyer_caps, dtype=np.int64)
    sc = np.asarray(seller_caps, dtype=np.int64)
    m, nb = w.shape
    n = m + nb
    full = (1 << n) - 1
    x = np.asarray(x, dtype=float)
    grand = float(b_matching_value(w, bc, sc))
    scale = max(1.0, grand)
    t = TOL * scale
    if x.shape != (n,) or abs(x.sum() - grand) > t or (x < -t).any():
        return KohlbergCertificate(False, (), None, 0)
    pool = sorted({int(c) for c in coalitions if 0 < int(c) < full} | {1 << p for p in range(n)})
    values = []
    for mask in pool:
        values.append(mask_value(w, bc, sc, mask))
    member = rows_matrix(pool, n)
    excess = np.array(values) - member @ x
    chosen, lev = flag_basis(pool, excess, n)
    if len(chosen) < n:         # the pool (and N) do not span R^n: nothing to certify with
        return KohlbergCertificate(False, (), None, 0)
    levels = sorted({float(e) for e in excess}, reverse=True)
    distinct = [lv for k, lv in enumerate(levels) if k == 0 or levels[k - 1] - lv > t]
    top = float(excess.max())
    deg, we = degree_rows(w, bc, sc)
    E = len(we)
    violators = []
    # (b) nothing above the top level: the MILP without span condition (but neither
    # the empty coalition nor N, whose excess 0 is no coalition's in Kohlberg's B(t))
    size = LinearConstraint(np.r_[np.ones(n), np.zeros(E)][None, :], 1, n - 1)
    res = _milp(np.r_[x, -we], [LinearConstraint(deg, -np.inf, 0), size],
                np.r_[np.ones(n), np.zeros(E)], n + E, -(top + t))
    if res.status == 0 and -res.fun > top + t:
        violators += _coalitions(res, n)
    elif res.status not in (0, 2):
        raise NucleolusError(f"certificate MILP failed: {res.message}")
    # (c) every coalition in the span of the pool rows of at least its excess
    B = integer_dual_basis(rows_matrix(chosen, n).toarray())
    ks = [k for k in range(n) if lev[k] < top - t]
    if ks:
        d = len(ks)
        Bk = B[:, ks].T.astype(float)
        big = np.abs(Bk).sum(axis=1) + 1
        M = np.r_[big, big]
        pick = np.c_[np.r_[Bk, -Bk], np.zeros((2 * d, E)), -np.diag(M)]
        one = np.r_[np.zeros(n + E), np.ones(2 * d)][None, :]
        cons = [LinearConstraint(sp.hstack([deg, sp.csr_matrix((n, 2 * d))]).tocsr(), -np.inf, 0),
                LinearConstraint(pick, 1 - M, np.inf), LinearConstraint(one, 1, 1)]
        cost = np.r_[x, -we, lev[ks], lev[ks]]
        res = _milp(cost, cons, np.r_[np.ones(n), np.zeros(E), np.ones(2 * d)], n + E + 2 * d, -t)
        if res.status == 0 and -res.fun > t:
            violators += _coalitions(res, n)
        elif res.status not in (0, 2):
            raise NucleolusError(f"certificate MILP failed: {res.message}")
    violators = sorted(set(violators))
    if set(violators) & set(pool) or {0, full} & set(violators):
        # a pool coalition lies in the span of rows of at least its excess by
        # construction: an MILP answer among them means the numerics broke
        raise NucleolusError("certificate MILP returned a pool coalition (numerics)")
    if violators:
        return KohlbergCertificate(False, tuple(violators), None, 0)
    unbalanced, checked = _pool_is_balanced(member.toarray(), excess, x <= t, distinct, t)
    return KohlbergCertificate(unbalanced is None, (), unbalanced, checked)
