"""An in-process chain for the market contracts: the runtime's executor, one block per call.

Used by the contract tests and, in subprocesses with other hash seeds, by the determinism
test (``python -m tests.marketchain.harness`` reads a job from stdin).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgpack

from p2pchain.encoding import decode
from p2pchain.identity import Identity
from p2pchain.runtime import (BlockContext, Executor, Invocation, LifecyclePolicy, MemoryState,
                              genesis_writes, make_bundle)

ROOT = Path(__file__).resolve().parents[2]
POLICY = LifecyclePolicy(("dno", "mgo", "reg"), 2)
ORG = {"operator-dno": "dno", "operator-reg": "reg"}


def who(name: str) -> Identity:
    """The genesis identity called ``name`` (its kind from its name, as the consortium issues them)."""
    if name.startswith("operator-"):
        return Identity(ORG.get(name, "mgo"), name, "client", "operator", bytes([len(name)]) * 32)
    kind = "ev" if name.startswith("ev") else "pv" if name.startswith("pv") else "smes"
    return Identity("mgo", name, "client", kind, bytes([len(name)]) * 32)


class Chain:
    """One channel's state with ``market`` and ``metering`` committed, and an executor."""

    def __init__(self, channel: str = "transaction") -> None:
        bundles = [make_bundle(n, 1, (ROOT / "contracts" / f"{n}.py").read_text())[0] for n in ("market", "metering")]
        self.state = MemoryState(genesis_writes(bundles))
        self.executor = Executor(POLICY, step_limit=5_000_000)
        self.channel, self.height, self.tx = channel, 0, 0

    def block(self, calls: list[tuple[str, str, str, dict]]):
        """Execute one block of ``(caller, contract, function, args)``; return its results."""
        self.height += 1
        invocations = []
        for caller, contract, function, args in calls:
            self.tx += 1
            invocations.append(Invocation(self.tx.to_bytes(32, "big"), contract, function, args, who(caller)))
        ctx = BlockContext(self.channel, self.height, bytes([self.height % 256]) * 32,
                           1_700_000_000_000 + self.height, {})
        result = self.executor.execute_block(ctx, invocations, self.state)
        self.state.apply({(ns, key): value for ns, key, value in result.writes})
        return result

    def call(self, caller: str, contract: str, function: str, args: dict):
        return self.block([(caller, contract, function, args)]).results[0]

    def get(self, namespace: str, key: str) -> Any:
        raw = self.state.get(namespace, key)
        return None if raw is None else decode(raw)

    def dump(self, namespace: str) -> list:
        return [(key, value) for key, value in self.state.scan(namespace, "", None)]


def run_job(job: dict) -> bytes:
    """Open a run, submit ``quotes`` (caller, args) in one block in the given order, close the hour;
    return the close's value and events and the market namespace's whole state, as bytes."""
    chain = Chain()
    chain.call("operator-mgo", "market", "open_day", {"run": 0, "with_smes": job["with_smes"]})
    for earlier in range(job["hour"]):        # hours close in order; these have no quotations
        chain.call("operator-mgo", "market", "close", {"hour": earlier})
    chain.block([(name, "market", "quote", args) for name, args in job["quotes"]])
    close = chain.block([("operator-mgo", "market", "close", {"hour": job["hour"]})])
    r = close.results[0]
    return msgpack.packb([r.ok, r.reason, r.value, list(r.events), list(close.writes)], use_bin_type=True)


if __name__ == "__main__":
    sys.stdout.buffer.write(run_job(msgpack.unpackb(sys.stdin.buffer.read(), raw=False)))
