"""Blocks: a header that chains and certifies, a body with the requests and their outcomes.

Block *h* of a channel is made from the batch consensus committed at sequence number *h*
(ordering.py). Its header holds

* ``channel``, ``height``, ``prev_hash`` (the hash of block h-1's header),
* the batch fields that, with the body's requests, give back the batch digest *d* that the
  commit certificate signs: ``proposer``, ``timestamp_ms``, ``metadata``; ``seq`` (= height);
  ``batch_digest`` = *d* itself; and ``view``, which is 0: the view a batch commits in can
  differ between correct replicas (committed in v at some, re-proposed by the NEW-VIEW and
  committed in v+1 at others), so it is not part of the block's identity — each node's stored
  certificate carries the view it saw,
* ``tx_root``: the RFC 6962 Merkle root over the requests' transaction ids,
* ``state_root`` and ``prev_outputs_digest``: the state root *after block h-1* and the
  digest of block h-1's outputs (results and write set). As Tendermint's ``AppHash`` and
  ``LastResultsHash``, a block certifies the execution of its predecessor: the header is
  fixed before execution, so its hash can seed the block's execution (DESIGN.md, decision 5),
* ``genesis_digest`` in block 0 only (empty elsewhere): block 0 binds the chain to the
  genesis. Block 0 has no requests and no certificate.

The metadata of a block of any channel is the canonical encoding of its anchors: the latest
committed (height, hash) of the *other two* channels when the block was proposed. DESIGN.md,
decision 4 has only the transaction channel anchor the side chains; anchoring on every
channel generalises it so that a side-chain contract (the market's ``round`` on matching)
can read the transaction and electricity channels as of a height every node agrees on. The
transaction channel's bytes are unchanged (``{"electricity": [h, hash], "matching": [h,
hash]}``). A batch without requests may carry empty metadata (the null batches a NEW-VIEW
fills gaps with): it anchors nothing.

The block hash is ``digest(header)``. The body — the requests, one :class:`TxResult` per
request, and the block's sorted write set — is committed by ``tx_root`` (the requests) and
by the next header's ``prev_outputs_digest`` (the outputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..encoding import EncodingError, decode, digest, digest_bytes, encode
from ..genesis import CHANNELS
from ..ordering import Batch
from .merkle import merkle_root
from .smt import EMPTY
from .transaction import Transaction, TransactionRefused

__all__ = [
    "ZERO_HASH", "SIDE_CHANNELS", "BlockError", "Anchor", "Anchors", "Header", "TxResult",
    "BlockOutputs", "Block", "EMPTY_OUTPUTS", "request_id", "genesis_block", "make_header",
    "check_metadata", "metadata_anchors", "anchored_channels",
]

ZERO_HASH = bytes(32)
SIDE_CHANNELS = ("matching", "electricity")  # the channels a transaction-channel block anchors
RESULT_STATUSES = ("ok", "failed", "refused")


class BlockError(Exception):
    """Bytes that are not a well-formed block, header or outputs; the message says where."""


def request_id(request: bytes) -> bytes:
    """The id a request contributes to ``tx_root``: its tx_id, or the digest of its bytes.

    A Byzantine primary can get a malformed request ordered; it still has to be committed
    to, so it is named by the hash of its raw bytes.
    """
    try:
        return Transaction.from_bytes(request).tx_id
    except TransactionRefused:
        return digest_bytes(request)


@dataclass(frozen=True, slots=True)
class Anchor:
    height: int
    block_hash: bytes


def anchored_channels(channel: str) -> tuple[str, ...]:
    """The channels a block of ``channel`` anchors: the other two, in genesis order."""
    if channel not in CHANNELS:
        raise BlockError(f"unknown channel {channel!r}")
    return tuple(c for c in CHANNELS if c != channel)


@dataclass(frozen=True, slots=True)
class Anchors:
    """The other channels' blocks a block anchors (each the latest committed when proposed).

    ``by_channel`` holds ``(channel, Anchor)`` pairs in genesis channel order.
    :meth:`for_block` builds them for a block of a given channel, :meth:`from_metadata`
    decodes and checks them.
    """

    by_channel: tuple[tuple[str, Anchor], ...]

    @classmethod
    def for_block(cls, channel: str, anchors: Mapping[str, Anchor]) -> Anchors:
        """The anchors of a block of ``channel``: ``anchors`` must name exactly the other two."""
        names = anchored_channels(channel)
        if set(anchors) != set(names):
            raise BlockError(f"a block of {channel!r} anchors exactly {names}")
        return cls(tuple((name, anchors[name]) for name in names))

    def __getitem__(self, channel: str) -> Anchor:
        for name, anchor in self.by_channel:
            if name == channel:
                return anchor
        raise KeyError(channel)

    @property
    def matching(self) -> Anchor:
        return self["matching"]

    @property
    def electricity(self) -> Anchor:
        return self["electricity"]

    def heights(self) -> dict[str, int]:
        """Channel -> anchored height (``BlockContext.anchors``)."""
        return {name: anchor.height for name, anchor in self.by_channel}

    def to_metadata(self) -> bytes:
        return encode({name: [anchor.height, anchor.block_hash] for name, anchor in self.by_channel})

    @classmethod
    def from_metadata(cls, metadata: bytes, channel: str = "transaction") -> Anchors:
        """The anchors of a block of ``channel``; :class:`BlockError` if malformed."""
        names = anchored_channels(channel)
        try:
            value = decode(metadata)
            if not isinstance(value, dict) or set(value) != set(names):
                raise BlockError(f"anchors of a {channel} block must name exactly {names}")
            anchors = []
            for name in names:
                height, block_hash = value[name]
                if type(height) is not int or height < 0 or type(block_hash) is not bytes or len(block_hash) != 32:
                    raise BlockError(f"anchor of {name} must be [height >= 0, 32-byte hash]")
                anchors.append((name, Anchor(height, block_hash)))
        except (EncodingError, ValueError, TypeError) as exc:
            raise BlockError(f"anchors metadata is malformed: {exc}") from None
        return cls(tuple(anchors))


@dataclass(frozen=True, slots=True)
class Header:
    channel: str
    height: int
    prev_hash: bytes
    state_root: bytes  # after block height-1
    prev_outputs_digest: bytes  # of block height-1's BlockOutputs
    tx_root: bytes
    batch_digest: bytes
    view: int
    seq: int
    proposer: str
    timestamp_ms: int
    metadata: bytes
    genesis_digest: bytes = b""

    def to_value(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_value(cls, value: Any) -> Header:
        if not isinstance(value, dict) or set(value) != set(cls.__slots__):
            raise BlockError("header does not have exactly the header fields")
        header = cls(**value)
        for name in ("channel", "proposer"):
            if type(getattr(header, name)) is not str:
                raise BlockError(f"header {name} must be a string")
        for name in ("height", "view", "seq", "timestamp_ms"):
            if type(getattr(header, name)) is not int or getattr(header, name) < 0:
                raise BlockError(f"header {name} must be a non-negative integer")
        for name in ("prev_hash", "state_root", "prev_outputs_digest", "tx_root", "batch_digest"):
            if type(getattr(header, name)) is not bytes or len(getattr(header, name)) != 32:
                raise BlockError(f"header {name} must be 32 bytes")
        if type(header.metadata) is not bytes or type(header.genesis_digest) is not bytes:
            raise BlockError("header metadata and genesis_digest must be bytes")
        return header

    def to_bytes(self) -> bytes:
        return encode(self.to_value())

    @classmethod
    def from_bytes(cls, data: bytes) -> Header:
        try:
            return cls.from_value(decode(data))
        except EncodingError as exc:
            raise BlockError(f"header is not canonical: {exc}") from None

    @property
    def hash(self) -> bytes:
        return digest(self.to_value())

    @property
    def anchors(self) -> Anchors | None:
        """The anchors this header's metadata carries; ``None`` for empty metadata (block 0,
        a null batch); :class:`BlockError` if malformed."""
        return None if self.metadata == b"" else Anchors.from_metadata(self.metadata, self.channel)


@dataclass(frozen=True, slots=True)
class TxResult:
    """The outcome of one request.

    ``status`` is ``"ok"``, ``"failed"`` (executed, the contract refused; the nonce is
    spent and nothing else written) or ``"refused"`` (did not pass validation; ``reason``
    starts with the refusal code). ``value`` is the canonical return value, ``events`` the
    canonical events emitted, in order.
    """

    status: str
    reason: str = ""
    value: Any = None
    events: tuple = ()

    def to_value(self) -> list:
        return [self.status, self.reason, self.value, list(self.events)]

    @classmethod
    def from_value(cls, value: Any) -> TxResult:
        if not isinstance(value, list) or len(value) != 4 or value[0] not in RESULT_STATUSES \
                or type(value[1]) is not str or not isinstance(value[3], list):
            raise BlockError("a result is [status, reason, value, events]")
        return cls(value[0], value[1], value[2], tuple(value[3]))

    @classmethod
    def refused(cls, refusal: TransactionRefused) -> TxResult:
        return cls("refused", f"{refusal.code}: {refusal.detail}")


def _sorted_writes(writes: Mapping[tuple[str, str], bytes | None]) -> tuple[tuple[str, str, bytes | None], ...]:
    return tuple((ns, key, value) for (ns, key), value in sorted(writes.items(), key=lambda item: item[0]))


@dataclass(frozen=True, slots=True)
class BlockOutputs:
    """What executing a block produced: one result per request, and the block's write set."""

    results: tuple[TxResult, ...]
    writes: tuple[tuple[str, str, bytes | None], ...]  # sorted by (namespace, key)

    @classmethod
    def of(cls, results: Sequence[TxResult], writes: Mapping[tuple[str, str], bytes | None]) -> BlockOutputs:
        return cls(tuple(results), _sorted_writes(writes))

    def write_map(self) -> dict[tuple[str, str], bytes | None]:
        return {(ns, key): value for ns, key, value in self.writes}

    def to_value(self) -> dict[str, Any]:
        return {"results": [r.to_value() for r in self.results], "writes": [list(w) for w in self.writes]}

    @classmethod
    def from_value(cls, value: Any) -> BlockOutputs:
        if not isinstance(value, dict) or set(value) != {"results", "writes"}:
            raise BlockError("outputs have exactly 'results' and 'writes'")
        writes = []
        for item in value["writes"]:
            if not isinstance(item, list) or len(item) != 3 or type(item[0]) is not str \
                    or type(item[1]) is not str or not (item[2] is None or type(item[2]) is bytes):
                raise BlockError("a write is [namespace, key, bytes or nil]")
            writes.append(tuple(item))
        if [w[:2] for w in writes] != sorted({w[:2] for w in writes}):
            raise BlockError("writes are not sorted by (namespace, key) without repeats")
        return cls(tuple(TxResult.from_value(r) for r in value["results"]), tuple(writes))

    def digest(self) -> bytes:
        return digest(self.to_value())


EMPTY_OUTPUTS = BlockOutputs((), ())


@dataclass(frozen=True, slots=True)
class Block:
    """A header with its requests (the batch's, in order); outputs once executed."""

    header: Header
    requests: tuple[bytes, ...]
    outputs: BlockOutputs | None = field(default=None)

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height

    def batch(self) -> Batch:
        h = self.header
        return Batch(requests=self.requests, proposer=h.proposer, timestamp_ms=h.timestamp_ms, metadata=h.metadata)

    def with_outputs(self, outputs: BlockOutputs) -> Block:
        if len(outputs.results) != len(self.requests):
            raise BlockError(f"{len(outputs.results)} results for {len(self.requests)} requests")
        return Block(self.header, self.requests, outputs)

    def body_bytes(self) -> bytes:
        outputs = self.outputs.to_value() if self.outputs is not None else None
        return encode({"requests": list(self.requests), "outputs": outputs})

    @classmethod
    def from_stored(cls, header_bytes: bytes, body_bytes: bytes) -> Block:
        header = Header.from_bytes(header_bytes)
        try:
            body = decode(body_bytes)
        except EncodingError as exc:
            raise BlockError(f"body is not canonical: {exc}") from None
        if not isinstance(body, dict) or set(body) != {"requests", "outputs"} or not isinstance(body["requests"], list) \
                or not all(type(r) is bytes for r in body["requests"]):
            raise BlockError("body has exactly 'requests' (list of bytes) and 'outputs'")
        outputs = None if body["outputs"] is None else BlockOutputs.from_value(body["outputs"])
        return cls(header, tuple(body["requests"]), outputs)


def make_header(
    *, channel: str, height: int, prev_hash: bytes, state_root: bytes, prev_outputs_digest: bytes,
    batch: Batch, view: int,
) -> Header:
    """The header of block ``height`` for the batch committed at that sequence number."""
    return Header(
        channel=channel, height=height, prev_hash=prev_hash, state_root=state_root,
        prev_outputs_digest=prev_outputs_digest,
        tx_root=merkle_root([request_id(r) for r in batch.requests]),
        batch_digest=batch.digest(), view=view, seq=height, proposer=batch.proposer,
        timestamp_ms=batch.timestamp_ms, metadata=batch.metadata,
    )


def genesis_block(channel: str, genesis_digest: bytes) -> Block:
    """Block 0 of ``channel``: no requests, empty state, bound to the genesis digest."""
    empty = Batch(requests=(), proposer="", timestamp_ms=0, metadata=b"")
    header = Header(
        channel=channel, height=0, prev_hash=ZERO_HASH, state_root=EMPTY,
        prev_outputs_digest=ZERO_HASH, tx_root=merkle_root([]), batch_digest=empty.digest(),
        view=0, seq=0, proposer="", timestamp_ms=0, metadata=b"", genesis_digest=genesis_digest,
    )
    return Block(header, (), EMPTY_OUTPUTS)


def check_metadata(channel: str, metadata: bytes, *, has_requests: bool = True) -> str | None:
    """``None`` if ``metadata`` is well-formed for a batch of ``channel``, else why not.

    A batch carries the anchors of the other two channels (:class:`Anchors`); only a batch
    without requests (a NEW-VIEW's null batch) may carry none (empty metadata). The node
    checks this on every PRE-PREPARE before it prepares (nodes/anchoring.py).
    """
    try:
        metadata_anchors(channel, metadata, has_requests=has_requests)
    except BlockError as exc:
        return str(exc)
    return None


def metadata_anchors(channel: str, metadata: bytes, *, has_requests: bool = True) -> Anchors | None:
    """The anchors a batch of ``channel`` carries, ``None`` for a null batch's empty metadata;
    :class:`BlockError` saying why if the metadata is not well-formed (see :func:`check_metadata`)."""
    if metadata == b"":
        if has_requests:
            raise BlockError("a batch with requests must anchor the other channels")
        return None
    return Anchors.from_metadata(metadata, channel)
