"""Nucleolus: literature values, Kohlberg certification, market game cross-checks."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from market.matching import match
from market.nucleolus import NucleolusError, is_nucleolus, market_nucleolus, nucleolus
from market.nucleolus import market_game_values as market_game_table
from tests.market.conftest import assert_nucleolus_equals_enumeration, markets


def bankruptcy_game(estate, claims):
    """Aumann & Maschler (1985): v(S) = max(0, E - sum of claims outside S)."""
    n = len(claims)
    return lambda s: max(0.0, estate - sum(claims[i] for i in range(n) if i not in s))


@pytest.mark.parametrize("estate, expected", [
    (100, [100 / 3, 100 / 3, 100 / 3]),
    (200, [50, 75, 75]),
    (300, [50, 100, 150]),
])
def test_talmud_bankruptcy_nucleolus(estate, expected):
    # Aumann & Maschler, J. Econ. Theory 36 (1985): the Talmud's division is the nucleolus
    game = bankruptcy_game(estate, [100, 200, 300])
    x = nucleolus(3, game)
    np.testing.assert_allclose(x, expected, atol=1e-6)
    assert is_nucleolus(3, game, x)


def test_glove_game_gives_everything_to_the_scarce_side():
    # two left gloves (0, 1), one right glove (2): the core is the single point (0, 0, 1)
    game = lambda s: float(min(len(s & {0, 1}), len(s & {2})))
    np.testing.assert_allclose(nucleolus(3, game), [0, 0, 1], atol=1e-9)
    assert not is_nucleolus(3, game, [0.5, 0.5, 0.0])


def test_symmetric_game_splits_equally():
    game = lambda s: float(len(s) ** 2)
    np.testing.assert_allclose(nucleolus(4, game), [4, 4, 4, 4], atol=1e-9)


def test_mapping_and_table_inputs_agree():
    table = np.array([0, 0, 0, 6, 0, 4, 2, 9], dtype=float)
    as_map = {frozenset(i for i in range(3) if k >> i & 1): table[k] for k in range(8)}
    np.testing.assert_allclose(nucleolus(3, table), nucleolus(3, as_map), atol=1e-9)


def _random_game(n, rng):
    table = rng.integers(0, 100, 1 << n).astype(float)
    table[0] = 0.0
    for i in range(n):
        table[1 << i] = rng.integers(0, 15)
    # v(N) at least every coalition and the singletons together: a non-empty imputation set
    singletons = sum(table[1 << i] for i in range(n))
    table[-1] = max(table.max(), singletons) + rng.integers(0, 40)
    return table


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 5), st.integers(0, 2**32 - 1))
def test_random_games_nucleolus_passes_kohlberg(n, seed):
    table = _random_game(n, np.random.default_rng(seed))
    x = nucleolus(n, table)
    assert is_nucleolus(n, table, x)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 5), st.integers(0, 2**32 - 1), st.floats(0.05, 3.0))
def test_kohlberg_rejects_a_shifted_imputation(n, seed, delta):
    table = _random_game(n, np.random.default_rng(seed))
    x = nucleolus(n, table)
    lower = np.array([table[1 << i] for i in range(n)])
    donor = int(np.argmax(x - lower))
    if x[donor] - lower[donor] < delta:  # cannot move within the imputation set
        return
    y = x.copy()
    y[donor] -= delta
    y[(donor + 1) % n] += delta
    assert not is_nucleolus(n, table, y)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.data())
def test_nucleolus_follows_a_relabelling_of_players(seed, data):
    n = 4
    table = _random_game(n, np.random.default_rng(seed))
    perm = data.draw(st.permutations(range(n)))   # new player k is old player perm[k]
    relabelled = np.zeros_like(table)
    for mask in range(1 << n):
        old = sum(1 << perm[k] for k in range(n) if mask >> k & 1)
        relabelled[mask] = table[old]
    np.testing.assert_allclose(nucleolus(n, relabelled), nucleolus(n, table)[perm], atol=1e-6)


def test_is_nucleolus_rejects_non_imputations():
    game = bankruptcy_game(200, [100, 200, 300])
    assert not is_nucleolus(3, game, [50, 75, 76])       # not efficient
    assert not is_nucleolus(3, game, [-1, 101, 100])     # below v({0}) = 0


def test_empty_imputation_set_is_an_error():
    with pytest.raises(NucleolusError):
        nucleolus(2, [0.0, 5.0, 5.0, 6.0])


def test_wrong_table_size_is_an_error():
    with pytest.raises(NucleolusError):
        nucleolus(3, [0.0, 1.0])


# -- the trading game ---------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(markets(max_buyers=3, max_sellers=3, max_cap=1, low=-10, high=30))
def test_unit_market_nucleolus_equals_generic_enumeration(inst):
    assert_nucleolus_equals_enumeration(*inst)


@settings(max_examples=12, deadline=None)
@given(markets(max_buyers=2, max_sellers=3, max_cap=2, low=-10, high=30))
def test_capacitated_market_nucleolus_equals_generic_enumeration(inst):
    assert_nucleolus_equals_enumeration(*inst, kohlberg=True)


@pytest.mark.slow
@settings(max_examples=15, deadline=None)
@given(markets(max_buyers=3, max_sellers=4, max_cap=3, low=-10, high=30))
def test_capacitated_market_nucleolus_equals_generic_enumeration_larger(inst):
    assert_nucleolus_equals_enumeration(*inst)


def test_pair_only_shortcut_is_wrong_with_capacities():
    # why capacitated markets need the exact method: the assignment-game LPs
    # (singletons and pairs only) give another point when a seller can serve two
    w = np.array([[10, 0], [8, 3]])
    bc, sc = np.array([1, 1]), np.array([2, 1])
    table = market_game_table(w, bc, sc)
    exact = np.r_[market_nucleolus(w, bc, sc)]
    from market.sequential_lp import Stages
    masks = [1, 2, 4, 8, 1 | 4, 2 | 4, 2 | 8]
    shortcut = Stages(4, float(table[-1]), np.zeros(4), masks, [0, 0, 0, 0, 10, 8, 3]).solve()
    np.testing.assert_allclose(exact, nucleolus(4, table), atol=1e-6)
    assert np.abs(shortcut - exact).max() > 1e-3


@settings(max_examples=30, deadline=None)
@given(markets(max_buyers=8, max_sellers=8, max_cap=1, low=-20, high=60))
def test_unit_market_nucleolus_lies_in_the_core(inst):
    w, bc, sc = inst
    xb, xs = market_nucleolus(w, bc, sc)
    tol = 1e-6 * max(1, int(np.abs(w).max()))
    assert (xb >= -tol).all() and (xs >= -tol).all()
    assert (xb[:, None] + xs[None, :] >= w - tol).all()
    assert abs(xb.sum() + xs.sum() - match(w, bc, sc).total_weight) <= tol


def test_market_without_trade_pays_nobody():
    xb, xs = market_nucleolus(np.array([[-1, 0]]), [1], [1, 1])
    assert xb.tolist() == [0.0] and xs.tolist() == [0.0, 0.0]
