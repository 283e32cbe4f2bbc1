"""Helpers for the runtime tests: a channel with contracts pre-committed, and a runner.

(A module with a unique name rather than ``conftest``, which other test folders also have.)
"""

from __future__ import annotations

import textwrap
from typing import Any, Callable

from p2pchain.encoding import decode
from p2pchain.identity import Identity
from p2pchain.runtime import (
    BlockContext, Executor, Invocation, LifecyclePolicy, MemoryState, TxResult, genesis_writes, make_bundle,
)

POLICY = LifecyclePolicy(("dno", "mgo", "reg"), 2)


def identity(org: str = "mgo", name: str = "ev01", role: str = "client", kind: str | None = "ev") -> Identity:
    return Identity(org, name, role, kind if role == "client" else None, bytes([len(name)]) * 32)


def block(height: int = 1, channel: str = "transaction", anchors: dict[str, int] | None = None) -> BlockContext:
    return BlockContext(channel, height, bytes([height % 256]) * 32, 1_700_000_000_000 + height, anchors or {})


def invocation(contract: str, function: str, args: dict[str, Any] | None = None, *, tx: int = 0,
               caller: Identity | None = None) -> Invocation:
    return Invocation(tx.to_bytes(32, "big"), contract, function, args or {}, caller or identity())


def state_with(**sources: str) -> MemoryState:
    """A state in which each ``name=source`` contract is committed at version 1."""
    return MemoryState(genesis_writes(
        make_bundle(name, 1, textwrap.dedent(source))[0] for name, source in sources.items()))


class Runner:
    """Run one function of one contract source in-process and return its :class:`TxResult`."""

    def __init__(self, step_limit: int = 200_000) -> None:
        self.executor = Executor(POLICY, step_limit=step_limit)

    def __call__(self, source: str, function: str = "run", args: dict[str, Any] | None = None,
                 state: MemoryState | None = None) -> TxResult:
        state = state or state_with(c=source)
        result = self.executor.execute_block(block(), [invocation("c", function, args)], state)
        return result.results[0]


def value(result: TxResult) -> Any:
    assert result.ok, result.reason
    return decode(result.value)
