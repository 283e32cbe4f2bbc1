"""The worker process: same results as in-process, one exchange per block, failures halt."""

from __future__ import annotations

import os
import signal

import pytest
from runtime_helpers import POLICY, block, identity, invocation, state_with

from p2pchain.encoding import encode
from p2pchain.runtime import ChannelWorker, Executor, WorkerFailure
from p2pchain.runtime.worker import current_cpu

SOURCE = '''
def add(ctx, key="n", by=1):
    n = ctx.get(key, 0) + by
    ctx.put(key, n)
    ctx.emit({"n": n})
    return n

def listing(ctx):
    return ctx.scan()

def spin(ctx):
    while True:
        pass

def env(ctx):
    return "{}".format(ctx.caller.name)

def surrogate(ctx, code=0xD800):
    raise ValueError("bad " + chr(code))
'''


@pytest.fixture(scope="module")
def worker():
    with ChannelWorker("transaction", POLICY, step_limit=100_000) as w:
        yield w


def blocks():
    return [
        [invocation("c", "add", tx=1), invocation("c", "add", {"key": "m", "by": 4}, tx=2)],
        [invocation("c", "spin", tx=3), invocation("c", "add", tx=4), invocation("c", "listing", tx=5)],
        [invocation("c", "missing", tx=6), invocation("ghost", "add", tx=7)],
    ]


def test_worker_results_equal_in_process_results_block_after_block(worker):
    remote_state, local_state = state_with(c=SOURCE), state_with(c=SOURCE)
    local = Executor(POLICY, step_limit=100_000)
    for height, invocations in enumerate(blocks(), start=1):
        remote = worker.execute_block(block(height), invocations, remote_state)
        expected = local.execute_block(block(height), invocations, local_state)
        assert remote == expected
        remote_state.apply(remote.write_map())
        local_state.apply(expected.write_map())
    assert remote_state.get("c", "n") == encode(2)


class CountingState:
    def __init__(self, inner):
        self.inner, self.gets = inner, 0

    def get(self, namespace, key):
        self.gets += 1
        return self.inner.get(namespace, key)

    def scan(self, *args):
        return self.inner.scan(*args)


def test_a_block_whose_reads_are_cached_needs_no_state_round_trip(worker):
    state = CountingState(state_with(c=SOURCE))
    first = worker.execute_block(block(1), [invocation("c", "add", tx=i) for i in range(50)], state)
    state.inner.apply(first.write_map())
    reads_in_first = state.gets
    second = worker.execute_block(block(2), [invocation("c", "add", tx=i) for i in range(50)], state)
    assert reads_in_first == 2  # the contract's definition and its one key, once each
    assert state.gets == reads_in_first  # block 2 was one request and one reply
    assert second.results[-1].ok


def test_re_executing_an_older_height_clears_the_cache(worker):
    state = state_with(c=SOURCE)
    one = worker.execute_block(block(1), [invocation("c", "add")], state)
    state.apply(one.write_map())
    again = worker.execute_block(block(1), [invocation("c", "add")], state_with(c=SOURCE))
    assert again == one


def test_a_killed_worker_is_a_failure_not_a_result_and_is_restarted():
    with ChannelWorker("matching", POLICY) as worker:
        state = state_with(c=SOURCE)
        worker.execute_block(block(1), [invocation("c", "add")], state)
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(WorkerFailure, match="channel matching: contract worker failed.*channel halts"):
            worker.execute_block(block(2), [invocation("c", "add")], state)
        restarted = worker.execute_block(block(2), [invocation("c", "add")], state)
        assert restarted.results[0].ok and worker.restarts == 1


def test_the_worker_runs_under_address_space_file_and_cpu_limits():
    with ChannelWorker("electricity", POLICY, memory_limit_bytes=1 << 30, cpu_seconds_per_block=5) as worker:
        worker.execute_block(block(1), [invocation("c", "add")], state_with(c=SOURCE))
        limits = {line[:26].strip(): line[26:].split() for line in open(f"/proc/{worker.pid}/limits")}
        with open(f"/proc/{worker.pid}/environ", "rb") as env:
            environ = dict(item.split(b"=", 1) for item in env.read().split(b"\0") if item)
    assert limits["Max address space"][:2] == [str(1 << 30), str(1 << 30)]
    assert limits["Max open files"][:2] == ["4", "4"]  # stdin, stdout, stderr, the frame pipe
    # at least 5 s and at most 2 x 5 s ahead of the CPU time the worker had used (a few s to start)
    assert limits["Max cpu time"][0] != "unlimited" and 5 < int(limits["Max cpu time"][0]) <= 20
    assert environ[b"PYTHONHASHSEED"] == b"0" and b"SECRET" not in environ


def test_a_worker_killed_by_a_limit_names_the_signal():
    with ChannelWorker("electricity", POLICY) as worker:
        worker.execute_block(block(1), [invocation("c", "add")], state_with(c=SOURCE))
        os.kill(worker.pid, signal.SIGXCPU)
        with pytest.raises(WorkerFailure, match="killed by SIGXCPU"):
            worker.execute_block(block(2), [invocation("c", "add")], state_with(c=SOURCE))


class FailingState:
    def get(self, namespace, key):
        raise OSError("disk gone")

    def scan(self, *args):
        return iter(())


def test_a_state_that_cannot_be_read_fails_the_block_and_leaves_the_worker_usable():
    with ChannelWorker("matching", POLICY) as worker:
        with pytest.raises(WorkerFailure, match="OSError: disk gone"):
            worker.execute_block(block(1), [invocation("c", "add")], FailingState())
        result = worker.execute_block(block(1), [invocation("c", "add")], state_with(c=SOURCE))
        assert result.results[0].ok


def test_reset_makes_the_worker_read_the_state_again(worker):
    state = CountingState(state_with(c=SOURCE))
    first = worker.execute_block(block(1), [invocation("c", "add")], state)
    state.inner.apply(first.write_map())
    state.inner.apply({("c", "n"): encode(100)})  # changed behind the worker's back
    worker.reset()
    second = worker.execute_block(block(2), [invocation("c", "add")], state)
    assert second.results[0].value == encode(101)


def test_each_invocation_runs_as_its_own_caller_in_the_worker(worker):
    from p2pchain.encoding import decode
    callers = [identity(name="ev01"), identity(name="pv02", kind="pv"), identity(name="ev01"),
               identity("dno", "admin-dno", "admin")]
    invocations = [invocation("c", "env", tx=i, caller=c) for i, c in enumerate(callers)]
    state = state_with(c=SOURCE)
    remote = worker.execute_block(block(1), invocations, state)
    assert remote == Executor(POLICY, step_limit=100_000).execute_block(block(1), invocations, state)
    assert [decode(r.value) for r in remote.results] == ["ev01", "pv02", "ev01", "admin-dno"]


def test_the_preloaded_modules_are_frozen_out_of_the_garbage_collectors_full_collections():
    import gc

    from p2pchain.runtime.worker import _preload
    try:
        _preload()
        assert gc.get_freeze_count() > 10_000  # numpy, scipy, the market package, the runtime
    finally:
        gc.unfreeze()


def test_a_message_with_a_lone_surrogate_fails_the_transaction_not_the_channel(worker):
    # chr(0xD800) is a str that no UTF-8 encoding accepts: neither the worker's frame nor the
    # block digest could carry it, so the reason escapes it, the same way in and out of process
    state = state_with(c=SOURCE)
    invocations = [invocation("c", "surrogate", tx=1), invocation("c", "add", tx=2)]
    remote = worker.execute_block(block(1), invocations, state)
    assert remote == Executor(POLICY, step_limit=100_000).execute_block(block(1), invocations, state)
    assert remote.results[0].reason == "ValueError: bad \\ud800" and remote.results[1].ok
    assert len(remote.digest()) == 32


def test_arguments_that_have_no_canonical_form_reach_the_worker_as_given(worker):
    # a float has no canonical encoding: the block crosses the pipe as plain msgpack instead
    state = state_with(c=SOURCE)
    invocations = [invocation("c", "add", {"by": 0.5}, tx=1), invocation("c", "add", {"by": 2}, tx=2)]
    remote = worker.execute_block(block(1), invocations, state)
    assert remote == Executor(POLICY, step_limit=100_000).execute_block(block(1), invocations, state)
    assert not remote.results[0].ok and "float" in remote.results[0].reason
    assert remote.results[1].value == encode(2)


def test_a_block_of_many_quick_invocations_gives_the_in_process_result(worker):
    calls = [invocation("c", "add", {"key": f"k{i % 3}"}, tx=100 + i) for i in range(12)]
    state = state_with(c=SOURCE)
    expected = Executor(POLICY, step_limit=100_000).execute_block(block(1), calls, state)
    for _ in range(3):
        assert worker.execute_block(block(1), calls, state) == expected


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or current_cpu() < 0,
                    reason="needs Linux CPU affinity and sched_getcpu")
def test_the_exchange_shares_the_callers_cpu_and_gives_the_thread_its_cpus_back(worker, monkeypatch):
    from p2pchain.runtime import worker as worker_module

    mine = os.sched_getaffinity(0)
    state = state_with(c=SOURCE)
    calls = [invocation("c", "add", {"key": "k"}, tx=1)]
    expected = Executor(POLICY, step_limit=100_000).execute_block(block(1), calls, state)
    seen = []
    original = worker_module.Pipe.recv_tuples

    def recv_tuples(pipe):
        seen.append(os.sched_getaffinity(0))  # the node's thread while it waits for the worker
        return original(pipe)

    monkeypatch.setattr(worker_module.Pipe, "recv_tuples", recv_tuples)
    for cpu in sorted(mine)[::-1]:  # the node's thread "on" each CPU it may use, in turn
        monkeypatch.setattr(worker_module, "current_cpu", lambda cpu=cpu: cpu)
        seen.clear()
        assert worker.execute_block(block(1), calls, state) == expected
        assert seen and all(cpus == {cpu} for cpus in seen)
        assert os.sched_getaffinity(worker.pid) == {cpu}
        assert os.sched_getaffinity(0) == mine


def test_where_cpus_cannot_be_chosen_the_block_runs_all_the_same(worker, monkeypatch):
    from p2pchain.runtime import worker as worker_module

    def refused(*_args):
        raise PermissionError("not permitted")

    monkeypatch.setattr(worker_module.os, "sched_setaffinity", refused, raising=False)
    restarts = worker.restarts
    state = state_with(c=SOURCE)
    calls = [invocation("c", "add", {"key": "k"}, tx=1)]
    expected = Executor(POLICY, step_limit=100_000).execute_block(block(1), calls, state)
    assert worker.execute_block(block(1), calls, state) == expected
    monkeypatch.setattr(worker_module, "current_cpu", lambda: -1)  # sched_getcpu unknown
    assert worker.execute_block(block(1), calls, state) == expected
    assert worker.restarts == restarts


CAPACITATED_NUCLEOLUS = '''
from market.nucleolus import market_nucleolus

def shares(ctx):
    buyers, sellers = market_nucleolus([[5, 3, 0], [4, 6, 2], [0, 2, 7]], [2, 1, 2], [1, 2, 2])
    return [[round(float(v) * 1000) for v in buyers], [round(float(v) * 1000) for v in sellers]]
'''


def test_what_a_library_prints_on_the_workers_stdout_never_reaches_its_frames():
    """The capacitated nucleolus runs HiGHS through ``highspy``, whose first model prints a
    banner on the process's stdout (file descriptor 1, below Python's ``sys.stdout``). The
    worker writes its frames on descriptor 3 and its stdout is the node's stderr,
    so a fresh worker computes what the node computes in-process instead of halting the
    channel on a "malformed frame"."""
    state = state_with(n=CAPACITATED_NUCLEOLUS)
    with ChannelWorker("matching", POLICY, step_limit=5_000_000) as fresh:
        remote = fresh.execute_block(block(1, "matching"), [invocation("n", "shares", tx=1)], state)
        assert fresh.restarts == 0
    expected = Executor(POLICY, step_limit=5_000_000).execute_block(
        block(1, "matching"), [invocation("n", "shares", tx=1)], state)
    assert remote.results[0].ok, remote.results[0].reason
    assert remote == expected


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or current_cpu() < 0,
                    reason="needs Linux CPU affinity and sched_getcpu")
def test_a_thread_that_cannot_get_its_cpus_back_still_has_its_result_and_a_log_line(worker, monkeypatch, caplog):
    from p2pchain.runtime import worker as worker_module

    real = os.sched_setaffinity
    mine = os.sched_getaffinity(0)

    def refuse_the_restore(pid, cpus):
        if pid == 0 and set(cpus) == mine and len(mine) > 1:
            raise PermissionError("not permitted")
        real(pid, cpus)

    monkeypatch.setattr(worker_module.os, "sched_setaffinity", refuse_the_restore)
    restarts = worker.restarts
    state = state_with(c=SOURCE)
    calls = [invocation("c", "add", {"key": "k"}, tx=1)]
    expected = Executor(POLICY, step_limit=100_000).execute_block(block(1), calls, state)
    try:
        assert worker.execute_block(block(1), calls, state) == expected
    finally:
        real(0, mine)
    if len(mine) > 1:
        assert "cannot give the thread its CPUs back" in caplog.text
    assert worker.restarts == restarts
