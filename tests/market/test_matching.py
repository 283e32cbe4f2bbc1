"""Matching: exact optimum, feasibility, and a tie-break that survives permutation."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st
from scipy.optimize import LinearConstraint, milp

from market.matching import Matching, MatchingError, match
from tests.market.conftest import brute_force_value, markets


def _milp_value(w, bc, sc) -> int:
    """Independent formulation: binary T over *all* pairs, weight clipped at 0."""
    m, n = w.shape
    c = -np.maximum(w, 0).ravel().astype(float)
    rows = sp.kron(sp.eye(m), np.ones((1, n)))
    cols = sp.kron(np.ones((1, m)), sp.eye(n))
    res = milp(c, constraints=[LinearConstraint(rows, 0, bc), LinearConstraint(cols, 0, sc)],
               integrality=np.ones(m * n), bounds=(0, 1))
    return int(round(-res.fun))


def _assert_feasible(result: Matching, w, bc, sc):
    pairs = result.pairs
    assert list(pairs) == sorted(set(pairs)), "pairs sorted, each pair at most once"
    for i, j in pairs:
        assert w[i, j] > 0
    for i in range(w.shape[0]):
        assert sum(1 for a, _ in pairs if a == i) <= bc[i]
    for j in range(w.shape[1]):
        assert sum(1 for _, b in pairs if b == j) <= sc[j]
    assert result.total_weight == sum(int(w[i, j]) for i, j in pairs)


@settings(max_examples=60, deadline=None)
@given(markets(max_buyers=3, max_sellers=3, max_cap=2))
def test_match_equals_brute_force_on_small_markets(inst):
    w, bc, sc = inst
    result = match(w, bc, sc)
    _assert_feasible(result, w, bc, sc)
    assert result.total_weight == brute_force_value(w, bc, sc)


@settings(max_examples=40, deadline=None)
@given(markets(max_buyers=12, max_sellers=12, max_cap=4, low=-50, high=100))
def test_match_equals_independent_milp_on_medium_markets(inst):
    w, bc, sc = inst
    result = match(w, bc, sc)
    _assert_feasible(result, w, bc, sc)
    assert result.total_weight == _milp_value(w, bc, sc)


@settings(max_examples=40, deadline=None)
@given(markets(max_buyers=12, max_sellers=12, max_cap=1, low=-50, high=100))
def test_unit_capacity_match_equals_independent_milp(inst):
    w, bc, sc = inst
    result = match(w, bc, sc)
    _assert_feasible(result, w, bc, sc)
    assert result.total_weight == _milp_value(w, bc, sc)


@settings(max_examples=40, deadline=None)
@given(markets(max_buyers=6, max_sellers=6, max_cap=3, low=0, high=4), st.data())
def test_ties_broken_the_same_under_permuted_rows_and_columns(inst, data):
    # small weight range: many tied optima, so the rule really decides
    w, bc, sc = inst
    m, n = w.shape
    pb = np.array(data.draw(st.permutations(range(m))))
    ps = np.array(data.draw(st.permutations(range(n))))
    base = match(w, bc, sc)
    # row k of the permuted instance is original buyer pb[k]; its rank is pb[k]
    permuted = match(w[np.ix_(pb, ps)], bc[pb], sc[ps], buyer_order=pb, seller_order=ps)
    mapped = tuple(sorted((int(pb[a]), int(ps[b])) for a, b in permuted.pairs))
    assert mapped == base.pairs
    assert permuted.total_weight == base.total_weight


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**32 - 1), st.data())
def test_unit_capacity_result_invariant_under_permutation_with_distinct_weights(m, n, seed, data):
    # weights 2**k: every matching has a different total, so the optimum is unique
    rng = np.random.default_rng(seed)
    w = (2 ** rng.permutation(m * n)).reshape(m, n).astype(np.int64)
    pb = np.array(data.draw(st.permutations(range(m))))
    ps = np.array(data.draw(st.permutations(range(n))))
    base = match(w, [1] * m, [1] * n)
    permuted = match(w[np.ix_(pb, ps)], [1] * m, [1] * n)
    assert tuple(sorted((int(pb[a]), int(ps[b])) for a, b in permuted.pairs)) == base.pairs


def test_tie_break_prefers_lexicographically_first_pairs():
    assert match([[1, 1], [1, 1]], [1, 1], [1, 1]).pairs == ((0, 0), (1, 1))
    assert match([[1, 1], [1, 1]], [2, 2], [1, 1]).pairs == ((0, 0), (0, 1))


def test_unit_path_applies_the_same_tie_break_as_capacitated_path():
    rng = np.random.default_rng(7)
    w = rng.integers(0, 3, size=(9, 9))
    unit = match(w, [1] * 9, [1] * 9)
    via_ranks = match(w, [1] * 9, [1] * 9, buyer_order=range(9), seller_order=range(9))
    assert unit == via_ranks


def test_replication_trap_same_pair_never_used_twice():
    # replicating rows/columns would pair buyer 0 with seller 0 twice (weight 20)
    result = match([[10, 1]], [2], [2, 2])
    assert result.pairs == ((0, 0), (0, 1))
    assert result.total_weight == 11


def test_no_edge_for_non_positive_weight():
    assert match([[0, -3], [-1, 0]], [1, 1], [1, 1]) == Matching((), 0)


def test_zero_capacity_excludes_player():
    assert match([[5, 4]], [1], [0, 1]).pairs == ((0, 1),)


@pytest.mark.parametrize("args", [
    ([[1.5]], [1], [1]),
    ([[1]], [1, 1], [1]),
    ([[1]], [-1], [1]),
    ([1, 2], [1], [1]),
])
def test_bad_input_raises_matching_error(args):
    with pytest.raises(MatchingError):
        match(*args)


def test_empty_market_matches_nothing():
    assert match(np.zeros((0, 3), dtype=np.int64), [], [1, 1, 1]) == Matching((), 0)


def _lex_rule_brute_force(w, bc, sc):
    """The documented rule by enumeration: among optimal matchings, the greatest
    0/1 vector over pairs in row-major order."""
    m, n = w.shape
    edges = [(i, j) for i in range(m) for j in range(n) if w[i, j] > 0]
    best_key, best = None, ()
    for mask in range(1 << len(edges)):
        chosen = [edges[k] for k in range(len(edges)) if mask >> k & 1]
        if any(sum(1 for a, _ in chosen if a == i) > bc[i] for i in range(m)) or \
           any(sum(1 for _, b in chosen if b == j) > sc[j] for j in range(n)):
            continue
        key = (sum(int(w[i, j]) for i, j in chosen), [int(e in chosen) for e in edges])
        if best_key is None or key > best_key:
            best_key, best = key, tuple(sorted(chosen))
    return best


@settings(max_examples=60, deadline=None)
@given(markets(max_buyers=3, max_sellers=4, max_cap=2, low=-1, high=3))
def test_tie_break_is_the_documented_lexicographic_rule(inst):
    w, bc, sc = inst
    assert match(w, bc, sc).pairs == _lex_rule_brute_force(w, bc, sc)


@st.composite
def one_sided_markets(draw, max_size=4, max_cap=3, high=3):
    """Markets whose buyers (or sellers) all have capacity <= 1, tie-heavy weights."""
    w, bc, sc = draw(markets(max_buyers=max_size, max_sellers=max_size, max_cap=max_cap,
                             low=-1, high=high))
    if draw(st.booleans()):
        bc = np.minimum(bc, 1)
    else:
        sc = np.minimum(sc, 1)
    return w, bc, sc


@settings(max_examples=60, deadline=None)
@given(one_sided_markets())
def test_one_sided_assignment_path_follows_the_lexicographic_rule(inst):
    w, bc, sc = inst
    assert match(w, bc, sc).pairs == _lex_rule_brute_force(w, bc, sc)


@settings(max_examples=40, deadline=None)
@given(one_sided_markets(max_size=25, high=3), st.integers(0, 2**32 - 1))
def test_one_sided_assignment_path_equals_lp_path(inst, seed):
    """Replicated-seller assignment + its dual vs the b-matching LP + its dual: same
    canonical matching, with default and with permuted rank orders."""
    import market.matching as mm
    w, bc, sc = inst
    rng = np.random.default_rng(seed)
    orders = dict(buyer_order=rng.permutation(w.shape[0]), seller_order=rng.permutation(w.shape[1]))
    fast = [match(w, bc, sc), match(w, bc, sc, **orders)]
    saved = mm._one_sided_certified
    mm._one_sided_certified = lambda *a: None
    try:
        slow = [match(w, bc, sc), match(w, bc, sc, **orders)]
    finally:
        mm._one_sided_certified = saved
    assert fast == slow


@settings(max_examples=30, deadline=None)
@given(markets(max_buyers=12, max_sellers=12, max_cap=3, low=-1, high=3), st.integers(0, 2**32 - 1))
def test_tie_break_search_equals_greedy_lp_scan_on_medium_tie_heavy_markets(inst, seed):
    """The bitset alternating-path scan against the independent LP greedy
    (one LP per pair, ``_canonicalise_by_value``) on markets with many optima."""
    import market.matching as mm
    w, bc, sc = inst
    rng = np.random.default_rng(seed)
    rb, rs = rng.permutation(w.shape[0]), rng.permutation(w.shape[1])
    I, J = np.nonzero(w > 0)
    if len(I) == 0:
        return
    x = mm._milp_b_matching(I, J, w[I, J], bc, sc, *w.shape)
    by_lp = mm._canonicalise_by_value(w, bc, sc, I, J, x, rb, rs)
    expected = tuple(sorted(zip(I[by_lp == 1].tolist(), J[by_lp == 1].tolist())))
    assert match(w, bc, sc, buyer_order=rb, seller_order=rs).pairs == expected
