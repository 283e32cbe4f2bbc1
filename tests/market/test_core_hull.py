"""The core's affine hull read off the optimal matchings (market.core_hull).

Checked against linear programming over the core itself: every equality returned
holds on the whole core, and together they span every star and singleton that is
tight in the whole core.  The nucleolus that starts from them is checked against the
generic enumeration and Kohlberg's criterion on tie-heavy markets, where the level-0
stage is large and the core often a single point.
"""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st
from scipy.optimize import linprog

from market.core_hull import core_equalities, independent_rows, matching_equalities
from market.essential import market_components, star_coalitions
from market.matching import match
from market.nucleolus import market_game_values, market_nucleolus
from tests.market.conftest import assert_nucleolus_equals_enumeration, markets


@st.composite
def tie_heavy_markets(draw, max_unit=5, max_centres=3, max_cap=3):
    """One side of unit capacity (either side, or both), weights from a few values:
    many optimal matchings, so a large level-0 stage."""
    units = draw(st.integers(1, max_unit))
    centres = draw(st.integers(1, max_centres))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = rng.choice(np.array([-1, 0, 2, 3, 3, 5]), size=(units, centres))
    caps = rng.integers(1, draw(st.integers(1, max_cap)) + 1, size=centres)
    if draw(st.booleans()):
        return w, np.ones(units, dtype=np.int64), caps
    return w.T.copy(), caps, np.ones(units, dtype=np.int64)


def _rows(masks, N):
    return np.array([[mask >> p & 1 for p in range(N)] for mask in masks], dtype=float)


def _core(w, bc, sc):
    """(A_ub, b_ub, A_eq, b_eq, stars, values) of the core over the essential coalitions."""
    m, n = w.shape
    N = m + n
    masks, values = star_coalitions(w, bc, sc, 10_000)
    A = _rows(masks, N)
    return -A, -np.array(values), np.ones((1, N)), [match(w, bc, sc).total_weight], masks, values


def _range_on_core(core, row):
    A_ub, b_ub, A_eq, b_eq = core[:4]
    lo = linprog(row, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, method="highs")
    hi = linprog(-row, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, method="highs")
    assert lo.status == 0 and hi.status == 0
    return lo.fun, -hi.fun


def _hull_rows(hull, N):
    stars, ties, fixed = hull
    rows, rhs = [], []
    for mask, value in stars:
        rows.append(_rows([mask], N)[0])
        rhs.append(value)
    for a, b, delta in ties:
        row = np.zeros(N)
        row[a], row[b] = 1, -1
        rows.append(row)
        rhs.append(delta)
    for p, value in fixed:
        rows.append(np.eye(N)[p])
        rhs.append(value)
    return np.array(rows).reshape(-1, N), np.array(rhs, dtype=float)


def _connected(w, bc, sc):
    comps = market_components(w, bc, sc)
    if len(comps) != 1:
        return None
    B, T = comps[0]
    return w[np.ix_(B, T)], bc[B], sc[T]


def _connected_hull(inst):
    """(weights, caps, caps, players, core_equalities) of a connected market, or None."""
    sub = _connected(*inst)
    if sub is None:
        return None
    w, bc, sc = sub
    return w, bc, sc, sum(w.shape), core_equalities(w, bc, sc)


@settings(max_examples=60, deadline=None)
@given(tie_heavy_markets())
def test_hull_equalities_hold_on_the_whole_core_and_span_its_tight_constraints(inst):
    case = _connected_hull(inst)
    if case is None:
        return
    w, bc, sc, N, hull = case
    assert hull is not None
    core = _core(w, bc, sc)
    rows, rhs = _hull_rows(hull, N)
    for row, value in zip(rows, rhs):
        lo, hi = _range_on_core(core, row)
        assert abs(lo - value) < 1e-7 and abs(hi - value) < 1e-7
    # every star and singleton tight on the whole core is in their span (with x(N))
    tight = [row for row, value in zip(_rows(core[4], N), core[5])
             if _range_on_core(core, row)[1] <= value + 1e-7]
    tight += [row for row in np.eye(N) if _range_on_core(core, row)[1] <= 1e-7]
    base = np.r_[rows, np.ones((1, N))]
    rank = np.linalg.matrix_rank(base)
    for row in tight:
        assert np.linalg.matrix_rank(np.r_[base, row[None, :]]) == rank


@settings(max_examples=40, deadline=None)
@given(tie_heavy_markets())
def test_independent_rows_keep_the_span_and_drop_every_dependent_row(inst):
    case = _connected_hull(inst)
    if case is None:
        return
    w, bc, sc, N, hull = case
    grand = ((1 << N) - 1, float(match(w, bc, sc).total_weight))
    rows, rhs = independent_rows(N, grand, *hull)
    F = np.array(rows).reshape(-1, N)
    every, _ = _hull_rows(hull, N)
    every = np.r_[every, np.ones((1, N))]
    assert np.linalg.matrix_rank(F) == len(F) == np.linalg.matrix_rank(every)
    # same solutions: a core point satisfies both systems
    x = np.r_[market_nucleolus(w, bc, sc)]
    np.testing.assert_allclose(F @ x, rhs, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(tie_heavy_markets(max_unit=5, max_centres=3))
def test_tie_heavy_market_nucleolus_equals_generic_enumeration(inst):
    assert_nucleolus_equals_enumeration(*inst, kohlberg=True)


@settings(max_examples=25, deadline=None)
@given(tie_heavy_markets(max_unit=4, max_centres=4, max_cap=1))
def test_tie_heavy_assignment_game_nucleolus_equals_generic_enumeration(inst):
    assert_nucleolus_equals_enumeration(*inst)


def test_single_point_core_is_returned_directly():
    # three identical buyers, one seller serving two: competition leaves every
    # buyer nothing, and the core is the single point (0, 0, 0, 10)
    w = np.array([[5], [5], [5]])
    bc, sc = np.ones(3, dtype=np.int64), np.array([2])
    stars, ties, fixed = core_equalities(w, bc, sc)
    assert sorted(fixed) == [(0, 0), (1, 0), (2, 0)]
    rows, _ = independent_rows(4, (15, 10.0), stars, ties, fixed)
    assert len(rows) == 4
    np.testing.assert_allclose(np.r_[market_nucleolus(w, bc, sc)], [0, 0, 0, 10], atol=1e-9)


def test_saturated_centre_ties_its_changeable_partners():
    # buyers 0, 1, 2; seller 3 of capacity 2 (weight 4 to each), seller 4 of
    # capacity 1 (weight 4 to buyers 0 and 2).  Every optimum sells all three:
    # buyer 1 always to seller 3, buyers 0 and 2 swap, so in every core point
    # x_2 - x_0 = 0 and nobody is pinned to 0
    w = np.array([[4, 4], [4, 0], [4, 4]])
    stars, ties, fixed = core_equalities(w, np.ones(3, dtype=np.int64), np.array([2, 1]))
    assert stars == [(0b01011, 8), (0b10001, 4)]
    assert ties == [(2, 0, 0), (2, 0, 0)]
    assert fixed == []


@settings(max_examples=25, deadline=None)
@given(markets(max_buyers=3, max_sellers=3, max_cap=3, low=-3, high=6))
def test_matching_equalities_hold_on_the_whole_core_of_a_capacitated_market(inst):
    # both sides capacitated: the components of one optimal matching and the
    # players it leaves alone, checked against the core of every coalition
    w, bc, sc = inst
    m, n = w.shape
    N = m + n
    table = market_game_values(w, bc, sc)
    masks = list(range(1, (1 << N) - 1))
    core = (-_rows(masks, N), -table[1:-1], np.ones((1, N)), [table[-1]])
    stars, ties, fixed = matching_equalities(w, bc, sc, match(w, bc, sc).pairs)
    assert ties == []
    rows, rhs = _hull_rows((stars, ties, fixed), N)
    for row, value in zip(rows, rhs):
        lo, hi = _range_on_core(core, row)
        assert abs(lo - value) < 1e-7 and abs(hi - value) < 1e-7
    # they partition the players: every player is in one component or fixed at 0
    cover = rows[:len(stars)].sum(axis=0) + (rows[len(stars):].sum(axis=0) if fixed else 0)
    assert (cover == 1).all()


@settings(max_examples=15, deadline=None)
@given(tie_heavy_markets(max_unit=10, max_centres=4))
def test_medium_star_market_nucleolus_equals_sequential_lps_over_every_star(inst):
    # beyond enumeration (up to 14 players): against the plain sequential LPs over
    # the explicit list of every essential coalition, without the hull shortcut
    from market.sequential_lp import Stages
    w, bc, sc = inst
    x = np.r_[market_nucleolus(w, bc, sc)]
    sub = _connected(w, bc, sc)
    if sub is None:
        return
    B, T = market_components(w, bc, sc)[0]
    ws, bs, ss = sub
    N = sum(ws.shape)
    masks, values = star_coalitions(ws, bs, ss, 100_000)
    masks = [1 << p for p in range(N)] + masks
    values = [0.0] * N + values
    plain = Stages(N, float(match(ws, bs, ss).total_weight), np.zeros(N), masks, values).solve()
    np.testing.assert_allclose(x[np.r_[B, len(bc) + T]], plain, atol=1e-6)
