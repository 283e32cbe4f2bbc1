"""The lexicographic tie-break of :func:`market.matching.match` on the optimal face.

Given one maximum-weight b-matching and an optimal dual, :func:`changeable_edges`
finds the pairs that differ between optima (strongly connected components of the
oriented tight graph) and :func:`canonicalise` picks, among all optima, the one
that is lexicographically greatest in the rank order, by one alternating-path
search per undecided pair (:func:`addable_path`).  Rule and proofs:
docs/market.md, "Tie-break rule".
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

__all__ = ["canonicalise", "changeable_edges"]


def canonicalise(w, bc, sc, I, J, x, u, v, z, change, rb, rs):
    """Apply the lexicographic tie-break on the optimal face given by an optimal dual.

    Only ``change`` edges can differ between optima; the others keep their value.
    On the changeable edges every b-matching that uses tight edges only and keeps
    saturated every vertex with a positive dual is optimal (complementary
    slackness), so the greedy scan is a feasibility question on that face:
    degree bounds lo_p <= deg(p) <= hi_p (lo = hi = room where the dual is
    positive, lo = 0 elsewhere) on the changeable edges.  Combinatorially
    (:func:`addable_path`): pair e = (i, j) can join the current solution,
    together with every pair kept and none rejected, iff an alternating path
    leads from j back to i over free pairs -- the symmetric difference with any
    such solution splits into alternating trails (Schrijver 2003, Sec. 21.3), and
    the one through e is such a path.  So each pair costs one graph search instead
    of an LP.  Returns (I, J, x) over used and changeable edges.
    """
    m, n = w.shape
    used = np.zeros((m, n), dtype=bool)
    used[I[x == 1], J[x == 1]] = True
    fixed = used & ~change
    cI, cJ = np.nonzero(change)
    cur = used[cI, cJ].astype(np.int64)
    hi = np.r_[bc - fixed.sum(axis=1), sc - fixed.sum(axis=0)].tolist()
    lo = np.where(np.r_[u > 0, v > 0], hi, 0).tolist()
    deg = (np.bincount(cI[cur == 1], minlength=m).tolist()
           + np.bincount(cJ[cur == 1], minlength=n).tolist())
    index = {(a, m + b): k for k, (a, b) in enumerate(zip(cI.tolist(), cJ.tolist()))}
    # arcs: unused free pair buyer -> seller (may enter), used free pair seller -> buyer
    # (may leave); kept and rejected pairs have no arc
    out: list[set[int]] = [set() for _ in range(m + n)]
    into = [0] * m                      # arcs into each buyer (used free pairs)
    for (a, b), k in index.items():
        if cur[k]:
            out[b].add(a)
            into[a] += 1
        else:
            out[a].add(b)
    for k in np.lexsort((rs[cJ], rb[cI])).tolist():
        i, j = int(cI[k]), m + int(cJ[k])
        if cur[k]:
            out[j].discard(i)           # kept: may no longer leave
            into[i] -= 1
            continue
        out[i].discard(j)               # decided either way: no longer free
        path = addable_path(out, into, deg, lo, hi, m, j, i)
        if path is None:
            continue                    # rejected
        for p, q in zip(path, path[1:]):
            if p < 0 or q < 0:
                continue                # the root joins the two ends of an open path
            if p < m:                   # buyer -> seller: the pair enters
                cur[index[(p, q)]] = 1
                deg[p] += 1
                deg[q] += 1
                into[p] += 1
            else:                       # seller -> buyer: the pair leaves
                cur[index[(q, p)]] = 0
                deg[p] -= 1
                deg[q] -= 1
                into[q] -= 1
            out[p].discard(q)
            out[q].add(p)
        cur[k] = 1
        deg[i] += 1
        deg[j] += 1
    fI, fJ = np.nonzero(fixed)
    return (np.r_[fI, cI], np.r_[fJ, cJ], np.r_[np.ones(len(fI), dtype=np.int64), cur])


def addable_path(out, into, deg, lo, hi, m, start, target):
    """Breadth-first search for an alternating path from seller ``start`` to buyer ``target``.

    Node -1 is a root joining the two ends of an open path: a vertex may end the
    walk from ``start`` (arc to -1) if it can change degree in the walk's direction
    -- a seller reached by an entering pair and below ``hi``, a buyer reached by a
    leaving pair and above ``lo`` -- and the root leads to every vertex that may
    start the walk into ``target`` (a buyer below ``hi``, a seller above ``lo``).
    Returns the node list start .. target, or None.  Which path is found does not
    matter: only whether one exists decides, and the lexicographic optimum is unique.
    """
    if not (deg[target] < hi[target] or into[target]):
        return None         # nothing can enter the target: no path, no search needed
    if not (deg[start] < hi[start] or out[start]):
        return None
    parent = {start: start}
    frontier = [start]
    root_done = False
    while frontier:
        nxt = []
        for p in frontier:
            if p == -1:
                succ = [q for q in range(len(out))
                        if (deg[q] < hi[q] if q < m else deg[q] > lo[q])]
            else:
                succ = list(out[p])
                ends = deg[p] < hi[p] if p >= m else deg[p] > lo[p]
                if ends and not root_done:
                    succ.append(-1)
            for q in succ:
                if q in parent:
                    continue
                parent[q] = p
                if q == -1:
                    root_done = True
                if q == target:
                    path = [q]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1]
                nxt.append(q)
        frontier = nxt
    return None


def changeable_edges(w, bc, sc, I, J, x, u, v, z, tight=None) -> np.ndarray:
    """Edges that differ between x and some other optimum (empty iff x is unique).

    Every optimal matching lives on tight edges and respects complementary
    slackness with (u, v, z); two differ by alternating cycles, or alternating paths
    between vertices that may gain an edge (spare capacity) or lose one (zero
    dual).  Orient unused tight edges buyer -> seller and removable used edges
    seller -> buyer, join path endpoints through a root node: the optimum is unique
    iff this digraph has no cycle; an edge can change iff its arc lies inside a
    strongly connected component.  Returns an (m, n) boolean mask.
    """
    m, n = w.shape
    on = x == 1
    ur, uc = I[on], J[on]                       # used edges
    fz = (z[on] > 0) if z is not None else np.zeros(len(ur), dtype=bool)
    used_key = set((ur * n + uc).tolist())      # forced edges are used (z > 0 => x = 1)
    tr, tc = np.nonzero((w - v[None, :]) == u[:, None]) if tight is None else tight
    keep = w[tr, tc] > 0
    tr, tc = tr[keep], tc[keep]
    keep = np.array([k not in used_key for k in (tr * n + tc).tolist()], dtype=bool)
    add_r, add_c = tr[keep], tc[keep]
    rem_r, rem_c = ur[~fz], uc[~fz]
    if len(add_r) == 0:  # nothing can enter, and dropping a positive edge loses weight
        return np.zeros((m, n), dtype=bool)
    deg_b, deg_s = np.bincount(ur, minlength=m), np.bincount(uc, minlength=n)
    root = m + n
    # path ends hang on the end edge, so a root cycle always walks >= 2 real edges
    start_gain = deg_b[add_r] < bc[add_r]      # path starts at a buyer with room
    end_gain = deg_s[add_c] < sc[add_c]        # ... or ends at a seller with room
    start_loss = v[rem_c] == 0                 # path starts by a seller dropping an edge
    end_loss = u[rem_r] == 0                   # ... or ends by a buyer dropping one
    src = np.concatenate([add_r, m + rem_c, np.full(int(start_gain.sum()), root),
                          add_r[end_gain], np.full(int(start_loss.sum()), root),
                          m + rem_c[end_loss]])
    dst = np.concatenate([m + add_c, rem_r, m + add_c[start_gain],
                          np.full(int(end_gain.sum()), root), rem_r[start_loss],
                          np.full(int(end_loss.sum()), root)])
    graph = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(root + 1, root + 1))
    _, labels = connected_components(graph, directed=True, connection="strong")
    change = np.zeros((m, n), dtype=bool)
    lb, ls, lr = labels[add_r], labels[m + add_c], labels[root]
    change[add_r, add_c] = (lb == ls) | (start_gain & (ls == lr)) | (end_gain & (lb == lr))
    lb, ls = labels[rem_r], labels[m + rem_c]
    change[rem_r, rem_c] = (lb == ls) | (start_loss & (lb == lr)) | (end_loss & (ls == lr))
    return change
