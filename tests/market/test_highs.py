"""The highspy wrappers (market/highs.py) against scipy's HiGHS interface on the same LPs
and MILPs: the persistent model's stage, face-point and always-tight LPs as their rows,
bounds and costs change, and the MILP with its objective cut-off; the b-matching LP's
coalition values against exact min-cost flows."""
from __future__ import annotations

import highspy
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.optimize import LinearConstraint, linprog
from scipy.optimize import milp as scipy_milp

from market.b_matching import b_matching_value
from market.highs import BMatchingLP, FixedChargeLP, PersistentLP, milp
from market.separation import coalition_values
from market.sequential_lp import rows_matrix
from tests.market.conftest import fixed_charge_case, markets, random_box


def _game(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 8))
    masks = sorted({int(mk) for mk in rng.integers(1, (1 << n) - 1, 6 * n)})
    A = rows_matrix(masks, n)
    vals = A @ rng.random(n) * rng.uniform(0.5, 1.2, len(masks))
    return rng, n, masks, A, vals


def _scipy_stage(n, A, vals, eq_rows, eq_rhs):
    A_ub = sp.hstack([-A, -np.ones((A.shape[0], 1))]).tocsr()
    A_eq = np.c_[np.array(eq_rows), np.zeros(len(eq_rows))]
    res = linprog(np.r_[np.zeros(n), 1.0], A_ub=A_ub, b_ub=-vals, A_eq=A_eq, b_eq=eq_rhs,
                  bounds=[(0, None)] * n + [(None, None)], method="highs")
    return res.x[n]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_persistent_lps_match_fresh_lps_as_rows_come_and_go(seed):
    rng, n, masks, A, vals = _game(seed)
    grand = float(vals.max()) * 2
    eq_rows, eq_rhs = [np.ones(n)], [grand]
    plp = PersistentLP(n, np.zeros(n), eq_rows, eq_rhs)
    for _round in range(4):
        keep = np.flatnonzero(rng.random(len(masks)) < 0.7)
        if len(keep) == 0:
            continue
        sub = [masks[k] for k in keep]
        Ak, vk = A[keep], vals[keep]
        x, eps, duals = plp.stage(sub, Ak, vk, eq_rows, eq_rhs)
        assert abs(eps - _scipy_stage(n, Ak, vk, eq_rows, eq_rhs)) <= 1e-7
        slack = Ak @ x + eps - vk
        assert (slack >= -1e-8).all() and (duals >= -1e-9).all()
        assert (duals[slack > 1e-7] <= 1e-9).all()          # complementary slackness
        assert abs(np.array(eq_rows) @ x - eq_rhs).max() <= 1e-8
        # the face point: on the optimal face, as close to x_in as a fresh LP gets
        x_in = rng.random(n) * grand / n
        xf = plp.face(x_in, eps)
        assert (Ak @ xf + eps - vk >= -1e-8).all()
        assert abs(np.array(eq_rows) @ xf - eq_rhs).max() <= 1e-8
        A_ub = sp.vstack([sp.hstack([-Ak, sp.csr_matrix((len(sub), n))]),
                          sp.hstack([sp.eye(n), -sp.eye(n)]), sp.hstack([-sp.eye(n), -sp.eye(n)])])
        ref = linprog(np.r_[np.zeros(n), np.ones(n)], A_ub=A_ub, b_ub=np.r_[eps - vk, x_in, -x_in],
                      A_eq=np.c_[np.array(eq_rows), np.zeros((len(eq_rows), n))], b_eq=eq_rhs,
                      bounds=[(0, None)] * (2 * n), method="highs")
        assert abs(np.abs(xf - x_in).sum() - ref.fun) <= 1e-6
        # the always-tight LP: as much slack as a fresh LP finds
        tight = [sub[k] for k in np.flatnonzero(slack <= 1e-7)]
        at_bound = np.flatnonzero(x <= 1e-9).tolist()
        s = plp.slack(sub, Ak, vk, eq_rows, eq_rhs, eps, tight, at_bound)
        nu, nb = len(tight), len(at_bound)
        where = {mk: k for k, mk in enumerate(sub)}
        S = sp.csr_matrix((np.ones(nu), ([where[mk] for mk in tight], np.arange(nu))),
                          shape=(len(sub), nu))
        B = sp.csr_matrix((np.ones(nb), (np.arange(nb), at_bound)), shape=(nb, n))
        A_ub = sp.vstack([sp.hstack([-Ak, S, sp.csr_matrix((len(sub), nb))]),
                          sp.hstack([-B, sp.csr_matrix((nb, nu)), sp.eye(nb)])])
        ref = linprog(np.r_[np.zeros(n), -np.ones(nu + nb)], A_ub=A_ub, b_ub=np.r_[eps - vk, np.zeros(nb)],
                      A_eq=np.c_[np.array(eq_rows), np.zeros((len(eq_rows), nu + nb))], b_eq=eq_rhs,
                      bounds=[(0, None)] * n + [(0, 1)] * (nu + nb), method="highs")
        assert abs(s.sum() + ref.fun) <= 1e-6 and len(s) == nu + nb
        # an equality fixed at this stage (at its value at x: the system stays feasible)
        eq_rows = eq_rows + [Ak[0].toarray().ravel()]
        eq_rhs = eq_rhs + [float((Ak[0] @ x)[0])]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(-2.0, 2.0))
@example(79234, 1.0)  # an earlier incumbent above the cut-off
def test_milp_with_a_cut_off_answers_as_scipy_does(seed, offset):
    # a random knapsack-like 0/1 model: optimal value as scipy's; with the cut-off
    # below the optimum nothing beats it, above it the optimum is still returned
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 9))
    c = -rng.integers(1, 20, k).astype(float)
    A = rng.integers(0, 5, (2, k)).astype(float)
    hi = A.sum(axis=1) / 2
    ref = scipy_milp(c, constraints=LinearConstraint(A, -np.inf, hi), integrality=np.ones(k),
                     bounds=(0, 1))
    cutoff = ref.fun + offset
    res = milp(c, A, np.full(2, -np.inf), hi, np.ones(k), {"mip_rel_gap": 0.0}, cutoff, save=True)
    if offset < -1e-9:       # nothing beats the cut-off: no point, or one not below it
        assert (res.status == 2 and res.x is None) or (res.status == 0 and res.fun >= cutoff - 1e-9)
    elif offset > 1e-9:
        assert res.status == 0 and abs(res.fun - ref.fun) <= 1e-9
        # earlier incumbents: feasible 0/1 points, none better than the answer. (Not all
        # below the cut-off: HiGHS also keeps what its heuristics found before the bound
        # pruned anything -- seed 79234, offset 1.0 -- so callers check each one.)
        for point in res.improving:
            assert (A @ point <= hi + 1e-9).all() and np.abs(point - np.round(point)).max() <= 1e-9
            assert c @ point >= res.fun - 1e-9


@settings(max_examples=25, deadline=None)
@given(markets(max_buyers=3, max_sellers=4, max_cap=3), st.integers(0, 2**32 - 1))
def test_b_matching_lp_values_equal_exact_flows_for_every_coalition(inst, seed):
    # one warm-started model for every coalition, in a random order: each value equals
    # the integer min-cost flow's (the LP is totally unimodular)
    w, bc, sc = inst
    m, n = w.shape
    lp = BMatchingLP(w, bc, sc)
    values = coalition_values(w, bc, sc, m)
    for mask in np.random.default_rng(seed).permutation(1 << (m + n)).tolist():
        bits = (mask >> np.arange(m + n)) & 1
        exact = b_matching_value(w, bc * bits[:m], sc * bits[m:])
        assert lp.value(mask) == exact
        if mask:
            assert values(mask) == exact


def test_a_process_using_highs_prints_nothing_of_its_own_on_stdout():
    """HiGHS prints a banner on file descriptor 1 with a process's first model; the market's
    command-line output must stay its own (a fresh process: the banner comes once)."""
    import subprocess
    import sys

    code = ("from market.nucleolus import market_nucleolus\n"
            "print(market_nucleolus([[5, 3, 0], [4, 6, 2], [0, 2, 7]], [2, 1, 2], [1, 2, 2]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(array([2.5, 3. , 3.5]), array([3. , 5.5, 3.5]))"


# markets for the branch and bound's LP (on the 5 x 5 ones most pairs start outside the
# model and are priced in)
_FIXED_CHARGE_MARKETS = st.one_of(markets(max_buyers=3, max_sellers=4, max_cap=3),
                                  markets(max_buyers=5, max_sellers=5, max_cap=2, low=-5))


@settings(max_examples=40, deadline=None)
@given(_FIXED_CHARGE_MARKETS, st.integers(0, 2**32 - 1))
def test_fixed_charge_lp_at_0_1_memberships_is_the_excess_and_bounds_it_elsewhere(inst, seed):
    # with every membership fixed the relaxation is v(S) - x(S) exactly (and w.y = v(S));
    # with some fixed it bounds the excess of every coalition agreeing with them
    w, bc, sc = inst
    N, rng, top, lp = fixed_charge_case(inst, seed)
    x = rng.uniform(0, top, N)
    lp.costs(x)
    value = coalition_values(w, bc, sc, len(bc))
    excess = {mk: float(value(mk)) - float(x @ ((mk >> np.arange(N)) & 1)) for mk in range(1 << N)}
    for mk in rng.integers(0, 1 << N, 8).tolist():
        z = ((mk >> np.arange(N)) & 1).astype(float)
        obj, zs, wy, _d, _basis = lp.solve(z, z)
        assert abs(-obj - excess[mk]) <= 1e-6 * max(1.0, abs(excess[mk]))
        assert round(wy) == value(mk)
        fixed = rng.random(N) < 0.5
        lo, hi = np.where(fixed, z, 0.0), np.where(fixed, z, 1.0)
        bound = -lp.solve(lo, hi)[0]
        agreeing = [e for m, e in excess.items() if all((m >> p & 1) == z[p] for p in np.flatnonzero(fixed))]
        assert max(agreeing) <= bound + 1e-6 * max(1.0, abs(bound))


@settings(max_examples=40, deadline=None)
@given(_FIXED_CHARGE_MARKETS, st.integers(0, 2**32 - 1))
def test_fixed_charge_lp_reduced_costs_bound_it_at_other_costs(inst, seed):
    # the bound a branch and bound leaf carries to the next separation call
    # (separation._last_leaves): from the reduced costs d at x, the relaxation's value
    # at x' is at most its value at x minus h(d + x' - x) - h(d), h(d) = sum min(d lo, d hi)
    N, rng, top, lp = fixed_charge_case(inst, seed)
    h = lambda d, lo, hi: float(np.minimum(d * lo, d * hi).sum())
    for _ in range(6):
        x = rng.uniform(0, top, N)
        _fixed, lo, hi = random_box(rng, N, 0.4)
        lp.costs(x)
        obj, _z, _wy, d, _basis = lp.solve(lo, hi)
        x2 = np.where(rng.random(N) < 0.5, x, rng.uniform(0, top, N))
        lp.costs(x2)
        real = -lp.solve(lo, hi)[0]
        estimate = -obj - (h(d + x2 - x, lo, hi) - h(d, lo, hi))
        assert real <= estimate + 1e-7 * top


@settings(max_examples=40, deadline=None)
@given(_FIXED_CHARGE_MARKETS, st.integers(0, 2**32 - 1))
def test_fixed_charge_lp_bound_from_an_old_basis_is_exact_there_and_a_bound_elsewhere(inst, seed):
    # separation.split_search bounds a leaf again from its LP's basis at the new costs
    # before solving it: the duals that basis gives are exact at the costs it was
    # optimal for, and a bound (never below the relaxation) at any others -- also with
    # a case's rows bounded, and after rows and pairs joined the model
    w, bc, sc = inst
    N, rng, top, lp = fixed_charge_case(inst, seed)
    members = np.arange(N)
    case = (lp.rows([(members, np.ones(N, dtype=int))]), np.array([2.0]), np.array([np.inf]))
    for k in range(6):
        cased = k % 2 == 1
        if cased:
            lp.bound_rows(*case)
        x = rng.uniform(0, top, N)
        _fixed, lo, hi = random_box(rng, N, 0.4)
        lp.costs(x)
        node = lp.solve(lo, hi)
        if node is not None:
            here, dz = lp.bound_from(node[4], lo, hi, lp.row_bounds(case if cased else None))
            assert here == pytest.approx(node[0], rel=1e-9, abs=1e-7 * top)
            assert np.allclose(dz, node[3], atol=1e-7 * top)
            for _ in range(3):
                lp.costs(np.where(rng.random(N) < 0.5, x, rng.uniform(0, top, N)))
                moved = lp.bound_from(node[4], lo, hi, lp.row_bounds(case if cased else None))
                real = lp.solve(lo, hi)
                if real is not None and moved is not None:
                    assert moved[0] <= real[0] + 1e-7 * top
        if cased:
            lp.bound_rows(case[0], np.array([-np.inf]), np.array([np.inf]))


def test_without_the_dense_rows_bound_from_declines_and_the_nucleolus_is_the_same(monkeypatch):
    # past DENSE_COLUMNS players and pairs the node LP keeps no dense copy of its rows:
    # bound_from then gives no bound (every leaf is solved) and nothing else changes
    from market.nucleolus import market_nucleolus
    w = np.array([[5, 3, 0, 4], [4, 6, 2, 0], [0, 2, 7, 3], [3, 0, 4, 6]])
    bc, sc = np.array([2, 1, 2, 2]), np.array([1, 2, 2, 2])
    kept = np.concatenate(market_nucleolus(w, bc, sc))
    monkeypatch.setattr("market.highs.DENSE_COLUMNS", 0)
    lp = FixedChargeLP(w, bc, sc)
    lp.costs(np.ones(8))
    node = lp.solve(np.zeros(8), np.ones(8))
    assert lp.bound_from(node[4], np.zeros(8), np.ones(8), lp.row_bounds()) is None
    assert np.allclose(np.concatenate(market_nucleolus(w, bc, sc)), kept, atol=1e-7)


class _UnknownOnce:
    """A highspy model that reports its next solve as ended "unknown" (as HiGHS's warm
    start now and then does) and is otherwise itself."""

    def __init__(self, h):
        self.h, self.left = h, 1

    def __getattr__(self, name):
        return getattr(self.h, name)

    def getModelStatus(self):
        if self.left:
            self.left -= 1
            return highspy.HighsModelStatus.kUnknown
        return self.h.getModelStatus()


def test_fixed_charge_lp_solves_again_from_scratch_when_the_warm_start_ends_unknown():
    w, bc, sc = np.array([[5, 3], [4, 6]]), np.array([2, 1]), np.array([1, 2])
    lp = FixedChargeLP(w, bc, sc)
    lp.costs(np.array([1.0, 2.0, 1.5, 2.5]))
    want = lp.solve(np.zeros(4), np.ones(4))
    lp.h = _UnknownOnce(lp.h)
    again = lp.solve(np.zeros(4), np.ones(4))
    assert lp.h.left == 0
    assert again[0] == pytest.approx(want[0]) and np.allclose(again[1], want[1])
