"""Sequential LPs for the nucleolus over an explicit, growable set of coalitions.

The engine behind :mod:`market.nucleolus` (Kopelowitz 1967; Maschler, Peleg &
Shapley 1979): stage by stage, minimise the largest excess of the unsettled
coalitions, fix the coalitions tight in *every* optimal solution, drop those whose
characteristic vector falls in the span of the fixed ones, until the fixed rows
have rank n.  Coalitions are bitmask ints (bit p = player p), so no result depends
on set iteration order.  Numerics: see :mod:`market.nucleolus`.

With a separator, each stage's level is certified by a point that reaches it in the
full game (the separator finds nothing above it there).  :meth:`Stages.use_pool`
switches on a cut pool (the LPs hold only the coalitions that have mattered; all
known ones are checked at every separation point) and separation at the optimal
face point nearest to a known feasible point, with in-out midpoints (Ben-Ameur &
Neto 2007) as a safeguard -- used for markets capacitated on both sides, where the
plain loop (separate at an LP vertex) stalled.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from market.exact_linalg import extend_basis, integer_null_basis

__all__ = ["NucleolusError", "TOL", "Stages", "integer_null_basis", "mask_bits", "mask_members", "point_mask",
           "room", "rows_matrix"]

TOL = 1e-7
DENSE_UP_TO = 24        # players up to which the coalition rows are kept dense (Stages._free_arrays)
MIDPOINT_AFTER = 8      # in-out midpoints from this round of a stage on (see Stages._in_out)
_HIGHS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


class NucleolusError(ValueError):
    """Bad game input (empty imputation set, wrong table size) or LP failure."""


def _lp(c, A_ub, b_ub, A_eq, b_eq, bounds):
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds,
                  method="highs", options=_HIGHS)
    if res.status != 0:
        raise NucleolusError(f"nucleolus LP failed: {res.message}")
    return res


def mask_bits(mask: int, n: int) -> np.ndarray:
    """The 0/1 membership vector of the coalition with bitmask ``mask`` (bit p = player p)."""
    if n < 63:
        return (mask >> np.arange(n)) & 1
    return np.array([mask >> p & 1 for p in range(n)], dtype=np.int64)


def mask_members(mask: int):
    """The players of the coalition with bitmask ``mask``, lowest first (one step per
    member, whatever the number of players)."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def point_mask(point, n: int) -> int:
    """The bitmask of the coalition whose membership is ``point[:n]`` (an MILP's 0/1 values,
    rounded): the inverse of :func:`mask_bits`."""
    z = np.round(point[:n]).astype(int)
    return sum(1 << p for p in range(n) if z[p])


def dense_rows(masks: list[int], n: int) -> np.ndarray:
    """The 0/1 rows of ``masks`` as a dense float array (few rows, few players: the
    sparse :func:`rows_matrix` costs more to build than it saves)."""
    if n < 63 and masks:
        return mask_bits(np.array(masks, dtype=np.int64)[:, None], n).astype(float)
    return rows_matrix(masks, n).toarray()


def room(buffer: np.ndarray, used: int, need: int, fill: float = 0.0) -> np.ndarray:
    """``buffer`` (one row per entry along its first axis) with room for ``need`` rows:
    itself if it has them, else a buffer twice as long (or ``need``) holding its first
    ``used`` rows, the rest ``fill``."""
    if need <= len(buffer):
        return buffer
    grown = np.full((max(2 * len(buffer), need),) + buffer.shape[1:], fill, dtype=buffer.dtype)
    grown[:used] = buffer[:used]
    return grown


def rows_matrix(masks: list[int], n: int) -> sp.csr_matrix:
    rows, cols = [], []
    for r, mask in enumerate(masks):
        for p in mask_members(mask):
            rows.append(r)
            cols.append(p)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(masks), n))


class Stages:
    """Sequential LPs over an explicit, growable set of coalitions (bitmask ints).

    ``separate(x, threshold, stages)`` (optional) returns coalitions (mask, value)
    whose excess at x exceeds ``threshold`` among those whose characteristic vector
    is *not* in the span of the fixed rows (``stages.null_basis()`` gives an exact
    integer basis of their null space, ``stages.basis`` an orthonormal basis of the
    rows themselves) and not already free or settled; without it
    the given coalitions are assumed to be all that matter.
    """

    def __init__(self, n, grand, lower, masks, values, separate=None):
        self.n = n
        self.scale = max(1.0, abs(grand), float(np.max(np.abs(values), initial=0.0)),
                         float(np.max(np.abs(lower), initial=0.0)))
        self.grand = grand / self.scale
        self.lower = np.asarray(lower, dtype=float) / self.scale
        full = (1 << n) - 1
        self.free: dict[int, float] = {mk: vl / self.scale for mk, vl in zip(masks, values)
                                       if 0 < mk < full}
        self.separate = separate
        self.settled: set[int] = set()
        self.eq_rows = [np.ones(n)]
        self.eq_rhs = [self.grand]
        self.basis = np.ones((n, 1)) / np.sqrt(n)
        self.inner = None      # in-out separation's feasible point (x, eps), scaled
        self.active = None     # with a cut pool: the free coalitions in the LPs
        self.plp = None        # with a cut pool: the persistent model of its LPs

    # -- helpers ------------------------------------------------------------------
    def _free_arrays(self, only=None, without=None):
        """Free coalitions sorted by mask (those in ``only``, or not in ``without``, if
        given), their incidence rows and values (:meth:`_rows_of`)."""
        if only is not None:
            return self._rows_of(sorted(self.free.keys() & only))
        if without is not None:
            return self._rows_of(sorted(set(self.free).difference(without)))
        return self._rows_of(sorted(self.free))

    def _rows_of(self, masks):
        """(masks, their rows, their values) for free coalitions ``masks``.

        Rows come from a cached matrix of every coalition seen so far (new rows
        appended as the working set grows), so each LP does not re-expand bitmasks:
        dense below ``DENSE_UP_TO`` players (a row is a few hundred bytes, and taking
        rows of a dense array is ~10x cheaper than of a sparse one), else sparse.
        """
        if not hasattr(self, "_pos"):
            self._pos = {}
            # dense: a buffer that doubles when full (rows past len(self._pos) unused)
            self._matrix = np.zeros((64, self.n)) if self.n <= DENSE_UP_TO else sp.csr_matrix((0, self.n))
            self._values = np.zeros(64)     # each coalition's value (fixed), by row
        fresh = [mk for mk in masks if mk not in self._pos]
        if fresh:
            start = len(self._pos)
            self._pos.update((mk, start + k) for k, mk in enumerate(fresh))
            self._values = room(self._values, start, len(self._pos))
            self._values[start:len(self._pos)] = [self.free[mk] for mk in fresh]
            if self.n <= DENSE_UP_TO:
                self._matrix = room(self._matrix, start, len(self._pos))
                self._matrix[start:len(self._pos)] = dense_rows(fresh, self.n)
            else:
                self._matrix = sp.vstack([self._matrix, rows_matrix(fresh, self.n)]).tocsr()
        idx = np.fromiter(map(self._pos.__getitem__, masks), dtype=np.int64, count=len(masks))
        return masks, self._matrix[idx], self._values[idx]

    def _lp_arrays(self, extra=()):
        """The rows of the stage LPs: every free coalition, or with a cut pool
        (``self.active`` not None) only the active ones and ``extra``."""
        if self.active is None:
            return self._free_arrays()
        if self.active.isdisjoint(self.free):
            # every active row got settled: without a row the LP is unbounded
            self._activate_top(self.inner[0], 2 * self.n)
        return self._free_arrays(self.active.union(extra))

    def _activate_top(self, x, size: int) -> None:
        """Activate the ``size`` free coalitions of largest excess at x (ties by mask)."""
        masks, A, vals = self._free_arrays()
        excess = vals - A @ x
        top = np.lexsort((np.arange(len(masks)), -excess))[:size]
        self.active.update(masks[k] for k in top.tolist())

    def use_pool(self, x_inner, eps_inner, size: int) -> None:
        """Switch on in-out separation from a known feasible point and a cut pool.

        ``x_inner`` (value units) must satisfy the fixed rows with every free
        coalition's excess at most ``eps_inner`` -- e.g. a core point and 0.  The
        LPs then hold only the ``size`` free coalitions of largest excess there plus
        whatever the pool check and the separator activate later.
        """
        from market.highs import PersistentLP
        x = np.asarray(x_inner, dtype=float) / self.scale
        self.inner = (x, eps_inner / self.scale)
        self.active = set()
        self._activate_top(x, size)
        # the pool's LPs share one warm-started HiGHS model (market.highs)
        self.plp = PersistentLP(self.n, self.lower, self.eq_rows, self.eq_rhs)

    def null_basis(self) -> np.ndarray:
        """Exact integer basis of the null space of the fixed rows (for separators)."""
        if getattr(self, "_null", (None,))[0] != len(self.eq_rows):
            self._null = (len(self.eq_rows), integer_null_basis(self.eq_rows, self.n))
        return self._null[1]

    def _add_violations(self, x, level) -> bool:
        """Activate or add the coalitions with excess above ``level`` at x: pool first."""
        if self.active is not None:
            masks, A, vals = self._free_arrays(without=self.active)
            if masks:
                excess = vals - A @ x
                hit = np.flatnonzero(excess > level + TOL)
                if len(hit):
                    top = hit[np.lexsort((hit, -excess[hit]))][:2 * self.n]
                    self.active.update(masks[k] for k in top.tolist())
                    return True
        if self.separate is None:
            return False
        new: dict[int, float] = {}
        for mask, value in self.separate(x * self.scale, (level + TOL) * self.scale, self):
            if mask not in self.free and mask not in self.settled:
                new[mask] = value / self.scale
        if not new:
            return False
        if self._in_span(dense_rows(list(new), self.n)).any():
            raise NucleolusError("separation returned a settled coalition (numerics)")
        self.free.update(new)
        if self.active is not None:
            self.active.update(new)
        return True

    def remember(self, mask: int, value: float) -> None:
        """Keep a coalition in the cut pool without calling it violated (a separator's
        best candidate that did not beat the level: likely to matter at the next
        stage).  Only with a pool; it must lie outside the span of the fixed rows."""
        if self.active is not None and mask not in self.free and mask not in self.settled:
            self.free[mask] = value / self.scale

    def _in_span(self, A) -> np.ndarray:
        proj = np.asarray(A @ self.basis)
        sizes = np.asarray(A.sum(axis=1)).ravel()
        return sizes - (proj ** 2).sum(axis=1) <= 1e-9

    def _add_equality(self, row, rhs) -> bool:
        basis = extend_basis(self.basis, row)
        if basis is None:
            # implied by the rows already fixed (its excess is constant and tight);
            # adding it would only give HiGHS a redundant, float-inconsistent equation
            return False
        self.eq_rows.append(row)
        self.eq_rhs.append(rhs)
        self.basis = basis
        return True

    def settle_level_zero(self, rows, rhs, masks) -> None:
        """Fix a stage whose level is known to be 0 from its always-tight set.

        ``rows`` / ``rhs`` are independent equalities (the grand coalition's
        included) spanning every constraint with excess 0 in every point of the
        stage's optimal face -- e.g. the core's affine hull,
        :func:`market.core_hull.core_equalities` -- and replace the fixed rows;
        ``masks`` are coalitions among them, settled.  Every free coalition in
        their span is settled too.  The orthonormal basis comes from one QR.
        """
        self.eq_rows = [np.asarray(r, dtype=float) for r in rows]
        self._null = (None, None)
        self.eq_rhs = [v / self.scale for v in rhs]
        for mask in masks:
            self.free.pop(mask, None)
            self.settled.add(mask)
        F = np.array(self.eq_rows)
        self.basis = np.eye(self.n) if len(F) == self.n else np.linalg.qr(F.T)[0]
        self._settle_spanned()

    def _settle_spanned(self):
        if self.free:
            masks, A, _ = self._free_arrays()
            for mask, gone in zip(masks, self._in_span(A)):
                if gone:
                    del self.free[mask]
                    self.settled.add(mask)

    # -- one stage ----------------------------------------------------------------
    def _stage_lp(self):
        n = self.n
        rounds = 0
        while True:
            masks, A, vals = self._lp_arrays()
            if self.plp is not None:
                x, eps, duals = self.plp.stage(masks, A, vals, self.eq_rows, self.eq_rhs)
            else:
                A_ub = sp.hstack([sp.csr_matrix(-A), -np.ones((len(masks), 1))]).tocsr()
                A_eq = np.c_[np.array(self.eq_rows), np.zeros(len(self.eq_rows))]
                bounds = [(lo, None) for lo in self.lower] + [(None, None)]
                c = np.r_[np.zeros(n), 1.0]
                res = _lp(c, A_ub, -vals, A_eq, np.array(self.eq_rhs), bounds)
                x, eps, duals = res.x[:n], res.x[n], -res.ineqlin.marginals
            if self.inner is None:
                if not self._add_violations(x, eps):
                    return masks, A, vals, x, eps, duals
                continue
            if self._in_out(x, eps, A, vals, rounds):
                return masks, A, vals, x, eps, duals
            rounds += 1

    def _in_out(self, x, eps, A, vals, rounds) -> bool:
        """One round of separation from a known feasible point; True once the LP
        level eps is certified by a point that reaches it.

        ``self.inner`` is feasible (every free excess <= its level; at the start the
        core point at level 0, then each stage's certifying point).  The separator
        runs at the point of the LP's optimal face nearest to it (L1): a vertex of
        that face lies far outside the feasible set while the face still lacks most
        of its facets (the 40-player market's stall), the nearest point is where the
        missing cuts are, and once it is feasible the level is certified.  From the
        ``MIDPOINT_AFTER``-th round of a stage on, the in-out step of Ben-Ameur &
        Neto (Networks 49, 2007) comes first: separate at the midpoint to the face
        and move the feasible point there if nothing is violated, which shrinks the
        gap to the LP level geometrically whatever the LP does (a safeguard: most
        stages end in one or two rounds without it).
        """
        x_in, e_in = self.inner
        if e_in - eps <= TOL:   # it reaches the LP level already (a repeated level)
            return True
        xf = self._nearest_on_face(x_in, eps, A, vals, x)
        if rounds >= MIDPOINT_AFTER:
            xa, ea = 0.5 * (xf + x_in), 0.5 * (eps + e_in)
            if self._add_violations(xa, ea):
                return False
            self.inner = (xa, ea)
            if ea - eps <= TOL:
                return True
            xf = self._nearest_on_face(xa, eps, A, vals, xf)
        if self._add_violations(xf, eps):
            return False
        self.inner = (xf, eps)
        return True

    def _nearest_on_face(self, x_in, eps, A, vals, fallback):
        """argmin ||x - x_in||_1 over the stage LP's optimal face (level eps)."""
        n = self.n
        if self.plp is not None:       # over the rows of the stage LP just solved
            x = self.plp.face(x_in, eps)
            return fallback if x is None else x
        k = A.shape[0]
        eye = sp.eye(n, format="csr")
        A_ub = sp.vstack([sp.hstack([sp.csr_matrix(-A), sp.csr_matrix((k, n))]),
                          sp.hstack([eye, -eye]), sp.hstack([-eye, -eye])]).tocsr()
        b_ub = np.r_[eps - vals, x_in, -x_in]
        A_eq = np.c_[np.array(self.eq_rows), np.zeros((len(self.eq_rows), n))]
        bounds = [(lo, None) for lo in self.lower] + [(0, None)] * n
        res = linprog(np.r_[np.zeros(n), np.ones(n)], A_ub=A_ub, b_ub=b_ub, A_eq=A_eq,
                      b_eq=np.array(self.eq_rhs), bounds=bounds, method="highs", options=_HIGHS)
        return res.x[:n] if res.status == 0 else fallback

    def _always_tight(self, masks, A, vals, x, eps, duals):
        """Coalitions (indices into masks) and players at their bound tight in every optimum."""
        n = self.n
        excess = vals - A @ x
        cand = np.flatnonzero(excess >= eps - TOL)
        sure = [masks[k] for k in cand.tolist() if duals[k] > 1e-9]
        at_bound = x - self.lower <= TOL
        if self.inner is not None and self.inner[1] == eps:
            # the certifying point is another optimum of this LP: what is slack
            # there is not tight in every optimum (saves slack LPs below)
            cand = cand[vals[cand] - A[cand] @ self.inner[0] >= eps - TOL]
            at_bound &= self.inner[0] - self.lower <= TOL
        unsure = [masks[k] for k in cand.tolist() if duals[k] <= 1e-9]
        at_bound = np.flatnonzero(at_bound).tolist()
        if self.active is not None:
            # a player whose bound is fixed already stays there (cut pool only)
            at_bound = [i for i in at_bound if 1.0 - float(self.basis[i] @ self.basis[i]) > 1e-9]
        while unsure or at_bound:
            masks, A, vals = self._lp_arrays(unsure)  # may have grown by separation
            # No separation here: the working set relaxes the stage's optimal face, so
            # a coalition that cannot be slack here cannot be slack at all (never a
            # wrong fix); one that only looks slackable stays free and is fixed at the
            # next stage, whose optimum is then the same eps with a positive dual.
            if self.plp is not None:
                slack = self.plp.slack(masks, A, vals, self.eq_rows, self.eq_rhs, eps, unsure, at_bound)
            else:
                slack = self._slack_lp(masks, A, vals, eps, unsure, at_bound)
            if not (slack > TOL).any():
                break
            nu = len(unsure)
            unsure = [mk for mk, s in zip(unsure, slack[:nu]) if s <= TOL]
            at_bound = [i for i, s in zip(at_bound, slack[nu:]) if s <= TOL]
        return sure + unsure, at_bound

    def _slack_lp(self, masks, A, vals, eps, unsure, at_bound):
        """max the slacks of ``unsure`` coalitions and ``at_bound`` players at level eps
        (each in [0, 1]), through ``linprog``: the slacks, coalitions first."""
        n = self.n
        where = {mk: k for k, mk in enumerate(masks)}
        nu, nb = len(unsure), len(at_bound)
        S = sp.csr_matrix((np.ones(nu), ([where[mk] for mk in unsure], np.arange(nu))),
                          shape=(len(masks), nu))
        # v(S) - x(S) + s_S <= eps  for every free S (s only on the unsure ones)
        A_ub = sp.hstack([sp.csr_matrix(-A), S, sp.csr_matrix((len(masks), nb))])
        # lower_i + s_i <= x_i  for the players at their bound
        B = sp.csr_matrix((np.ones(nb), (np.arange(nb), at_bound)), shape=(nb, n))
        A_ub = sp.vstack([A_ub, sp.hstack([-B, sp.csr_matrix((nb, nu)), sp.eye(nb)])]).tocsr()
        b_ub = np.r_[eps - vals, -self.lower[at_bound]]
        A_eq = np.c_[np.array(self.eq_rows), np.zeros((len(self.eq_rows), nu + nb))]
        bounds = [(lo, None) for lo in self.lower] + [(0.0, 1.0)] * (nu + nb)
        c = np.r_[np.zeros(n), -np.ones(nu + nb)]
        return _lp(c, A_ub, b_ub, A_eq, np.array(self.eq_rhs), bounds).x[n:]

    def solve(self) -> np.ndarray:
        n = self.n
        while self.basis.shape[1] < n:
            masks, A, vals, x, eps, duals = self._stage_lp()
            tight, at_bound = self._always_tight(masks, A, vals, x, eps, duals)
            rank = self.basis.shape[1]
            rows = dense_rows(tight, n) if tight else ()
            for mask, row in zip(tight, rows):
                value = self.free.pop(mask)
                self.settled.add(mask)
                self._add_equality(row, value - eps)
            for i in at_bound:
                self._add_equality(np.eye(n)[i], self.lower[i])
            if self.basis.shape[1] == rank:
                raise NucleolusError("nucleolus stage made no progress (numerical trouble)")
            self._settle_spanned()
        F, f = np.array(self.eq_rows), np.array(self.eq_rhs)
        # the rows are independent and number n: a square, regular system
        x = np.linalg.solve(F, f) if len(F) == n else np.linalg.lstsq(F, f, rcond=None)[0]
        return x * self.scale
