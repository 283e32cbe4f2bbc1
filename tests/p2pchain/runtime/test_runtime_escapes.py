"""The escape corpus: known ways out of a Python sandbox, each closed.

Every entry is either refused by the validator (with the reason named here) or fails at run
time deterministically with the reason named here — or, for allocations no check can see
in time, breaches the worker's memory limit, which the node reports as a
:class:`WorkerFailure` (halting the channel) and never as a transaction result. While the
corpus runs, an audit hook watches for files, sockets, processes, ctypes and frame access;
no entry may trigger one, create a file, reveal an environment variable or change the
node process (builtins, stdlib classes).
"""

from __future__ import annotations

import builtins
import fractions
import math
import sys
import textwrap
from dataclasses import dataclass

import pytest
from runtime_helpers import POLICY, Runner, block, invocation, state_with

import p2pchain.runtime.facade  # noqa: F401  loaded before the guard, as the worker preloads it
from p2pchain.runtime import ChannelWorker, WorkerFailure, validate

SECRET = "s3cr3t-env-value-7d1e"


@dataclass(frozen=True)
class Escape:
    name: str
    source: str
    expect: str  # "refused: words" | "fails: words" | "breach"


def E(name: str, body: str, expect: str, *, module: bool = False) -> Escape:
    source = textwrap.dedent(body) if module else "def run(ctx):\n" + textwrap.indent(textwrap.dedent(body), "    ")
    return Escape(name, source, expect)


ESCAPES = [
    # -- subclass walking -------------------------------------------------------------------
    E("subclasses via __class__", "return ().__class__.__bases__[0].__subclasses__()", "refused: '__class__'"),
    E("subclasses via object", "return object.__subclasses__()", "refused: '__subclasses__'"),
    E("catch_warnings gadget", "return [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'catch_warnings'][0]()._module.__builtins__", "refused: '__class__'"),
    E("mro walk", "return type(()).mro()[-1]", "refused: 'mro'"),
    E("getattr literal dunder", "return getattr((), '__class__')", "refused: getattr: attribute '__class__'"),
    E("getattr computed name", "return getattr((), '_' + '_class__')", "refused: literal attribute name"),
    E("getattr alias", "g = getattr\nreturn g((), '__cl' + 'ass__')", "refused: only be called directly"),
    E("getattr via dict of builtins", "return [f for f in (len, getattr)][1]((), 'x')", "refused: only be called directly"),
    E("metaclass of a class", "return type(type(1))", "fails: metaclass"),
    E("vars and dir", "return vars(object), dir(())", "refused: 'vars' is forbidden"),
    E("three-argument type", "return type('X', (object,), {'__del__': print})", "refused: creates classes dynamically"),
    # -- frame, traceback and generator walking ----------------------------------------------
    E("traceback frame", "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    return e.__traceback__.tb_frame.f_back.f_globals", "refused: '__traceback__'"),
    E("traceback attribute names", "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    t = e.args\n    return t.tb_frame", "refused: 'tb_frame'"),
    E("generator frame", "def g():\n    yield 1\nreturn g().gi_frame.f_back.f_globals", "refused: 'gi_frame'"),
    E("generator code", "def g():\n    yield 1\nreturn g().gi_code.co_consts", "refused: 'gi_code'"),
    E("coroutine frame", "async def c():\n    pass\nreturn c().cr_frame", "refused: async"),
    E("sys._getframe", "import sys\nreturn sys._getframe(1).f_globals", "refused: 'sys' is not allowed"),
    E("inspect module", "import inspect\nreturn inspect.currentframe()", "refused: 'inspect' is not allowed"),
    E("function globals", "def f():\n    pass\nreturn f.__globals__['__builtins__']", "refused: '__globals__'"),
    E("function code replace", "def f():\n    pass\nreturn f.__code__.replace", "refused: '__code__'"),
    E("closure cells", "x = 1\ndef f():\n    return x\nreturn f.__closure__[0].cell_contents", "refused: '__closure__'"),
    E("bound method self", "return ctx.get.__self__._layer", "refused: '__self__'"),
    E("private ctx state", "return ctx._layer.below", "refused: '_layer'"),
    E("super internals", "class A:\n    def f(self):\n        return super().__thisclass__\nreturn A().f()", "refused: '__thisclass__'"),
    # -- format strings ------------------------------------------------------------------------
    E("format attribute access", "return '{0.__class__.__base__}'.format(ctx)", "refused: format template reads attribute '__class__'"),
    E("format_map globals", "return '{f.__globals__}'.format_map({'f': run})", "refused: '__globals__'"),
    E("format on a computed template", "t = '{0.__cl' + 'ass__}'\nreturn t.format(ctx)", "refused: only on a string literal"),
    E("str.format unbound", "return str.format('{0.__class__}', ctx)", "refused: only on a string literal"),
    E("f-string dunder", "return f'{ctx.__class__}'", "refused: '__class__'"),
    E("format width bomb", "return f'{1:>999999999}'", "refused: format width"),
    E("percent-format width bomb", "return '%*d' % (10 ** 10, 1)", "refused: '*' widths"),
    E("format precision bomb", "return '{0:.999999999f}'.format(1.5)", "refused: format width or precision"),
    E("format builtin width bomb", "return format(1, '>' + '9' * 9)", "fails: format width"),
    E("default repr leaks an address", "return repr(object())", "fails: memory address"),
    E("str of an object leaks an address", "return str(ctx)", "fails: memory address"),
    # -- decorators, defaults and special methods ---------------------------------------------
    E("decorator getattr", "@getattr\ndef f():\n    pass", "refused: only be called directly"),
    E("decorator __import__", "@__import__\ndef os():\n    pass", "refused: '__import__'"),
    E("default argument builtins", "def f(b=__builtins__):\n    return b\nreturn f()['open']", "refused: '__builtins__'"),
    E("function defaults", "def f(x=[]):\n    return x\nreturn f.__defaults__", "refused: '__defaults__'"),
    E("finaliser", "class A:\n    def __del__(self):\n        pass\nreturn A()", "refused: '__del__'"),
    E("init_subclass hook", "class A:\n    def __init_subclass__(cls):\n        pass", "refused: '__init_subclass__'"),
    E("getattribute hook", "class A:\n    def __getattribute__(self, n):\n        return 1", "refused: '__getattribute__'"),
    E("exit swallows", "class A:\n    def __exit__(self, *a):\n        return True", "refused: '__exit__'"),
    E("metaclass keyword", "class M(type):\n    pass\nclass A(metaclass=M):\n    pass", "refused: metaclass"),
    E("patch a shared stdlib class", "import fractions\nfractions.Fraction.limit_denominator = None", "fails: on a shared class Fraction"),
    E("patch a module proxy", "import math\nmath.pi = 3", "fails: on a shared module"),
    E("decorate a shared class", "import dataclasses, fractions\nreturn dataclasses.dataclass(fractions.Fraction)", "fails: may only decorate classes the contract defines"),
    # -- __builtins__ and imports -------------------------------------------------------------
    E("builtins subscript", "return __builtins__['open']('x', 'w')", "refused: '__builtins__'"),
    E("__import__ os", "return __import__('os').system('id')", "refused: '__import__'"),
    E("import os", "import os\nreturn os.environ['SECRET']", "refused: 'os' is not allowed"),
    E("from os import", "from os import system\nsystem('touch pwned')", "refused: 'os'"),
    E("import subprocess", "import subprocess\nsubprocess.run(['id'])", "refused: 'subprocess'"),
    E("import socket", "import socket\nsocket.create_connection(('1.1.1.1', 80))", "refused: 'socket'"),
    E("importlib", "from importlib import import_module\nreturn import_module('os')", "refused: 'importlib'"),
    E("builtins module", "import builtins\nreturn builtins.open", "refused: 'builtins'"),
    E("module loader", "import math\nreturn math.__loader__", "refused: '__loader__'"),
    E("private name import", "from functools import _lru_cache_wrapper", "refused: private names"),
    E("module attribute of a proxy", "import functools\nreturn functools.sys", "refused: 'sys'"),
    E("unvetted stdlib member", "from functools import update_wrapper", "fails: offers no 'update_wrapper'"),
    E("typing eval path", "from typing import get_type_hints", "fails: offers no 'get_type_hints'"),
    E("exec", "exec('import os')", "refused: 'exec'"),
    E("eval", "return eval('1')", "refused: 'eval'"),
    E("compile", "return compile('1', 'x', 'eval')", "refused: 'compile'"),
    E("open for writing", "open('pwned', 'w').write('x')", "refused: touches files"),
    E("globals", "return globals()['__builtins__']", "refused: 'globals'"),
    E("locals", "return locals()", "refused: 'locals'"),
    E("breakpoint", "breakpoint()", "refused: 'breakpoint'"),
    E("input", "return input()", "refused: 'input'"),
    E("print to the node terminal", "print('hi')", "refused: 'print'"),
    E("memoryview", "return memoryview(b'x')", "refused: 'memoryview'"),
    E("random module", "import random\nreturn random.random()", "refused: 'random'"),
    E("time module", "import time\nreturn time.time()", "refused: 'time'"),
    # -- numpy / scipy file and ctypes paths --------------------------------------------------
    E("numpy load", "import numpy\nreturn numpy.load('x.npy')", "refused: 'numpy' is not allowed"),
    E("numpy from-import", "from numpy import fromfile", "refused: import from 'numpy'"),
    E("scipy.io", "from scipy.io import loadmat", "refused: 'scipy.io'"),
    E("numpy lib.format", "from numpy.lib import format", "refused: 'numpy.lib'"),
    E("facade module internals", "from p2pchain.runtime.facade import np", "fails: offers no 'np'"),
    E("facade proxy attribute", "from p2pchain.runtime import facade\nreturn facade.np.zeros(3)", "fails: has no attribute 'np'"),
    E("array tofile", "from p2pchain.runtime import facade\na = facade.matmul([[1]], [[1]])\na.tofile('x')", "refused: 'tofile'"),
    E("array ctypes", "a = ctx.get('a')\nreturn a.ctypes.data_as(None)", "refused: 'ctypes'"),
    E("ctypeslib", "from p2pchain.runtime import facade\nreturn facade.ctypeslib", "refused: 'ctypeslib'"),
    E("memmap", "x = ctx.get('x')\nreturn x.memmap('f')", "refused: 'memmap'"),
    E("f2py", "x = ctx.get('x')\nreturn x.f2py", "refused: 'f2py'"),
    # -- recursion and memory bombs -----------------------------------------------------------
    E("infinite recursion", "def f(n):\n    return f(n + 1)\nreturn f(0)", "fails: call depth exceeded"),
    E("mutual recursion", "def a(n):\n    return b(n)\ndef b(n):\n    return a(n)\nreturn a(0)", "fails: call depth exceeded"),
    E("generator recursion", "def g(n):\n    yield from g(n + 1)\nreturn list(g(0))", "fails: recursion too deep"),
    E("recursion in __str__ of a raised exception", "class X(Exception):\n    def __str__(self):\n        return str(self)\nraise X()", "fails: call depth exceeded"),
    E("lambda recursion", "f = [None]\nf[0] = lambda n: f[0](n + 1)\nreturn f[0](0)", "fails: recursion too deep"),
    E("string repetition", "return 'a' * 10 ** 10", "fails: exceeds 1048576"),
    E("list repetition", "return [0] * 10 ** 9", "fails: exceeds 1048576"),
    E("power tower", "return 10 ** 10 ** 10", "fails: integer result"),
    E("left shift", "return 1 << 10 ** 9", "fails: integer result"),
    E("doubling string", "s = 'ab'\nwhile True:\n    s = s + s", "fails: exceeds 1048576"),
    E("in-place doubling list", "s = [1]\nwhile True:\n    s += s", "fails: exceeds 1048576"),
    E("in-place multiplication", "s = 'x'\ns *= 10 ** 9\nreturn s", "fails: exceeds 1048576"),
    E("fraction power", "from fractions import Fraction\nreturn Fraction(3, 2) ** 10 ** 8", "fails: integer result"),
    E("fraction squaring loop", "from fractions import Fraction\nx = Fraction(3, 2)\nwhile True:\n    x = x * x", "fails: integer result"),
    E("quadratic sum of lists", "return len(sum([[1]] * 10 ** 6, []))", "fails: out of steps"),
    E("factorial", "import math\nreturn math.factorial(10 ** 7)", "fails: factorial argument"),
    E("product explosion", "import itertools\nreturn len(list(itertools.product(range(100), repeat=8)))", "fails: out of steps"),
    E("huge range materialised", "return list(range(10 ** 10))", "fails: out of steps"),
    E("bytes allocation", "return len(bytes(10 ** 11))", "breach"),
    E("ljust allocation", "return len('x'.ljust(3 * 10 ** 9))", "breach"),
    # -- infinite loops and swallowed signals -------------------------------------------------
    E("while true", "while True:\n    pass", "fails: out of steps"),
    E("swallow out of steps", "while True:\n    try:\n        while True:\n            pass\n    except StopIteration:\n        pass", "fails: out of steps"),
    E("bare except around loop", "try:\n    while True:\n        pass\nexcept:\n    return 'escaped'", "fails: out of steps"),
    E("finally return swallows", "try:\n    while True:\n        pass\nfinally:\n    return 'escaped'", "refused: swallows exceptions"),
    E("infinite generator consumed in C", "def g():\n    while True:\n        yield 1\nreturn max(g())", "fails: out of steps"),
    E("count consumed in C", "import itertools\nreturn sum(itertools.count())", "fails: out of steps"),
    E("cycle consumed in C", "import itertools\nreturn max(itertools.cycle([1, 2]))", "fails: out of steps"),
    E("repeat consumed in C", "import itertools\nreturn sum(itertools.repeat(1))", "fails: out of steps"),
    E("iter with sentinel", "return sum(iter(int, 1))", "refused: iter(callable, sentinel)"),
    E("catch BaseException", "try:\n    while True:\n        pass\nexcept BaseException:\n    return 1", "refused: 'BaseException'"),
    E("with statement", "with ctx:\n    pass", "refused: 'with'"),
    # -- nondeterminism --------------------------------------------------------------------
    E("set iteration order", "return list({'a', 'b', 'c'})", "refused: set literals"),
    E("set from dict views", "d = {'a': 1, 'b': 2}\nreturn list(d.keys() - ['z'])", "refused: set operations on dict views"),
    E("set from dict items", "d = {'a': 1}\nreturn list(d.items() | {}.items())", "refused: set operations on dict views"),
    E("hash of str", "return hash('abc')", "refused: PYTHONHASHSEED"),
    E("object id", "return id(ctx)", "refused: object ids"),
    E("codec import on first use", "return 'x'.encode('cp037')", "refused: encoding must be a literal"),
    E("codec from data", "return b'x'.decode(ctx.get('codec'))", "refused: encoding must be a literal"),
    E("codec via str()", "return str(b'x', 'punycode')", "refused: encoding must be a literal"),
    E("unanchored channel read", "return ctx.read('electricity', 'k')", "fails: not anchored"),
]

AUDITED = ("open", "socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
           "os.fork", "os.remove", "os.rename", "os.mkdir", "os.putenv", "os.unsetenv", "os.listdir",
           "os.scandir", "ctypes.", "sys._getframe", "builtins.input", "code.__new__", "function.__new__",
           "import")
_audit = {"on": False, "events": []}


def _hook(event, args):
    if _audit["on"] and event.startswith(AUDITED):
        _audit["events"].append((event, repr(args)[:200]))


sys.addaudithook(_hook)


def test_the_corpus_holds_at_least_forty_escapes():
    assert len(ESCAPES) >= 40
    assert len({e.name for e in ESCAPES}) == len(ESCAPES)


def _snapshot():
    return (dict(vars(builtins)), dict(vars(fractions.Fraction)), math.pi, sorted(sys.modules))


@pytest.fixture
def guarded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRET", SECRET)
    before = _snapshot()
    yield
    assert list(tmp_path.iterdir()) == [], "a file was created"
    after = _snapshot()
    assert after[0] == before[0] and after[1] == before[1] and after[2] == before[2]
    assert after[3] == before[3], "a module was imported"


@pytest.mark.parametrize("escape", [e for e in ESCAPES if e.expect.startswith("refused")], ids=lambda e: e.name)
def test_escape_is_refused_by_the_validator(escape):
    words = escape.expect.split(": ", 1)[1]
    refusals = validate(escape.source)[1]
    assert any(words in r.reason for r in refusals), refusals


@pytest.mark.parametrize("escape", [e for e in ESCAPES if e.expect.startswith("fails")], ids=lambda e: e.name)
def test_escape_fails_deterministically_at_run_time(escape, guarded):
    words = escape.expect.split(": ", 1)[1]
    assert validate(escape.source)[1] == []
    _audit["events"].clear()
    _audit["on"] = True
    try:
        first = Runner(100_000)(escape.source)
        second = Runner(100_000)(escape.source)
    finally:
        _audit["on"] = False
    assert not first.ok and words in first.reason, first.reason
    assert first == second
    assert _audit["events"] == []
    assert SECRET not in repr(first)
    assert Runner()("def run(ctx):\n    return 1\n").ok  # the executor is unharmed


@pytest.fixture(scope="module")
def worker():
    with ChannelWorker("transaction", POLICY, memory_limit_bytes=1 << 30, step_limit=100_000) as w:
        yield w


@pytest.mark.parametrize("escape", [e for e in ESCAPES if e.expect == "breach"], ids=lambda e: e.name)
def test_allocation_bombs_breach_the_worker_and_never_become_a_result(escape, worker, tmp_path):
    assert validate(escape.source)[1] == []
    state = state_with(c=escape.source)
    with pytest.raises(WorkerFailure, match="memory exhausted|breach"):
        worker.execute_block(block(), [invocation("c", "run")], state)
    # the node process is unharmed, and the next block gets a fresh worker
    result = worker.execute_block(block(2), [invocation("c", "nothing")], state)
    assert result.results[0].reason == "contract 'c' has no function 'nothing'"
