"""Stand-ins for consensus and the contract runtime, for tests, benchmarks and demos.

:class:`Certifier` signs COMMITs with the node keys of a consortium directory, as 2f+1
replicas would, producing real :class:`~p2pchain.ordering.CommitCertificate` s that
:mod:`.verify` checks like any other. :func:`kv_executor` is the smallest deterministic
executor: contract ``kv``, function ``put`` with args ``{"key": str, "value": any}``
(``None`` deletes) writes ``(contract, key)``; anything else fails with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..consortium import load_identity_key
from ..crypto import SigningKey
from ..encoding import encode
from ..genesis import Genesis
from ..ordering import Batch, CommitCertificate, commit_payload, quorum
from .block import Block, TxResult
from .transaction import Transaction

__all__ = ["Certifier", "kv_executor"]


@dataclass(frozen=True)
class Certifier:
    node_keys: Mapping[str, SigningKey]
    f: int

    @classmethod
    def from_consortium(cls, directory: Path, genesis: Genesis) -> Certifier:
        keys = {name: load_identity_key(directory, name) for name in genesis.node_names}
        return cls(keys, genesis.consensus.f)

    def certify(self, channel: str, view: int, seq: int, batch: Batch) -> CommitCertificate:
        """A certificate with the first 2f+1 nodes' (by name) signed COMMITs."""
        batch_digest = batch.digest()
        signers = sorted(self.node_keys)[: quorum(self.f)]
        signatures = tuple(
            (name, self.node_keys[name].sign(commit_payload(channel, view, seq, batch_digest, name)))
            for name in signers
        )
        return CommitCertificate(channel, view, seq, batch_digest, signatures)


def kv_executor(block: Block, admitted: list[Transaction]) -> tuple[list[TxResult], dict]:
    """Execute ``kv.put`` transactions; later writes in the block win."""
    results, writes = [], {}
    for tx in admitted:
        args = tx.args
        if tx.contract != "kv" or tx.function != "put" or not isinstance(args, dict) \
                or type(args.get("key")) is not str:
            results.append(TxResult("failed", f"unknown call {tx.contract}.{tx.function}"))
            continue
        value = args.get("value")
        writes[(tx.contract, args["key"])] = None if value is None else encode(value)
        results.append(TxResult("ok", events=(["put", args["key"]],)))
    return results, writes
