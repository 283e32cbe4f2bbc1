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
and the block's writes out, each packed and unpacked by one call of the C codec. For the
exchange the node's thread and the worker share one CPU (see ChannelWorker._share_cpu).

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
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..identity import Identity
from .lifecycle import LifecyclePolicy
from .meter import DEFAULT_DEPTH_LIMIT, DEFAULT_STEP_LIMIT
from .pipe import (
    MAX_FRAME, OP_BLOCK, OP_ERROR, OP_GET, OP_ITEMS, OP_READ, OP_READY, OP_RESULT, OP_SCAN,
    OP_STOP, OP_VALUE, Pipe,
)
from .records import AnchoredReader, BlockContext, BlockResult, Invocation, StateView, TxResult, WorkerFailure

__all__ = ["ChannelWorker", "WORKER_HASH_SEED", "MAX_FRAME"]

WORKER_HASH_SEED = "0"
CACHE_ENTRIES = 100_000
# The worker writes its frames on descriptor 3; its stdout (1) is the node's stderr.
FRAME_FD = 3
FRAME_FD_ENV = "P2PCHAIN_FRAME_FD"
_log = logging.getLogger("p2pchain.runtime")


def _cpu_reader() -> Callable[[], int]:
    try:
        import ctypes

        getcpu = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (ImportError, OSError, AttributeError):  # not glibc: the CPU is unknown
        return lambda: -1
    getcpu.restype, getcpu.argtypes = ctypes.c_int, ()
    return getcpu


#: The CPU the calling thread runs on (``sched_getcpu``, 0.1 µs), or -1 where unknown.
current_cpu = _cpu_reader()


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
        self._worker_cpu = -1  # the CPU the worker is held on (see _share_cpu), -1: none
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
        self._worker_cpu = -1  # it may run anywhere the node may
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
        allowed = self._share_cpu()
        try:
            message = [OP_BLOCK, fresh, block.channel, block.height, block.block_hash, block.timestamp_ms,
                       dict(block.anchors),
                       [[i.tx_id, i.contract, i.function, i.args, _identity_value(i.caller)] for i in invocations]]
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
                if op == OP_GET:
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
        finally:
            if allowed is not None:
                try:
                    os.sched_setaffinity(0, allowed)
                except OSError as exc:  # the thread stays on one CPU: slower, never wrong
                    _log.warning("channel %s: cannot give the thread its CPUs back: %s", self.channel, exc)
        self._last = (state, block.height)
        return result

    def _share_cpu(self) -> set[int] | None:
        """Keep this thread and the worker on the CPU this thread runs on for the exchange;
        the thread's own CPU set, to restore after it (None where CPUs cannot be chosen).

        The exchange is synchronous: node and worker take turns, never run at once. On one
        CPU each turn is a context switch; spread over two, each waiting side lets its
        virtual CPU halt, and waking it costs tens of microseconds (docs/performance.md,
        "## contract runtime"). The worker is moved only when the node's thread comes from
        another CPU; between blocks only the worker is held there, the node's thread is free.
        """
        cpu = current_cpu()
        if cpu < 0 or self._process is None:
            return None
        try:
            allowed = os.sched_getaffinity(0)
            if cpu != self._worker_cpu:
                os.sched_setaffinity(self._process.pid, (cpu,))
                self._worker_cpu = cpu
            os.sched_setaffinity(0, (cpu,))
        except OSError:  # not permitted here (a restricted container): the kernel chooses
            return None
        return allowed

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
        _, fresh, channel, height, block_hash, timestamp_ms, anchors, calls = message
        if fresh:
            state.cache.clear()
        block = BlockContext(channel, height, block_hash, timestamp_ms, anchors)
        invocations = [Invocation(tx_id, contract, function, args, callers(caller))
                       for tx_id, contract, function, args, caller in calls]
        try:
            result = executor.execute_block(block, invocations, state, state)
        except (ResourceBreach, MemoryError) as exc:
            pipe.send([OP_ERROR, "breach", str(exc) or "memory exhausted"])
            return 3
        except Exception as exc:
            pipe.send([OP_ERROR, "fault", repr(exc)])
            return 4
        pipe.send(_result_value(result))
        # After the answer, not before: the node has its result while this runs.
        for ns, key, value in result.writes:  # they are committed before the next block
            state.cache[(ns, key)] = value
        budget.before_block()


if __name__ == "__main__":
    sys.exit(main())
