"""Exact shortcuts of the trading game's nucleolus: stars, independent markets, the flow value."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from market.b_matching import b_matching_value
from market.essential import market_components, star_coalitions
from market.matching import match
from market.nucleolus import market_game_values, market_nucleolus, nucleolus
from tests.market.conftest import assert_nucleolus_equals_enumeration, brute_force_value, markets


@st.composite
def one_side_unit_markets(draw, max_unit=5, max_centres=2, max_cap=3):
    """Markets where every buyer (or every seller) has capacity 1: the scenario's shape."""
    units = draw(st.integers(1, max_unit))
    centres = draw(st.integers(1, max_centres))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = rng.integers(-10, 30, size=(units, centres))
    caps = rng.integers(1, max_cap + 1, size=centres)
    if draw(st.booleans()):   # unit buyers, capacitated sellers
        return w, np.ones(units, dtype=np.int64), caps
    return w.T.copy(), caps, np.ones(units, dtype=np.int64)


@st.composite
def split_markets(draw):
    """Two small markets side by side (no positive pair between them), rows and
    columns shuffled, so the positive-pair graph has at least two components."""
    (w1, b1, s1), (w2, b2, s2) = draw(markets(2, 2, 2)), draw(markets(2, 2, 2))
    w = np.full((len(b1) + len(b2), len(s1) + len(s2)), -5, dtype=np.int64)
    w[:len(b1), :len(s1)] = w1
    w[len(b1):, len(s1):] = w2
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rp, cp = rng.permutation(w.shape[0]), rng.permutation(w.shape[1])
    return w[rp][:, cp], np.r_[b1, b2][rp], np.r_[s1, s2][cp]


@settings(max_examples=40, deadline=None)
@given(markets(max_buyers=5, max_sellers=5, max_cap=3))
def test_flow_value_equals_match_and_brute_force(inst):
    w, bc, sc = inst
    value = b_matching_value(w, bc, sc)
    assert value == match(w, bc, sc).total_weight
    if (w > 0).sum() <= 12:
        assert value == brute_force_value(w, bc, sc)


def test_flow_value_ignores_zero_capacity_players():
    w = np.array([[9, 4], [7, 6]])
    assert b_matching_value(w, [0, 1], [1, 1]) == 7
    assert b_matching_value(w, [1, 1], [0, 0]) == 0


@settings(max_examples=25, deadline=None)
@given(one_side_unit_markets())
def test_star_market_nucleolus_equals_generic_enumeration(inst):
    w, bc, sc = inst
    assert star_coalitions(w, bc, sc, 10_000) is not None   # the star path is the one tested
    assert_nucleolus_equals_enumeration(w, bc, sc, kohlberg=True)


@settings(max_examples=25, deadline=None)
@given(one_side_unit_markets(max_unit=4, max_centres=3))
def test_every_coalition_value_is_reached_by_its_best_stars(inst):
    # the essential-coalition claim itself: v(S) is the best packing of disjoint
    # stars inside S, so no coalition outside the star list carries information
    w, bc, sc = inst
    masks, values = star_coalitions(w, bc, sc, 10_000)
    m, n = w.shape
    table = market_game_values(w, bc, sc)
    star_value = dict(zip(masks, values))
    best = np.zeros(1 << (m + n))
    for mask in range(1, 1 << (m + n)):   # best of: one star, or two smaller parts
        best[mask] = star_value.get(mask, 0.0)
        sub = mask & (mask - 1)
        while sub:
            best[mask] = max(best[mask], best[sub] + best[mask ^ sub])
            sub = (sub - 1) & mask
    np.testing.assert_allclose(best, table)


@settings(max_examples=15, deadline=None)
@given(split_markets())
def test_split_market_nucleolus_equals_generic_enumeration(inst):
    assert_nucleolus_equals_enumeration(*inst)


@settings(max_examples=30, deadline=None)
@given(split_markets())
def test_components_partition_the_players_with_a_positive_pair(inst):
    w, bc, sc = inst
    comps = market_components(w, bc, sc)
    seen_b = np.concatenate([b for b, _ in comps]) if comps else np.zeros(0, int)
    seen_s = np.concatenate([s for _, s in comps]) if comps else np.zeros(0, int)
    assert len(set(seen_b.tolist())) == len(seen_b) and len(set(seen_s.tolist())) == len(seen_s)
    active = (w > 0) & (bc[:, None] > 0) & (sc[None, :] > 0)
    assert sorted(seen_b.tolist()) == np.flatnonzero(active.any(axis=1)).tolist()
    assert sorted(seen_s.tolist()) == np.flatnonzero(active.any(axis=0)).tolist()
    label = {}
    for k, (b, s) in enumerate(comps):
        label.update({("b", i): k for i in b.tolist()})
        label.update({("s", j): k for j in s.tolist()})
    for i, j in zip(*np.nonzero(active)):
        assert label[("b", int(i))] == label[("s", int(j))]


@settings(max_examples=20, deadline=None)
@given(one_side_unit_markets())
def test_star_search_separator_equals_generic_enumeration(inst):
    # the same games through the separator that searches stars instead of listing them
    import market.nucleolus as nucleolus_module
    w, bc, sc = inst
    table = market_game_values(w, bc, sc)
    saved = nucleolus_module.STAR_LIMIT
    nucleolus_module.STAR_LIMIT = 0
    try:
        x = np.r_[market_nucleolus(w, bc, sc)]
    finally:
        nucleolus_module.STAR_LIMIT = saved
    np.testing.assert_allclose(x, nucleolus(len(bc) + len(sc), table), atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(one_side_unit_markets(max_unit=8, max_centres=4, max_cap=3), st.integers(0, 2**32 - 1),
       st.integers(1, 6), st.integers(0, 3))
def test_bounded_star_search_returns_the_most_violated_eligible_stars(inst, seed, limit, fixed):
    """The bounded search against the explicit list: the same ``limit`` stars, in the
    same order, with some coalitions already free, settled or fixed into the span."""
    from market.essential import list_separator, star_separator
    from market.sequential_lp import Stages
    w, bc, sc = inst
    m, n = w.shape
    N = m + n
    listed = star_coalitions(w, bc, sc, 10**6)
    if not listed[0]:
        return
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, float(max(w.max(), 1)) / 2, size=N)
    stages = Stages(N, float(b_matching_value(w, bc, sc)), np.zeros(N), [], [])
    for mask in rng.choice(listed[0], size=min(fixed, len(listed[0])), replace=False).tolist():
        row = np.array([mask >> p & 1 for p in range(N)], dtype=float)
        stages._add_equality(row, 0.0)      # its span leaves the search
    some = listed[0][:: max(1, len(listed[0]) // 3)]
    stages.free.update({mk: 0.0 for mk in some[:1]})
    stages.settled.update(some[1:2])
    threshold = float(rng.uniform(-5.0, 5.0))
    expected = list_separator(listed[0], listed[1], N, limit)(x, threshold, stages)
    assert star_separator(w, bc, sc, limit)(x, threshold, stages) == expected
