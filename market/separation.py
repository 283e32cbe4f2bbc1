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

from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp
from scipy.optimize import LinearConstraint, linprog

from market.b_matching import b_matching_value
from market.exact_linalg import null_basis_by_elimination
from market.highs import BMatchingLP, FixedChargeLP, milp
from market.sequential_lp import NucleolusError, mask_bits, mask_members, point_mask

__all__ = ["coalition_values", "core_point", "degree_rows", "market_separator", "mask_value",
           "seed_coalitions", "seed_value", "span_parts", "split_search"]


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
    split = []          # the branch and bound's LP, made at its first use
    cached = [None, None, None]     # (stages, its number of fixed rows, span_parts)
    memo = {}                       # the last branch and bound's leaves (split_search)

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
        if cached[0] is not stages or cached[1] != len(stages.eq_rows):
            # the parts change only when rows are fixed (appended, one stage at a time)
            cached[:] = [stages, len(stages.eq_rows), span_parts(stages)]
        parts = cached[2]
        if parts is not None:
            if not split:
                split.append(FixedChargeLP(w, bc, sc))
            return split_search(split[0], x, threshold, parts, stages, memo)
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


# a part of the span (below) that is not one block is described by its memberships
# inside L, found by meeting in the middle (2^(k/2) partial sums each side), for up to
# this many players and this many memberships (the separation's cases are then the
# subcubes around them, ~2-4 per membership); a part beyond either by its null basis
PARTS_UP_TO = 24
INSIDE_UP_TO = 16
# a separation call stops once it has found this many violated coalitions per player
# (split_search): a few cuts per round, not thousands of them, far below a stage's
# level (the seed-11 40-player draw 22,296 -> 13,126 node LPs, the quick benchmark's
# 40-player market 10,613 -> 5,905; 0.1 and 0.5 per player did about as well)
MOST_FOUND_PER_PLAYER = 0.25


def span_parts(stages) -> list[tuple[int, str, list | None]] | None:
    """The fixed rows' span L as a direct sum over disjoint groups of players, each
    group C with what it takes for a coalition to leave L's part on C.

    A coalition S lies in L iff each part S n C lies in L's part on C, so S leaves L iff
    it leaves one part.  Returns, in order of the groups' lowest player and without
    singletons (they cannot be split), (C as a bitmask, kind, data):

    * ("block", None) -- L's part on C is spanned by the indicator of C, so S leaves
      it iff S splits C (some members in, some out);
    * ("inside", the subsets of C inside L as bitmasks, the empty one included) --
      for a group of at most ``PARTS_UP_TO`` players with at most
      ``INSIDE_UP_TO`` such subsets;
    * ("null", integer vectors b over C's members, in member order, the sparsest
      first) -- any other group: S leaves the part iff b . 1_(S n C) != 0 for one of
      them (they are the integer null basis on C).

    None only if the exact checks below fail (numerics): the caller solves the MILP.

    The groups are the connected pieces of the orthogonal projection P onto L (it is
    block-diagonal over them), found in floats and then checked exactly: each part's
    dimension is at least that of the vectors it is known to hold -- 1 for a block,
    whose indicator is checked against the integer null basis (P is 1/|C| all over a
    block), and for any other group |C| minus the rank of the null basis on C, by
    exact elimination -- and these add up to L's; as the parts' dimensions can add up
    to at most L's, each is then exact and L is their direct sum.
    """
    n = stages.n
    Q = stages.basis
    P = Q @ Q.T
    linked = np.abs(P) > 1e-6
    null = stages.null_basis()
    group = [-1] * n
    parts, dim = [], 0
    for start in range(n):
        if group[start] >= 0:
            continue
        group[start] = start
        stack, members = [start], [start]
        while stack:
            p = stack.pop()
            for q in np.flatnonzero(linked[p]).tolist():
                if group[q] < 0:
                    group[q] = start
                    stack.append(q)
                    members.append(q)
        members.sort()
        rows = null[members]                    # integers, |C| x d
        mask = sum(1 << p for p in members)
        block = P[members[0], members[0]] if len(members) == 1 else P[np.ix_(members, members)]
        if (np.abs(block - 1.0 / len(members)) <= 1e-6).all():
            if rows.sum(axis=0).any():          # the indicator is not in L after all
                return None
            dim += 1
            if len(members) > 1:
                parts.append((mask, "block", None))     # S leaves it iff S splits it
            continue
        # dim of L's part on C: the v on C with rows.T v = 0, exactly
        dim += null_basis_by_elimination(rows.T, len(members)).shape[1]
        inside = _zero_sums(rows) if len(members) <= PARTS_UP_TO else None
        if inside is not None and len(inside) <= INSIDE_UP_TO:
            parts.append((mask, "inside", [sum(1 << members[k] for k in range(len(members)) if code >> k & 1)
                                           for code in inside]))
        else:   # the null basis on C, each distinct nonzero column once
            columns = {tuple(col) for col in rows.T.tolist() if any(col)}
            # sparsest first: the first cases then say b . z != 0 for b like e_p - e_q,
            # which the LP holds as tightly as fixings, and the dense vectors come last,
            # under those as equalities (the quick benchmark's 40-player market: 21,664
            # -> 15,858 node LPs)
            parts.append((mask, "null", sorted(columns, key=lambda col: (sum(map(abs, col)), col))))
    return parts if dim == Q.shape[1] else None


def _zero_sums(rows) -> list[int]:
    """The 0/1 vectors v (as codes: bit k = v_k) with rows.T v = 0, exactly (integer
    rows, k x d): the partial sums of the first half's 2^(k/2) choices are matched
    against the negated sums of the second half's, in sorted order."""
    k = len(rows)
    half = k // 2

    def sums(part):
        codes = np.arange(1 << len(part), dtype=np.int64)
        bits = (codes[:, None] >> np.arange(len(part))) & 1
        return codes, bits @ np.asarray(part, dtype=np.int64)

    low_codes, low = sums(rows[:half])
    high_codes, high = sums(rows[half:])
    by_sum: dict[bytes, list[int]] = {}
    for code, total in zip(low_codes.tolist(), low):
        by_sum.setdefault(total.tobytes(), []).append(code)
    found = []
    for code, total in zip(high_codes.tolist(), -high):
        for low_code in by_sum.get(total.tobytes(), ()):
            found.append(low_code | code << half)
    return sorted(found)


def split_search(lp, x, threshold, parts, stages, memo=None):
    """Exact separation, max v(S) - x(S) over S outside the fixed rows' span L, by a
    branch and bound over the memberships, given L's parts (:func:`span_parts`).

    S leaves L iff it leaves one part, which splits the search into disjoint cases
    per part (:func:`_cases`), each kept for its whole subtree:

    * a block p_1 < ... < p_s: S splits it iff the first member that differs from p_1
      is some p_j, so 2(s - 1) cases of fixings only (p_1..p_(j-1) in and p_j out, or
      the reverse), which the LP bounds more tightly than one count row would;
    * a part listed by its memberships inside L: the subcubes of fixings that cover
      every other membership of the part (:func:`_subcubes`);
    * a part given by its null basis b_1..b_d: 2d cases, rows b_i . z = 0 for i < j
      and b_j . z >= 1 (or <= -1).

    Each node solves :class:`market.highs.FixedChargeLP`; its value bounds every
    coalition below it, so a node that cannot beat the threshold is pruned, and a
    node whose memberships come out 0/1 is the best coalition below it (outside L by
    its case), its value v(S) read off the relaxation exactly
    (:meth:`market.highs.FixedChargeLP.solve`).  The cases go one after another,
    the one with the best start first; each depth first from its starts, branching on
    the membership of largest (x_p + 1) times its distance to 0/1 -- in a null basis's
    case divided by 1 + |b_p| of the case's vector b (found by trial: the seven heaviest
    of 70 40-player draws 35 % fewer node LPs, paper-sized rounds the same) -- the side
    it leans to first (the fewest nodes of the rules tried, docs/performance.md).  Nodes are
    pruned at the threshold, so a call that finds nothing has proved that nothing
    beats it.  A call stops once it has found ``MOST_FOUND_PER_PLAYER`` violated
    coalitions per player: far below a stage's level (its first rounds on some
    40-player markets) thousands beat the threshold, and the sequential LPs need
    only some of them per round -- not the most violated -- to move on.  Every box
    still open then stays a leaf for the next call, bounded by its parent's LP
    (:func:`_open`).  Returns the coalitions found, the most violated first, as
    :func:`market_separator` does; when there is none, the best coalition seen
    stays in the cut pool.

    ``memo`` (a dict the caller keeps between calls on one :class:`Stages`) holds
    each case's leaves from the last call that had the case: such a case starts from
    them, not its root (the leaves' boxes cover it), and a leaf is solved only if
    its bound, moved to this x by its LP's reduced costs (:func:`_last_leaves`), may
    still beat the threshold, and then only if the duals its LP's basis gives at this
    x do not rule that out (:meth:`market.highs.FixedChargeLP.bound_from`: exact
    where the basis is still optimal, as for about 70 % of such leaves on paper-sized
    rounds).  A new case starts from its root; new roots go best bound first.
    """
    N = stages.n
    lp.costs(x)
    # bounds compared with an LP objective: HiGHS's tolerances are 1e-10, so a node
    # within this much of the threshold is still searched
    slack = 1e-9 * max(1.0, float(np.abs(x).sum()))
    floor = float(threshold) - slack
    found, seen = {}, set()
    found_count, most = 0, MOST_FOUND_PER_PLAYER * N    # the call stops at `most` found
    below = None                    # (excess, mask, value) of the best coalition not above it
    cost = np.maximum(x, 0.0) + 1.0   # branching weights

    # the cases, each started from the last call's leaves where that call had the
    # same case (:func:`_last_leaves`), else from its root
    starts, leaves = [], []
    last = memo.get("leaves", {}) if memo and memo["stages"] is stages else {}
    dx = x - memo["x"] if last else None
    if memo is not None and memo.get("parts") is parts:
        cases = memo["cases"]       # a stage's cases, made at its first call
    else:
        cases = list(_cases(lp, parts, N))
    for key, lo, hi, case in cases:
        if key in last:
            above, kept = _last_leaves(last[key], dx, floor)
            row_bounds = lp.row_bounds(case) if above else None
            for leaf in above:
                # bounded again by its basis's duals at this x, before any LP
                again = lp.bound_from(leaf[5], leaf[3], leaf[4], row_bounds)
                if again is not None and -again[0] < leaf[0]:
                    leaf = _leaf_of(-again[0], again[1], *leaf[3:])
                if leaf[0] <= floor:
                    kept.append(leaf)
                else:
                    starts.append((leaf[0], leaf[3], leaf[4], key, case, None, leaf))
            leaves += [(key, case, leaf) for leaf in kept]
            continue
        with _bounded(lp, case):
            node = lp.solve(lo, hi)
        if node is not None and -node[0] > floor:
            starts.append((-node[0], lo, hi, key, case, node, None))
        else:
            leaves.append((key, case, _leaf(node, lo, hi)))

    # the cases one after another, the one with the best start first, each depth
    # first from its starts (best first); once `most` are found the call stops, and
    # every open box stays a leaf, bounded by its own LP or its parent's (:func:`_open`)
    groups: dict = {}
    for bound, lo, hi, key, case, node, leaf in starts:
        groups.setdefault(key, (case, []))[1].append((bound, lo, hi, node, leaf))
    for key, (case, stack) in sorted(groups.items(), key=lambda kv: -max(box[0] for box in kv[1][1])):
        stack.sort(key=lambda box: box[0])      # the best start is popped first
        weight = cost if key[1] != "null" else cost / (1.0 + np.abs(_spread(key[0], key[2][-1], N)))
        with _bounded(lp, case):
            while stack:
                if found_count >= most:
                    leaves += [(key, case, _open(*box[1:])) for box in stack]
                    break
                _, lo, hi, node, parent = stack.pop()
                if node is None:
                    node = lp.solve(lo, hi)
                if node is None or -node[0] <= floor:
                    leaves.append((key, case, _leaf(node, lo, hi)))
                    continue
                z = node[1]
                far = np.abs(z - np.round(z))
                if far.max() <= 1e-9:
                    leaves.append((key, case, _leaf(node, lo, hi)))
                    mask = point_mask(z, N)
                    if mask in seen:
                        continue
                    seen.add(mask)
                    value = float(round(node[2]))   # v(S): see FixedChargeLP.solve
                    excess = value - float(x @ mask_bits(mask, N))
                    if excess > threshold:
                        found[mask] = (excess, value)
                        found_count += 1
                    elif below is None or excess > below[0]:
                        below = (excess, mask, value)
                    continue
                # the costliest fractional membership (fractional even where x_p <= 0)
                k = int(np.argmax(np.where(far > 1e-9, far * weight, -1.0)))
                out_hi, in_lo = hi.copy(), lo.copy()
                out_hi[k], in_lo[k] = 0.0, 1.0
                parent = _leaf(node, lo, hi)
                inside, outside = (-node[0], in_lo, hi, None, parent), (-node[0], lo, out_hi, None, parent)
                # the side it leans to is searched first (popped last)
                stack += [outside, inside] if z[k] >= 0.5 else [inside, outside]
    if memo is not None:
        by_case = {}
        for key, _case, leaf in leaves:
            by_case.setdefault(key, []).append(leaf)
        memo.update(stages=stages, x=np.array(x, dtype=float), leaves=by_case, parts=parts, cases=cases)
    if not found:
        if below is not None:
            stages.remember(below[1], below[2])
        return []
    order = sorted(found, key=lambda mk: (-found[mk][0], mk))
    return [(mk, found[mk][1]) for mk in order]


def _leaf(node, lo, hi):
    """A leaf of the branch and bound, kept for the next call: (a bound on the best
    excess in its box, the reduced costs d of z at its LP's optimum or None, h(d) over
    the box (:func:`_last_leaves`), lo, hi, the LP's optimal basis or None); ``node``
    None: an infeasible box."""
    if node is None:
        return -np.inf, None, 0.0, lo, hi, None
    return _leaf_of(-node[0], node[3], lo, hi, node[4])


def _leaf_of(bound, d, lo, hi, basis):
    """The leaf with this bound, reduced costs d of z and basis (:func:`_leaf`)."""
    return bound, d, _h(d, lo, hi), lo, hi, basis


def _spread(part: int, vector, N: int) -> np.ndarray:
    """A vector over a part's members (in member order) as a vector over all N players."""
    out = np.zeros(N)
    out[np.flatnonzero(mask_bits(part, N))] = vector
    return out


def _open(lo, hi, node, parent):
    """An open box of the branch and bound kept as a leaf: its own LP's if solved, else
    its parent's bound over it (the parent's duals bound any box inside its own)."""
    if node is not None:
        return _leaf(node, lo, hi)
    bound, d, h, _, _, basis = parent
    return _leaf_of(bound + h - _h(d, lo, hi), d, lo, hi, basis)


def _h(d, lo, hi) -> float:
    """h(d) = sum_p min(d_p lo_p, d_p hi_p): the reduced costs' least value over the box."""
    return float(np.minimum(d * lo, d * hi).sum())


def _last_leaves(leaves, dx, floor):
    """A case's leaves from the last call, re-bounded after x moved by ``dx``: those
    whose bound may now beat ``floor``, and the others.

    The leaves' boxes cover the case's coalitions.  A leaf's bound follows x by
    Lagrangian duality: its LP's optimal duals stay feasible when only the costs of z
    change (:meth:`market.highs.FixedChargeLP.solve`), so with its reduced costs d and
    h(d) = sum_p min(d_p lo_p, d_p hi_p) the bound falls by h(d + dx) - h(d).
    """
    above, kept = [], []
    for bound, d, h, lo, hi, basis in leaves:
        if d is not None:
            d = d + dx
            moved = _h(d, lo, hi)
            bound -= moved - h
            h = moved
        (above if bound > floor else kept).append((bound, d, h, lo, hi, basis))
    return above, kept


@contextmanager
def _bounded(lp, case):
    """A case's rows of ``lp`` bounded inside the block (a case: None, the bounds alone,
    or (rows, their lower, upper bounds)), free again after it."""
    if case is None:
        yield
        return
    lp.bound_rows(*case)
    try:
        yield
    finally:
        k = len(case[0])
        lp.bound_rows(case[0], np.full(k, -np.inf), np.full(k, np.inf))


def _subcubes(members, inside):
    """Disjoint subcubes covering the memberships of ``members`` (players) that are
    not in ``inside`` (bitmasks), each as (players fixed in, players fixed out): a
    decision tree that splits on the member where ``inside`` is most one-sided, so
    that a side without any of them closes early as one large subcube."""
    if not inside:
        return [([], [])]
    if not members:
        return []
    counts = [sum(q >> p & 1 for q in inside) for p in members]
    k = max(range(len(members)), key=lambda i: (abs(2 * counts[i] - len(inside)), -i))
    p, rest = members[k], members[:k] + members[k + 1:]
    cubes = []
    for side in (0, 1):
        for ins, outs in _subcubes(rest, [q for q in inside if (q >> p & 1) == side]):
            cubes.append(((ins + [p], outs) if side else (ins, outs + [p])))
    return cubes


def _cases(lp, parts, N):
    """The disjoint cases of S leaving the span (see :func:`split_search`), as (a key
    naming the case by its part, z lower bounds, z upper bounds, None or (rows of
    ``lp``, their lower, upper bounds)).  Equal keys in two calls mean the same case,
    whatever else the span gained in between."""
    for part, kind, data in parts:
        members = np.flatnonzero(mask_bits(part, N))
        if kind == "block":
            # p_1..p_j the same way (in, or out) and p_(j+1) the other: S splits the block
            for into in (1.0, 0.0):
                for j in range(1, len(members)):
                    lo, hi = np.zeros(N), np.ones(N)
                    lo[members[:j]] = hi[members[:j]] = into
                    lo[members[j]] = hi[members[j]] = 1.0 - into
                    yield (part, "chain", into, j), lo, hi, None
        elif kind == "inside":
            for j, (ins, outs) in enumerate(_subcubes(members.tolist(), data)):
                lo, hi = np.zeros(N), np.ones(N)
                lo[ins] = 1.0
                hi[outs] = 0.0
                yield (part, kind, tuple(data), j), lo, hi, None
        else:
            # b_1 . z = ... = b_(j-1) . z = 0 and b_j . z >= 1 (or <= -1), for each j:
            # disjoint cases, as the first b that does not vanish on 1_(S n C) is one of them
            index = lp.rows([(members, b) for b in data])
            for j in range(len(data)):
                for sign in (1.0, -1.0):
                    lower, upper = np.zeros(j + 1), np.zeros(j + 1)
                    lower[j], upper[j] = (1.0, np.inf) if sign > 0 else (-np.inf, -1.0)
                    key = (part, kind, tuple(map(tuple, data[:j + 1])), sign)
                    yield key, np.zeros(N), np.ones(N), (index[:j + 1], lower, upper)


def seed_coalitions(w, bc, sc, m, matched=None) -> tuple[list[int], list[float]]:
    """Likely-essential coalitions of a capacitated market, to start the working set,
    and their values: (masks, v of each).

    Constraint generation adds whatever else is needed, so the seeds only save
    separation rounds; the LPs take thousands of rows easily.  Seeds: every player
    with cap >= 2 and two partners of positive weight (stars of three, valued in
    closed form: the centre trades with both leaves), the connected components of the
    optimal matching, and the complements of every single player and of every
    component (valued by :func:`coalition_values`).
    ``matched``: the market's optimal matching (:func:`market.matching.match`), if the
    caller has it.  (Complements of two players saved a few rounds when a round was
    an MILP; with the branch and bound their 210 values at 21 players cost more than
    the rounds they save.)
    """
    from market.matching import match
    if matched is None:
        matched = match(w, bc, sc)
    value_of = coalition_values(w, bc, sc, m)
    n = w.shape[1]
    N = m + n
    full = (1 << N) - 1
    pos = w > 0
    stars: dict[int, float] = {}
    for i in range(m):
        if bc[i] >= 2:
            js = np.flatnonzero(pos[i]).tolist()
            gain = w[i].tolist()
            stars.update(((1 << i) | (1 << (m + a)) | (1 << (m + b)), float(gain[a] + gain[b]))
                         for k, a in enumerate(js) for b in js[k + 1:])
    for j in range(n):
        if sc[j] >= 2:
            is_ = np.flatnonzero(pos[:, j]).tolist()
            gain = w[:, j].tolist()
            stars.update(((1 << (m + j)) | (1 << a) | (1 << b), float(gain[a] + gain[b]))
                         for k, a in enumerate(is_) for b in is_[k + 1:])
    partners: dict[int, list[int]] = {}
    for i, j in matched.pairs:
        partners.setdefault(i, []).append(m + j)
        partners.setdefault(m + j, []).append(i)
    seen: set[int] = set()
    others = set()
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
        others.update((comp, full ^ comp))
    others.update(full ^ (1 << p) for p in range(N))
    masks = sorted(mk for mk in stars.keys() | others if 0 < mk < full and bin(mk).count("1") > 2)
    return masks, [stars[mk] if mk in stars else value_of(mk) for mk in masks]


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
    if bin(mask).count("1") == 3:
        members = list(mask_members(mask))
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
