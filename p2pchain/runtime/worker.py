"""Isolation: one worker process per channel, one exchange per block.

:class:`ChannelWorker` (node side) starts ``python -m p2pchain.runtime.worker`` with a
fixed ``PYTHONHASHSEED``, single-threaded BLAS and a minimal environment, and speaks
length-prefixed msgpack frames (:mod:`.pipe`) over two pipes: the child reads frames on its
stdin and writes them on descriptor 3 (``FRAME_FD``), while its stdout is the node's stderr:
what a C library prints (HiGHS prints a banner on its first model) lands in the node's log,
never inside a frame. The child imports everything a contract may reach, then drops its
privileges to what it needs: an address-space limit (``RLIMIT_AS``), a CPU-time limit per
block (``RLIMIT_CPU``, kept ahead after each block) and no new file descriptors
(``RLIMIT_NOFILE`` of 4: its two pipes, stdout and stderr only, no files, no sockets).

A block is one frame each way: the block and its invocations in, every transaction's result
and the block's writes out, each packed and unpacked by one call of the C codec. A short
block that runs on another CPU than the node's adds an OP_SOON frame before its last
invocation, after which the node polls for the answer instead of sleeping (see _Announcer).

State stays in the node. The worker keeps a bounded cache of committed values, updated with
each block's own writes, so a block whose reads hit the cache costs exactly one exchange;
a miss asks the node over the same pipe (``get``/``scan``/``read``), synchronously.

Anything that is not a computed result — the worker died, was killed by a limit, ran out
of memory, or sent something malformed — raises :class:`WorkerFailure`. The node must then
not commit the block: it halts the channel with the log line the error carries. The next
call starts a new worker.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..identity import Identity
from .lifecycle import LifecyclePolicy
from .meter import DEFAULT_DEPTH_LIMIT, DEFAULT_STEP_LIMIT
from .pipe import (
    MAX_FRAME, OP_BLOCK, OP_ERROR, OP_GET, OP_ITEMS, OP_READ, OP_READY, OP_RESULT, OP_SCAN,
    OP_SOON, OP_STOP, OP_VALUE, Pipe, current_cpu,
)
from .records import AnchoredReader, BlockContext, BlockResult, Invocation, StateView, TxResult, WorkerFailure

__all__ = ["ChannelWorker", "WORKER_HASH_SEED", "MAX_FRAME"]

WORKER_HASH_SEED = "0"
CACHE_ENTRIES = 100_000
# The worker announces a block's last invocation (OP_SOON) when the block's invocations have
# taken at most SOON_WITHIN_S each and the block so far at most SOON_BLOCK_WITHIN_S; the
# node then polls for the result for at most SPIN_LIMIT_S instead of sleeping (see
# _Announcer). Timing decides only when frames are read, never what a block computes.
SOON_WITHIN_S = 0.00025
SOON_BLOCK_WITHIN_S = 0.002
SPIN_LIMIT_S = 0.0005
# The worker writes its frames on descriptor 3; its stdout (1) is the node's stderr.
FRAME_FD = 3
FRAME_FD_ENV = "P2PCHAIN_FRAME_FD"
_log = logging.getLogger("p2pchain.runtime")


def _identity_value(identity: Identity) -> list[Any]:
    return [identity.org, identity.name, identity.role, identity.kind, identity.public_key]


def _result_value(result: BlockResult) -> list[Any]:
    """A block result as the worker sends it: tuples in field order, not maps with names
    (``to_value``, which the block digest uses, names every field of every result)."""
    return [OP_RESULT, [(r.tx_id, r.ok, r.reason, r.value, r.events, r.writes, r.steps)
                        for r in result.results], result.writes]


def _result_from_frame(block: BlockContext, frame: tuple[Any, ...]) -> BlockResult:
    # unpacked with arrays as tuples: each result's fields are TxResult's, in its order
    _, results, writes = frame
    return BlockResult(block.channel, block.height, tuple([TxResult(*r) for r in results]), writes)


CALLER_CACHE = 10_000


class _Callers:
    """The worker's Identity objects, one per distinct caller: a block's callers repeat, and
    an Identity validates its fields each time it is made."""

    def __init__(self) -> None:
        self._known: dict[tuple[Any, ...], Identity] = {}

    def __call__(self, value: list[Any]) -> Identity:
        key = tuple(value)
        identity = self._known.get(key)
        if identity is None:
            if len(self._known) >= CALLER_CACHE:
                self._known.clear()
            identity = self._known[key] = Identity(*key)
        return identity


# -- node side --------------------------------------------------------------------------------

class ChannelWorker:
    """The node's handle on one channel's worker process.

    Call :meth:`execute_block` with the same state object each time, *after* the previous
    block's ``write_map()`` was applied to it. A call at another height or with another state
    object (a re-execution, a new view) clears the worker's cache of committed values;
    after a state transfer into the same object, call :meth:`reset`.
    """

    def __init__(self, channel: str, policy: LifecyclePolicy, *, step_limit: int = DEFAULT_STEP_LIMIT,
                 depth_limit: int = DEFAULT_DEPTH_LIMIT, memory_limit_bytes: int = 2 << 30,
                 cpu_seconds_per_block: int = 60, timeout_s: float | None = None) -> None:
        self.channel = channel
        self.policy = policy
        self._init = {
            "channel": channel, "members": list(policy.members), "threshold": policy.threshold,
            "step_limit": step_limit, "depth_limit": depth_limit,
            "memory_limit_bytes": memory_limit_bytes, "cpu_seconds_per_block": cpu_seconds_per_block,
        }
        self._timeout_s = timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._pipe: Pipe | None = None
        # The state object and height of the last block. The object itself, not its id: an id
        # can be reused by a new object after the old one is freed.
        self._last: tuple[StateView, int] | None = None
        self.restarts = 0

    # lifecycle of the process

    def start(self) -> None:
        if self._process is not None:
            return
        root = str(Path(__file__).resolve().parents[2])
        env = {
            "PYTHONHASHSEED": WORKER_HASH_SEED, "PYTHONPATH": root, "PYTHONDONTWRITEBYTECODE": "1",
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "LANG": "C.UTF-8", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }
        frames_in, frames_out = os.pipe()
        env[FRAME_FD_ENV] = str(frames_out)
        try:
            self._process = process = subprocess.Popen(
                [sys.executable, "-s", "-m", "p2pchain.runtime.worker"], stdin=subprocess.PIPE,
                stdout=2, pass_fds=(frames_out,), env=env, close_fds=True, cwd=root, bufsize=0,
            )
        except BaseException:
            os.close(frames_in)
            raise
        finally:
            os.close(frames_out)
        self._pipe = Pipe(frames_in, process.stdin.fileno(), self._timeout_s)
        self._last = None
        try:
            self._pipe.send(self._init)
            ready = self._pipe.recv_tuples()
        except (OSError, EOFError, ValueError) as exc:
            raise self._fail(f"worker did not start: {exc}") from None
        if ready[0] != OP_READY:
            raise self._fail(f"worker did not start: {ready[-1]}")

    def close(self) -> None:
        process, self._process = self._process, None
        pipe, self._pipe = self._pipe, None
        if process is None:
            return
        try:
            pipe.send([OP_STOP])
            process.stdin.close()
            process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            process.kill()
            process.wait()
        finally:
            os.close(pipe.read_fd)

    def __enter__(self) -> ChannelWorker:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _fail(self, detail: str) -> WorkerFailure:
        process, self._process = self._process, None
        pipe, self._pipe = self._pipe, None
        status = ""
        if process is not None:
            try:
                process.stdin.close()  # a worker still waiting for a frame reads the end and exits
            except OSError:
                pass
            try:
                code = process.wait(timeout=2)  # it may be exiting after reporting a breach
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            if code < 0:
                status = f" (killed by {signal.Signals(-code).name})"
            elif code:
                status = f" (exit status {code})"
            os.close(pipe.read_fd)
        self.restarts += 1
        failure = WorkerFailure(f"channel {self.channel}: contract worker failed{status}: {detail}; "
                             "the block result was not computed, the channel halts")
        _log.error("%s", failure)
        return failure

    # the one exchange per block

    def execute_block(self, block: BlockContext, invocations: Sequence[Invocation], state: StateView,
                      reader: AnchoredReader | None = None) -> BlockResult:
        """Execute a block in the worker; :class:`WorkerFailure` if no result could be computed."""
        self.start()
        pipe = self._pipe
        assert pipe is not None
        fresh = self._last is None or self._last[0] is not state or self._last[1] != block.height - 1
        try:
            message = [OP_BLOCK, fresh, block.channel, block.height, block.block_hash, block.timestamp_ms,
                       dict(block.anchors),
                       [[i.tx_id, i.contract, i.function, i.args, _identity_value(i.caller)] for i in invocations],
                       current_cpu()]
            try:
                pipe.send(message)
            except BrokenPipeError:
                pass  # the worker stopped reading: its last frame, if it sent one, says why
            while True:
                reply = pipe.recv_tuples()
                op = reply[0]
                if op == OP_RESULT:
                    result = _result_from_frame(block, reply)
                    break
                if op == OP_SOON:
                    # the worker runs the block's last invocation: poll for the result rather
                    # than sleep, so the answer need not wake this thread's (idle) CPU — unless
                    # this thread was woken on the worker's CPU, where polling would take turns
                    # with the worker (the kernel puts a woken task there when no CPU idles)
                    if reply[1] != current_cpu():
                        pipe.spin_until_readable(SPIN_LIMIT_S)
                elif op == OP_GET:
                    pipe.send([OP_VALUE, state.get(reply[1], reply[2])])
                elif op == OP_SCAN:
                    items = [[k, v] for k, v in state.scan(*reply[1:5])]
                    pipe.send([OP_ITEMS, items])
                elif op == OP_READ:
                    value = None if reader is None else reader.read(*reply[1:4])
                    pipe.send([OP_VALUE, value])
                elif op == OP_ERROR:
                    raise self._fail(f"{reply[1]}: {reply[2]}")
                else:
                    raise self._fail(f"unexpected message {op!r}")
        except WorkerFailure:
            raise
        except Exception as exc:  # a broken pipe, a malformed reply, or the node's own state failing
            raise self._fail(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:  # interrupted mid-exchange: the pipe is out of step, start over
            self._fail("interrupted")
            raise
        self._last = (state, block.height)
        return result

    def reset(self) -> None:
        """Forget the worker's cache of committed values (after a state transfer, or if the node
        applied anything to the state other than the returned ``write_map()``)."""
        self._last = None


# -- worker side ------------------------------------------------------------------------------

class _RemoteState:
    """The node's committed state, read over the pipe, with a cache of known values."""

    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe
        self.cache: dict[tuple[str, str], bytes | None] = {}

    def _ask(self, request: list[Any]) -> list[Any]:
        self._pipe.send(request)
        return self._pipe.recv()

    def get(self, namespace: str, key: str) -> bytes | None:
        try:
            return self.cache[(namespace, key)]
        except KeyError:
            pass
        value = self._ask([OP_GET, namespace, key])[1]
        if len(self.cache) >= CACHE_ENTRIES:
            self.cache.clear()
        self.cache[(namespace, key)] = value
        return value

    def scan(self, namespace: str, start: str = "", end: str | None = None,
             limit: int | None = None) -> Iterator[tuple[str, bytes]]:
        return iter([(k, v) for k, v in self._ask([OP_SCAN, namespace, start, end, limit])[1]])

    def read(self, channel: str, namespace: str, key: str) -> bytes | None:
        return self._ask([OP_READ, channel, namespace, key])[1]


def _preload() -> None:
    """Import all a contract can reach now: with RLIMIT_NOFILE at 4, no file opens later.

    Then freeze what is loaded: it lives as long as the process, and the garbage collector's
    full collections would otherwise walk it every time (~77,000 objects with numpy and
    scipy, a pause of ~20 ms in the middle of a block).
    """
    import gc
    import importlib
    import pkgutil

    from . import executor, facade, sandbox, units  # noqa: F401
    from .policy import STDLIB_MODULES, TRUSTED_PACKAGES
    for name in STDLIB_MODULES:
        importlib.import_module(name)
    for package in TRUSTED_PACKAGES:
        try:
            root = importlib.import_module(package)
        except ImportError:
            continue
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            try:
                importlib.import_module(info.name)
            except Exception as exc:  # a broken market module must not stop the channel
                print(f"worker: cannot preload {info.name}: {exc!r}", file=sys.stderr)
    gc.collect()
    gc.freeze()


def _limit(init: dict[str, Any]) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (init["memory_limit_bytes"], init["memory_limit_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (FRAME_FD + 1, FRAME_FD + 1))
    sys.setrecursionlimit(1000)  # fixed, so RecursionError happens at the same depth everywhere
    sys.set_int_max_str_digits(4300)  # the default, fixed against PYTHONINTMAXSTRDIGITS


class _CpuBudget:
    """``RLIMIT_CPU`` kept at least ``seconds`` ahead of the CPU time used before each block.

    The limit is raised only when less than ``seconds`` remain (to ``2 * seconds`` ahead), so
    most blocks cost one ``getrusage`` and no ``setrlimit``: every block may use at least
    ``seconds`` and at most ``2 * seconds`` of CPU before the kernel stops the worker.
    """

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.limit = 0

    def before_block(self) -> None:
        import resource

        used = resource.getrusage(resource.RUSAGE_SELF)
        total = int(used.ru_utime + used.ru_stime) + 1
        if self.limit - total < self.seconds:
            self.limit = total + 2 * self.seconds
            resource.setrlimit(resource.RLIMIT_CPU, (self.limit, resource.RLIM_INFINITY))


class _Announcer:
    """Sends OP_SOON just before a block's last invocation when the node's wake-up would be
    a noticeable part of a short block: the mean time of the block's earlier invocations
    (or, for a block of one, of the previous block's) is at most ``SOON_WITHIN_S``, so the
    last one likely ends within the node's spin limit, and the block so far took at most
    ``SOON_BLOCK_WITHIN_S``.

    A node blocked on the pipe while its CPU idles pays a slow wake-up for the answer (the
    idle virtual CPU halts: tens of microseconds); warned by OP_SOON it wakes while the last
    invocation still runs and polls for the answer. Only when this worker runs on another
    CPU than the one the node sent the block from: on the same CPU (a busy machine) the
    node's wake-up is a plain context switch, and its polls would only take turns with the
    worker. Blocks of long invocations, and the long blocks of a busy node, get no OP_SOON.
    """

    __slots__ = ("_pipe", "_start", "_count", "_mean_s", "_node_cpu")

    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe
        self._start = 0.0
        self._count = 0
        self._mean_s = float("inf")
        self._node_cpu = -1

    def start(self, count: int, node_cpu: int) -> None:
        self._count = count
        self._node_cpu = node_cpu
        self._start = time.perf_counter()

    def finish(self) -> None:
        if self._count:
            self._mean_s = (time.perf_counter() - self._start) / self._count

    def __call__(self) -> None:
        elapsed_s = time.perf_counter() - self._start
        if self._count > 1:
            self._mean_s = elapsed_s / (self._count - 1)
        if self._mean_s <= SOON_WITHIN_S and elapsed_s <= SOON_BLOCK_WITHIN_S:
            cpu = current_cpu()
            if cpu != self._node_cpu:
                self._pipe.send([OP_SOON, cpu])


def main() -> int:
    from .executor import Executor, ResourceBreach

    passed = int(os.environ.pop(FRAME_FD_ENV))  # the node's number for the pipe's write end
    if passed != FRAME_FD:
        os.dup2(passed, FRAME_FD)
        os.close(passed)
    pipe = Pipe(sys.stdin.fileno(), FRAME_FD)
    sys.stdout = sys.stderr
    init = pipe.recv()
    try:
        _preload()
        _limit(init)
    except Exception as exc:
        pipe.send([OP_ERROR, "start", repr(exc)])
        return 1
    executor = Executor(LifecyclePolicy(tuple(init["members"]), init["threshold"]),
                        step_limit=init["step_limit"], depth_limit=init["depth_limit"])
    state = _RemoteState(pipe)
    callers = _Callers()
    announce = _Announcer(pipe)
    budget = _CpuBudget(init["cpu_seconds_per_block"])
    budget.before_block()
    pipe.send([OP_READY])
    while True:
        try:
            message = pipe.recv()
        except EOFError:
            return 0
        if message[0] == OP_STOP:
            return 0
        _, fresh, channel, height, block_hash, timestamp_ms, anchors, calls, node_cpu = message
        if fresh:
            state.cache.clear()
        block = BlockContext(channel, height, block_hash, timestamp_ms, anchors)
        invocations = [Invocation(tx_id, contract, function, args, callers(caller))
                       for tx_id, contract, function, args, caller in calls]
        announce.start(len(invocations), node_cpu)
        try:
            result = executor.execute_block(block, invocations, state, state, before_last=announce)
        except (ResourceBreach, MemoryError) as exc:
            pipe.send([OP_ERROR, "breach", str(exc) or "memory exhausted"])
            return 3
        except Exception as exc:
            pipe.send([OP_ERROR, "fault", repr(exc)])
            return 4
        pipe.send(_result_value(result))
        # After the answer, not before: the node has its result while this runs.
        announce.finish()
        for ns, key, value in result.writes:  # they are committed before the next block
            state.cache[(ns, key)] = value
        budget.before_block()


if __name__ == "__main__":
    sys.exit(main())
