"""The market day's driver signs a call again when its nonce was taken by another transaction
(nodes/marketday.py): a driver killed mid-day leaves prepared transactions that commit after
the restart, possibly after the next run resumed its nonces from a node not yet past them."""

from __future__ import annotations

import asyncio

import pytest

from nodes.marketday import NONCE_ATTEMPTS, _Call, _committed
from p2pchain.client import ApiError, ClusterClient, Signer
from p2pchain.crypto import SigningKey


class _Node:
    """A node whose ledger already holds ``taken`` nonces of the signer beyond what it said
    when the driver resumed: each of those is refused, the next one commits."""

    def __init__(self, taken: int, ledger_nonce: int) -> None:
        self.taken, self.ledger_nonce, self.sent = taken, ledger_nonce, []

    async def submit(self, tx, wait):
        self.sent.append(tx.nonce)
        if tx.nonce <= self.ledger_nonce + self.taken:
            raise ApiError(409, "replayed_nonce", f"nonce {tx.nonce} of {tx.creator} was taken")
        return {"height": 7, "result": {"status": "ok", "value": tx.nonce}}

    async def nonce(self, channel, creator):
        return {"nonce": self.ledger_nonce + self.taken}

    async def find_committed(self, tx, wait):
        return None         # the refused transaction is not the one that took the nonce


def test_a_call_whose_nonce_was_taken_is_signed_again_after_the_taken_ones(monkeypatch):
    monkeypatch.setattr("nodes.marketday.NONCE_BACKOFF_S", 0.0)
    signer = Signer("operator-mgo", SigningKey.generate(), next_nonce={"transaction": 391})
    node = _Node(taken=3, ledger_nonce=390)       # 391-393 were left by a killed run
    answer = asyncio.run(_committed(ClusterClient({"node0": node}), _Call(signer, "transaction", "quotation", "open_day", {"run": 1})))
    assert node.sent == [391, 394] and answer["result"]["value"] == 394


def test_other_refusals_and_a_nonce_taken_for_good_are_raised(monkeypatch):
    monkeypatch.setattr("nodes.marketday.NONCE_BACKOFF_S", 0.0)

    class Refusing(_Node):
        async def submit(self, tx, wait):
            self.sent.append(tx.nonce)
            raise ApiError(403, "not_permitted", "no")
    node = Refusing(taken=0, ledger_nonce=0)
    with pytest.raises(ApiError, match="not_permitted"):
        asyncio.run(_committed(ClusterClient({"node0": node}), _Call(Signer("ev01", SigningKey.generate()), "transaction", "q", "f", {})))
    assert node.sent == [1]

    class Stale(_Node):       # its nonce view never moves: give up after NONCE_ATTEMPTS
        async def nonce(self, channel, creator):
            return {"nonce": 0}
    node = Stale(taken=10**6, ledger_nonce=0)
    with pytest.raises(ApiError, match="replayed_nonce"):
        asyncio.run(_committed(ClusterClient({"node0": node}), _Call(Signer("ev01", SigningKey.generate()), "transaction", "q", "f", {})))
    assert node.sent == list(range(1, NONCE_ATTEMPTS + 1))
