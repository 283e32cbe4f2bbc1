"""Isolation: one worker process per channel, one request and one reply per block.

:class:`ChannelWorker` (node side) starts ``python -m p2pchain.runtime.worker`` with a
fixed ``PYTHONHASHSEED``, single-threaded BLAS and a minimal environment, and speaks
length-prefixed msgpack over the child's stdin/stdout. The child imports everything a
contract may reach, then drops its privileges to what it needs: an address-space limit
(``RLIMIT_AS``), a CPU-time limit per block (``RLIMIT_CPU``, kept ahead before each block) and no
new file descriptors (``RLIMIT_NOFILE`` of 3: stdin, stdout and stderr only, no files,
no sockets).

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
import select
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence

import msgpack

from ..identity import Identity
from .lifecycle import LifecyclePolicy
from .meter import DEFAULT_DEPTH_LIMIT, DEFAULT_STEP_LIMIT
from .records import AnchoredReader, BlockContext, BlockResult, Invocation, StateView, TxResult, WorkerFailure

__all__ = ["ChannelWorker", "WORKER_HASH_SEED", "MAX_FRAME"]

WORKER_HASH_SEED = "0"
MAX_FRAME = 64 * 1024 * 1024
CACHE_ENTRIES = 100_000
_HEADER = struct.Struct(">I")
_log = logging.getLogger("p2pchain.runtime")


def _send(stream: BinaryIO, message: Any) -> None:
    data = msgpack.packb(message, use_bin_type=True)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _recv(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("pipe closed")
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes exceeds {MAX_FRAME}")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("pipe closed mid-frame")
    return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)


def _identity_value(identity: Identity) -> list[Any]:
    return [identity.org, identity.name, identity.role, identity.kind, identity.public_key]


def _result_frame(result: BlockResult) -> list[Any]:
    """A block result as the worker sends it: lists in field order, not maps with names
    (``to_value``, which the block digest uses, names every field of every result)."""
    return [result.channel, result.height,
            [[r.tx_id, r.ok, r.reason, r.value, r.events, r.writes, r.steps] for r in result.results],
            result.writes]


def _result_from_frame(frame: list[Any]) -> BlockResult:
    channel, height, results, writes = frame
    return BlockResult(channel, height, tuple(
        TxResult(tx_id, ok, reason, value, tuple(events), tuple(map(tuple, tx_writes)), steps)
        for tx_id, ok, reason, value, events, tx_writes, steps in results), tuple(map(tuple, writes)))


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
        self._process = subprocess.Popen(
            [sys.executable, "-s", "-m", "p2pchain.runtime.worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env, close_fds=True, cwd=root,
        )
        self._last = None
        try:
            _send(self._process.stdin, self._init)
            ready = self._receive()
        except (OSError, EOFError, ValueError) as exc:
            raise self._fail(f"worker did not start: {exc}") from None
        if ready.get("op") != "ready":
            raise self._fail(f"worker did not start: {ready.get('detail', ready)}")

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            _send(process.stdin, {"op": "stop"})
            process.stdin.close()
            process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            process.kill()
            process.wait()
        finally:
            if process.stdout:
                process.stdout.close()

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
        status = ""
        if process is not None:
            try:
                code = process.wait(timeout=2)  # it may be exiting after reporting a breach
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            if code < 0:
                status = f" (killed by {signal.Signals(-code).name})"
            elif code:
                status = f" (exit status {code})"
            for stream in (process.stdin, process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
        self.restarts += 1
        failure = WorkerFailure(f"channel {self.channel}: contract worker failed{status}: {detail}; "
                             "the block result was not computed, the channel halts")
        _log.error("%s", failure)
        return failure

    def _receive(self) -> Any:
        assert self._process is not None and self._process.stdout is not None
        if self._timeout_s is not None:
            ready, _, _ = select.select([self._process.stdout], [], [], self._timeout_s)
            if not ready:
                raise TimeoutError(f"no reply within {self._timeout_s} s")
        return _recv(self._process.stdout)

    # the one call per block

    def execute_block(self, block: BlockContext, invocations: Sequence[Invocation], state: StateView,
                      reader: AnchoredReader | None = None) -> BlockResult:
        """Execute a block in the worker; :class:`WorkerFailure` if no result could be computed."""
        self.start()
        assert self._process is not None
        fresh = self._last is None or self._last[0] is not state or self._last[1] != block.height - 1
        message = {
            "op": "block", "fresh": fresh,
            "block": {"channel": block.channel, "height": block.height, "block_hash": block.block_hash,
                      "timestamp_ms": block.timestamp_ms, "anchors": dict(block.anchors)},
            "invocations": [[i.tx_id, i.contract, i.function, i.args, _identity_value(i.caller)]
                            for i in invocations],
        }
        try:
            _send(self._process.stdin, message)
            while True:
                reply = self._receive()
                op = reply.get("op")
                if op == "result":
                    result = _result_from_frame(reply["result"])
                    break
                if op == "get":
                    _send(self._process.stdin, {"op": "value", "value": state.get(reply["ns"], reply["key"])})
                elif op == "scan":
                    items = [[k, v] for k, v in state.scan(reply["ns"], reply["start"], reply["end"], reply["limit"])]
                    _send(self._process.stdin, {"op": "items", "items": items})
                elif op == "read":
                    value = None if reader is None else reader.read(reply["channel"], reply["ns"], reply["key"])
                    _send(self._process.stdin, {"op": "value", "value": value})
                elif op == "error":
                    raise self._fail(f"{reply.get('kind')}: {reply.get('detail')}")
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

    def __init__(self, inp: BinaryIO, out: BinaryIO) -> None:
        self._in, self._out = inp, out
        self.cache: dict[tuple[str, str], bytes | None] = {}

    def get(self, namespace: str, key: str) -> bytes | None:
        try:
            return self.cache[(namespace, key)]
        except KeyError:
            pass
        _send(self._out, {"op": "get", "ns": namespace, "key": key})
        value = _recv(self._in)["value"]
        if len(self.cache) >= CACHE_ENTRIES:
            self.cache.clear()
        self.cache[(namespace, key)] = value
        return value

    def scan(self, namespace: str, start: str = "", end: str | None = None,
             limit: int | None = None) -> Iterator[tuple[str, bytes]]:
        _send(self._out, {"op": "scan", "ns": namespace, "start": start, "end": end, "limit": limit})
        return iter([(k, v) for k, v in _recv(self._in)["items"]])

    def read(self, channel: str, namespace: str, key: str) -> bytes | None:
        _send(self._out, {"op": "read", "channel": channel, "ns": namespace, "key": key})
        return _recv(self._in)["value"]


def _preload() -> None:
    """Import all a contract can reach now: with RLIMIT_NOFILE at 3, no file opens later.

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
    resource.setrlimit(resource.RLIMIT_NOFILE, (3, 3))
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

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames may reach the pipe
    init = _recv(inp)
    try:
        _preload()
        _limit(init)
    except Exception as exc:
        _send(out, {"op": "error", "kind": "start", "detail": repr(exc)})
        return 1
    executor = Executor(LifecyclePolicy(tuple(init["members"]), init["threshold"]),
                        step_limit=init["step_limit"], depth_limit=init["depth_limit"])
    state = _RemoteState(inp, out)
    callers = _Callers()
    budget = _CpuBudget(init["cpu_seconds_per_block"])
    _send(out, {"op": "ready"})
    while True:
        try:
            message = _recv(inp)
        except EOFError:
            return 0
        if message.get("op") == "stop":
            return 0
        if message["fresh"]:
            state.cache.clear()
        b = message["block"]
        block = BlockContext(b["channel"], b["height"], b["block_hash"], b["timestamp_ms"], b["anchors"])
        invocations = [Invocation(tx, contract, function, args, callers(caller))
                       for tx, contract, function, args, caller in message["invocations"]]
        budget.before_block()
        try:
            result = executor.execute_block(block, invocations, state, state)
        except (ResourceBreach, MemoryError) as exc:
            _send(out, {"op": "error", "kind": "breach", "detail": str(exc) or "memory exhausted"})
            return 3
        except Exception as exc:
            _send(out, {"op": "error", "kind": "fault", "detail": repr(exc)})
            return 4
        for ns, key, value in result.writes:  # they are committed before the next block
            state.cache[(ns, key)] = value
        _send(out, {"op": "result", "result": _result_frame(result)})


if __name__ == "__main__":
    sys.exit(main())
