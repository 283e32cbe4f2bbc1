"""BoundedDict: at most ``limit`` entries, the oldest put out first."""

import pytest
from hypothesis import given, strategies as st

from p2pchain.bounded import BoundedDict


@given(st.integers(min_value=1, max_value=8), st.lists(st.tuples(st.integers(0, 12), st.integers())))
def test_a_bounded_dict_keeps_the_last_puts_of_a_fifo_model(limit, puts):
    bounded: BoundedDict[int, int] = BoundedDict(limit)
    model: list[tuple[int, int]] = []  # (key, value) in insertion order
    for key, value in puts:
        assert bounded.put(key, value) == value
        keys = [k for k, _ in model]
        if key in keys:
            model[keys.index(key)] = (key, value)  # a key already present keeps its place
        else:
            model.append((key, value))
            del model[:-limit]
        assert list(bounded.items()) == model
        assert len(bounded) <= limit


def test_a_bounded_dict_needs_room_for_one_entry():
    with pytest.raises(ValueError, match="at least one entry"):
        BoundedDict(0)
