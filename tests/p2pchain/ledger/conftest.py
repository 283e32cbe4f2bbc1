"""Fixtures for the ledger tests: one real consortium per session, fresh ledgers per test."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from p2pchain.consortium import create_consortium, load_identity_key
from p2pchain.genesis import Genesis
from p2pchain.ledger.block import Anchor, Anchors, anchored_channels, genesis_block
from p2pchain.ledger.devchain import Certifier, kv_executor
from p2pchain.ledger.store import ChannelLedger, ledger_path
from p2pchain.ledger.transaction import Transaction
from p2pchain.ordering import Batch

CREATED = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
# Block timestamps: a day after the consortium was made (certificates valid from CREATED-1h).
T0_MS = int((CREATED + dt.timedelta(days=1)).timestamp()) * 1000


class Chain:
    """A consortium with keys at hand, to build signed transactions and certified blocks."""

    def __init__(self, directory: Path, genesis: Genesis) -> None:
        self.directory = directory
        self.genesis = genesis
        self.certifier = Certifier.from_consortium(directory, genesis)
        self._keys: dict = {}

    def key(self, name: str):
        if name not in self._keys:
            self._keys[name] = load_identity_key(self.directory, name)
        return self._keys[name]

    def genesis_anchors(self, channel: str = "transaction") -> Anchors:
        """A ``channel`` block's anchors to the other channels' block 0 (valid whatever they hold)."""
        return Anchors.for_block(channel, {name: Anchor(0, genesis_block(name, self.genesis.digest).hash)
                                           for name in anchored_channels(channel)})

    def tx(self, creator: str = "ev01", nonce: int = 1, *, channel: str = "transaction",
           key: str = "k", value=1, contract: str = "kv", function: str = "put", signer: str | None = None) -> bytes:
        return Transaction.create(
            self.key(signer or creator), channel=channel, contract=contract, function=function,
            args={"key": key, "value": value}, creator=creator, nonce=nonce,
        ).to_bytes()

    def commit(self, ledger: ChannelLedger, requests=(), *, timestamp_ms: int | None = None,
               metadata: bytes | None = None, view: int = 0, execute=kv_executor):
        if metadata is None:
            metadata = self.genesis_anchors(ledger.channel).to_metadata()
        batch = Batch(tuple(requests), "node0", T0_MS + ledger.height + 1 if timestamp_ms is None else timestamp_ms,
                      metadata)
        certificate = self.certifier.certify(ledger.channel, view, ledger.height + 1, batch)
        return ledger.commit_batch(batch, view, certificate, execute)


@pytest.fixture(scope="session")
def chain(tmp_path_factory) -> Chain:
    directory = tmp_path_factory.mktemp("consortium")
    genesis = create_consortium(directory, nodes=4, now=CREATED)
    return Chain(directory, genesis)


@pytest.fixture
def node_dir(tmp_path) -> Path:
    return tmp_path / "node0"


@pytest.fixture
def open_ledger(chain, node_dir):
    opened = []

    def opener(channel: str = "transaction", **kwargs) -> ChannelLedger:
        ledger = ChannelLedger.open(ledger_path(node_dir, channel), channel, chain.genesis, **kwargs)
        opened.append(ledger)
        return ledger

    yield opener
    for ledger in opened:
        try:
            ledger.close()
        except Exception:
            pass
