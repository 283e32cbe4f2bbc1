"""A four-replica channel for unit tests: keys, config, and helpers that sign messages as
any node, so a test can feed one message to one replica and compare the actions."""

from __future__ import annotations

from dataclasses import replace

import pytest

from p2pchain.consensus import Keyring, Replica
from p2pchain.consensus.messages import Checkpoint, CheckpointState, Commit, PrePrepare, Prepare
from p2pchain.genesis import ConsensusConfig
from p2pchain.ordering import Batch
from p2pchain.sim.app import GENESIS_DIGEST, SimVerifier, make_request
from p2pchain.sim.network import client_key, node_key

CHANNEL = "transaction"
NODES = ("node0", "node1", "node2", "node3")
CONFIG = ConsensusConfig(n=4, f=1, batch_max=2, batch_timeout_ms=5, checkpoint_interval=2,
                         watermark_window=6, view_change_timeout_ms=100)
KEYS = {name: node_key(name) for name in NODES}
PUBLIC = {name: key.public_key for name, key in KEYS.items()}
CLIENTS = ("alice", "bob")
CLIENT_KEYS = {name: client_key(name) for name in CLIENTS}


class Cluster:
    """Builds replicas and signed messages of the test channel."""

    config = CONFIG
    verifier = SimVerifier({c: k.public_key for c, k in CLIENT_KEYS.items()})

    def replica(self, name: str = "node1", **options) -> Replica:
        options.setdefault("trace", False)
        return Replica(channel=CHANNEL, name=name, keyring=Keyring(name, KEYS[name], PUBLIC),
                       nodes=NODES, config=options.pop("config", CONFIG), verifier=self.verifier,
                       genesis_app_digest=GENESIS_DIGEST, **options)

    @staticmethod
    def sign(message, as_node: str | None = None):
        key = KEYS[as_node or message.sender]
        return replace(message, signature=key.sign(message.signing_bytes()))

    @staticmethod
    def request(client: str = "alice", nonce: int = 1, op: bytes = b"op") -> bytes:
        return make_request(CLIENT_KEYS[client], client, nonce, op)

    def batch(self, *requests: bytes, proposer: str = "node0", timestamp_ms: int = 7) -> Batch:
        return Batch(tuple(requests), proposer, timestamp_ms, b"")

    def pre_prepare(self, seq: int = 1, view: int = 0, batch: Batch | None = None, sender: str | None = None):
        sender = sender or NODES[view % 4]
        batch = batch or self.batch(self.request(nonce=seq), proposer=sender)
        return self.sign(PrePrepare(CHANNEL, view, seq, batch.digest(), batch, sender))

    def prepare(self, pp: PrePrepare, sender: str, digest: bytes | None = None):
        return self.sign(Prepare(CHANNEL, pp.view, pp.seq, digest or pp.digest, sender))

    def commit(self, pp: PrePrepare, sender: str, digest: bytes | None = None):
        return self.sign(Commit(CHANNEL, pp.view, pp.seq, digest or pp.digest, sender))

    def checkpoint(self, state: CheckpointState, sender: str):
        return self.sign(Checkpoint(CHANNEL, state.seq, state.digest(), sender))


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    return Cluster()
