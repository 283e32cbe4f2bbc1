"""Benchmark of the contract runtime (issue 5): throughput and overhead.

1. Invocations/s of a trivial contract (read a counter, write it back) in per-block
   batches of 100: through the worker process (the node's path), through the in-process
   executor, and — the baseline — the same logic as a plain Python function on a dict.
2. Overhead of a market-sized computation — an exact assignment (Hungarian algorithm,
   Kuhn 1955 / Munkres 1957, O(n^3)) on 20x20 integer weights, pure Python — through the
   runtime against calling the same function directly (goal: at most 1.3x), at 20x20 and
   40x40: the instrumented function alone, the full invocation in-process, and through the
   worker (blocks of five), with the worker's exchange for an empty block alongside — the
   part of the worker's cost that a block pays whatever it holds. Each path is timed in
   wall-clock time and in CPU time (for the worker path: this thread's and the worker
   process's), best of many interleaved repetitions.
3. The market's own computation: the ``round`` contract's ``close`` over the 24 hours of a
   paper-sized day, called directly, in-process and through the worker (best of five days).

Run: ``python bench/runtime.py`` (add ``--quick`` for a smoke run). Prints one line per figure.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from p2pchain.identity import Identity  # noqa: E402
from p2pchain.encoding import decode, encode  # noqa: E402
from p2pchain.runtime import (  # noqa: E402
    BlockContext, ChannelWorker, Executor, Invocation, LifecyclePolicy, MemoryState, genesis_writes, make_bundle,
)

POLICY = LifecyclePolicy(("dno", "mgo", "reg"), 2)
CALLER = Identity("mgo", "ev01", "client", "ev", b"\x01" * 32)

TRIVIAL = '''
def add(ctx, by):
    n = ctx.get("n", 0) + by
    ctx.put("n", n)
    return n
'''

HUNGARIAN = '''
def assignment(weights):
    """Maximum-weight assignment of an n x n matrix (Hungarian method, potentials form)."""
    n = len(weights)
    big = 1 << 60
    u = [0] * (n + 1)
    v = [0] * (n + 1)
    match = [0] * (n + 1)
    way = [0] * (n + 1)
    for i in range(1, n + 1):
        match[0] = i
        j0 = 0
        minv = [big] * (n + 1)
        used = [False] * (n + 1)
        while True:
            used[j0] = True
            i0 = match[j0]
            delta = big
            j1 = 0
            row = weights[i0 - 1]
            ui0 = u[i0]
            for j in range(1, n + 1):
                if not used[j]:
                    cur = -row[j - 1] - ui0 - v[j]
                    if cur < minv[j]:
                        minv[j] = cur
                        way[j] = j0
                    if minv[j] < delta:
                        delta = minv[j]
                        j1 = j
            for j in range(n + 1):
                if used[j]:
                    u[match[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if match[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            match[j0] = match[j1]
            j0 = j1
    pairs = sorted((match[j] - 1, j - 1) for j in range(1, n + 1))
    return {"pairs": [list(p) for p in pairs], "total": sum(weights[i][j] for i, j in pairs)}


def match(ctx, weights):
    return assignment(weights)
'''


def weights(n: int, seed: int) -> list[list[int]]:
    # A fixed linear congruential sequence: reproducible without the random module.
    x, rows = seed, []
    for _ in range(n):
        row = []
        for _ in range(n):
            x = (1103515245 * x + 12345) % (1 << 31)
            row.append(x % 10_000)
        rows.append(row)
    return rows


def block(height: int) -> BlockContext:
    return BlockContext("matching", height, height.to_bytes(32, "big"), 1000 * height)


def bench_trivial(blocks: int, batch: int) -> None:
    invocations = [[Invocation((h * batch + i).to_bytes(32, "big"), "counter", "add", {"by": 1}, CALLER)
                    for i in range(batch)] for h in range(blocks)]
    total = blocks * batch

    # baseline: the same read-modify-write as a plain function on a dict
    store: dict[str, int] = {}

    def plain(by: int) -> int:
        n = store.get("n", 0) + by
        store["n"] = n
        return n

    def plain_block() -> None:
        for _ in range(batch):
            plain(1)

    direct = []
    for _ in range(blocks):
        start = time.perf_counter()
        plain_block()
        direct.append(time.perf_counter() - start)

    def through(execute) -> list[float]:
        state = MemoryState(genesis_writes([make_bundle("counter", 1, TRIVIAL)[0]]))
        durations = []
        for h in range(blocks):
            start = time.perf_counter()
            result = execute(block(h + 1), invocations[h], state)
            durations.append(time.perf_counter() - start)
            state.apply(result.write_map())
        return durations

    executor = Executor(POLICY)
    in_process = through(executor.execute_block)
    with ChannelWorker("matching", POLICY) as worker:
        through(worker.execute_block)  # warm-up: start, preload, compile
        in_worker = through(worker.execute_block)
    for label, durations in (("median block", statistics.median), ("best block", min)):
        w, p, d = durations(in_worker), durations(in_process), durations(direct)
        print(f"trivial contract, blocks of {batch}, {label}: worker {batch / w:,.0f} invocations/s "
              f"({1000 * w:.2f} ms per block), in-process executor {batch / p:,.0f}/s, plain function "
              f"(baseline) {batch / d:,.0f}/s; worker/baseline time {w / d:,.0f}x, worker/in-process {w / p:.2f}x")
    print(f"  (total over {blocks} blocks: worker {total / sum(in_worker):,.0f}/s)")


def bench_market(repeats: int, n: int) -> None:
    from p2pchain.runtime.executor import compile_contract
    from p2pchain.runtime.meter import Meter
    from p2pchain.runtime.sandbox import contract_globals

    matrices = [weights(n, seed) for seed in range(1, 6)]
    namespace: dict = {}
    exec(HUNGARIAN, namespace)
    direct = namespace["assignment"]
    sandboxed = contract_globals(Meter(10 ** 9))
    exec(compile_contract(HUNGARIAN), sandboxed)
    instrumented = sandboxed["assignment"]
    state = MemoryState(genesis_writes([make_bundle("market", 1, HUNGARIAN)[0]]))
    executor = Executor(POLICY)
    calls = [Invocation(bytes(32), "market", "match", {"weights": w}, CALLER) for w in matrices]
    expected = [direct(w) for w in matrices]
    got = [decode(r.value) for r in executor.execute_block(block(1), calls, state).results]
    assert got == expected, "the runtime must compute what the direct call computes"

    # Interleaved, best of each: the machine is shared, so take each path's quietest run.
    best = dict.fromkeys(("direct", "instrumented", "runtime", "worker", "exchange"), float("inf"))
    # The worker is given consecutive heights, as the node gives it: the market contract
    # writes nothing, so the state after block h is the state before block h + 1, and the
    # worker keeps its cache of committed values (the lifecycle definition) between blocks.
    heights = itertools.count(2)
    with ChannelWorker("matching", POLICY) as worker:
        worker.execute_block(block(1), calls, state)
        paths = {
            "direct": lambda: [direct(w) for w in matrices],
            "instrumented": lambda: [instrumented(w) for w in matrices],
            "runtime": lambda: executor.execute_block(block(1), calls, state),
            "worker": lambda: worker.execute_block(block(next(heights)), calls, state),
            # the same exchange with no invocation: what a block costs whatever it holds
            "exchange": lambda: worker.execute_block(block(next(heights)), [], state),
        }
        # Every path is also timed in CPU time, which does not run while another job has the
        # core: a check on the wall-clock ratios when the machine is shared. The worker path's
        # CPU time is this thread's (packing, unpacking, the system calls) plus the worker
        # process's, read from /proc (Linux) around each block.
        worker_cpu = _process_cpu_ns(worker.pid)
        timed = ("direct", "instrumented", "runtime") + (("worker",) if worker_cpu else ())
        cpu = {name: float("inf") for name in timed}
        for _ in range(repeats):
            for name, path in paths.items():
                before = worker_cpu() if name == "worker" and worker_cpu else 0
                wall, used = time.perf_counter(), time.thread_time()
                path()
                wall, used = time.perf_counter() - wall, time.thread_time() - used
                best[name] = min(best[name], wall / len(matrices))
                if name in cpu:
                    used += (worker_cpu() - before) / 1e9 if name == "worker" else 0
                    cpu[name] = min(cpu[name], used / len(matrices))
    steps = executor.execute_block(block(1), calls[:1], state).results[0].steps
    d = best["direct"]
    print(f"market-sized computation (Hungarian {n}x{n}, {steps:,} steps): direct call (baseline) "
          f"{1000 * d:.3f} ms; instrumented function alone {1000 * best['instrumented']:.3f} ms "
          f"({best['instrumented'] / d:.2f}x); full invocation in-process {1000 * best['runtime']:.3f} ms "
          f"({best['runtime'] / d:.2f}x); through the worker {1000 * best['worker']:.3f} ms "
          f"({best['worker'] / d:.2f}x); a block's exchange with the worker alone (no invocation) "
          f"{1000 * best['exchange'] * len(matrices):.3f} ms per block")
    worker_ratio = f"{cpu['worker'] / cpu['direct']:.2f}x" if "worker" in cpu else "n/a (no /proc)"
    print(f"  same in CPU time: direct {1000 * cpu['direct']:.3f} ms; instrumented "
          f"{cpu['instrumented'] / cpu['direct']:.2f}x; full invocation in-process "
          f"{cpu['runtime'] / cpu['direct']:.2f}x; through the worker (this thread and the worker process) "
          f"{worker_ratio}")


class _ClosedHours:
    """The transaction channel's frozen quotations, as the anchored reader gives them: every
    run of the benchmark reads the same day's hours (``closed/{run}/{hh}`` of ``quotation``)."""

    def __init__(self, hours: dict[int, dict]) -> None:
        self._encoded = {hour: encode(closed) for hour, closed in hours.items()}

    def read(self, channel, namespace, key):
        parts = key.split("/")
        if (channel, namespace, parts[0]) != ("transaction", "quotation", "closed") or len(parts) != 3:
            return None
        return self._encoded.get(int(parts[2]))


def bench_round(runs: int, seed: int = 7) -> None:
    """The market's own computation: the ``round`` contract's ``close`` (matching, security
    check on the 33-bus feeder; no SMES) over the 24 hours of a paper-sized day, through the
    runtime against calling the same contract function directly. As on a node, the hours
    run in order, one block each at consecutive heights, each block's writes applied; every
    path repeats the day as ``runs`` separate runs (``progress/{run}``), best of the runs per hour."""
    import importlib.util

    from market.records import QUOTE_FIELDS
    from market.scenario import ScenarioParams
    from nodes.marketcore import scenario

    day = scenario(ScenarioParams(), seed)
    hours = {inputs.hour: {"run": 0, "hour": inputs.hour, "with_smes": False, "quotations": [
        dict({"prosumer": q.prosumer, "kind": q.kind.value, "side": q.side.value},
             **{k: getattr(q, k) for k in QUOTE_FIELDS}) for q in inputs.quotations]} for inputs in day.hours}
    closed = _ClosedHours(hours)
    source = (Path(__file__).resolve().parents[1] / "contracts" / "round.py").read_text()
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("round_direct", loader=None))
    exec(compile(source, "contracts/round.py", "exec"), module.__dict__)
    operator = Identity("mgo", "operator-mgo", "client", "operator", b"\x0c" * 32)
    direct_state: dict = {}

    class Direct:
        """What the contract uses of ``ctx``, as plain Python objects."""

        caller = operator
        block = BlockContext("matching", 1, bytes(32), 0, {"transaction": 1})

        @staticmethod
        def read(channel, key, contract=None):
            return hours[int(key.split("/")[2])] if key.startswith("closed/") else None

        get, put = staticmethod(direct_state.get), staticmethod(direct_state.__setitem__)

        @staticmethod
        def emit(event):
            pass

    executor = Executor(POLICY, step_limit=5_000_000)
    bundle = make_bundle("round", 1, source)[0]
    states = {"runtime": MemoryState(genesis_writes([bundle])), "worker": MemoryState(genesis_writes([bundle]))}
    heights = {"runtime": itertools.count(1), "worker": itertools.count(1)}
    best = {name: [float("inf")] * 24 for name in ("direct", "runtime", "worker")}
    steps = 0
    with ChannelWorker("matching", POLICY, step_limit=5_000_000) as worker:
        execute = {"runtime": executor.execute_block, "worker": worker.execute_block}

        def through(name, run, hour):
            block = BlockContext("matching", next(heights[name]), bytes(32), 0, {"transaction": 1})
            start = time.perf_counter()
            result = execute[name](block, [Invocation(bytes(32), "round", "close", {"run": run, "hour": hour},
                                                      operator)], states[name], closed)
            elapsed = time.perf_counter() - start
            states[name].apply(result.write_map())
            return result.results[0], elapsed

        for run in range(runs + 1):  # run 0 warms every path up and checks they agree
            for hour in range(24):
                start = time.perf_counter()
                expected = module.close(Direct, run, hour)
                elapsed = {"direct": time.perf_counter() - start}
                for name in ("runtime", "worker"):
                    result, elapsed[name] = through(name, run, hour)
                    assert result.ok, result.reason
                    if run == 0:
                        assert decode(result.value) == expected, "the runtime must compute what the direct call computes"
                        steps += result.steps
                if run:
                    for name, seconds in elapsed.items():
                        best[name][hour] = min(best[name][hour], seconds)
    d, r, w = (sum(best[name]) for name in ("direct", "runtime", "worker"))
    quotes = sum(len(h["quotations"]) for h in hours.values())
    print(f"the market round contract (round.close over 24 hours, {quotes} quotations, {steps:,} steps): "
          f"direct call (baseline) {1000 * d:.1f} ms a day; full invocation in-process {1000 * r:.1f} ms "
          f"({r / d:.2f}x); through the worker {1000 * w:.1f} ms ({w / d:.2f}x)")


def _process_cpu_ns(pid: int):
    """A function returning the CPU time (ns) process ``pid`` has run; None where /proc lacks it.

    The kernel brings a task's count up to date when it stops running, so the function first
    waits (briefly) for the process to be asleep: read while it still finishes its last
    block, the count would miss that part.
    """
    stat, schedstat = Path(f"/proc/{pid}/stat"), Path(f"/proc/{pid}/schedstat")
    if not schedstat.exists():
        return None

    def read() -> int:
        for _ in range(10_000):
            with open(stat) as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "R":
                    break
        with open(schedstat) as f:
            return int(f.read().split()[0])
    return read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few blocks only (smoke test)")
    args = parser.parse_args()
    bench_trivial(blocks=5 if args.quick else 100, batch=100)
    # Best of many interleaved repetitions: on a shared machine each path's best is the one
    # that ran while nothing else wanted its core (the worker path needs two at once).
    for n, repeats in ((20, 600), (40, 200)):
        bench_market(repeats=3 if args.quick else repeats, n=n)
    bench_round(runs=1 if args.quick else 10)


if __name__ == "__main__":
    main()
