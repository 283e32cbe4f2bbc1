"""The executor: ctx semantics, failures that discard writes, metering, floats, blocks."""

from __future__ import annotations

from fractions import Fraction

import pytest
from runtime_helpers import POLICY, Runner, block, invocation, state_with, value

from p2pchain.encoding import decode, encode
from p2pchain.runtime import Executor, MemoryState
from p2pchain.runtime.units import round_half_even, to_units

COUNTER = '''
def add(ctx, key="n", by=1):
    n = ctx.get(key, 0) + by
    ctx.put(key, n)
    ctx.emit({"key": key, "n": n})
    return n

def fail_after_write(ctx):
    ctx.put("n", 999)
    raise ValueError("no")

def listing(ctx, start="", end=None, limit=None):
    return ctx.scan(start, end, limit)

def drop(ctx, key):
    ctx.delete(key)
'''


def run_block(state, calls, **executor_options):
    executor = Executor(POLICY, **executor_options)
    invocations = [invocation("counter", f, a, tx=i) for i, (f, a) in enumerate(calls)]
    return executor.execute_block(block(), invocations, state)


def test_a_transaction_sees_writes_of_earlier_transactions_in_the_block():
    result = run_block(state_with(counter=COUNTER), [("add", {}), ("add", {"by": 5})])
    assert [decode(r.value) for r in result.results] == [1, 6]
    assert result.write_map() == {("counter", "n"): encode(6)}


def test_a_failed_transaction_has_its_writes_discarded():
    result = run_block(state_with(counter=COUNTER), [("add", {}), ("fail_after_write", {}), ("add", {})])
    failed = result.results[1]
    assert not failed.ok and failed.reason == "ValueError: no" and failed.writes == ()
    assert decode(result.results[2].value) == 2
    assert result.write_map() == {("counter", "n"): encode(2)}


def test_events_are_recorded_in_order_as_canonical_bytes():
    result = run_block(state_with(counter=COUNTER), [("add", {"key": "a"})])
    assert [decode(e) for e in result.results[0].events] == [{"key": "a", "n": 1}]


def test_scan_merges_committed_state_and_pending_writes_in_key_order():
    state = state_with(counter=COUNTER)
    state.apply({("counter", k): encode(i) for i, k in enumerate(["a", "c", "e", "g"])})
    result = run_block(state, [("add", {"key": "b"}), ("drop", {"key": "c"}), ("add", {"key": "e"}),
                               ("listing", {"start": "a", "end": "g"}), ("listing", {"limit": 2})])
    assert decode(result.results[3].value) == [["a", 0], ["b", 1], ["e", 3]]
    assert decode(result.results[4].value) == [["a", 0], ["b", 1]]


def test_a_contract_only_sees_its_own_namespace():
    state = state_with(counter=COUNTER, other="def peek(ctx):\n    return ctx.get('n')\n")
    state.apply({("counter", "n"): encode(41)})
    result = Executor(POLICY).execute_block(block(), [invocation("other", "peek")], state)
    assert decode(result.results[0].value) is None


def test_module_state_does_not_survive_between_transactions():
    source = "CACHE = []\n\ndef remember(ctx):\n    CACHE.append(1)\n    return len(CACHE)\n"
    state = state_with(c=source)
    result = Executor(POLICY).execute_block(block(), [invocation("c", "remember", tx=i) for i in range(3)], state)
    assert [decode(r.value) for r in result.results] == [1, 1, 1]


RESETS = '''
def work(ctx, n):
    total = 0
    for i in range(n):
        total += i
    return total

def spin(ctx):
    while True:
        pass

def deep(ctx, n=0):
    return deep(ctx, n + 1)

def swallow(ctx):
    try:
        deep(ctx)
    except:
        pass
    while True:
        pass
'''


@pytest.mark.parametrize("before", ["spin", "deep", "swallow", "work"])
def test_each_transaction_starts_with_no_steps_and_no_depth_whatever_ran_before_it(before):
    # one meter serves every transaction of an executor, reset before each
    state = state_with(c=RESETS)
    alone = Executor(POLICY, step_limit=10_000).execute_block(
        block(), [invocation("c", "work", {"n": 50}), invocation("c", "deep", tx=1)], state)
    after = Executor(POLICY, step_limit=10_000).execute_block(
        block(), [invocation("c", before, {"n": 9_000} if before == "work" else {}, tx=2),
                  invocation("c", "work", {"n": 50}), invocation("c", "deep", tx=1)], state)
    assert after.results[1:] == alone.results
    assert alone.results[0].ok and alone.results[1].reason == "call depth exceeded (limit 100)"


@pytest.mark.parametrize("body, reason", [
    ("ctx.put('x', 0.5)", "write of 'x' is not a canonical value: <root>: float 0.5 refused"),
    ("ctx.put('x', {'p': [1, 2.5]})", "float 2.5 refused"),
    ("ctx.emit({'price': 1.5})", "event is not a canonical value"),
    ("return 0.1", "return value is not a canonical value"),
    ("ctx.put('x', object())", "values of type object cannot be encoded"),
    ("ctx.put('x', 2 ** 70)", "outside the 64-bit range"),
])
def test_a_float_or_non_canonical_output_fails_the_transaction_with_that_reason(run, body, reason):
    result = run(f"def run(ctx):\n    {body}\n")
    assert not result.ok and reason in result.reason and result.writes == ()


def test_floats_inside_a_contract_are_fine_once_rounded(run):
    source = "def run(ctx):\n    x = 2.5 * 3\n    return [ctx.to_units(x), ctx.round_half_even(0.5), ctx.to_units(1.2345, 0.001)]\n"
    assert value(run(source)) == [8, 0, 1234]


def test_rounding_is_half_to_even_on_the_exact_value():
    assert [round_half_even(x) for x in (0.5, 1.5, 2.5, -1.5, Fraction(7, 2))] == [0, 2, 2, -2, 4]
    assert to_units(0.3, Fraction(1, 10)) == 3  # 0.3 is 0.29999..., times 10 is 2.99999... -> 3
    with pytest.raises(ValueError):
        to_units(float("nan"))


@pytest.mark.parametrize("source", [
    "def run(ctx):\n    while True:\n        pass\n",
    "def run(ctx):\n    return sum(x for x in range(10 ** 9))\n",
    "def run(ctx):\n    return len(list(range(10 ** 7)))\n",
    "import itertools\ndef run(ctx):\n    return sum(itertools.count())\n",
    "def run(ctx):\n    while True:\n        try:\n            while True:\n                pass\n        except StopIteration:\n            pass\n",
    "def run(ctx):\n    try:\n        while True:\n            pass\n    except Exception:\n        return 1\n",
    "def f(n):\n    return f(n + 1) if n < 10 ** 9 else 0\ndef run(ctx):\n    return [f(0) for _ in range(10 ** 6)]\n",
])
def test_runaway_work_fails_with_out_of_steps_at_the_same_step(source):
    first, second = Runner(50_000)(source), Runner(50_000)(source)
    assert first == second
    assert not first.ok and first.reason in ("out of steps", "call depth exceeded (limit 100)")
    assert first.steps <= 50_001


def test_steps_are_charged_per_loop_iteration_and_call():
    runner = Runner()
    base = runner("def run(ctx):\n    return 0\n").steps
    loop = runner("def run(ctx):\n    for i in [1, 2, 3, 4, 5]:\n        pass\n").steps
    calls = runner("def g():\n    return 0\ndef run(ctx):\n    g(); g(); g()\n").steps
    assert (loop - base, calls - base) == (5, 3)


def test_a_loop_over_range_is_charged_once_when_the_range_is_made():
    runner = Runner()
    base = runner("def run(ctx):\n    return 0\n").steps
    loop = runner("def run(ctx):\n    for i in range(7):\n        pass\n").steps
    broken = runner("def run(ctx):\n    for i in range(7):\n        break\n").steps
    comprehension = runner("def run(ctx):\n    return [i for i in range(7)]\n").steps
    assert loop - base == broken - base == comprehension - base == 7


RANGE_SHAPES = {
    # range loops in a function: their lengths are summed locally and charged in batches
    "function": "def run(ctx):\n    for i in range(40):\n        for j in range(100):\n            pass\n",
    # the same loops where every range is charged when it is made
    "generator": "def g():\n    for i in range(40):\n        for j in range(100):\n            yield 0\n"
                 "def run(ctx):\n    for x in g():\n        pass\n",
    "module": "for i in range(40):\n    for j in range(100):\n        pass\ndef run(ctx):\n    return 0\n",
    "comprehension": "def run(ctx):\n    return [0 for i in range(40) for j in range(100)]\n",
}


def test_range_loops_in_a_function_are_charged_exactly_whenever_the_charge_is_made():
    runner = Runner()
    base = runner("def run(ctx):\n    return 0\n").steps
    extra = {name: runner(source).steps - base for name, source in RANGE_SHAPES.items()}
    # 40 + 40 x 100 range items everywhere; the generator adds its one step when it starts,
    # and the loop over it one per item
    assert extra == {"function": 4040, "generator": 4040 + 1 + 4000, "module": 4040, "comprehension": 4040}


@pytest.mark.parametrize("limit", [4100, 4040, 4041, 4039, 1030, 1])
def test_the_limit_falls_at_the_same_step_whether_range_charges_are_batched_or_not(limit):
    # 1 (run) + 40 + 4000: within the limit (4041) or out of steps at it, in every shape
    outcomes = {name: Runner(limit)(source) for name, source in RANGE_SHAPES.items() if name != "generator"}
    expected_ok = limit >= 1 + 4040
    for name, result in outcomes.items():
        assert result.ok == expected_ok, (name, result.reason)
        assert result.steps == (4041 if expected_ok else limit + 1), name
        assert expected_ok or result.reason == "out of steps"


@pytest.mark.parametrize("body", [
    "for i in range(10 ** 12):\n        pass",                                   # charged before it starts
    "for i in range(1000):\n        for j in range(1000):\n            pass",  # in batches, then stops
    "try:\n        for i in range(10 ** 6):\n            pass\n    except Exception:\n        return 1\n"
    "    return 0",
    "for i in range(1000):\n        for j in range(1000):\n            pass\n    raise ValueError('late')",
])
def test_range_loops_past_the_limit_fail_with_out_of_steps_even_if_the_function_returns_or_raises(body):
    first, second = Runner(50_000)(f"def run(ctx):\n    {body}\n"), Runner(50_000)(f"def run(ctx):\n    {body}\n")
    assert first == second
    assert not first.ok and first.reason == "out of steps" and first.steps == 50_001


def test_a_function_that_fails_is_charged_its_range_loops_all_the_same(run):
    base = run("def run(ctx):\n    raise ValueError('x')\n").steps
    failed = run("def run(ctx):\n    for i in range(30):\n        pass\n    raise ValueError('x')\n")
    assert not failed.ok and failed.reason == "ValueError: x" and failed.steps - base == 30


def test_deep_recursion_fails_with_call_depth_exceeded(run):
    result = run("def f(n):\n    return f(n + 1)\ndef run(ctx):\n    return f(0)\n")
    assert result.reason == "call depth exceeded (limit 100)"


def test_the_call_depth_failure_cannot_be_swallowed(run):
    source = ("def f(n):\n    return f(n + 1)\n"
              "def run(ctx):\n    try:\n        f(0)\n    except:\n        return 'caught'\n")
    assert run(source).reason == "call depth exceeded (limit 100)"


def test_invoking_an_uncommitted_contract_fails_with_a_reason():
    result = Executor(POLICY).execute_block(block(), [invocation("ghost", "run")], MemoryState())
    assert result.results[0].reason == "contract 'ghost' is not committed on this channel"


@pytest.mark.parametrize("function, reason", [
    ("missing", "has no function 'missing'"), ("_helper", "has no function '_helper'"),
    ("CONSTANT", "has no function 'CONSTANT'"),
])
def test_only_public_module_functions_can_be_invoked(run, function, reason):
    source = "CONSTANT = 1\ndef _helper(ctx):\n    return 1\ndef run(ctx):\n    return 1\n"
    assert reason in run(source, function).reason


def test_rng_is_seeded_by_block_hash_and_transaction():
    source = "def run(ctx):\n    r = ctx.rng()\n    return [r.randbelow(1000) for _ in range(5)]\n"
    state = state_with(c=source)
    executor = Executor(POLICY)
    again = executor.execute_block(block(1), [invocation("c", "run", tx=1), invocation("c", "run", tx=2)], state)
    first = executor.execute_block(block(1), [invocation("c", "run", tx=1), invocation("c", "run", tx=2)], state)
    other_block = executor.execute_block(block(2), [invocation("c", "run", tx=1)], state)
    draws = [decode(r.value) for r in first.results]
    assert first == again and draws[0] != draws[1] and decode(other_block.results[0].value) != draws[0]


def test_ctx_exposes_caller_and_block():
    source = "def run(ctx):\n    return [ctx.caller.org, ctx.caller.role, ctx.block.height, ctx.block.timestamp_ms]\n"
    assert value(Runner()(source)) == ["mgo", "client", 1, 1_700_000_000_001]


class Anchored:
    def __init__(self):
        self.reads = []

    def read(self, channel, namespace, key):
        self.reads.append((channel, namespace, key))
        return encode({"bus": 7})


def test_read_sees_another_channel_only_when_anchored():
    source = "def run(ctx):\n    return ctx.read('electricity', 'feeder/1', contract='grid')\n"
    state = state_with(c=source)
    reader = Anchored()
    anchored = Executor(POLICY).execute_block(block(anchors={"electricity": 5}), [invocation("c", "run")], state, reader)
    unanchored = Executor(POLICY).execute_block(block(), [invocation("c", "run")], state, reader)
    assert decode(anchored.results[0].value) == {"bus": 7}
    assert reader.reads == [("electricity", "grid", "feeder/1")]
    assert unanchored.results[0].reason == "channel 'electricity' is not anchored in this block"


def test_market_sized_pure_python_computation_gives_the_direct_result(run):
    source = '''
def greedy(weights):
    pairs = sorted(((w, i, j) for i, row in enumerate(weights) for j, w in enumerate(row)), reverse=True)
    used_rows, used_cols, total = {}, {}, 0
    for w, i, j in pairs:
        if i not in used_rows and j not in used_cols:
            used_rows[i] = used_cols[j] = True
            total += w
    return total

def run(ctx, weights):
    return greedy(weights)
'''
    weights = [[(i * 7 + j * 13) % 29 for j in range(20)] for i in range(20)]
    namespace = {}
    exec(source, namespace)
    assert value(run(source, args={"weights": weights})) == namespace["greedy"](weights)


def test_the_example_in_docs_contracts_is_accepted_and_runs():
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "contracts.md").read_text()
    source = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    state = state_with(quotation=source)
    calls = [invocation("quotation", "submit", {"energy_wh": 1000, "price_milli_per_kwh": 150}, tx=1),
             invocation("quotation", "submit", {"energy_wh": -1, "price_milli_per_kwh": 9}, tx=2),
             invocation("quotation", "average_price", tx=3)]
    results = Executor(POLICY).execute_block(block(), calls, state).results
    assert [r.reason for r in results] == [None, "ValueError: energy must be positive", None]
    assert decode(results[2].value) == 150


@pytest.mark.parametrize("source, reason", [
    ("class K:\n    def __lt__(self, other):\n        raise KeyError('lt')\n"
     "def run(ctx):\n    return {K(): 1, K(): 2}\n", "KeyError: 'lt'"),
    ("class E(Exception):\n    def __str__(self):\n        raise ValueError('no')\n"
     "def run(ctx):\n    raise E()\n", "E: <the exception's message could not be computed>"),
    ("class E(Exception):\n    def __str__(self):\n        while True:\n            pass\n"
     "def run(ctx):\n    raise E()\n", "out of steps"),
])
def test_contract_code_that_the_runtime_calls_fails_the_transaction_not_the_block(run, source, reason):
    assert run(source).reason == reason


class BrokenState:
    def __init__(self, inner):
        self.inner = inner

    def get(self, namespace, key):
        if namespace == "c":
            raise OSError("disk gone")
        return self.inner.get(namespace, key)

    def scan(self, *args):
        raise OSError("disk gone")


@pytest.mark.parametrize("body", ["return ctx.get('k')", "return ctx.scan()",
                                  "try:\n        return ctx.get('k')\n    except Exception:\n        return 'swallowed'"])
def test_a_failing_node_state_is_a_runtime_fault_never_a_transaction_result(body):
    from p2pchain.runtime import RuntimeFault

    state = BrokenState(state_with(c=f"def run(ctx):\n    {body}\n"))
    with pytest.raises(RuntimeFault, match="state unavailable in c.run: .*OSError: disk gone"):
        Executor(POLICY).execute_block(block(), [invocation("c", "run")], state)


@pytest.mark.parametrize("body, expected", [
    ("x = 5\n    x += 2\n    return x", 7),
    ("s = 'ab'\n    s += 'cd'\n    return s", "abcd"),
    ("t = [1]\n    u = t\n    t += [2]\n    return [t, u is t]", [[1, 2], True]),  # in place, as in Python
    ("d = {'k': [1]}\n    d['k'] += [2, 3]\n    return d", {"k": [1, 2, 3]}),
    ("m = [[0, 0], [0, 0]]\n    for i in range(2):\n        m[i][i] += i + 1\n    return m", [[1, 0], [0, 2]]),
    ("t = (1,)\n    t += (2,)\n    return list(t)", [1, 2]),
    ("x = 0.5\n    x += 1.25\n    return round(x * 4)", 7),
    ("v = [0.5]\n    v[0] += 2\n    return round(v[0] * 2)", 5),
])
def test_augmented_addition_keeps_python_semantics(run, body, expected):
    assert value(run(f"def run(ctx):\n    {body}\n")) == expected


def test_augmented_addition_evaluates_target_key_and_value_once_in_python_order(run):
    source = '''
def run(ctx):
    order = []
    def note(what, result):
        order.append(what)
        return result
    table = {"k": 1}
    note("table", table)[note("key", "k")] += note("value", 2)
    return [order, table]
'''
    assert value(run(source)) == [["table", "key", "value"], {"k": 3}]


@pytest.mark.parametrize("body", [
    "s = 'x'\n    while True:\n        s += s",
    "d = {'k': [0]}\n    while True:\n        d['k'] += d['k']",
    "b = [b'x']\n    while True:\n        b[0] += b[0]",
])
def test_a_doubling_augmented_addition_fails_on_its_size_not_on_memory(run, body):
    result = run(f"def run(ctx):\n    {body}\n")
    assert not result.ok and "exceeds 1048576" in result.reason


@pytest.mark.parametrize("call, reason", [
    ("range(1, None)", "TypeError"),
    ("range(stop=3)", "TypeError"),
    ("range()", "TypeError"),
    ("range(1, 2, 0)", "ValueError"),
])
def test_the_metered_range_refuses_what_the_builtin_refuses(run, call, reason):
    result = run(f"def run(ctx):\n    return list({call})\n")
    assert not result.ok and result.reason.startswith(reason), result.reason


def test_the_metered_range_charges_its_length_with_every_argument_form(run):
    base = run("def run(ctx):\n    return 0\n").steps
    forms = ["range(6)", "range(2, 8)", "range(0, 12, 2)", "range(*[3, 9])"]
    assert [run(f"def run(ctx):\n    r = {f}\n    return 0\n").steps - base for f in forms] == [6, 6, 6, 6]


@pytest.mark.parametrize("expression, expected", [
    ("[0] * 3", [0, 0, 0]),
    ("[1, 2] * n", [1, 2, 1, 2, 1, 2, 1, 2]),
    ("(None,) * (n - 1)", [None, None, None]),
    ("[0] * -2", []),
    ("[7] * True", [7]),               # a bool count takes the hook: same result
    ("[[0] * 2 for _ in range(2)]", [[0, 0], [0, 0]]),  # in a comprehension: the hook
    ("(lambda k: [5] * k)(2)", [5, 5]),
    ("[n, 'x'] * 2", [4, "x", 4, "x"]),       # a display of names: made first, then repeated
    ("[[n]] * 2", [[4], [4]]),
    ("[n] * 2.0", "TypeError"),
])
def test_a_table_made_by_repetition_has_python_semantics(run, expression, expected):
    result = run(f"def run(ctx):\n    n = 4\n    return {expression}\n")
    if expected == "TypeError":
        assert not result.ok and result.reason.startswith("TypeError")
    else:
        assert value(result) == expected


def test_a_repeated_display_is_evaluated_before_its_count_as_in_python(run):
    source = '''
def run(ctx):
    order = []
    def note(what, result):
        order.append(what)
        return result
    table = [note("display", 1)] * note("count", 3)
    return [order, table]
'''
    assert value(run(source)) == [["display", "count"], [1, 1, 1]]


@pytest.mark.parametrize("source", [
    "def run(ctx):\n    return [0] * (1 << 21)\n",
    "def run(ctx):\n    return [0, 0] * ((1 << 19) + 1)\n",
    "def run(ctx):\n    return [[0] * (1 << 21) for _ in range(1)]\n",
    "class T:\n    row = [0] * (1 << 21)\ndef run(ctx):\n    return 0\n",
    "def f(row=[0] * (1 << 21)):\n    return row\ndef run(ctx):\n    return 0\n",
    "def run(ctx):\n    x = 0\n    return [x, x] * ((1 << 19) + 1)\n",
    "def run(ctx):\n    return [0] * (1 << 20 << 1)\n",
])
def test_a_table_too_large_fails_on_its_size_wherever_it_is_made(run, source):
    result = run(source)
    assert not result.ok and "exceeds 1048576" in result.reason


@pytest.mark.parametrize("expression, expected", [
    ("1 << 60", 1 << 60), ("2 ** 62", 2 ** 62), ("-3 * 7", -21), ("2 ** -1 == 0.5", True), ("7 << 0", 7),
])
def test_constant_arithmetic_within_the_limits_keeps_its_value(run, expression, expected):
    assert value(run(f"def run(ctx):\n    return {expression}\n")) == expected


@pytest.mark.parametrize("expression, reason", [
    ("1 << 70000", "integer result"), ("3 ** 50000", "integer result"), ("1 << -1", "ValueError"),
])
def test_constant_arithmetic_beyond_the_limits_fails_at_run_time(run, expression, reason):
    result = run(f"def run(ctx):\n    return {expression}\n")
    assert not result.ok and reason in result.reason, result.reason


def test_the_largest_allowed_table_is_made_and_a_non_int_count_is_a_type_error(run):
    assert value(run("def run(ctx):\n    return len([0, 0] * (1 << 19))\n")) == 1 << 20
    result = run("def run(ctx):\n    return [0] * 2.0\n")
    assert not result.ok and result.reason.startswith("TypeError")


def test_loops_are_metered_alike_in_functions_generators_closures_and_comprehensions():
    runner = Runner()
    base = runner("def run(ctx):\n    return 0\n").steps
    shapes = {
        "plain": "def run(ctx):\n    for i in [1, 2, 3]:\n        pass\n",
        "nested function": "def run(ctx):\n    def g():\n        for i in [1, 2, 3]:\n            pass\n    g()\n",
        "generator": "def g():\n    for i in [1, 2, 3]:\n        yield i\ndef run(ctx):\n    list(g())\n",
        "comprehension": "def run(ctx):\n    while False:\n        pass\n    return [i for i in [1, 2, 3]]\n",
        "comprehension in a loop": "def run(ctx):\n    for k in [0]:\n        x = [i for i in [1, 2, 3]]\n",
    }
    extra = {name: runner(source).steps - base for name, source in shapes.items()}
    # three items each; a nested call or a generator adds its one step, an outer loop its one item
    assert extra == {"plain": 3, "nested function": 4, "generator": 4, "comprehension": 3,
                     "comprehension in a loop": 4}


IMPORTED_MEMBERS = '''
from itertools import count
import math

def mark(ctx):
    count.note = 1
    return 1

def mark_module(ctx):
    math.note = 1
    return 1

def seen(ctx):
    return [hasattr(count, "note"), hasattr(math, "note")]
'''


def test_imported_members_shared_by_the_importer_carry_nothing_to_the_next_transaction():
    state = state_with(m=IMPORTED_MEMBERS)
    calls = [invocation("m", "mark", tx=1), invocation("m", "mark_module", tx=2), invocation("m", "seen", tx=3)]
    mark, mark_module, seen = Executor(POLICY).execute_block(block(), calls, state).results
    assert not mark.ok and "cannot set attribute 'note'" in mark.reason
    assert not mark_module.ok and "cannot set attribute 'note'" in mark_module.reason
    assert seen.ok and decode(seen.value) == [False, False]


IMPORTED_DATA = '''
from market.experiment import PAPER
from market.records import QUOTE_FIELDS

def spoil(ctx):
    PAPER["success_rate"] = 0
    PAPER.clear()
    return len(PAPER)

def look(ctx):
    return [sorted(PAPER), list(QUOTE_FIELDS)]
'''


def test_imported_mutable_data_is_each_transactions_own_copy():
    """The importer resolves an import once per executor, but mutable data it offers (a dict
    here) is copied for every import: what one transaction does to it, the next never sees."""
    from market.experiment import PAPER
    from market.records import QUOTE_FIELDS

    state = state_with(d=IMPORTED_DATA)
    executor = Executor(POLICY)
    for tx in (1, 3):
        spoiled, looked = executor.execute_block(
            block(), [invocation("d", "spoil", tx=tx), invocation("d", "look", tx=tx + 1)], state).results
        assert spoiled.ok and decode(spoiled.value) == 0
        assert looked.ok and decode(looked.value) == [sorted(PAPER), list(QUOTE_FIELDS)]
    assert sorted(PAPER) == ["renewable_consumption_rate", "success_rate"]
