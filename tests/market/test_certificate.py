"""Kohlberg's criterion from a pool of coalitions plus two MILPs (market/certificate.py),
against the enumeration nucleolus and the enumeration check ``is_nucleolus``."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from market.certificate import certify_market_nucleolus, flag_basis
from market.exact_linalg import dual_basis_by_null_spaces, integer_dual_basis
from market.nucleolus import is_nucleolus, market_game_values, nucleolus
from market.sequential_lp import Stages, rows_matrix
from tests.market.conftest import markets


def _capacitated(rng, max_side=3):
    """A random market capacitated on both sides (first buyer and seller cap >= 2)."""
    m, n = int(rng.integers(1, max_side + 1)), int(rng.integers(2, max_side + 1))
    w = rng.integers(-10, 30, size=(m, n))
    bc, sc = rng.integers(1, 4, m), rng.integers(1, 4, n)
    bc[0], sc[0] = max(bc[0], 2), max(sc[0], 2)
    return w, bc, sc


def _pool_nucleolus(table, N, pool):
    """The sequential LPs over ``pool`` alone (no separation): the pool's lexmin point."""
    return Stages(N, float(table[-1]), np.zeros(N), pool, [float(table[mk]) for mk in pool]).solve()


def _in_span_of_higher(table, N, x, pool, mask, tol=1e-6):
    """Is 1_S in the span of N and the pool coalitions of excess >= e(S, x)?"""
    member = rows_matrix([mask], N).toarray()[0]
    exc = table[mask] - member @ x
    higher = [mk for mk in pool if table[mk] - rows_matrix([mk], N).toarray()[0] @ x >= exc - tol]
    rows = np.r_[np.ones((1, N)), rows_matrix(higher, N).toarray()] if higher else np.ones((1, N))
    return np.linalg.matrix_rank(np.r_[rows, member[None]]) == np.linalg.matrix_rank(rows)


def test_a_pool_point_is_certified_only_if_it_is_the_enumeration_nucleolus():
    # the lexmin point of a random pool is the nucleolus or not; the certificate must
    # never certify a wrong one, and every violator it names must break the criterion
    certified = wrong = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        w, bc, sc = _capacitated(rng)
        N = len(bc) + len(sc)
        table = market_game_values(w, bc, sc)
        others = [mk for mk in range(1, (1 << N) - 1) if mk & (mk - 1)]
        share = rng.choice([0.3, 0.6, 0.9])
        pool = [1 << p for p in range(N)] + [mk for mk in others if rng.random() < share]
        x = _pool_nucleolus(table, N, pool)
        truth = nucleolus(N, table)
        cert = certify_market_nucleolus(w, bc, sc, x, pool)
        is_truth = np.allclose(x, truth, atol=1e-6)
        if cert.certified:
            assert is_truth, seed
            certified += 1
        wrong += not is_truth
        for mask in cert.violators:
            assert mask not in pool
            assert not _in_span_of_higher(table, N, x, pool, mask), (seed, mask)
    assert certified >= 5 and wrong >= 5     # both outcomes occur: the test has teeth


@settings(max_examples=15, deadline=None)
@given(markets(max_buyers=3, max_sellers=3, max_cap=3))
def test_adding_violators_until_certified_gives_the_enumeration_nucleolus(inst):
    # "pool first, certify last": the pool's lexmin point, its certificate, the
    # violators added, again -- ends at the nucleolus, and the pool's own collections
    # are always balanced (the lexmin point satisfies Kohlberg on its pool)
    w, bc, sc = inst
    bc, sc = bc.copy(), sc.copy()
    bc[0], sc[0] = max(bc[0], 2), max(sc[0], 2)
    N = len(bc) + len(sc)
    table = market_game_values(w, bc, sc)
    pool = [1 << p for p in range(N)]
    for _round in range(1 << N):
        x = _pool_nucleolus(table, N, pool)
        cert = certify_market_nucleolus(w, bc, sc, x, pool)
        assert cert.unbalanced_level is None
        if cert.certified:
            break
        assert cert.violators
        pool = sorted(set(pool) | set(cert.violators))
    assert cert.certified
    np.testing.assert_allclose(x, nucleolus(N, table), atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(markets(max_buyers=3, max_sellers=3, max_cap=3), st.integers(0, 2**32 - 1))
def test_with_every_coalition_in_the_pool_the_certificate_is_kohlbergs_check(inst, seed):
    # no coalition is left outside, so only the balancedness LPs decide: the true
    # nucleolus passes and a moved imputation fails, as with is_nucleolus
    w, bc, sc = inst
    N = len(bc) + len(sc)
    table = market_game_values(w, bc, sc)
    every = list(range(1, (1 << N) - 1))
    x = nucleolus(N, table)
    assert certify_market_nucleolus(w, bc, sc, x, every).certified
    rng = np.random.default_rng(seed)
    i, j = rng.choice(N, 2, replace=False)
    step = min(1.0, float(x[j]))
    if step > 1e-3:
        moved = x.copy()
        moved[i] += step
        moved[j] -= step
        cert = certify_market_nucleolus(w, bc, sc, moved, every)
        assert not cert.certified and cert.unbalanced_level is not None
        assert not is_nucleolus(N, table, moved)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 24), st.integers(0, 2**32 - 1))
def test_integer_dual_basis_is_exact(n, seed):
    rng = np.random.default_rng(seed)
    masks = [int(mk) for mk in rng.integers(1, 1 << n, 4 * n)] + [1 << p for p in range(n)]
    chosen, levels = flag_basis(masks, rng.normal(size=len(masks)), n)
    R = rows_matrix(chosen, n).toarray().astype(np.int64)
    assert len(chosen) == n and levels[0] == np.inf and (np.diff(levels[1:]) <= 0).all()
    for B in (integer_dual_basis(R), dual_basis_by_null_spaces(R)):
        P = R @ B                                       # exactly, in integers
        assert (P == np.diag(np.diag(P))).all() and (np.diag(P) != 0).all()
