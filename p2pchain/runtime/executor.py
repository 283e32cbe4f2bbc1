"""The executor: runs a block's invocations in order and returns the block result.

This is the pure core of the runtime (no process, no I/O): :mod:`.worker` hosts it in a
child process per channel; tests and the simulator may call it directly. For each
invocation it

1. runs the lifecycle system contract, or finds the contract's committed definition and
   its compiled code (validated, instrumented, compiled once per digest);
2. executes the module afresh — new globals, restricted builtins, a new meter — so no state
   survives from one transaction to the next except through ``ctx.put``;
3. calls the named function with ``ctx`` and the arguments, and turns every outcome into a
   :class:`TxResult`: success with canonical value, events and writes, or failure with a
   deterministic reason and no writes.

A ``MemoryError`` is not a transaction failure: whether it happens depends on the node, so
it escapes as :class:`ResourceBreach` and the node refuses to commit the block.
"""

from __future__ import annotations

import types
from collections import OrderedDict
from typing import Any, Sequence

from ..bounded import BoundedDict
from .context import BlockInfo, Context, Layer, block_info, canonical
from .instrument import instrument
from .lifecycle import (
    LIFECYCLE, Definition, LifecycleError, LifecyclePolicy, definition_record, load_bundle, parse_definition,
    run_lifecycle,
)
from .meter import DEFAULT_DEPTH_LIMIT, DEFAULT_STEP_LIMIT, ContractFault, Meter, StateFault
from .policy import CONTRACT_MODULE
from .records import AnchoredReader, BlockContext, BlockResult, Invocation, RuntimeFault, StateView, TxResult
from .checks import scrub_addresses
from .sandbox import globals_factory
from .validator import ContractRefused, validate

__all__ = ["Executor", "ResourceBreach", "compile_contract"]


_STR_ONLY = frozenset({str})


class ResourceBreach(RuntimeFault):
    """The process ran out of memory while executing: the result is not reproducible."""


def compile_contract(source: str, filename: str = "<contract>") -> types.CodeType:
    """Validate, instrument and compile a contract module; :class:`ContractRefused` if invalid."""
    tree, refusals = validate(source, filename)
    if refusals:
        raise ContractRefused(refusals)
    return compile(instrument(tree), filename, "exec", dont_inherit=True, optimize=0)


def _describe(exc: Exception) -> str:
    """``"Type: message"`` of a contract's exception; its ``__str__`` may be contract code."""
    try:
        message = str(exc)
    except MemoryError:
        raise
    except (Exception, ContractFault):
        message = "<the exception's message could not be computed>"
    return f"{type(exc).__name__}: {message}"


def _text(reason: str) -> str:
    """``reason`` as UTF-8 text: a contract's message may hold lone surrogates (``chr(0xd800)``),
    which no canonical encoding accepts — not the block digest's, not the worker's frames.
    They are escaped (``\\ud800``), the same way on every node."""
    return reason if reason.isascii() else reason.encode("utf-8", "backslashreplace").decode("utf-8")


class _Guarded:
    """A state view or anchored reader whose failures are the node's, never the contract's."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._inner, name)(*args)
        except Exception as exc:
            raise StateFault(f"{name}{args!r}: {type(exc).__name__}: {exc}") from exc

    def get(self, namespace: str, key: str) -> bytes | None:
        return self._call("get", namespace, key)

    def scan(self, namespace: str, start: str = "", end: str | None = None, limit: int | None = None) -> Any:
        try:
            items = iter(self._inner.scan(namespace, start, end, limit))
            while True:
                try:
                    item = next(items)
                except StopIteration:
                    return
                yield item
        except Exception as exc:
            raise StateFault(f"scan: {type(exc).__name__}: {exc}") from exc

    def read(self, channel: str, namespace: str, key: str) -> bytes | None:
        return self._call("read", channel, namespace, key)


class _Failed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Executor:
    """Executes blocks of one channel.

    Parameters
    ----------
    policy:
        The channel's lifecycle policy (member orgs and approval threshold).
    step_limit, depth_limit:
        Per-transaction meter limits; part of the consensus rules, equal on every node.
    code_cache:
        Compiled contract versions kept in memory (by digest).
    """

    def __init__(self, policy: LifecyclePolicy, *, step_limit: int = DEFAULT_STEP_LIMIT,
                 depth_limit: int = DEFAULT_DEPTH_LIMIT, code_cache: int = 64) -> None:
        self.policy = policy
        self.step_limit = step_limit
        self.depth_limit = depth_limit
        self._cache: OrderedDict[bytes, types.CodeType] = OrderedDict()
        self._cache_size = code_cache
        self._definitions: dict[str, Any] = {}
        self._block_code: dict[str, types.CodeType] = {}  # name -> code, for the block's later calls
        # Decoded definitions by their record's bytes, across blocks: equal bytes are the same
        # definition, so a block pays one state read per contract, not a decode and its proof.
        self._parsed: BoundedDict[bytes, Definition] = BoundedDict(code_cache)
        self._block_info: BlockInfo | None = None
        # One meter for every transaction, reset before each: its hooks and the parts of the
        # contract's globals bound to them are built once, not per transaction.
        self._meter = Meter(step_limit, depth_limit)
        self._fresh_globals = globals_factory(self._meter)

    def execute_block(self, block: BlockContext, invocations: Sequence[Invocation], state: StateView,
                      reader: AnchoredReader | None = None) -> BlockResult:
        """Run ``invocations`` in order against ``state``; see :class:`BlockResult`."""
        state = _Guarded(state)
        reader = None if reader is None else _Guarded(reader)
        block_layer = Layer(state)
        results = []
        self._definitions: dict[str, Any] = {}  # per block; a lifecycle transaction clears it
        self._block_code = {}
        self._block_info = block_info(block)
        for invocation in invocations:
            tx_layer = Layer(block_layer)
            result = self._execute(block, invocation, tx_layer, reader)
            if result.ok:
                if tx_layer.writes:
                    block_layer.merge(tx_layer.writes)
                if invocation.contract == LIFECYCLE:
                    self._definitions.clear()
                    self._block_code.clear()
            results.append(result)
        writes = tuple((ns, key, value) for (ns, key), value in sorted(block_layer.writes.items()))
        return BlockResult(block.channel, block.height, tuple(results), writes)

    # -- one transaction ----------------------------------------------------------------------

    def _execute(self, block: BlockContext, invocation: Invocation, layer: Layer,
                 reader: AnchoredReader | None) -> TxResult:
        meter = self._meter
        meter.reset()
        events: list[bytes] = []
        try:
            if invocation.contract == LIFECYCLE:
                value = run_lifecycle(invocation.function, invocation.args, invocation.caller,
                                      block.height, layer, layer.writes, self.policy)
                data = canonical(value, "return value")
            else:
                data = self._run_contract(block, invocation, layer, reader, meter, events)
        except MemoryError:
            raise ResourceBreach(f"memory exhausted in {invocation.contract}.{invocation.function}") from None
        except StateFault as exc:
            raise RuntimeFault(f"state unavailable in {invocation.contract}.{invocation.function}: "
                               f"{exc.args[0]}") from exc.__cause__
        except (_Failed, LifecycleError, ContractFault) as exc:
            reason = exc.reason if isinstance(exc, (_Failed, ContractFault)) else str(exc)
            return self._failed(invocation, reason, meter)
        except RecursionError:
            return self._failed(invocation, "recursion too deep", meter)
        except Exception as exc:  # contract code run by the runtime (a __lt__ while encoding...)
            return self._failed(invocation, _describe(exc), meter)
        if meter.exhausted or meter.too_deep:
            return self._failed(invocation, "out of steps", meter)
        writes = tuple((ns, key, v) for (ns, key), v in sorted(layer.writes.items())) if layer.writes else ()
        return TxResult(invocation.tx_id, True, None, data, tuple(events), writes, meter.used)

    @staticmethod
    def _failed(invocation: Invocation, reason: str, meter: Meter) -> TxResult:
        if meter.exhausted:
            reason = "out of steps"
        elif meter.too_deep:
            reason = f"call depth exceeded (limit {meter.depth_limit})"
        return TxResult(invocation.tx_id, False, _text(scrub_addresses(reason))[:1000], None, (), (),
                        min(meter.used, meter.limit + 1))

    def _code(self, layer: Layer, name: str) -> types.CodeType:
        """The code of contract ``name`` on a block's first call of it (the caller looks in
        ``_block_code`` first, where this leaves it for the block's later calls)."""
        definition = self._definitions.get(name)
        if definition is None:
            data = definition_record(layer, name)
            definition = self._parsed.get(data) if data is not None else None
            if definition is None:
                definition = parse_definition(data)
                if definition is not None:
                    self._parsed.put(data, definition)
            self._definitions[name] = definition
        if definition is None:
            raise _Failed(f"contract {name!r} is not committed on this channel")
        code = self._cache.get(definition.digest)
        if code is None:
            bundle = load_bundle(layer, definition.digest)
            try:
                code = compile_contract(bundle["source"], f"<contract {name} v{definition.version}>")
            except ContractRefused as exc:
                raise _Failed(f"contract {name!r} is refused: {exc}") from None
            self._cache[definition.digest] = code
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(definition.digest)
        self._block_code[name] = code
        return code

    def _run_contract(self, block: BlockContext, invocation: Invocation, layer: Layer,
                      reader: AnchoredReader | None, meter: Meter, events: list[bytes]) -> bytes:
        code = self._block_code.get(invocation.contract) or self._code(layer, invocation.contract)
        args = invocation.args
        if not isinstance(args, dict) or (args and not _STR_ONLY.issuperset(map(type, args))):
            raise _Failed("arguments must be a map with str keys")
        ctx = Context(layer, invocation.contract, invocation.caller, block, invocation.tx_id, meter, reader,
                      self._block_info)
        namespace = self._fresh_globals()
        try:
            exec(code, namespace)
            function = namespace.get(invocation.function)
            if (invocation.function.startswith("_") or type(function) is not types.FunctionType
                    or function.__module__ != CONTRACT_MODULE):
                raise _Failed(f"contract {invocation.contract!r} has no function {invocation.function!r}")
            value = function(ctx, **args)
            if meter.exhausted:
                raise _Failed("out of steps")
            data = canonical(value, "return value")  # may run the contract's __lt__ on map keys
        except (_Failed, ContractFault, MemoryError):
            raise
        except RecursionError:
            raise _Failed("recursion too deep") from None
        except Exception as exc:  # the contract's own failure: deterministic type and message
            raise _Failed(_describe(exc)) from None
        finally:
            # The module's functions and its globals refer to each other: break the cycle now
            # rather than leave every transaction's module to the cyclic garbage collector.
            namespace.clear()
        events.extend(ctx._events)
        return data
