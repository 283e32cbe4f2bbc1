"""Shared generators for the market-algorithm tests (small, seeded, replayable)."""
from __future__ import annotations

import itertools

import numpy as np
from hypothesis import strategies as st

from market.matching import match


@st.composite
def markets(draw, max_buyers=4, max_sellers=4, max_cap=3, low=-20, high=40):
    """(weights, buyer_caps, seller_caps): a small random market with int weights."""
    m = draw(st.integers(1, max_buyers))
    n = draw(st.integers(1, max_sellers))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    w = rng.integers(low, high, size=(m, n))
    bc = rng.integers(1, max_cap + 1, size=m)
    sc = rng.integers(1, max_cap + 1, size=n)
    return w, bc, sc


def brute_force_value(w, bc, sc) -> int:
    """Best b-matching weight by enumerating every subset of positive edges."""
    m, n = w.shape
    edges = [(i, j) for i in range(m) for j in range(n) if w[i, j] > 0]
    best = 0
    for mask in range(1 << len(edges)):
        chosen = [edges[k] for k in range(len(edges)) if mask >> k & 1]
        if all(sum(1 for a, _ in chosen if a == i) <= bc[i] for i in range(m)) and \
           all(sum(1 for _, b in chosen if b == j) <= sc[j] for j in range(n)):
            best = max(best, sum(int(w[i, j]) for i, j in chosen))
    return best


def market_game_table(w, bc, sc) -> np.ndarray:
    """v(S) for every coalition of buyers (bits 0..m-1) and sellers (bits m..)."""
    m, n = w.shape
    table = np.zeros(1 << (m + n))
    for mask in range(1, 1 << (m + n)):
        bi = np.array([mask >> i & 1 for i in range(m)], dtype=bool)
        si = np.array([mask >> (m + j) & 1 for j in range(n)], dtype=bool)
        if bi.any() and si.any():
            table[mask] = match(w[np.ix_(bi, si)], bc[bi], sc[si]).total_weight
    return table
