"""The simulator's client requests and replicated application.

Requests are signed by the client's Ed25519 key: ``{client, nonce, op, sig}`` in canonical
bytes (the node uses the ledger's transaction envelope instead). :class:`LogApp` is the
smallest application that still lets the checker see everything: it executes a committed
batch by appending each request whose nonce is above the client's last (the same rule as
the ledger's replay protection), and its state digest chains every block:
``d_n = H(d_{n-1}, n, batch digest, executed requests)``. A snapshot is the history itself,
so installing one re-computes the chain and refuses a snapshot that does not end at the
certified digest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..consensus.context import RequestRefused
from ..crypto import BadSignature, SigningKey, verify
from ..encoding import EncodingError, decode, digest, encode
from ..ordering import Batch

__all__ = ["make_request", "parse_request", "SimVerifier", "Block", "LogApp", "GENESIS_DIGEST"]

GENESIS_DIGEST = digest({"sim": "genesis"})


def make_request(key: SigningKey, client: str, nonce: int, op: bytes) -> bytes:
    body = {"client": client, "nonce": nonce, "op": op}
    return encode({**body, "sig": key.sign(encode(body))})


_PARSED: dict[bytes, tuple[str, int, bytes, bytes]] = {}  # every replica parses each request


def parse_request(request: bytes) -> tuple[str, int, bytes, bytes]:
    """(client, nonce, op, signature); raises :class:`RequestRefused` if malformed."""
    hit = _PARSED.get(request) if type(request) is bytes else None
    if hit is not None:
        return hit
    parsed = _parse(request)
    if len(_PARSED) > 100_000:
        _PARSED.clear()
    _PARSED[request] = parsed
    return parsed


def _parse(request: bytes) -> tuple[str, int, bytes, bytes]:
    try:
        value = decode(request, max_size=64 * 1024)
        client, nonce, op, sig = value["client"], value["nonce"], value["op"], value["sig"]
    except (EncodingError, TypeError, KeyError) as exc:
        raise RequestRefused(f"malformed request: {exc}") from None
    if set(value) != {"client", "nonce", "op", "sig"} or type(client) is not str \
            or type(nonce) is not int or type(op) is not bytes or type(sig) is not bytes or nonce < 1:
        raise RequestRefused("malformed request fields")
    return client, nonce, op, sig


class SimVerifier:
    """``RequestVerifier`` for simulated clients: known client, valid signature."""

    def __init__(self, client_keys: Mapping[str, bytes], *, check_signatures: bool = True) -> None:
        self.client_keys = dict(client_keys)
        self.check_signatures = check_signatures

    def verify_request(self, request: bytes) -> tuple[str, int]:
        client, nonce, op, sig = parse_request(request)
        key = self.client_keys.get(client)
        if key is None:
            raise RequestRefused(f"unknown client {client!r}")
        if self.check_signatures:
            try:
                verify(key, encode({"client": client, "nonce": nonce, "op": op}), sig)
            except BadSignature as exc:
                raise RequestRefused(f"bad client signature: {exc}") from None
        return client, nonce


@dataclass(frozen=True, slots=True)
class Block:
    seq: int
    batch_digest: bytes
    executed: tuple[tuple[str, int, bytes], ...]  # (client, nonce, request bytes)


def _chain(previous: bytes, block: Block) -> bytes:
    return digest([previous, block.seq, block.batch_digest,
                   [[c, n, r] for c, n, r in block.executed]])


@dataclass
class LogApp:
    history: list[Block] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=lambda: [GENESIS_DIGEST])
    clients: dict[str, int] = field(default_factory=dict)

    @property
    def seq(self) -> int:
        return len(self.history)

    @property
    def digest(self) -> bytes:
        return self.digests[-1]

    def execute(self, seq: int, batch: Batch, batch_digest: bytes) -> tuple[bytes, tuple]:
        """Apply block ``seq``; returns (state digest, ((client, nonce, result), ...))."""
        if seq != self.seq + 1:
            raise ValueError(f"executing seq {seq} after {self.seq}")
        executed, results = [], []
        for request in batch.requests:
            try:
                client, nonce, op, _ = parse_request(request)
            except RequestRefused:
                continue
            if nonce <= self.clients.get(client, 0):
                continue  # replayed or out of order: never executed twice
            self.clients[client] = nonce
            executed.append((client, nonce, request))
            results.append((client, nonce, digest(op)[:8]))
        block = Block(seq, batch_digest, tuple(executed))
        self.history.append(block)
        self.digests.append(_chain(self.digest, block))
        return self.digest, tuple(results)

    def snapshot(self, seq: int) -> tuple[Block, ...]:
        return tuple(self.history[:seq])

    @classmethod
    def from_snapshot(cls, blocks: tuple[Block, ...], expected: bytes) -> "LogApp | None":
        """The app a snapshot describes, or ``None`` if it does not end at ``expected``."""
        app = cls()
        for block in blocks:
            if block.seq != app.seq + 1:
                return None
            app.history.append(block)
            app.digests.append(_chain(app.digest, block))
            for client, nonce, _ in block.executed:
                app.clients[client] = max(nonce, app.clients.get(client, 0))
        return app if app.digest == expected else None

    def copy(self) -> "LogApp":
        return LogApp(list(self.history), list(self.digests), dict(self.clients))
