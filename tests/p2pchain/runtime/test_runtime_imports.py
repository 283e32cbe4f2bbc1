"""Imports: vetted proxies for the stdlib, and only functions and copies of data from market."""

from __future__ import annotations

import sys
import textwrap

import market
import pytest
from runtime_helpers import POLICY, Runner, block, invocation, state_with, value

from p2pchain.encoding import decode
from p2pchain.runtime import Executor

FAKE_MARKET_MODULE = '''
import os
from os.path import join
TARIFFS = {"base": [1, 2, 3]}

def double(x):
    return 2 * x
'''


@pytest.fixture
def fake_market(tmp_path, monkeypatch):
    (tmp_path / "fakeprices.py").write_text(textwrap.dedent(FAKE_MARKET_MODULE))
    monkeypatch.setattr(market, "__path__", [*market.__path__, str(tmp_path)])
    yield "market.fakeprices"
    sys.modules.pop("market.fakeprices", None)


def test_market_functions_can_be_imported_and_called(fake_market, run):
    assert value(run(f"from {fake_market} import double\ndef run(ctx):\n    return double(21)\n")) == 42


@pytest.mark.parametrize("name, reason", [
    ("os", "is a module; import functions or classes from it"),
    ("join", "comes from 'posixpath', not from a trusted package"),
    ("_private", "private names are refused"),
    ("missing", "has no public name 'missing'"),
])
def test_market_modules_and_foreign_functions_are_not_handed_out(fake_market, run, name, reason):
    source = f"from {fake_market} import {name}\ndef run(ctx):\n    return 1\n"
    from p2pchain.runtime import validate
    refusals = validate(source)[1]
    if refusals:
        assert reason in refusals[0].reason
    else:
        assert reason in run(source).reason


def test_market_data_is_copied_so_a_transaction_cannot_change_it_for_the_next(fake_market):
    source = (f"from {fake_market} import TARIFFS\n"
              "def run(ctx):\n    TARIFFS['base'].append(99)\n    return TARIFFS['base']\n")
    state = state_with(c=source)
    result = Executor(POLICY).execute_block(block(), [invocation("c", "run", tx=i) for i in range(2)], state)
    assert [decode(r.value) for r in result.results] == [[1, 2, 3, 99], [1, 2, 3, 99]]
    assert sys.modules[fake_market].TARIFFS == {"base": [1, 2, 3]}


def test_the_stdlib_proxies_offer_their_vetted_names(run):
    source = textwrap.dedent('''
        import math, bisect, heapq, functools, itertools, enum, typing
        from fractions import Fraction
        from dataclasses import dataclass, asdict

        class Colour(enum.Enum):
            RED = 1

        @dataclass
        class P:
            x: int

        def run(ctx):
            h = [3, 1, 2]
            heapq.heapify(h)
            return [math.gcd(12, 18), bisect.bisect([1, 2, 3], 2), heapq.heappop(h),
                    functools.reduce(lambda a, b: a + b, [1, 2, 3]),
                    list(itertools.islice(itertools.count(5), 3)), Colour.RED.value,
                    asdict(P(4)), str(Fraction(1, 3) + Fraction(1, 6))]
    ''')
    assert value(run(source)) == [6, 2, 1, 6, [5, 6, 7], 1, {"x": 4}, "1/2"]


def test_the_facade_returns_plain_lists(run):
    source = textwrap.dedent('''
        from p2pchain.runtime.facade import linear_sum_assignment, linprog
        def run(ctx):
            rows, cols = linear_sum_assignment([[4, 1], [2, 3]])
            lp = linprog([-1, -1], A_ub=[[1, 2], [3, 1]], b_ub=[4, 6])
            return [rows, cols, lp.status, [ctx.to_units(x, 0.001) for x in lp.x]]
    ''')
    assert value(run(source)) == [[0, 1], [1, 0], 0, [1600, 1200]]
