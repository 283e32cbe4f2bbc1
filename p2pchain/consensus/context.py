"""The fixed facts a replica's checks need: channel, members, f, parameters, keys.

Pure checks in ``viewchange`` and ``statetransfer`` take a :class:`Context` rather than a
replica, so they can be read and tested on their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..bounded import BoundedDict
from ..genesis import ConsensusConfig
from ..ordering import Batch
from .keys import Keyring
from .messages import CheckpointState

__all__ = ["Context", "RequestVerifier", "RequestRefused"]

DIGEST_CACHE_LIMIT = 256
"""Batches whose digest is remembered (oldest out). The same batch object comes back within a
few messages (pre-prepare, prepared certificate, NEW-VIEW), and each entry holds its batch:
4,096 full batches per channel once made a node's memory climb for minutes and drop when the
cache was cleared, which looked like a leak in a 30-minute soak."""


class RequestRefused(Exception):
    """A client request that is malformed, badly signed or not permitted."""


class RequestVerifier(Protocol):
    """Checks a client request's bytes; returns its (client, nonce) or raises.

    The node plugs in the ledger's ``validate_transaction``; the simulator its own signed
    request format (``p2pchain.sim.app``). Any exception means "refused".
    """

    def verify_request(self, request: bytes) -> tuple[str, int]: ...


@dataclass
class Context:
    channel: str
    nodes: tuple[str, ...]
    config: ConsensusConfig
    keyring: Keyring
    genesis_state: CheckpointState
    _digests: BoundedDict[int, tuple[Batch, bytes]] = field(
        default_factory=lambda: BoundedDict(DIGEST_CACHE_LIMIT), repr=False)

    @property
    def f(self) -> int:
        return self.config.f

    @property
    def quorum(self) -> int:
        return 2 * self.config.f + 1

    def primary(self, view: int) -> str:
        """p = v mod |R| (OSDI'99 §4.1); ``nodes`` is in genesis order."""
        return self.nodes[view % len(self.nodes)]

    def check(self, message) -> str | None:
        if not self.keyring.check_signatures:
            return self.keyring.check(message.sender, b"", b"")
        return self.keyring.check(message.sender, message.signing_bytes(), message.signature)

    def batch_digest(self, batch: Batch) -> bytes:
        """``batch.digest()``, computed once per batch object (the same batch arrives in a
        pre-prepare, in prepared certificates and in a NEW-VIEW)."""
        hit = self._digests.get(id(batch))
        if hit is not None and hit[0] is batch:
            return hit[1]
        d = batch.digest()
        self._digests.put(id(batch), (batch, d))
        return d
