"""The core's affine hull of a star market, read off the optimal matchings.

Used by :func:`market.nucleolus.market_nucleolus` when one side has unit capacities
(assignment games included): it settles the sequential LP's level-0 stage exactly,
in one step, instead of finding its tight coalitions one cut at a time.

**Why.**  With leaves of capacity 1 the essential coalitions are the singletons and
the stars {c} + P (:mod:`market.essential`), and the core is the optimal face of
min x(N) over {x >= 0, x(S) >= v(S) for every star S}.  By strict complementarity
(Goldman & Tucker 1956) a constraint is tight in *every* core point iff some
optimal solution of the dual -- a fractional packing of stars and singletons,
max sum lambda_S v(S) with every player covered at most once -- uses it.  A packing
is a fractional b-matching y (y_cp = weight of c's stars holding p), optimal iff y
is, and conversely c's part y_c lies in the hypersimplex H_b = {0 <= y <= 1,
sum y <= b_c}, whose vertices are the sets of at most b_c partners.  So a star
{c} + P is in some optimal packing iff 1_P lies on the smallest face of H_b that
holds y_c at a relative-interior point of the optimal face, i.e. (the optimal
face of bipartite b-matching is spanned by the integral optima):

* A_c <= P <= B_c, with B_c the pairs of c in *some* optimal matching and A_c
  those in *every* one;
* |P| = b_c if c is saturated in every optimal matching, |P| <= b_c otherwise;
* P empty -- the singleton, x_c = 0 -- iff A_c is empty and c is not always
  saturated; and a leaf p has x_p = 0 in every core point iff some optimal
  matching leaves it unmatched.

(For the assignment game, b = 1, this is the known description of the pairs
tight in the whole core; Nunez, "On the dimension of the core of the assignment
game", GEB 2004; Solymosi & Raghavan, IJGT 1994.)  These are exponentially many
stars, but only their span matters: :func:`core_equalities` returns, per centre,
at most |B_c \\ A_c| + 1 of them spanning the rest.  If any of them is a proper
coalition the first stage's level is 0 (the least core is the core) and its
always-tight set is exactly this family.

Which pairs and players can change between optima comes from one optimum and its
integer dual: :func:`market.tie_break.changeable_edges` for the pairs, and two
reachability searches in the residual graph of the optimal face for "can lose an
edge" (a path of alternately dropped and added tight pairs from the player to one
that may lose an edge or has room).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order

__all__ = ["core_equalities", "independent_rows", "matching_equalities"]


def _reaches(size, src, dst, targets) -> np.ndarray:
    """Boolean mask of the nodes 0..size-1 with a path to some target node."""
    t = size
    src = np.r_[src, targets]
    dst = np.r_[dst, np.full(len(targets), t)]
    # reversed graph: search from the sink
    graph = sp.csr_matrix((np.ones(len(src)), (dst, src)), shape=(size + 1, size + 1))
    order = breadth_first_order(graph, t, directed=True, return_predecessors=False)
    out = np.zeros(size + 1, dtype=bool)
    out[order] = True
    return out[:size]


def _can_lose(w, bc, sc, I, J, x, u, v, z):
    """(buyer can lose an edge, seller can lose an edge) in some optimal matching.

    Optimal matchings are the b-matchings on tight pairs that use every pair with
    z > 0 and saturate every player of positive dual (complementary slackness), so
    a player can end with fewer trades iff an alternating path of removable used
    pairs and unused tight pairs leads from it to a player allowed to stop there:
    one with zero dual that has lost a pair, or one with room that has gained one.
    """
    m, n = w.shape
    on = x == 1
    ur, uc = I[on], J[on]
    if z is not None:
        free = z[on] == 0
        ur, uc = ur[free], uc[free]
    deg_b = np.bincount(I[on], minlength=m)
    deg_s = np.bincount(J[on], minlength=n)
    used = np.zeros((m, n), dtype=bool)
    used[I[on], J[on]] = True
    tr, tc = np.nonzero((w > 0) & (u[:, None] + v[None, :] == w) & ~used)
    # buyers losing: buyer -drop-> seller -add-> buyer ...; stop at a seller with
    # zero dual or a buyer with room
    stop = np.r_[np.flatnonzero(deg_b < bc), m + np.flatnonzero(v == 0)]
    reach = _reaches(m + n, np.r_[ur, m + tc], np.r_[m + uc, tr], stop)
    buyer = np.zeros(m, dtype=bool)
    buyer[ur[reach[m + uc] & (u[ur] == 0)]] = True
    # sellers losing: the mirror image
    stop = np.r_[np.flatnonzero(u == 0), m + np.flatnonzero(deg_s < sc)]
    reach = _reaches(m + n, np.r_[m + uc, tr], np.r_[ur, m + tc], stop)
    seller = np.zeros(n, dtype=bool)
    seller[uc[reach[ur] & (v[uc] == 0)]] = True
    return buyer | (deg_b == 0), seller, deg_s


def core_equalities(w, bc, sc):
    """Equalities spanning every constraint tight in the whole core of a star market.

    Parameters
    ----------
    w : numpy.ndarray of int, shape (m, n)
        Pair weights of one connected market.
    bc, sc : numpy.ndarray of int
        Capacities; every buyer or every seller must have capacity <= 1.

    Returns
    -------
    (stars, ties, fixed) or None
        ``stars``: (bitmask, value) of stars with x(S) = v(S) in every core point
        (bit i = buyer i, bit m + j = seller j); ``ties``: (a, b, delta) with
        x_a - x_b = delta in every core point; ``fixed``: (p, value) with x_p =
        value in every core point.  Each is implied by always-tight stars and
        singletons, and together they span all of them: per centre c, with A, B
        as in the module notes and D = B - A, T0 the first b_c - |A| of D (by
        index) and d1 its first element,

        * c always saturated: the star {c} + A + T0, and if 0 < |T0| < |D| the
          ties x_d - x_d1 = Q_cd - Q_cd1 for d in D (differences of two stars
          of the family);
        * otherwise: the star {c} + A (x_c = 0 if A is empty) and x_d = Q_cd for
          d in D (a star with d minus the one without);

        and x_p = 0 for every leaf some optimal matching leaves unmatched.
        None if neither side is unit or no exact integer dual is available (the
        caller then uses the cut loop).

    References
    ----------
    Goldman & Tucker (1956) strict complementarity; Nunez, Games Econ. Behav. 48
    (2004); Solymosi & Raghavan, IJGT 23 (1994); Sotomayor (1992) for the
    multiple-partners game.
    """
    from market.matching import _one_sided_certified, _solve_certified
    from market.tie_break import changeable_edges
    m, n = w.shape
    if (bc <= 1).all():
        flip = False
    elif (sc <= 1).all():
        w, bc, sc, m, n, flip = w.T, sc, bc, n, m, True
    else:
        return None
    w = np.ascontiguousarray(w)
    sol = _one_sided_certified(w, bc, sc)
    I, J, x, u, v, z = sol if sol is not None else _solve_certified(w, bc, sc)
    if u is None:
        return None
    change = changeable_edges(w, bc, sc, I, J, x, u, v, z)
    used = np.zeros((m, n), dtype=bool)
    used[I[x == 1], J[x == 1]] = True
    some = (used | change) & (w > 0)        # B: in some optimal matching
    every = used & ~change                  # A: in every optimal matching
    buyer_lose, seller_lose, deg_s = _can_lose(w, bc, sc, I, J, x, u, v, z)
    # player numbers in the caller's order (buyers then sellers): when flipped the
    # unit side here is the caller's sellers, numbered after its n buyers
    bpos = (lambda i: n + i) if flip else (lambda i: i)
    spos = (lambda j: j) if flip else (lambda j: m + j)
    stars, ties = [], []
    fixed = [(bpos(i), 0) for i in np.flatnonzero(buyer_lose).tolist()]
    for j in range(n):
        col = w[:, j].tolist()
        A = np.flatnonzero(every[:, j]).tolist()
        D = [i for i in np.flatnonzero(some[:, j]).tolist() if not every[i, j]]
        b = int(sc[j])
        mask = 1 << spos(j)
        for i in A:
            mask |= 1 << bpos(i)
        value = sum(col[i] for i in A)
        if deg_s[j] == b and not seller_lose[j]:       # saturated in every optimum
            t = b - len(A)
            if not 0 <= t <= len(D):
                raise ValueError("inconsistent optimal face (capacity and forced pairs)")
            for i in D[:t]:
                mask |= 1 << bpos(i)
            stars.append((mask, value + sum(col[i] for i in D[:t])))
            if 0 < t < len(D):
                d1 = D[0]
                ties += [(bpos(d), bpos(d1), col[d] - col[d1]) for d in D[1:]]
        else:
            if A:
                stars.append((mask, value))
            else:
                fixed.append((spos(j), 0))
            fixed += [(bpos(d), col[d]) for d in D]
    return stars, ties, fixed


def matching_equalities(w, bc, sc, pairs):
    """Equalities tight in every core point, from one optimal matching (any market).

    Each connected component K of an optimal b-matching M has x(K) = v(K) = M's
    weight on K in every core point (the components' values add up to v(N) and
    each x(K) >= v(K)), and a player M leaves alone has x_p = 0.  Valid for both
    sides capacitated, where :func:`core_equalities` does not apply; they span the
    core's always-tight set when M is the only optimum (an optimal packing of
    coalitions then splits M itself, so it uses only M's components and
    singletons), and otherwise the sequential LPs find the rest.  Returns
    (stars, ties, fixed) in the form of :func:`core_equalities`.
    """
    m, n = w.shape
    N = m + n
    parent = list(range(N))

    def find(p):
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    for i, j in pairs:
        parent[find(i)] = find(m + j)
    mask: dict[int, int] = {}
    value: dict[int, int] = {}
    for i, j in pairs:
        r = find(i)
        mask[r] = mask.get(r, 0) | (1 << i) | (1 << (m + j))
        value[r] = value.get(r, 0) + int(w[i, j])
    matched = {p for i, j in pairs for p in (i, m + j)}
    stars = sorted((mask[r], value[r]) for r in mask)
    return stars, [], [(p, 0) for p in range(N) if p not in matched]


def independent_rows(n_players, grand, stars, ties, fixed, tol=1e-9):
    """A linearly independent subset of the equalities, with the same span.

    Ties and fixed values are pruned exactly with a union-find (a tie inside one
    tree, or a second value in a tree that has one, is implied); the stars and the
    grand coalition (first) by a pivoted QR in the coordinates left free, one per
    unfixed tree.  Returns (rows, rhs): dense float rows, independent, spanning
    all the equalities and the grand coalition ``grand`` = (mask, value), which
    comes first unless the others imply it.
    """
    from scipy.linalg import qr
    parent = list(range(n_players))
    has_value = [False] * n_players

    def find(p):
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    rows, rhs = [], []
    for a, b, delta in ties:
        ra, rb = find(a), find(b)
        if ra == rb or (has_value[ra] and has_value[rb]):
            continue
        parent[ra] = rb
        has_value[rb] = has_value[ra] or has_value[rb]
        row = np.zeros(n_players)
        row[a], row[b] = 1.0, -1.0
        rows.append(row)
        rhs.append(float(delta))
    for p, value in fixed:
        r = find(p)
        if has_value[r]:
            continue
        has_value[r] = True
        row = np.zeros(n_players)
        row[p] = 1.0
        rows.append(row)
        rhs.append(float(value))
    roots = [find(p) for p in range(n_players)]
    free_roots = sorted({r for r in roots if not has_value[r]})
    column = {r: k for k, r in enumerate(free_roots)}
    cand = [(grand[0], grand[1])] + [(mask, value) for mask, value in stars]
    reduced = np.zeros((len(cand), len(free_roots)))
    full = []
    for k, (mask, _value) in enumerate(cand):
        row = np.zeros(n_players)
        p = 0
        while mask:
            if mask & 1:
                row[p] = 1.0
                if not has_value[roots[p]]:
                    reduced[k, column[roots[p]]] += 1.0
            mask >>= 1
            p += 1
        full.append(row)
    # the grand coalition stays first when it is not implied; the stars are
    # chosen in the complement of its reduced row
    g, S = reduced[0], reduced[1:]
    gg = float(g @ g)
    if gg > tol:
        S = S - np.outer(S @ g, g) / gg
    keep = [0] if gg > tol else []
    if len(free_roots) and len(S):
        _q, r, piv = qr(S.T, mode="economic", pivoting=True)
        diag = np.abs(np.diag(r))
        rank = int((diag > tol * max(1.0, float(np.abs(reduced).max()))).sum())
        keep += sorted(1 + k for k in piv[:rank].tolist())
    head = [full[k] for k in keep]
    head_rhs = [float(cand[k][1]) for k in keep]
    return head + rows, head_rhs + rhs
