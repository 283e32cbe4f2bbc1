"""Constraint generation for the trading game with capacities above 1 on both sides.

Used by :func:`market.nucleolus.market_nucleolus` when neither the pair nor the star
family holds every essential coalition: a seeded working set
(:func:`seed_coalitions`, values by :func:`seed_value`) and an exact separation MILP
(:func:`market_separator`; Hallefjord, Helming & Joernsten, IJGT 24, 1995) that finds
the unsettled coalition of largest excess, and a core point (:func:`core_point`) from
which :meth:`market.sequential_lp.Stages.use_pool` starts its cut pool and certifies
each stage at the optimal-face point nearest to a feasible one.  Details:
docs/market.md, "Nucleolus".
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import LinearConstraint, linprog

from market.b_matching import b_matching_value
from market.highs import BMatchingLP, milp
from market.sequential_lp import NucleolusError, mask_bits, point_mask

__all__ = ["coalition_values", "core_point", "degree_rows", "market_separator", "mask_value",
           "seed_coalitions", "seed_value"]


def core_point(w, bc, sc) -> np.ndarray:
    """A core point of the trading game from the dual of the grand coalition's b-matching LP.

    The dual min sum_p b_p u_p + sum_e t_e, u_i + u_j + t_ij >= Q_ij (Q > 0), u, t >= 0
    has value v(N) (total unimodularity); paying x_p = b_p u_p + half of t_e for each
    pair e at p gives x(N) = v(N) and, for every coalition S, x(S) >= the same dual
    restricted to S >= v(S) by weak duality (Sotomayor 1992).  Buyers then sellers.
    """
    m, n = w.shape
    N = m + n
    I, J = np.nonzero(w > 0)
    E = len(I)
    e = np.arange(E)
    cover = sp.csr_matrix((np.ones(3 * E), (np.r_[e, e, e], np.r_[I, m + J, N + e])), shape=(E, N + E))
    cost = np.r_[np.asarray(bc, dtype=float), np.asarray(sc, dtype=float), np.ones(E)]
    res = linprog(cost, A_ub=-cover, b_ub=-w[I, J].astype(float), bounds=(0, None), method="highs")
    if res.status != 0:
        raise ValueError(f"b-matching dual LP failed: {res.message}")
    u, t = res.x[:N], res.x[N:]
    x = cost[:N] * u
    np.add.at(x, I, t / 2)
    np.add.at(x, m + J, t / 2)
    return x


# HiGHS settings for the separation MILP.  Its time goes into the root node, and there
# mostly into primal heuristics and reliability branching that these tiny models do not
# need: switching them off makes each MILP ~2x faster (bench figures in
# docs/performance.md).  They change the search only, never the optimum (gap 0).
_MILP_OPTIONS = {"mip_rel_gap": 0.0, "presolve": "off", "mip_heuristic_effort": 0.0,
                 "mip_pscost_minreliable": 0, "mip_heuristic_run_feasibility_jump": False,
                 "mip_heuristic_run_rins": False, "mip_heuristic_run_rens": False,
                 "mip_heuristic_run_root_reduced_cost": False, "mip_heuristic_run_zi_round": False,
                 "mip_heuristic_run_shifting": False}


def _milp(c, cons, integrality, width, cutoff, save=False):
    """The MILP min c.x over ``cons`` (``LinearConstraint``s) on [0, 1] bounds with the
    settings above, through ``highspy`` (:func:`market.highs.milp`), and ``cutoff``
    as HiGHS's objective bound: branches that cannot get below it are pruned (it is
    the separation threshold, see below)."""
    A = sp.vstack([sp.csr_matrix(con.A) for con in cons]).tocsc()
    lower = np.concatenate([np.broadcast_to(con.lb, (con.A.shape[0],)) for con in cons])
    upper = np.concatenate([np.broadcast_to(con.ub, (con.A.shape[0],)) for con in cons])
    if A.shape[1] != width:
        raise ValueError(f"MILP constraints have {A.shape[1]} columns, expected {width}")
    return milp(c, A, lower, upper, integrality, _MILP_OPTIONS, cutoff, save)


def degree_rows(w, bc, sc):
    """The b-matching-with-membership rows of the separation MILPs, and the pair weights.

    Columns are z_p (membership, players: buyers then sellers) then y_e (use of each
    positive pair e, in ``np.nonzero(w > 0)`` order); row p reads
    sum_{e at p} y_e - b_p z_p <= 0.  That also keeps y_e = 0 when an end is out (no
    link rows y_e <= z_p, which only slow HiGHS down here), and for fixed z the rest
    is a bipartite b-matching LP, totally unimodular, so max w.y - x.z over it is
    exactly max_S v(S) - x(S).  Returns (rows as CSR, weights of the pairs).
    """
    m, n = w.shape
    I, J = np.nonzero(w > 0)
    we = w[I, J].astype(float)
    E, N = len(I), m + n
    e = np.arange(E)
    deg = sp.csr_matrix((np.r_[np.ones(2 * E), -np.r_[bc, sc].astype(float)],
                         (np.r_[I, m + J, np.arange(N)], np.r_[N + e, N + e, np.arange(N)])),
                        shape=(N, N + E))
    return deg, we


def market_separator(w, bc, sc):
    """Exact separation: max over S of v(S) - x(S), v(S) a b-matching inside the MILP.

    Variables z_p in {0,1} (membership) and y_e in [0,1] (edge use), with
    sum_{e at p} y_e <= b_p z_p.  For fixed z the
    remaining LP is a bipartite b-matching, totally unimodular, so continuous y
    reach v(S) exactly; only z is integral.
    """
    m, n = w.shape
    deg, we = degree_rows(w, bc, sc)
    N, E = m + n, len(we)
    base = [LinearConstraint(deg, -np.inf, 0)]
    value_of = coalition_values(w, bc, sc, m)

    def solve(x, cons, extra, threshold, stages):
        """The most violated coalition as [(mask, v(S))], or [] if none beats the threshold.

        The threshold is HiGHS's objective cut-off (min x.z - w.y < -threshold): it
        prunes every branch that cannot beat it, since only "violated or not" matters
        (docs/performance.md: ~10 % less time per MILP).  When something beats it the
        MILP still runs to its optimum, the most violated coalition, where y is an
        optimal b-matching of S (else the objective would improve) whose weight is
        v(S) by total unimodularity.  When nothing does, the point HiGHS returns need
        not be optimal: its coalition stays in the cut pool (it tends to matter at
        the next stage) with its value computed exactly.
        """
        width = N + E + extra
        res = _milp(np.r_[x, -we, np.zeros(extra)], cons,
                    np.r_[np.ones(N), np.zeros(E), np.ones(extra)], width, -float(threshold),
                    save=True)
        if res.status == 2:         # infeasible below the cut-off: nothing is violated
            return []
        if res.status != 0:
            raise NucleolusError(f"separation MILP failed: {res.message}")
        mask = point_mask(res.x, N)
        if -res.fun <= threshold:
            stages.remember(mask, value_of(mask))
            return []
        found = [(mask, float(round(float(we @ res.x[N:N + E]))))]
        # HiGHS's earlier incumbents may beat the cut-off too (their y need not be an
        # optimal b-matching, so each value is an exact flow): more cuts per MILP
        # (21 players 28 -> 26 MILPs, 40 players ~95 -> 88)
        seen = {mask}
        for point in res.improving:
            other = point_mask(point, N)
            if other not in seen:
                seen.add(other)
                value = value_of(other)
                if value - float(x @ mask_bits(other, N)) > threshold:
                    found.append((other, value))
        return found

    def separate(x, threshold, stages):
        null = stages.null_basis()
        d = null.shape[1]
        if d == 0:
            return []
        if d == N - 1:
            # only the grand coalition is fixed: its span holds just {} and N
            size = np.r_[np.ones(N), np.zeros(E)][None, :]
            return solve(x, base + [LinearConstraint(size, 1, N - 1)], 0, threshold, stages)
        # S must leave the span of the fixed rows: s * (b_k . z) >= 1 for one chosen
        # (k, s), by binaries t_ks with big-M = sum |b_k| + 1 (b_k integral)
        big = np.abs(null).sum(axis=0) + 1
        signs = np.r_[np.ones(d), -np.ones(d)]
        B = np.c_[null, null].T * signs[:, None]            # (2d, N)
        M = np.r_[big, big].astype(float)
        pick = np.c_[B, np.zeros((2 * d, E)), -np.diag(M)]
        one = np.r_[np.zeros(N + E), np.ones(2 * d)][None, :]
        pad = lambda c: LinearConstraint(sp.hstack([c.A, sp.csr_matrix((c.A.shape[0], 2 * d))]),
                                         c.lb, c.ub)
        cons = [pad(c) for c in base] + [LinearConstraint(pick, 1 - M, np.inf),
                                         LinearConstraint(one, 1, 1)]
        return solve(x, cons, 2 * d, threshold, stages)

    return separate


# complements of two players are seeded up to this many players: each costs a min-cost
# flow, and beyond a few dozen players the cut loop finds the few that matter for less
# (40 players: 13.5 -> 11.7 s; 21 players: a few more MILPs without them)
PAIR_COMPLEMENTS_UP_TO = 24


def seed_coalitions(w, bc, sc, m) -> list[int]:
    """Likely-essential coalitions of a capacitated market, to start the working set.

    Constraint generation adds whatever else is needed, so the seeds only save
    separation rounds (each an MILP); the LPs take thousands of rows easily.
    Seeds: every player with cap >= 2 and two partners of positive weight (stars of
    three), the connected components of the optimal matching, and the complements
    of every single player, of every component and (up to
    ``PAIR_COMPLEMENTS_UP_TO`` players) of every two players.
    """
    from market.matching import match
    n = w.shape[1]
    N = m + n
    full = (1 << N) - 1
    pos = w > 0
    seeds = set()
    for i in range(m):
        if bc[i] >= 2:
            js = np.flatnonzero(pos[i]).tolist()
            seeds.update((1 << i) | (1 << (m + a)) | (1 << (m + b))
                         for k, a in enumerate(js) for b in js[k + 1:])
    for j in range(n):
        if sc[j] >= 2:
            is_ = np.flatnonzero(pos[:, j]).tolist()
            seeds.update((1 << (m + j)) | (1 << a) | (1 << b)
                         for k, a in enumerate(is_) for b in is_[k + 1:])
    partners: dict[int, list[int]] = {}
    for i, j in match(w, bc, sc).pairs:
        partners.setdefault(i, []).append(m + j)
        partners.setdefault(m + j, []).append(i)
    seen: set[int] = set()
    for start in sorted(partners):
        if start in seen:
            continue
        stack, comp = [start], 0
        seen.add(start)
        while stack:
            p = stack.pop()
            comp |= 1 << p
            for q in partners[p]:
                if q not in seen:
                    seen.add(q)
                    stack.append(q)
        seeds.update((comp, full ^ comp))
    seeds.update(full ^ (1 << p) for p in range(N))
    if N <= PAIR_COMPLEMENTS_UP_TO:
        seeds.update(full ^ (1 << p) ^ (1 << q) for p in range(N) for q in range(p + 1, N))
    return sorted(mk for mk in seeds if 0 < mk < full and bin(mk).count("1") > 2)


def coalition_values(w, bc, sc, m):
    """v(S) by bitmask for many coalitions of one market: :func:`seed_value`'s closed form
    for stars of three, else the warm-started b-matching LP (:class:`market.highs.BMatchingLP`,
    exact by total unimodularity; ~3x faster than a min-cost flow each)."""
    lp = BMatchingLP(w, bc, sc)

    def value(mask: int) -> float:
        if bin(mask).count("1") == 3:
            return seed_value(w, bc, sc, m, mask)
        return float(lp.value(mask))

    return value


def seed_value(w, bc, sc, m, mask) -> float:
    """v(S) of a seed: closed form for stars of three, else an exact b-matching value.

    Non-members get capacity 0, so the value is that of S alone
    (:func:`market.b_matching.b_matching_value`, integer min-cost flow).
    """
    n = w.shape[1]
    if bin(mask).count("1") == 3:
        members = [p for p in range(m + n) if mask >> p & 1]
        buyers = [p for p in members if p < m]
        sellers = [p - m for p in members if p >= m]
        centre_cap = bc[buyers[0]] if len(buyers) == 1 else sc[sellers[0]] if len(sellers) == 1 else 0
        if centre_cap >= 2:  # a star whose centre can trade with both leaves
            return float(sum(max(int(w[i, j]), 0) for i in buyers for j in sellers))
    return mask_value(w, bc, sc, mask)


def mask_value(w, bc, sc, mask) -> float:
    """v(S) for the coalition with bitmask ``mask`` (buyers then sellers), exactly: the
    b-matching with capacity 0 for non-members (:func:`market.b_matching.b_matching_value`,
    an integer min-cost flow)."""
    m, n = w.shape
    bits = mask_bits(mask, m + n)
    return float(b_matching_value(w, bc * bits[:m], sc * bits[m:]))
