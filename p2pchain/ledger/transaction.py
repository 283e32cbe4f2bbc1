"""The signed transaction envelope, its validation, and the screening of a committed batch.

A transaction names the channel, the contract and function it calls, the arguments (any
canonical value), its creator (an identity name from the genesis) and a nonce. The creator
signs the canonical encoding of that *unsigned envelope*; its digest is the transaction id,
so the id does not depend on the signature (no malleability, and a client knows the id
before signing). The unsigned envelope carries ``"type": "tx"``, so no signature over a
transaction can be replayed as another message kind (a COMMIT payload has ``"type":
"commit"``, :func:`p2pchain.ordering.commit_payload`).

Nonces are strictly increasing per creator per channel: the ledger keeps the last nonce
each creator used in the world state, namespace :data:`NONCE_NAMESPACE`, so the record is
covered by the state root and survives restarts.

A refusal is a :class:`TransactionRefused` with a stable ``code`` (for programs) and a
``detail`` (for people). Checks run cheapest first; the signature (55 µs, LIMITS.md) runs
only on a well-formed envelope from a known, permitted creator.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import msgpack

from ..crypto import BadSignature, SigningKey, verify
from ..encoding import EncodingError, decode, digest, encode
from ..genesis import Genesis
from ..identity import IdentityError

__all__ = [
    "MAX_TX_BYTES",
    "NONCE_NAMESPACE",
    "REFUSAL_CODES",
    "NonceLookup",
    "Transaction",
    "TransactionRefused",
    "validate_transaction",
    "screen_requests",
    "timestamp_to_datetime",
    "nonce_writes",
    "read_nonce",
    "nothing_verified",
]

MAX_TX_BYTES = 64 * 1024  # a quotation or a settlement is well under 1 KiB
NONCE_NAMESPACE = "$nonce"  # "$" cannot start a contract name, so no contract can write here
REFUSAL_CODES = (
    "oversized", "malformed", "non_canonical", "wrong_channel", "unknown_creator",
    "invalid_creator", "not_permitted", "bad_signature", "replayed_nonce",
)
_FIELDS = frozenset({"type", "channel", "contract", "function", "args", "creator", "nonce", "signature"})
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

NonceLookup = Callable[[str], "int | None"]
"""``nonce_lookup(creator)``: the last nonce ``creator`` used on the channel, or ``None``."""


class TransactionRefused(Exception):
    """A transaction refused at validation; ``code`` is one of :data:`REFUSAL_CODES`."""

    def __init__(self, code: str, detail: str) -> None:
        assert code in REFUSAL_CODES, code
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def timestamp_to_datetime(timestamp_ms: int) -> dt.datetime:
    """A block timestamp (ms since the Unix epoch, UTC) as an aware datetime, without floats."""
    return _EPOCH + dt.timedelta(milliseconds=timestamp_ms)


@dataclass(frozen=True, slots=True)
class Transaction:
    """A signed transaction envelope (``args`` is a canonical value)."""

    channel: str
    contract: str
    function: str
    args: Any
    creator: str
    nonce: int
    signature: bytes

    def unsigned_value(self) -> dict[str, Any]:
        return {
            "type": "tx", "channel": self.channel, "contract": self.contract,
            "function": self.function, "args": self.args, "creator": self.creator,
            "nonce": self.nonce,
        }

    def signing_bytes(self) -> bytes:
        """What the creator signs: the canonical encoding of the unsigned envelope."""
        return encode(self.unsigned_value())

    @property
    def tx_id(self) -> bytes:
        """``digest(unsigned envelope)``: 32 bytes, independent of the signature."""
        return digest(self.unsigned_value())

    def to_bytes(self) -> bytes:
        return encode({**self.unsigned_value(), "signature": self.signature})

    @classmethod
    def from_bytes(cls, data: bytes) -> Transaction:
        """Parse canonical bytes; raise :class:`TransactionRefused` (malformed/non_canonical)."""
        try:
            value = decode(data, max_size=MAX_TX_BYTES)
        except EncodingError as exc:
            raise TransactionRefused(_decode_failure(data), str(exc)) from None
        return cls.from_value(value)

    @classmethod
    def from_value(cls, value: Any) -> Transaction:
        if not isinstance(value, dict) or set(value) != _FIELDS:
            raise TransactionRefused("malformed", f"an envelope has exactly the fields {sorted(_FIELDS)}")
        if value["type"] != "tx":
            raise TransactionRefused("malformed", f"envelope type is {value['type']!r}, not 'tx'")
        for name in ("channel", "contract", "function", "creator"):
            if type(value[name]) is not str or not value[name]:
                raise TransactionRefused("malformed", f"{name} must be a non-empty string")
        if type(value["nonce"]) is not int or value["nonce"] < 0:
            raise TransactionRefused("malformed", "nonce must be a non-negative integer")
        if type(value["signature"]) is not bytes:
            raise TransactionRefused("malformed", "signature must be bytes")
        return cls(
            channel=value["channel"], contract=value["contract"], function=value["function"],
            args=value["args"], creator=value["creator"], nonce=value["nonce"],
            signature=value["signature"],
        )

    @classmethod
    def create(
        cls, key: SigningKey, *, channel: str, contract: str, function: str, args: Any,
        creator: str, nonce: int,
    ) -> Transaction:
        """Build and sign an envelope (clients, tests, benchmarks).

        Raises :class:`~p2pchain.encoding.EncodingError` if ``args`` is not canonical.
        """
        unsigned = cls(channel, contract, function, args, creator, nonce, b"")
        return cls(channel, contract, function, args, creator, nonce, key.sign(unsigned.signing_bytes()))


def _decode_failure(data: bytes) -> str:
    """``non_canonical`` if ``data`` is msgpack but not the canonical form, else ``malformed``."""
    try:
        msgpack.unpackb(bytes(data), raw=False, strict_map_key=False, max_ext_len=0)
    except Exception:  # msgpack raises several kinds; any of them means "not even msgpack"
        return "malformed"
    return "non_canonical"


def nothing_verified(tx_bytes: bytes) -> bool:
    """The ``signature_known`` of a node that has verified nothing beforehand: check every one."""
    return False


def validate_transaction(
    tx_bytes: bytes,
    genesis: Genesis,
    now: dt.datetime,
    nonce_lookup: NonceLookup,
    *,
    channel: str | None = None,
    signature_known: Callable[[bytes], bool] = nothing_verified,
) -> Transaction:
    """Check one transaction against the genesis policy; return it or raise a refusal.

    Parameters
    ----------
    tx_bytes : the canonical bytes of the envelope (as in ``Batch.requests``).
    genesis : the consortium's genesis (certificates, channel policies).
    now : the time at which the creator's certificate must be valid; on a committed batch
        this is the block timestamp, so every node decides alike.
    nonce_lookup : the last nonce the creator used on the channel, or ``None``.
    channel : if given, the channel the transaction must be addressed to.
    signature_known : true for envelope bytes whose signature this node has already verified
        against the same creator's genesis key (a node's cache of what its API and relay
        checked): the same bytes and key give the same answer, so it is not checked twice.
        Everything else (certificate validity as of ``now``, permission, nonce) still is.

    Raises
    ------
    TransactionRefused
        With code ``oversized``, ``malformed``, ``non_canonical``, ``wrong_channel``,
        ``unknown_creator``, ``invalid_creator`` (expired or revoked certificate),
        ``not_permitted``, ``bad_signature`` or ``replayed_nonce``.
    """
    if len(tx_bytes) > MAX_TX_BYTES:
        raise TransactionRefused("oversized", f"{len(tx_bytes)} bytes exceed the limit of {MAX_TX_BYTES}")
    tx = Transaction.from_bytes(tx_bytes)
    if tx.channel not in genesis.channels:
        raise TransactionRefused("wrong_channel", f"unknown channel {tx.channel!r}")
    if channel is not None and tx.channel != channel:
        raise TransactionRefused("wrong_channel", f"addressed to {tx.channel!r}, submitted to {channel!r}")
    if not genesis.has_identity(tx.creator):
        raise TransactionRefused("unknown_creator", f"no identity named {tx.creator!r} in the genesis")
    try:
        identity = genesis.identity(tx.creator, now=now)
    except IdentityError as exc:
        raise TransactionRefused("invalid_creator", str(exc)) from None
    reason = genesis.may_write(identity, tx.channel)
    if reason is not None:
        raise TransactionRefused("not_permitted", reason)
    if not signature_known(tx_bytes):
        try:
            verify(identity.public_key, tx.signing_bytes(), tx.signature)
        except BadSignature as exc:
            raise TransactionRefused("bad_signature", f"signature of {tx.creator!r}: {exc}") from None
    last = nonce_lookup(tx.creator)
    if last is not None and tx.nonce <= last:
        raise TransactionRefused("replayed_nonce", f"nonce {tx.nonce} of {tx.creator!r} is not above {last}")
    return tx


def screen_requests(
    requests: Iterable[bytes],
    *,
    channel: str,
    genesis: Genesis,
    now: dt.datetime,
    nonce_lookup: NonceLookup,
    signature_known: Callable[[bytes], bool] = nothing_verified,
) -> list[Transaction | TransactionRefused]:
    """Validate the requests of one committed batch, in order, as every node must
    (``signature_known`` as in :func:`validate_transaction`).

    A Byzantine primary may order a request that an honest replica would have refused, or
    two requests with the same nonce. The batch is committed as it is, so each request's
    fate is decided here, deterministically: by the block timestamp and by the nonces in
    the state before the block plus those of the earlier requests in the same batch.
    """
    seen: dict[str, int] = {}  # bounded by the batch size

    def lookup(creator: str) -> int | None:
        return seen[creator] if creator in seen else nonce_lookup(creator)

    screened: list[Transaction | TransactionRefused] = []
    for request in requests:
        try:
            tx = validate_transaction(request, genesis, now, lookup, channel=channel, signature_known=signature_known)
        except TransactionRefused as refusal:
            screened.append(refusal)
            continue
        seen[tx.creator] = tx.nonce
        screened.append(tx)
    return screened


def nonce_writes(screened: Iterable[Transaction | TransactionRefused]) -> dict[tuple[str, str], bytes]:
    """The world-state writes that record the nonces of the admitted transactions."""
    writes: dict[tuple[str, str], bytes] = {}
    for item in screened:
        if isinstance(item, Transaction):
            writes[(NONCE_NAMESPACE, item.creator)] = encode(item.nonce)
    return writes


def read_nonce(value: bytes | None) -> int | None:
    return None if value is None else decode(value)


