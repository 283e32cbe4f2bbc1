"""The value of a maximum-weight bipartite b-matching, exactly, for small markets.

The nucleolus needs v(S) -- the best matching weight a coalition S reaches alone --
for hundreds of small coalitions.  :func:`market.matching.match` answers with the
canonical matching (an LP plus a tie-break), which is far more than a value needs.
Here the value comes from min-cost flow by successive shortest paths (Ford &
Fulkerson 1962; Ahuja, Magnanti & Orlin, *Network Flows*, 1993, Sec. 9.7) on

    source -> buyer i (capacity b_i), buyer i -> seller j (capacity 1, cost -Q[i,j],
    only Q > 0), seller j -> sink (capacity b_j),

in integer arithmetic.  The gain of successive shortest augmenting paths never
increases (the optimal cost is convex in the flow value), so stopping at the first
path of non-negative cost gives the maximum weight over *all* flow values, i.e. over
all b-matchings; integrality of min-cost flow makes it a b-matching with each pair
used at most once.  Pure Python: O(F V E) for F units of flow, meant for markets of
a few dozen players (seed coalitions, enumeration tests).
"""
from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ["b_matching_value"]


def b_matching_value(weights, buyer_caps, seller_caps) -> int:
    """Maximum total weight of a b-matching (each pair at most once, Q > 0 only).

    Parameters
    ----------
    weights : array_like of int, shape (m, n)
    buyer_caps, seller_caps : sequence of int (>= 0)

    Returns
    -------
    int
        The optimal weight; equals ``match(weights, ...).total_weight``.

    Examples
    --------
    >>> b_matching_value([[5, 1], [4, 0]], [1, 1], [2, 1])
    9
    """
    w = np.asarray(weights, dtype=np.int64)
    if w.ndim != 2 or w.size == 0:
        return 0
    m, n = w.shape
    bc = [int(c) for c in np.asarray(buyer_caps).reshape(-1)]
    sc = [int(c) for c in np.asarray(seller_caps).reshape(-1)]
    src, sink = m + n, m + n + 1
    size = m + n + 2
    head: list[list[int]] = [[] for _ in range(size)]
    to: list[int] = []
    cap: list[int] = []
    cost: list[int] = []

    def arc(a: int, b: int, c: int, k: int) -> None:
        head[a].append(len(to))
        to.append(b)
        cap.append(c)
        cost.append(k)
        head[b].append(len(to))
        to.append(a)
        cap.append(0)
        cost.append(-k)

    for i in range(m):
        if bc[i] > 0:
            arc(src, i, bc[i], 0)
    for j in range(n):
        if sc[j] > 0:
            arc(m + j, sink, sc[j], 0)
    rows, cols = np.nonzero(w > 0)
    for i, j in zip(rows.tolist(), cols.tolist()):
        if bc[i] > 0 and sc[j] > 0:
            arc(i, m + j, 1, -int(w[i, j]))
    total = 0
    inf = float("inf")
    while True:
        # Bellman-Ford by queue (SPFA): the residual graph of a min-cost flow has no
        # negative cycle, so this terminates with exact integer distances
        dist = [inf] * size
        via = [-1] * size
        queued = [False] * size
        dist[src] = 0
        queue = deque([src])
        while queue:
            a = queue.popleft()
            queued[a] = False
            da = dist[a]
            for e in head[a]:
                if cap[e] > 0:
                    b = to[e]
                    nd = da + cost[e]
                    if nd < dist[b]:
                        dist[b] = nd
                        via[b] = e
                        if not queued[b]:
                            queued[b] = True
                            queue.append(b)
        if dist[sink] >= 0:
            return total
        push, b = None, sink
        while b != src:
            e = via[b]
            push = cap[e] if push is None else min(push, cap[e])
            b = to[e ^ 1]
        b = sink
        while b != src:
            e = via[b]
            cap[e] -= push
            cap[e ^ 1] += push
            b = to[e ^ 1]
        total -= int(dist[sink]) * push
