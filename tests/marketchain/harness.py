"""The market's three channels in-process: the runtime's executor, one block per call.

Used by the contract tests and, in subprocesses with other hash seeds, by the determinism
test (``python -m tests.marketchain.harness`` reads a job from stdin). :class:`Market` runs
an hour's stages in the order the driver (``nodes/marketday.py``) submits them; each block
anchors the other channels' latest blocks, and ``ctx.read`` sees their state as of those
heights, as on a node (docs/market-on-chain.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgpack

from nodes.marketcore import metered_readings, smes_apply_args
from p2pchain.encoding import decode
from p2pchain.identity import Identity
from p2pchain.runtime import (BlockContext, Executor, Invocation, LifecyclePolicy, MemoryState,
                              genesis_writes, make_bundle)

ROOT = Path(__file__).resolve().parents[2]
POLICY = LifecyclePolicy(("dno", "mgo", "reg"), 2)
ORG = {"operator-dno": "dno", "operator-reg": "reg"}
CONTRACTS = {"transaction": ("quotation", "pricing", "settlement", "statistics"),
             "matching": ("round",), "electricity": ("smes", "metering")}


def who(name: str) -> Identity:
    """The genesis identity called ``name`` (its kind from its name, as the consortium issues them)."""
    if name.startswith("operator-"):
        return Identity(ORG.get(name, "mgo"), name, "client", "operator", bytes([len(name)]) * 32)
    kind = "ev" if name.startswith("ev") else "pv" if name.startswith("pv") else "smes"
    return Identity("mgo", name, "client", kind, bytes([len(name)]) * 32)


class Chain:
    """One channel's state with its market contracts committed, and an executor."""

    def __init__(self, channel: str = "transaction") -> None:
        bundles = [make_bundle(n, 1, (ROOT / "contracts" / f"{n}.py").read_text())[0] for n in CONTRACTS[channel]]
        self.state = MemoryState(genesis_writes(bundles))
        self.executor = Executor(POLICY, step_limit=5_000_000)
        self.channel, self.height, self.tx = channel, 0, 0
        self.history = {0: self.state.copy()}  # height -> the state after that block
        self.peers: dict[str, Chain] = {}  # the other channels this one's blocks anchor

    def read(self, channel: str, namespace: str, key: str) -> bytes | None:
        """The ``AnchoredReader`` of the block being executed (see :meth:`block`)."""
        return self.peers[channel].history[self._anchors[channel]].get(namespace, key)

    def block(self, calls: list[tuple[str, str, str, dict]], anchors: dict[str, int] | None = None):
        """Execute one block of ``(caller, contract, function, args)``; return its results.

        The block anchors ``anchors`` (other channel -> height), by default each other
        channel's latest block, as an honest primary proposes."""
        self.height += 1
        invocations = []
        for caller, contract, function, args in calls:
            self.tx += 1
            invocations.append(Invocation(self.tx.to_bytes(32, "big"), contract, function, args, who(caller)))
        self._anchors = {name: peer.height for name, peer in self.peers.items()} if anchors is None else anchors
        ctx = BlockContext(self.channel, self.height, bytes([self.height % 256]) * 32,
                           1_700_000_000_000 + self.height, self._anchors)
        result = self.executor.execute_block(ctx, invocations, self.state, self if self.peers else None)
        self.state.apply({(ns, key): value for ns, key, value in result.writes})
        self.history[self.height] = self.state.copy()
        return result

    def call(self, caller: str, contract: str, function: str, args: dict, anchors: dict[str, int] | None = None):
        return self.block([(caller, contract, function, args)], anchors).results[0]

    def value(self, caller: str, contract: str, function: str, args: dict) -> Any:
        """Call and return the decoded value; a failed call is an AssertionError with its reason."""
        result = self.call(caller, contract, function, args)
        assert result.ok, result.reason
        return decode(result.value)

    def get(self, namespace: str, key: str) -> Any:
        raw = self.state.get(namespace, key)
        return None if raw is None else decode(raw)

    def dump(self, namespace: str) -> list:
        return [(key, value) for key, value in self.state.scan(namespace, "", None)]


class Market:
    """The three channels and the hour's stages in the driver's order."""

    def __init__(self) -> None:
        self.tx, self.matching, self.electricity = Chain("transaction"), Chain("matching"), Chain("electricity")
        chains = {"transaction": self.tx, "matching": self.matching, "electricity": self.electricity}
        for name, chain in chains.items():
            chain.peers = {other: c for other, c in chains.items() if other != name}
        self.smes: dict | None = None

    def open(self, run: int, with_smes: bool) -> None:
        self.tx.value("operator-mgo", "quotation", "open_day", {"run": run, "with_smes": with_smes})
        self.smes = self.electricity.value("operator-dno", "smes", "open_day", {"run": run}) if with_smes else None

    def close(self, run: int, hour: int) -> dict:
        """Close ``hour`` and run every stage after it; the records of each stage."""
        closed = self.tx.value("operator-mgo", "quotation", "close", {"run": run, "hour": hour})
        record = self.matching.value("operator-mgo", "round", "close", {"run": run, "hour": hour})
        calls = [("operator-dno", "metering", "record", {"run": run, "hour": hour, "readings": metered_readings(record)})]
        if record["with_smes"]:
            calls.insert(0, ("operator-dno", "smes", "apply", smes_apply_args(record)))
        electricity = self.electricity.block(calls)
        assert all(r.ok for r in electricity.results), [r.reason for r in electricity.results]
        if record["with_smes"]:
            self.smes = decode(electricity.results[0].value)
        priced = self.tx.value("operator-mgo", "pricing", "price", {"run": run, "hour": hour})
        args = {"run": run, "hour": hour, "priced": priced}
        last = self.tx.block([("operator-mgo", "settlement", "settle", args), ("operator-reg", "statistics", "record", args)])
        assert all(r.ok for r in last.results), [r.reason for r in last.results]
        return {"closed": closed, "round": record, "priced": priced, "settled": decode(last.results[0].value),
                "stats": decode(last.results[1].value), "last_block": last}


def run_job(job: dict) -> bytes:
    """Open a run, submit ``quotes`` (caller, args) in one block in the given order, close the hour;
    return every stage's values and events and each channel's market state, as bytes."""
    market = Market()
    market.open(0, job["with_smes"])
    for earlier in range(job["hour"]):        # hours close in order; these have no quotations
        market.close(0, earlier)
    market.tx.block([(name, "quotation", "quote", args) for name, args in job["quotes"]])
    out = market.close(0, job["hour"])
    last = out.pop("last_block")
    states = [market.tx.dump(ns) for ns in CONTRACTS["transaction"] if ns != "quotation"]
    states += [market.matching.dump("round"), market.electricity.dump("smes"), market.electricity.dump("metering")]
    events = [list(r.events) for r in last.results]
    return msgpack.packb([out, events, list(last.writes), states], use_bin_type=True)


if __name__ == "__main__":
    sys.stdout.buffer.write(run_job(msgpack.unpackb(sys.stdin.buffer.read(), raw=False)))
