"""The layered state and the rounding rule, against simple reference models."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchain.runtime import MemoryState
from p2pchain.runtime.context import Layer
from p2pchain.runtime.units import round_half_even, to_units

keys = st.text(alphabet="abcd/", min_size=1, max_size=4)
namespaces = st.sampled_from(["x", "y"])
values = st.binary(min_size=1, max_size=3)
writes = st.dictionaries(st.tuples(namespaces, keys), st.one_of(st.none(), values), max_size=12)


@settings(max_examples=200)
@given(writes.map(lambda w: {k: v for k, v in w.items() if v is not None}), writes, writes,
       namespaces, keys, st.one_of(st.none(), keys), st.one_of(st.none(), st.integers(0, 6)))
def test_layered_scan_equals_a_scan_of_the_merged_dict(base, block, tx, namespace, start, end, limit):
    state = MemoryState(base)
    block_layer = Layer(state)
    block_layer.merge(block)
    tx_layer = Layer(block_layer)
    tx_layer.merge(tx)
    merged = {**base, **block, **tx}
    expected = sorted((k, v) for (ns, k), v in merged.items()
                      if ns == namespace and v is not None and k >= start and (end is None or k < end))
    if limit is not None:
        expected = expected[:limit]
    assert list(tx_layer.scan(namespace, start, end, limit)) == expected
    for (ns, key), value in merged.items():
        assert tx_layer.get(ns, key) == value


@given(st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=64),
                 st.fractions(max_denominator=1000), st.integers(-10**6, 10**6)))
def test_round_half_even_is_nearest_with_ties_to_even(x):
    r = round_half_even(x)
    gap = abs(Fraction(r) - Fraction(x))
    assert gap <= Fraction(1, 2)
    if gap == Fraction(1, 2):
        assert r % 2 == 0


@given(st.integers(-10**9, 10**9), st.sampled_from([Fraction(1, 1000), Fraction(1, 10), 1, 5]))
def test_to_units_is_exact_for_whole_multiples(count, unit):
    assert to_units(count * unit, unit) == count
