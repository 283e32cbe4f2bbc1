"""Which coalitions decide the trading game's nucleolus, and where the game splits.

Two exact reductions used by :func:`market.nucleolus.market_nucleolus`.

**Essential coalitions** (Huberman 1980).  A coalition S is *inessential* if some
partition S_1, ..., S_k (k >= 2) of S has v(S) <= v(S_1) + ... + v(S_k).  When the
core is non-empty the nucleolus is determined by the essential coalitions alone:
the sequential LPs over them give the same point (Huberman, "The nucleolus and the
essential coalitions", LNCIS 28, 1980; Granot, Granot & Zhu, IJGT 27, 1998, Sec. 2).
The trading game's core is never empty: the optimal dual (u, v, z) of the b-matching
LP of the grand coalition, paid as x_p = b_p u_p plus z_e to one end of each edge,
covers every coalition by weak duality (Sotomayor 1992, multiple-partners game).
In the trading game v(S) is the weight of an optimal b-matching M of S, which splits
into the connected components of M and the players M leaves alone, so S is
inessential unless M is connected and covers S.  If every buyer (or every seller)
has capacity 1, a connected b-matching is a *star*: one centre of capacity b with
at most b partners.  So with one side of unit capacity the essential coalitions
are the singletons and the stars {c} + P with 1 <= |P| <= b_c and every pair
c-p of positive weight (a partner of zero weight could leave at no loss), and
v({c} + P) = sum of those weights.  (Unit capacities on both sides: pairs, the
Shapley-Shubik case.)

**Split into independent markets.**  If the graph of positive-weight pairs (among
players of positive capacity) has several connected components N_1, ..., N_K,
then v(S) = sum_k v(S & N_k), and the nucleolus is the concatenation of the
components' nucleoli; players without a positive pair get 0.  Proof, by
Kohlberg's criterion (Kohlberg 1971; Peleg & Sudholter 2007, Thm 5.1.6, in the
form for the imputation set): let x = (x_1, ..., x_K) with x_k the nucleolus of
v_k.  Each v_k has a non-empty core (above), so x_k is in it, every component
excess e_k(T) <= 0, and e(S) = sum_k e_k(S & N_k) with e_k of the empty set and
of N_k equal to 0.  Fix a level t <= 0 and let D = {S : e(S) >= t}; every proper
non-empty part S & N_k of a member lies in D_k = {T : e_k(T) >= t}, since the
other terms are <= 0.  By the criterion for each v_k there are weights
lambda_T > 0 on D_k and z >= 0 on the players at their lower bound summing to
mu_k 1_{N_k}; N_k itself is in D (excess 0), so adding multiples of 1_{N_k}
equalises the mu_k.  Each S in D then gets weight epsilon by taking epsilon off
each part S & N_k (proper parts from the component's weights, N_k parts from the
added multiple of 1_{N_k}) and adding epsilon 1_{N_k} for each component S
misses; the sum still equals mu 1_N with every weight positive.  So D is balanced
relative to the players at their bound for every t, and x is the nucleolus.
"""
from __future__ import annotations

import heapq
from itertools import combinations
from math import comb

import numpy as np
from scipy.sparse.csgraph import connected_components
import scipy.sparse as sp

from market.sequential_lp import rows_matrix

__all__ = ["market_components", "star_coalitions", "list_separator", "star_separator", "unfixed_first"]


def market_components(w, bc, sc) -> list[tuple[np.ndarray, np.ndarray]]:
    """Connected components (buyer indices, seller indices) of the positive-pair graph.

    Only components with at least one positive pair are returned, sorted by their
    smallest player index; players outside all of them can gain nothing.
    """
    m, n = w.shape
    pos = (w > 0) & (bc[:, None] > 0) & (sc[None, :] > 0)
    I, J = np.nonzero(pos)
    graph = sp.csr_matrix((np.ones(len(I)), (I, m + J)), shape=(m + n, m + n))
    count, labels = connected_components(graph, directed=False)
    active = np.zeros(m + n, dtype=bool)
    active[I] = True
    active[m + J] = True
    out = []
    for label in sorted(set(labels[active].tolist()), key=lambda c: int(np.flatnonzero(labels == c)[0])):
        members = np.flatnonzero(labels == label)
        out.append((members[members < m], members[members >= m] - m))
    return out


def _star_centres(w, bc, sc):
    """(centre, capacity, positive partners, weight by player) of each possible star
    centre -- the side without unit capacities -- or None if neither side is unit.
    Players are numbered buyers 0..m-1 then sellers m..m+n-1."""
    m, n = w.shape
    if (bc <= 1).all():
        return [(m + j, int(sc[j]), [i for i in np.flatnonzero(w[:, j] > 0).tolist() if bc[i] > 0],
                 w[:, j]) for j in range(n) if sc[j] > 0]
    if (sc <= 1).all():
        return [(i, int(bc[i]), [m + j for j in np.flatnonzero(w[i] > 0).tolist() if sc[j] > 0],
                 np.r_[np.zeros(m, dtype=w.dtype), w[i]]) for i in range(m) if bc[i] > 0]
    return None


def star_coalitions(w, bc, sc, limit: int) -> tuple[list[int], list[float]] | None:
    """Every essential coalition of two or more players when one side has unit caps.

    Stars {c} + P, 1 <= |P| <= b_c, all pairs of positive weight, as bitmasks (bit
    i = buyer i, bit m + j = seller j) with their values, sorted by mask; None if
    a side of unit capacity is missing or there would be more than ``limit``.
    """
    centres = _star_centres(w, bc, sc)
    if centres is None:
        return None
    total = sum(comb(len(p), t) for _c, b, p, _w in centres for t in range(1, min(b, len(p)) + 1))
    if total > limit:
        return None
    stars: dict[int, float] = {}
    for c, b, partners, weight in centres:
        # partners index into weight: buyers 0..m-1 for a seller centre, m + j for a buyer
        for t in range(1, min(b, len(partners)) + 1):
            for group in combinations(partners, t):
                mask = 1 << c
                for p in group:
                    mask |= 1 << p
                stars[mask] = float(sum(int(weight[p]) for p in group))
    masks = sorted(stars)
    return masks, [stars[mk] for mk in masks]


def unfixed_first(ranked: np.ndarray, masks, values, stages, limit: int) -> list[tuple[int, float]]:
    """``(mask, value)`` of the candidates at the indices ``ranked`` (in that order) that are
    neither free nor settled in ``stages``, at most ``limit``: the tail of every separator
    that ranks a whole candidate list at once."""
    out = []
    for k in ranked.tolist():
        mask = masks[k]
        if mask not in stages.free and mask not in stages.settled:
            out.append((mask, float(values[k])))
            if len(out) >= limit:
                break
    return out


def list_separator(masks: list[int], values: list[float], n_players: int, limit: int):
    """Exact separation over an explicit list of coalitions, scanned at once.

    Returns a ``separate(x, threshold, stages)`` for :class:`~market.sequential_lp.Stages`
    that gives every listed coalition outside the span of the fixed rows, not yet
    free or settled, whose excess exceeds the threshold -- most violated first
    (ties by mask), at most ``limit`` per call.  Exact whenever the list holds every
    essential coalition.
    """
    A = rows_matrix(masks, n_players)
    vals = np.asarray(values, dtype=float)
    sizes = np.asarray(A.sum(axis=1)).ravel()
    order_key = np.arange(len(masks))          # masks are sorted: index order is mask order

    def separate(x, threshold, stages):
        excess = vals - A @ x
        cand = np.flatnonzero(excess > threshold)
        if len(cand) == 0:
            return []
        proj = np.asarray(A[cand] @ stages.basis)
        cand = cand[sizes[cand] - (proj ** 2).sum(axis=1) > 1e-9]
        return unfixed_first(cand[np.lexsort((order_key[cand], -excess[cand]))], masks, vals, stages, limit)

    return separate


def star_separator(w, bc, sc, limit: int):
    """Exact separation over all stars without listing them (one side of unit caps).

    For centre c the excess of the star {c} + P is sum_{p in P} r_p - x_c with
    r_p = Q[c, p] - x_p, so the violated stars are found by a depth-first search
    over the partners sorted by r (descending, ties by index) that stops as soon as
    even the best completion -- the next positive r's -- cannot beat the bar: the
    threshold, and once ``limit`` stars are held, the least of them (a bounded
    best-``limit`` search; a market of a thousand players has millions of violated
    stars at the first LP point, and listing them all was the cost).  Stars
    already free or settled, or in the span of the fixed rows, are skipped as
    they are found, so the result is exactly the ``limit`` most violated eligible
    stars.  Returns a ``separate`` like :func:`list_separator` (most violated
    first, ties by mask).
    """
    centres = [(c, b, p, weight.astype(float)) for c, b, p, weight in _star_centres(w, bc, sc)]

    def separate(x, threshold, stages):
        heap: list[tuple[float, int, float]] = []   # (excess, -mask, value); [0] is the worst kept
        basis = stages.basis
        free, settled = stages.free, stages.settled

        def eligible(members, mask):
            if mask in free or mask in settled:
                return False
            proj = basis[members].sum(axis=0)
            return len(members) - float(proj @ proj) > 1e-9

        for c, b, partners, weight in centres:
            if not partners:
                continue
            part = np.array(partners)
            r = weight[part] - x[part]
            order = np.lexsort((part, -r))
            part, r = part[order].tolist(), r[order]
            gain = np.r_[0.0, np.cumsum(np.maximum(r, 0.0))].tolist()
            r = r.tolist()
            xc = float(x[c])
            L = len(r)

            def search(start, members, mask, total, value, left):
                for k in range(start, L):
                    reach = total + r[k] + gain[min(k + left, L)] - gain[k + 1]
                    bar = threshold if len(heap) < limit else max(threshold, heap[0][0] - 1e-9)
                    if reach - xc <= bar:
                        break           # sorted: later partners reach no further
                    s, mk = total + r[k], mask | (1 << part[k])
                    val = value + float(weight[part[k]])
                    grown = members + [part[k]]
                    ex = s - xc
                    if ex > threshold and (len(heap) < limit or (ex, -mk) > heap[0][:2]) \
                            and eligible(grown, mk):
                        if len(heap) < limit:
                            heapq.heappush(heap, (ex, -mk, val))
                        else:
                            heapq.heapreplace(heap, (ex, -mk, val))
                    if left > 1:
                        search(k + 1, grown, mk, s, val, left - 1)

            search(0, [c], 1 << c, 0.0, 0.0, b)
        out = sorted(heap, key=lambda f: (-f[0], -f[1]))
        return [(-negmask, val) for _e, negmask, val in out]

    return separate
