"""The lexicographic tie-break of :func:`market.matching.match` on the optimal face.

Given one maximum-weight b-matching and an optimal dual, :func:`changeable_edges`
finds the pairs that differ between optima (strongly connected components of the
oriented tight graph) and :func:`canonicalise` picks, among all optima, the one
that is lexicographically greatest in the rank order, by one alternating-path
backward search per buyer (:class:`_Face`).  Rule and proofs:
docs/market.md, "Tie-break rule".
"""
from __future__ import annotations

from bisect import bisect_left

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from market.sequential_lp import mask_members

__all__ = ["canonicalise", "changeable_edges"]


def canonicalise(w, bc, sc, I, J, x, u, v, z, change, rb, rs):
    """Apply the lexicographic tie-break on the optimal face given by an optimal dual.

    Only ``change`` edges can differ between optima; the others keep their value.
    On the changeable edges every b-matching that uses tight edges only and keeps
    saturated every vertex with a positive dual is optimal (complementary
    slackness), so the greedy scan is a feasibility question on that face:
    degree bounds lo_p <= deg(p) <= hi_p (lo = hi = room where the dual is
    positive, lo = 0 elsewhere) on the changeable edges.  Combinatorially:
    pair e = (i, j) can join the current solution, together with every pair kept
    and none rejected, iff an alternating path leads from j back to i over free
    pairs (:class:`_Face` describes the digraph) -- the symmetric difference with
    any solution containing the pair splits into alternating trails (Schrijver
    2003, Sec. 21.3), and the one through e is such a path.  Pairs are scanned
    buyer by buyer, and one backward search from buyer i finds every vertex with
    a path to i, so the row's pairs are decided without a search each: a
    rejection only removes an arc *out of* i, which no path into i uses, so a new
    search is needed only after a pair is kept or accepted.  Rows already
    scanned have every pair decided, hence no arcs: the search ignores them by
    mask, so a rejection costs nothing.  Returns (I, J, x) over used and
    changeable edges.
    """
    m, n = w.shape
    uI, uJ = I[x == 1], J[x == 1]
    fix = ~change[uI, uJ]                   # used and unchangeable: stays in every optimum
    fI, fJ = uI[fix], uJ[fix]
    cI, cJ = np.nonzero(change)
    hi = np.r_[bc - np.bincount(fI, minlength=m), sc - np.bincount(fJ, minlength=n)].tolist()
    lo = np.where(np.r_[u > 0, v > 0], hi, 0).tolist()
    on = np.zeros(len(cI), dtype=bool)      # which changeable pairs x uses
    key = cI * n + cJ                       # row-major, so sorted
    pos = np.searchsorted(key, uI[~fix] * n + uJ[~fix])
    on[pos] = True
    face = _Face(m, n, cI, cJ, on, lo, hi)
    layers = None                       # backward search from the current row's buyer
    row = -1
    cur = face.cur
    for k in np.lexsort((rs[cJ], rb[cI])).tolist():
        i, j = face.ends_of(k)
        if i != row:
            row, layers = i, None
            face.start_row(i)
        if cur[k]:
            face.keep(i, j)             # kept: may no longer leave
            layers = None
            continue
        if layers is None:
            layers = face.reaching(i)
        if layers[-1][1] >> j & 1:      # else rejected: no alternating path from j to i
            face.accept(k, i, j, layers)
            layers = None
    cur = np.array(face.cur, dtype=np.int64)
    return (np.r_[fI, cI], np.r_[fJ, cJ], np.r_[np.ones(len(fI), dtype=np.int64), cur])


class _Face:
    """The alternating digraph of the tie-break scan, as bitsets (Python ints).

    Arcs: an unused free pair buyer -> seller (it may enter), a used free pair
    seller -> buyer (it may leave); kept and rejected pairs have none.  A root
    joins the two ends of an open path: a vertex may end a walk (arc to the root)
    if it can change degree in the walk's direction -- a seller below ``hi``, a
    buyer above ``lo`` -- and the root leads to every vertex that may start one
    (a buyer below ``hi``, a seller above ``lo``).  Buyer sets are bits over
    buyers, seller sets bits over sellers, so a breadth-first layer is a few
    big-integer ORs.
    """

    def __init__(self, m, n, cI, cJ, cur, lo, hi):
        self.m, self.lo, self.hi = m, lo, hi
        self.cur = cur.astype(np.int64).tolist()
        self.pair_of = list(zip(cI.tolist(), cJ.tolist()))
        self.n = n
        self.keys = (cI * n + cJ).tolist()
        self.unused = _row_bits(cI[~cur], cJ[~cur], m, n)     # buyer -> sellers, unused free pairs
        self.unused_in = _row_bits(cJ[~cur], cI[~cur], n, m)  # seller -> buyers, unused free pairs
        self.used = _row_bits(cJ[cur], cI[cur], n, m)         # seller -> buyers, used free pairs
        self.used_in = _row_bits(cI[cur], cJ[cur], m, n)      # buyer -> sellers, used free pairs
        self.deg = (np.bincount(cI[cur], minlength=m).tolist()
                    + np.bincount(cJ[cur], minlength=n).tolist())
        self.pending = (1 << m) - 1         # buyers whose row is not scanned yet
        self.ends_b = self.ends_s = self.starts_b = self.starts_s = 0
        for p in range(m + n):
            self._refresh(p)

    def ends_of(self, k):
        return self.pair_of[k]

    def start_row(self, i):
        """Row i is scanned now: earlier rows keep no arc, i's own arcs point out of
        i and no path into i uses them."""
        self.pending &= ~(1 << i)

    def _refresh(self, p):
        m, d = self.m, self.deg[p]
        if p < m:
            bit = 1 << p
            self.ends_b = self.ends_b | bit if d > self.lo[p] else self.ends_b & ~bit
            self.starts_b = self.starts_b | bit if d < self.hi[p] else self.starts_b & ~bit
        else:
            bit = 1 << (p - m)
            self.ends_s = self.ends_s | bit if d < self.hi[p] else self.ends_s & ~bit
            self.starts_s = self.starts_s | bit if d > self.lo[p] else self.starts_s & ~bit

    def keep(self, a, b):
        self.used[b] &= ~(1 << a)
        self.used_in[a] &= ~(1 << b)

    def reaching(self, target):
        """Breadth-first layers backwards from buyer ``target``: a list of
        (buyers, sellers, root) per distance, the last entry the union of all."""
        seen_b, seen_s, seen_r = 1 << target, 0, False
        layers = [(seen_b, 0, False)]
        fb, fs, fr = seen_b, 0, False
        while fb or fs or fr:
            nb, ns, nr = 0, 0, False
            for a in mask_members(fb):
                ns |= self.used_in[a]
            for b in mask_members(fs):
                nb |= self.unused_in[b]
            nb &= self.pending
            if fr:
                nb |= self.ends_b
                ns |= self.ends_s
            if not seen_r and (fb & self.starts_b or fs & self.starts_s):
                nr = True
            nb &= ~seen_b
            ns &= ~seen_s
            seen_b |= nb
            seen_s |= ns
            seen_r |= nr
            fb, fs, fr = nb, ns, nr
            if fb or fs or fr:
                layers.append((fb, fs, fr))
        layers.append((seen_b, seen_s, seen_r))
        return layers

    def accept(self, k, i, j, layers):
        """Add pair k = (i, j) by flipping the alternating path from j to i."""
        m = self.m
        depth = next(d for d, (_b, s, _r) in enumerate(layers[:-1]) if s >> j & 1)
        node = ("s", j)
        for d in range(depth - 1, -1, -1):
            lb, ls, lr = layers[d]
            kind, p = node
            if kind == "b":
                nxt = self.unused[p] & ls
                step = ("s", _low(nxt)) if nxt else ("r", -1)
            elif kind == "s":
                nxt = self.used[p] & lb
                step = ("b", _low(nxt)) if nxt else ("r", -1)
            else:
                nxt = self.starts_b & lb
                step = ("b", _low(nxt)) if nxt else ("s", _low(self.starts_s & ls))
            if kind == "b" and step[0] == "s":        # the pair enters
                self._flip(p, step[1], 1)
            elif kind == "s" and step[0] == "b":      # the pair leaves
                self._flip(step[1], p, 0)
            node = step
        self.cur[k] = 1
        self.deg[i] += 1
        self.deg[m + j] += 1
        self._refresh(i)
        self._refresh(m + j)

    def _flip(self, a, b, enter):
        m = self.m
        self.cur[bisect_left(self.keys, a * self.n + b)] = enter
        if enter:
            self.unused[a] &= ~(1 << b)
            self.unused_in[b] &= ~(1 << a)
            self.used[b] |= 1 << a
            self.used_in[a] |= 1 << b
        else:
            self.used[b] &= ~(1 << a)
            self.used_in[a] &= ~(1 << b)
            self.unused[a] |= 1 << b
            self.unused_in[b] |= 1 << a
        step = 1 if enter else -1
        self.deg[a] += step
        self.deg[m + b] += step
        self._refresh(a)
        self._refresh(m + b)


def _row_bits(rows, cols, size, width) -> list[int]:
    """Sets {c : (r, c) given} for r in range(size), each as a Python int (bit c)."""
    out = [0] * size
    if len(rows) == 0:
        return out
    present = np.unique(rows)
    matrix = np.zeros((len(present), width), dtype=bool)
    matrix[np.searchsorted(present, rows), cols] = True
    packed = np.packbits(matrix, axis=1, bitorder="little")
    for r, bits in zip(present.tolist(), packed):
        out[r] = int.from_bytes(bits.tobytes(), "little")
    return out


def _low(mask: int) -> int:
    return (mask & -mask).bit_length() - 1


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
