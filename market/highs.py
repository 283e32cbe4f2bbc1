"""HiGHS through its own binding (``highspy``): persistent LPs and the MILPs.

* :func:`milp` solves the separation and certificate MILPs without scipy's wrapper
  (~2 ms of each ~15 ms call, docs/performance.md), single-threaded (HiGHS's worker
  threads only add CPU time on models this small).
* :class:`BMatchingLP` gives coalition values v(S) from one warm-started b-matching LP.
* :class:`PersistentLP` holds the three LPs of a stage with a cut pool in one model.
  :class:`market.sequential_lp.Stages` solves, per round of a stage, the stage LP
  (min eps), the face-point LP (min ||x - x_in||_1 at level eps) and the always-tight
  LPs (max sum of slacks at level eps) over nearly the same rows.  Built anew through
  ``scipy.optimize.linprog``, each costs ~3 ms, most of it the wrapper; here only
  bounds and costs change between calls, so HiGHS's dual simplex restarts from the
  last basis (~1 ms with the Python around it).

  Columns: x (n), eps, d (n, the face LP's |x - x_in|), one slack per player (the
  always-tight test of a player at its bound) and one slack per coalition row.  Rows:
  x_i - d_i <= x_in_i and x_i + d_i >= x_in_i (free unless in the face LP),
  x_i - s_i >= lower_i (free unless testing player i), the fixed equalities, and
  x(S) + eps - s_S >= v(S) for every coalition ever in an LP (free unless in the
  current one).  Any optimal solution serves the sequential LPs (their certificates
  do not depend on which one HiGHS returns), so a warm start changes no result's
  exactness.
* :class:`FixedChargeLP` is the separation's branch and bound's node LP, re-solved
  from the last basis with only bounds and costs changed, and able to bound a node
  from an old basis's duals without solving it (:meth:`FixedChargeLP.bound_from`).

Why highspy 1.15 (setup.cfg: ``>=1.15,<1.16``): HiGHS 1.16 reads the processor topology
from ``/sys`` on every ``run`` (five files per call, whatever ``threads`` says), which
doubles the fixed cost of a warm re-solve (~15 -> ~32 µs on a trivial LP); the branch and
bound re-solves ~1,000 times per paper-sized round (docs/performance.md).
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dgetrf, dgetrs

from market.sequential_lp import NucleolusError, mask_bits, room

__all__ = ["BMatchingLP", "FixedChargeLP", "PersistentLP", "MilpResult", "milp"]

_INF = highspy.kHighsInf
_OPTIONS = {"output_flag": False, "threads": 1, "presolve": "off",
            "primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}
# The branch and bound's node LPs are re-solved ~10,000 times per 16 paper-sized rounds, a
# few pivots each.  At the start of each re-solve HiGHS tests its updated factorization
# against a solve (``rebuild_refactor_solution_error_tolerance``, 1e-8) before deciding
# not to refactor; skipping the test (a tolerance <= 0) and refactoring instead after at
# most 30 updates (``simplex_update_limit``, default 5000) keeps the factors fresh and
# costs ~8-10 % less per re-solve (docs/performance.md, eleventh session).
_NODE_OPTIONS = {**_OPTIONS, "rebuild_refactor_solution_error_tolerance": -1.0, "simplex_update_limit": 30}
# FixedChargeLP.bound_from keeps a dense copy of the node LP's rows over every player and
# pair: up to this many columns (a paper-sized round has ~130, the 40-player market ~410)
DENSE_COLUMNS = 4_000


_banner_shown = False


def _highs() -> highspy.Highs:
    """A new HiGHS model. HiGHS prints its banner on the process's stdout (file descriptor
    1, below ``sys.stdout``) with the first model a process makes, before any option can
    turn output off; that first model is made with the descriptor pointed at /dev/null, so
    the market's command-line output stays its own. (Where no descriptor can be opened -- a
    contract worker at its descriptor limit -- the banner goes to the worker's stdout, which
    is the node's stderr, never its frames.)"""
    global _banner_shown
    if _banner_shown:
        return highspy.Highs()
    _banner_shown = True
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return highspy.Highs()
    saved = os.dup(1)
    try:
        os.dup2(devnull, 1)
        return highspy.Highs()
    finally:
        ctypes.CDLL(None).fflush(None)  # what C's stdio buffered goes to /dev/null too
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _solved(h: highspy.Highs, what: str) -> highspy.Highs:
    """Run ``h``; :class:`NucleolusError` naming ``what`` unless HiGHS found the optimum."""
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise NucleolusError(f"{what} failed: {h.modelStatusToString(status)}")
    return h


def _model(options, cost, col_lower, col_upper, row_lower, row_upper, A, integrality=None) -> highspy.Highs:
    """A HiGHS model with ``options`` holding the problem: min cost.x, col_lower <= x <=
    col_upper, row_lower <= A x <= row_upper (``A`` column-wise), x_k integral where
    ``integrality[k]``."""
    h = _highs()
    for key, value in options.items():
        h.setOptionValue(key, value)
    A = sp.csc_matrix(A)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = A.shape[1], A.shape[0]
    lp.col_cost_ = np.asarray(cost, dtype=float)
    lp.col_lower_ = np.asarray(col_lower, dtype=float)
    lp.col_upper_ = np.asarray(col_upper, dtype=float)
    lp.row_lower_ = np.asarray(row_lower, dtype=float)
    lp.row_upper_ = np.asarray(row_upper, dtype=float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr
    lp.a_matrix_.index_ = A.indices
    lp.a_matrix_.value_ = A.data
    if integrality is not None:
        lp.integrality_ = [highspy.HighsVarType.kInteger if k else highspy.HighsVarType.kContinuous
                           for k in integrality]
    h.passModel(lp)
    return h


class PersistentLP:
    """The stage, face-point and always-tight LPs of :class:`Stages` in one model.

    ``lower`` are the players' lower bounds; ``eq_rows``/``eq_rhs`` the fixed rows so
    far (later ones are appended by :meth:`stage` etc. as the stages fix more).
    """

    def __init__(self, n, lower, eq_rows, eq_rhs):
        self.n = n
        self.lower = np.asarray(lower, dtype=float)
        eye = sp.eye(n, format="csr")
        zero = sp.csr_matrix((n, 1))
        # distance rows (2n) and player rows (n) over columns x, eps, d, s_player
        rows = sp.vstack([sp.hstack([eye, zero, -eye, sp.csr_matrix((n, n))]),
                          sp.hstack([eye, zero, eye, sp.csr_matrix((n, n))]),
                          sp.hstack([eye, zero, sp.csr_matrix((n, n)), -eye])])
        self.h = _model(_OPTIONS, np.r_[np.zeros(n), 1.0, np.zeros(2 * n)],
                        np.r_[self.lower, -_INF, np.zeros(2 * n)], np.r_[np.full(2 * n + 1, _INF), np.zeros(n)],
                        np.full(3 * n, -_INF), np.full(3 * n, _INF), rows)
        self.n_rows, self.n_cols = 3 * n, 3 * n + 1
        self.n_eq = 0
        self.row_of: dict[int, int] = {}       # coalition mask -> its row (slack column = col_of)
        self.col_of: dict[int, int] = {}
        self.active: set[int] = set()
        self._sync_eq(eq_rows, eq_rhs)

    # -- model upkeep -----------------------------------------------------------
    def _sync_eq(self, eq_rows, eq_rhs):
        if len(eq_rows) < self.n_eq:
            raise ValueError("fixed rows can only be appended to a persistent LP")
        new = eq_rows[self.n_eq:]
        if len(new):
            rhs = np.asarray(eq_rhs[self.n_eq:], dtype=float)
            self.h.addRows(len(new), rhs, rhs, *_row_arrays(np.array(new)))
            self.n_rows += len(new)
            self.n_eq = len(eq_rows)

    def _sync(self, masks, A, vals, eq_rows, eq_rhs):
        """Make the coalition rows in the LP exactly ``masks`` (rows ``A``, values ``vals``)."""
        self._sync_eq(eq_rows, eq_rhs)
        fresh = [k for k, mk in enumerate(masks) if mk not in self.row_of]
        if fresh:
            lo = np.asarray(vals, dtype=float)[fresh]
            self.h.addRows(len(fresh), lo, np.full(len(fresh), _INF), *_row_arrays(A[fresh], eps=True))
            rows = np.arange(self.n_rows, self.n_rows + len(fresh), dtype=np.int32)
            self.h.addCols(len(fresh), np.zeros(len(fresh)), np.zeros(len(fresh)),
                           np.zeros(len(fresh)), len(fresh), np.arange(len(fresh), dtype=np.int32),
                           rows, -np.ones(len(fresh)))
            for k, r, c in zip(fresh, rows.tolist(), range(self.n_cols, self.n_cols + len(fresh))):
                self.row_of[masks[k]] = r
                self.col_of[masks[k]] = c
            self.n_rows += len(fresh)
            self.n_cols += len(fresh)
            self.active.update(masks[k] for k in fresh)
        want = set(masks)
        off = [self.row_of[mk] for mk in self.active - want]
        on = [k for k, mk in enumerate(masks) if mk not in self.active]
        if off:
            self._row_bounds(off, np.full(len(off), -_INF), np.full(len(off), _INF))
        if on:
            self._row_bounds([self.row_of[masks[k]] for k in on],
                             np.asarray(vals, dtype=float)[on], np.full(len(on), _INF))
        self.active = want

    def _row_bounds(self, rows, lo, hi):
        self.h.changeRowsBounds(len(rows), np.asarray(rows, dtype=np.int32), np.asarray(lo, float),
                                np.asarray(hi, float))

    def _col_bounds(self, cols, lo, hi):
        self.h.changeColsBounds(len(cols), np.asarray(cols, dtype=np.int32), np.asarray(lo, float),
                                np.asarray(hi, float))

    def _costs(self, cols, costs):
        self.h.changeColsCost(len(cols), np.asarray(cols, dtype=np.int32), np.asarray(costs, float))

    def _run(self):
        return _solved(self.h, "nucleolus LP").getSolution()

    # -- the three LPs ------------------------------------------------------------
    def stage(self, masks, A, vals, eq_rows, eq_rhs):
        """min eps over the rows: (x, eps, duals of the coalition rows, >= 0)."""
        self._sync(masks, A, vals, eq_rows, eq_rhs)
        sol = self._run()
        col = np.array(sol.col_value)
        dual = np.array(sol.row_dual)
        return col[:self.n], float(col[self.n]), dual[[self.row_of[mk] for mk in masks]]

    def face(self, x_in, eps):
        """argmin ||x - x_in||_1 at level eps over the current rows (None if infeasible)."""
        n = self.n
        eps_and_d = np.arange(n, 2 * n + 1, dtype=np.int32)    # the level's column, then d
        distance = np.arange(2 * n, dtype=np.int32)             # the distance rows
        free = np.full(n, _INF)
        self._col_bounds([n], [eps], [eps])
        self._costs(eps_and_d, np.concatenate(([0.0], np.ones(n))))
        self._row_bounds(distance, np.concatenate((-free, x_in)), np.concatenate((x_in, free)))
        try:
            self.h.run()
            ok = self.h.getModelStatus() == highspy.HighsModelStatus.kOptimal
            x = np.array(self.h.getSolution().col_value)[:n] if ok else None
        finally:
            self._row_bounds(distance, np.full(2 * n, -_INF), np.full(2 * n, _INF))
            self._costs(eps_and_d, np.concatenate(([1.0], np.zeros(n))))
            self._col_bounds([n], [-_INF], [_INF])
        return x

    def slack(self, masks, A, vals, eq_rows, eq_rhs, eps, unsure, at_bound):
        """max sum of slacks of ``unsure`` coalitions and ``at_bound`` players at level
        eps: the slacks (coalitions first), each in [0, 1]."""
        n = self.n
        self._sync(masks, A, vals, eq_rows, eq_rhs)
        cols = [self.col_of[mk] for mk in unsure] + [2 * n + 1 + i for i in at_bound]
        prow = [2 * n + i for i in at_bound]
        self._col_bounds([n], [eps], [eps])
        self._costs([n] + cols, np.concatenate(([0.0], -np.ones(len(cols)))))
        self._col_bounds(cols, np.zeros(len(cols)), np.ones(len(cols)))
        if prow:
            self._row_bounds(prow, self.lower[list(at_bound)], np.full(len(prow), _INF))
        try:
            sol = self._run()
            return np.array(sol.col_value)[cols]
        finally:
            self._col_bounds(cols, np.zeros(len(cols)), np.zeros(len(cols)))
            self._costs([n] + cols, np.concatenate(([1.0], np.zeros(len(cols)))))
            self._col_bounds([n], [-_INF], [_INF])
            if prow:
                self._row_bounds(prow, np.full(len(prow), -_INF), np.full(len(prow), _INF))


def _row_arrays(A, eps=False):
    """Rows ``A`` (dense or sparse), with ``eps`` a 1 in the level's column after them,
    as HiGHS's row-wise arrays (nnz, starts, indices, values).  Dense rows skip
    scipy.sparse, whose construction costs ~15x more than the numpy here on these
    few-row blocks."""
    if sp.issparse(A):
        B = sp.hstack([sp.csr_matrix(A), np.ones((A.shape[0], 1))]).tocsr() if eps else sp.csr_matrix(A)
        return B.nnz, B.indptr.astype(np.int32), B.indices.astype(np.int32), B.data
    M = np.concatenate((A, np.ones((len(A), 1))), axis=1) if eps else np.asarray(A, dtype=float)
    r, c = np.nonzero(M)
    start = np.concatenate(([0], np.cumsum(np.count_nonzero(M, axis=1)))).astype(np.int32)
    return len(c), start, c.astype(np.int32), M[r, c]


@dataclass(frozen=True, slots=True)
class MilpResult:
    """An MILP's outcome in ``scipy.optimize.milp``'s terms: status 0 optimal (or the
    best point found when nothing beats the cut-off), 2 infeasible below the
    cut-off, 1 anything else; x and fun None without a point."""

    status: int
    x: np.ndarray | None
    fun: float | None
    message: str
    improving: tuple = ()       # HiGHS's earlier improving points (with ``save``)


def milp(c, A, lower, upper, integrality, options, cutoff, save=False) -> MilpResult:
    """min c.x s.t. lower <= A x <= upper, 0 <= x <= 1, x_k integral where
    ``integrality[k]``; ``cutoff`` is HiGHS's objective bound (branches that cannot
    get below it are pruned); ``options`` are HiGHS options."""
    options = {**options, "output_flag": False, "threads": 1, "objective_bound": float(cutoff)}
    if save:
        options["mip_improving_solution_save"] = True
    width = A.shape[1]
    h = _model(options, c, np.zeros(width), np.ones(width), lower, upper, A, integrality)
    h.run()
    status = h.getModelStatus()
    message = h.modelStatusToString(status)
    if status in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kObjectiveBound):
        return MilpResult(2, None, None, message)       # nothing gets below the cut-off
    info = h.getInfo()
    if status == highspy.HighsModelStatus.kOptimal and info.primal_solution_status:
        improving = tuple(np.array(p.col_value) for p in h.getSavedMipSolutions()) if save else ()
        return MilpResult(0, np.array(h.getSolution().col_value), info.objective_function_value,
                          message, improving)
    return MilpResult(1, None, None, message)


class BMatchingLP:
    """v(S) of the trading game for many coalitions S from one persistent LP.

    max sum_e w_e y_e, 0 <= y_e <= 1 on the positive pairs, sum_{e at p} y_e <= b_p if
    p is in S, else 0: the b-matching LP, whose constraint matrix (a bipartite incidence
    matrix with bounds) is totally unimodular.  Only the row bounds change between
    coalitions, so the dual simplex restarts from the last basis (~0.1 ms a value
    against ~0.3 ms for a min-cost flow in pure Python).  Exact: at any basis of a TU
    matrix with integer data, B^-1 is integral, so the reduced costs are integers and
    one within HiGHS's tolerance (1e-7) of 0 is >= 0 -- the basis HiGHS calls optimal
    is optimal -- and the objective is an integer; it is rounded.
    """

    def __init__(self, w, bc, sc):
        w = np.asarray(w)
        m, n = w.shape
        I, J = np.nonzero(w > 0)
        E, N = len(I), m + n
        A = sp.csc_matrix((np.ones(2 * E), (np.r_[I, m + J], np.r_[np.arange(E), np.arange(E)])),
                          shape=(N, E))
        self.n = N
        self.caps = np.r_[bc, sc].astype(float)
        self.h = None
        if E == 0:                  # no positive pair: every value is 0 (HiGHS: empty model)
            return
        self.h = _model(_OPTIONS, -w[I, J].astype(float), np.zeros(E), np.ones(E), np.full(N, -_INF), self.caps, A)
        self._rows = np.arange(N, dtype=np.int32)
        self._lower = np.full(N, -_INF)

    def value(self, mask: int) -> int:
        """v(S) for the coalition with bitmask ``mask`` (bit p = player p)."""
        if self.h is None:
            return 0
        N = self.n
        self.h.changeRowsBounds(N, self._rows, self._lower, self.caps * mask_bits(mask, N))
        return -round(_solved(self.h, "b-matching LP").getObjectiveValue())


class FixedChargeLP:
    """The LP relaxation of max_S v(S) - x(S) with membership costs, for a branch and bound.

    Columns z_p (membership, players: buyers then sellers) then y_e (use of a positive
    pair e, in the order they join), all in [0, 1]; min x.z - w.y subject to
    sum_{e at p} y_e <= b_p z_p and the link rows y_e <= z_p (where b_p >= 2; with
    b_p = 1 the degree row says it already).  The link rows make this relaxation nearly
    integral (docs/market.md, "The separation"), and for 0/1 z the rest is a bipartite
    b-matching LP, totally unimodular, so the optimum at 0/1 z is exactly v(S) - x(S).

    Link rows and pairs join the model as they are needed: :meth:`solve` adds the
    link rows its solution breaks and the pairs whose reduced cost is negative, and
    solves again until there are none -- then the solution is optimal for the whole
    LP -- and keeps them.  The model starts with each player's b_p + 1 heaviest pairs.
    On the benchmark markets a fraction of either is ever needed, and a smaller model
    is faster to re-solve (21 players 0.21 -> 0.19 s, 40 players 2.4 -> 1.55 s).
    Further rows on the memberships (:meth:`rows`: the separation's cases) are added
    once and left free while unused; the branch and bound changes only costs and
    bounds, so HiGHS's dual simplex restarts from the last basis.
    """

    def __init__(self, w, bc, sc):
        w = np.asarray(w)
        m, n = w.shape
        I, J = np.nonzero(w > 0)
        E, N = len(I), m + n
        caps = np.r_[bc, sc].astype(float)
        self.N, self.E = N, E
        self.w = w[I, J].astype(float)
        self._ends = np.c_[I, m + J]                    # each pair's two players
        # the model starts with the memberships, the degree rows and the pairs each
        # player would use first (its b_p + 1 heaviest); the rest join when priced in
        self.h = _model(_NODE_OPTIONS, np.zeros(N), np.zeros(N), np.ones(N), np.full(N, -_INF), np.zeros(N),
                        sp.csc_matrix(-np.diag(caps)))
        self.n_rows, self.n_cols = N, N
        # the model's rows, dense over z and every pair's y (in the model or not), with
        # their bounds, and each model column's place there: for :meth:`bound_from`
        # (not kept for markets with more than DENSE_COLUMNS players and pairs)
        self._dense = np.zeros((4 * N, N + E)) if N + E <= DENSE_COLUMNS else None
        if self._dense is not None:
            self._dense[np.arange(N), np.arange(N)] = -caps
            self._dense[I, N + np.arange(E)] = 1.0
            self._dense[m + J, N + np.arange(E)] = 1.0
        self._row_lower = np.full(4 * N, -_INF)
        self._row_upper = np.zeros(4 * N)
        self._place = np.arange(N)
        self._c = np.concatenate((np.zeros(N), -self.w))
        self._col = np.full(E, -1)                      # pair -> its y column, -1 while out
        self._w_in = np.zeros(0)
        # the link rows y_e <= z_p (b_p >= 2), by pair and player, and which are in
        self._link_pair = np.r_[np.arange(E), np.arange(E)]
        self._link_z = np.r_[I, m + J]
        keep = caps[self._link_z] >= 2
        self._link_pair, self._link_z = self._link_pair[keep], self._link_z[keep]
        self._linked = np.zeros(len(self._link_pair), dtype=bool)
        first = set()
        for p in range(N):
            at = np.flatnonzero((self._ends == p).any(axis=1))
            first.update(at[np.argsort(-self.w[at], kind="stable")[:int(caps[p]) + 1]].tolist())
        self._add_pairs(np.array(sorted(first), dtype=np.int64))
        self.row_of: dict = {}          # (cols, vals) -> row, for :meth:`rows`
        self._z = np.arange(N, dtype=np.int32)

    def _add_pairs(self, pairs) -> None:
        """Columns y_e for ``pairs`` (cost -w_e, in [0, 1], in their two degree rows)."""
        k = len(pairs)
        starts = np.arange(0, 2 * k + 1, 2, dtype=np.int32)
        self.h.addCols(k, -self.w[pairs], np.zeros(k), np.ones(k), 2 * k, starts,
                       self._ends[pairs].ravel().astype(np.int32), np.ones(2 * k))
        self._col[pairs] = np.arange(self.n_cols, self.n_cols + k)
        self._place = np.r_[self._place, self.N + pairs]
        self._w_in = np.r_[self._w_in, self.w[pairs]]           # w of the y columns, in order
        self.n_cols += k
        self._refresh()

    def _refresh(self) -> None:
        """What :meth:`_run_linked` checks, after pairs or link rows joined."""
        self._out = np.flatnonzero(self._col < 0)               # pairs still out
        ends = self._ends[self._out]
        self._out_a, self._out_b, self._out_w = ends[:, 0], ends[:, 1], -self.w[self._out]
        # each link row's y column, -1 once the row is in or while its pair is out
        self._link_col = np.where(self._linked, -1, self._col[self._link_pair])
        self._check = np.flatnonzero(self._link_col >= 0)
        self._check_y, self._check_z = self._link_col[self._check], self._link_z[self._check]

    def costs(self, x) -> None:
        """Membership costs x (one per player)."""
        x = np.array(x, dtype=float)
        self._c = np.concatenate((x, -self.w))          # every column's cost, for bound_from
        self.h.changeColsCost(self.N, self._z, x)

    def row_bounds(self, case=None):
        """Every row's (lower, upper) bounds with ``case``'s rows bounded (a case as for
        :func:`market.separation._bounded`), for :meth:`bound_from`."""
        lower, upper = self._row_lower[:self.n_rows].copy(), self._row_upper[:self.n_rows].copy()
        if case is not None:
            lower[case[0]], upper[case[0]] = case[1], case[2]
        return lower, upper

    def _join_rows(self, k, at, places, values, upper) -> None:
        """Record ``k`` rows joining the model (after those in it): coefficients
        ``values`` at (row ``at`` among them, place ``places`` over z and every y),
        lower bound -inf, upper bound ``upper``."""
        need = self.n_rows + k
        self._row_lower = room(self._row_lower, self.n_rows, need, -_INF)
        self._row_upper = room(self._row_upper, self.n_rows, need)
        self._row_lower[self.n_rows:need] = -_INF
        self._row_upper[self.n_rows:need] = upper
        if self._dense is not None:
            self._dense = room(self._dense, self.n_rows, need)
            self._dense[self.n_rows + np.asarray(at), places] = values

    def rows(self, rows) -> np.ndarray:
        """Indices of the rows sum_k vals_k z_{cols_k} for each (cols, vals) of
        ``rows`` (integer coefficients on memberships), each added once and left free
        (no bounds) until :meth:`bound_rows` gives it bounds."""
        index = []
        for cols, vals in rows:
            key = (tuple(int(c) for c in cols), tuple(int(v) for v in vals))
            row = self.row_of.get(key)
            if row is None:
                self.h.addRow(-_INF, _INF, len(cols), np.asarray(cols, dtype=np.int32),
                              np.asarray(vals, dtype=float))
                self._join_rows(1, 0, np.asarray(cols, dtype=np.int64), vals, _INF)
                row = self.row_of[key] = self.n_rows
                self.n_rows += 1
            index.append(row)
        return np.array(index, dtype=np.int32)

    def bound_rows(self, index, lower, upper) -> None:
        """lower <= row <= upper for the rows ``index`` of :meth:`rows` (-inf, inf: free)."""
        self.h.changeRowsBounds(len(index), index, np.asarray(lower, dtype=float),
                                np.asarray(upper, dtype=float))
        self._row_lower[index] = lower
        self._row_upper[index] = upper

    def _run_linked(self):
        """Run; while the solution breaks link rows not in the model, or a pair not in
        it would improve it (its reduced cost -w_e - dual_i - dual_j is negative), add
        them and run again.  Returns HiGHS's model status and, when optimal, the
        column values and the reduced costs of z (else None, None).  The last solution
        is then optimal for the whole LP: optimal for a relaxation of it with every
        pair's column in (those out have reduced cost >= 0 at y_e = 0), and feasible."""
        while True:
            self.h.run()
            status = self.h.getModelStatus()
            if status != highspy.HighsModelStatus.kOptimal:
                return status, None, None
            sol = self.h.getSolution()
            col = np.array(sol.col_value)
            broken = self._check[col[self._check_y] > col[self._check_z] + 1e-9]
            if len(self._out):
                dual = np.array(sol.row_dual[:self.N])
                priced = self._out[self._out_w - dual[self._out_a] - dual[self._out_b] < -1e-9]
            else:
                priced = self._out
            if not len(broken) and not len(priced):
                return status, col, np.array(sol.col_dual[:self.N])
            for k in broken.tolist():
                self.h.addRow(-_INF, 0.0, 2, np.array([self._link_col[k], self._link_z[k]], dtype=np.int32),
                              np.array([1.0, -1.0]))
            k = len(broken)
            self._join_rows(k, np.r_[np.arange(k), np.arange(k)],
                            np.r_[self.N + self._link_pair[broken], self._link_z[broken]],
                            np.r_[np.ones(k), -np.ones(k)], 0.0)
            self.n_rows += len(broken)
            self._linked[broken] = True
            if len(priced):
                self._add_pairs(priced)
            else:
                self._refresh()

    def solve(self, z_lower, z_upper):
        """The relaxation with z between the given bounds: (min x.z - w.y, z, w.y, the
        reduced costs of z, its optimal basis for :meth:`bound_from`), or None when
        infeasible.  Where z comes out 0/1, y is an optimal b-matching of the coalition
        z (else the value would improve), so w.y rounds to v(S) exactly (total
        unimodularity, integer weights).

        The reduced costs d bound the relaxation at other membership costs x' without
        solving it: the optimal duals stay feasible (only the costs of z change, and z
        is boxed), so with h(d) = min(d * lower, d * upper) per player the minimum at
        x' is at least the minimum at x plus sum_p h(d_p + x'_p - x_p) - h(d_p)
        (Lagrangian duality; :func:`market.separation.split_search`)."""
        self.h.changeColsBounds(self.N, self._z, np.asarray(z_lower, float), np.asarray(z_upper, float))
        status, col, dual_z = self._run_linked()
        if status not in (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kInfeasible):
            # the warm start went wrong (HiGHS ended "unknown" once on the benchmark
            # markets, with in-out midpoints from a stage's first round): from scratch
            self.h.clearSolver()
            status, col, dual_z = self._run_linked()
        if status == highspy.HighsModelStatus.kInfeasible:
            return None
        if status != highspy.HighsModelStatus.kOptimal:
            raise NucleolusError(f"separation LP failed: {self.h.modelStatusToString(status)}")
        return (self.h.getObjectiveValue(), col[:self.N], float(self._w_in @ col[self.N:self.n_cols]), dual_z,
                [self.h.getBasicVariables()[1], self.n_rows, None])

    def _factor(self, basic, rows):
        """(rows whose slack is nonbasic, basic columns' places, the LU factors of those
        rows on those columns, transposed) for :meth:`bound_from`; False if singular."""
        logical = basic < 0
        J = self._place[basic[~logical]]
        out = np.ones(rows, dtype=bool)
        out[~basic[logical]] = False                # (row i's slack is -1 - i = ~i)
        R = np.flatnonzero(out)
        if len(R) != len(J):
            return False
        if not len(J):
            return R, J, None, None
        lu, piv, info = dgetrf(self._dense[R][:, J].T)
        return False if info != 0 else (R, J, lu, piv)

    def bound_from(self, basis, z_lower, z_upper, row_bounds):
        """A lower bound on the relaxation with z between the given bounds at the
        current costs, from the duals of ``basis`` (:meth:`solve`'s, at other costs),
        without solving it; and the reduced costs of z at those duals.

        The duals pi make every basic column's reduced cost 0 at the current costs
        (pi = 0 on a row whose slack is basic; a row that joined since is left out,
        which only relaxes the LP).  For any pi, the Lagrangian
        min over the box of (c - A^T pi).v + sum_i min over the row's bounds of pi_i r_i
        is at most the LP's minimum (weak duality), once pi_i is 0 where its row's
        bound on that side is infinite; every column is boxed, so it is finite.  If
        the basis is still optimal at these costs, the bound is the minimum itself.
        ``row_bounds``: every row's (lower, upper) bounds for this box
        (:meth:`row_bounds`).  None if the basis gives no duals (singular in floats)."""
        if self._dense is None:
            return None
        basic, rows, factored = basis
        if factored is None:        # the first bound from this basis: factor its rows once
            factored = basis[2] = self._factor(basic, rows)
        if factored is False:
            return None
        R, J, lu, piv = factored
        if len(J):
            pi, info = dgetrs(lu, piv, self._c[J])
            if info != 0:
                return None
        else:
            pi = np.zeros(0)
        # each row's term min pi_i r_i is pi_i times its lower or upper bound; where
        # that bound is infinite, pi_i = 0 (still a valid Lagrangian)
        bound = np.where(pi > 0, row_bounds[0][R], row_bounds[1][R])
        infinite = np.abs(bound) == _INF
        pi[infinite] = 0.0
        bound[infinite] = 0.0
        duals = np.zeros(rows)
        duals[R] = pi
        d = self._c - duals @ self._dense[:rows]
        dz, dy = d[:self.N], d[self.N:]
        return float(np.minimum(dz * z_lower, dz * z_upper).sum() + dy[dy < 0].sum() + pi @ bound), dz
