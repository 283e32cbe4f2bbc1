"""The validator refuses, with line and reason, what a contract must never do."""

from __future__ import annotations

import argparse
import textwrap

import pytest

from p2pchain.runtime.commands import add_commands
from p2pchain.runtime.validator import check_template, validate

GOOD_CONTRACT = '''
"""A quotation book: a realistic contract that must be accepted."""
import math
import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from functools import reduce
from typing import Any
from p2pchain.runtime.units import to_units
from p2pchain.runtime import facade


@dataclass(frozen=True)
class Quote:
    seller: str
    energy_wh: int
    price_milli: int

    def __lt__(self, other):
        return (self.price_milli, self.seller) < (other.price_milli, other.seller)


def submit(ctx, energy_wh, price_milli):
    if energy_wh <= 0:
        raise ValueError("energy must be positive")
    ctx.put(f"quote/{ctx.caller.name}", {"energy_wh": energy_wh, "price_milli": price_milli})
    ctx.emit({"kind": "quote", "who": ctx.caller.name})


def clear(ctx):
    quotes = sorted(Quote(k[6:], v["energy_wh"], v["price_milli"]) for k, v in ctx.scan("quote/", "quote0"))
    total = reduce(lambda a, q: a + q.energy_wh, quotes, 0)
    mean = total / len(quotes) if quotes else 0.0
    pairs = list(itertools.combinations([q.seller for q in quotes], 2))
    label = "{0} quotes, {1:>6} Wh".format(len(quotes), total)
    return {"total_wh": total, "mean_wh": to_units(mean), "pairs": len(pairs), "label": label,
            "root": math.isqrt(total), "half": to_units(Fraction(total, 2))}
'''


def refusals(source: str) -> list[tuple[int, str]]:
    return [(r.line, r.reason) for r in validate(textwrap.dedent(source))[1]]


def test_a_realistic_contract_is_accepted():
    assert refusals(GOOD_CONTRACT) == []


@pytest.mark.parametrize("source, line, words", [
    ("import os", 1, "import of 'os' is not allowed"),
    ("x = 1\nimport random", 2, "'random' is not allowed"),
    ("import time", 1, "'time' is not allowed"),
    ("from numpy import load", 1, "import from 'numpy'"),
    ("from .x import y", 1, "relative imports"),
    ("from math import *", 1, "import *"),
    ("import market.matching", 1, "not allowed"),
    ("x = ().__class__", 1, "'__class__' starts with '_'"),
    ("def f(g):\n    return g.gi_frame", 2, "'gi_frame' reaches frames"),
    ("def f(e):\n    return e.tb_frame", 2, "tb_frame"),
    ("x = exec", 1, "'exec' is forbidden"),
    ("eval('1')", 1, "'eval' is forbidden"),
    ("open('f')", 1, "touches files"),
    ("vars()", 1, "'vars' is forbidden"),
    ("x = hash('a')", 1, "PYTHONHASHSEED"),
    ("x = id(1)", 1, "object ids"),
    ("x = {1, 2}", 1, "set literals"),
    ("x = {a for a in 'ab'}", 1, "set comprehensions"),
    ("x = set()", 1, "'set' is forbidden"),
    ("getattr(1, name)", 1, "needs a literal attribute name"),
    ("getattr(1, '__class__')", 1, "getattr: attribute '__class__'"),
    ("g = getattr", 1, "only be called directly"),
    ("'{0.__class__}'.format(1)", 1, "format template reads attribute '__class__'"),
    ("t = '{0}'\nt.format(1)", 2, "only on a string literal"),
    ("x = f'{1:>100000}'", 1, "format width or precision 100000"),
    ("x = f'{1.5:.100000f}'", 1, "format width or precision 100000"),
    ("x = '%.99999999f' % 1.5", 1, "format width or precision 99999999"),
    ("x = '%*d' % (n, 1)", 1, "'*' widths"),
    ("def f():\n    global y", 2, "'global'"),
    ("def f():\n    x = 1\n    def g():\n        nonlocal x", 4, "'nonlocal'"),
    ("type('X', (), {})", 1, "creates classes dynamically"),
    ("iter(int, 1)", 1, "iter(callable, sentinel)"),
    ("class A(metaclass=M):\n    pass", 1, "metaclass"),
    ("class A:\n    def __del__(self):\n        pass", 2, "'__del__' is not allowed"),
    ("def __init__():\n    pass", 1, "outside a class"),
    ("__builtins__['open']", 1, "'__builtins__' starts with '__'"),
    ("def f():\n    try:\n        pass\n    finally:\n        return 1", 5, "swallows exceptions"),
    ("async def f():\n    pass", 1, "async"),
    ("with x:\n    pass", 1, "'with'"),
    ("a, b.c = 1, 2", 1, "assign attributes one at a time"),
    ("def f(:\n", 1, "syntax error"),
    ("def range(n):\n    return [1]", 1, "'range' is the metered builtin"),
    ("range = len", 1, "'range' is the metered builtin"),
    ("def f(range):\n    pass", 1, "'range' is the metered builtin"),
])
def test_refusal_names_line_and_reason(source, line, words):
    found = refusals(source)
    assert any(l == line and words in reason for l, reason in found), found


def test_built_in_codecs_are_accepted():
    assert refusals("a = 'é'.encode('utf-8')\nb = a.decode('UTF_8', 'strict')\nc = str(a, 'latin-1')\n"
                    "d = 'x'.encode()\ne = bytes('x', encoding='ascii')\n") == []


def test_every_refusal_in_a_module_is_reported_in_line_order():
    found = refusals("import os\nx = {1}\ny = ().__class__\n")
    assert [line for line, _ in found] == [1, 2, 3]


def test_format_templates_without_attribute_access_are_accepted():
    assert check_template("{0} {name[key]} {1:>10} {x.real}") is None
    assert "__globals__" in check_template("{f.__globals__}")


def _cli(paths: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="p2pchain")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["contract", "check", *paths])
    return args.func(args)


def test_contract_check_prints_ok_for_an_accepted_module(tmp_path, capsys):
    path = tmp_path / "good.py"
    path.write_text(GOOD_CONTRACT)
    assert _cli([str(path)]) == 0
    assert capsys.readouterr().out.strip() == "ok"


def test_contract_check_prints_each_refusal_and_fails(tmp_path, capsys):
    path = tmp_path / "bad.py"
    path.write_text("import os\n\ndef f(ctx):\n    return ctx.__class__\n")
    assert _cli([str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}:1: import of 'os'")
    assert out[1].startswith(f"{path}:4: attribute '__class__'")


def test_contract_check_reports_an_unreadable_file(tmp_path, capsys):
    assert _cli([str(tmp_path / "missing.py")]) == 2


def _hook_names() -> list[str]:
    from p2pchain.runtime.checks import INPLACE
    from p2pchain.runtime.instrument import HOOKS, INPLACE_HOOK, PENDING
    hooks = {*HOOKS, *(INPLACE_HOOK.format(op) for op in INPLACE)}
    # and their local aliases, and the local sum of range lengths not yet charged
    return sorted(hooks | {hook[:-2] + "_local__" for hook in hooks} | {PENDING})


@pytest.mark.parametrize("template", [
    "{name} = print",                      # rebind a hook at module level
    "def run(ctx):\n    {name} = None",    # shadow it in a function
    "def run(ctx, {name}=1):\n    pass",   # or as an argument
    "def run(ctx):\n    return {name}",    # read it (the meter's state, the real type)
    "class A:\n    {name} = 0",            # define it in a class body
    "import math as {name}",
])
def test_a_contract_can_neither_read_nor_rebind_the_meter_and_check_hooks(template):
    for name in _hook_names():
        refusals = validate(template.format(name=name))[1]
        assert refusals, f"{name!r} accepted in {template!r}"
        assert any("'__'" in r.reason or "not allowed" in r.reason for r in refusals)
