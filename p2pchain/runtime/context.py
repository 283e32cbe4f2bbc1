"""``ctx``: everything a contract may touch, and the layered state it reads and writes.

A contract sees its channel's state only through ``ctx``, in its own namespace (the
contract's name). Reads see the committed state, then the writes of earlier successful
transactions in the same block, then its own writes; writes are collected in a
transaction write set that the executor keeps on success and drops on failure. Every
value crossing this boundary — writes, events, the return value — must encode canonically
(no floats: :func:`p2pchain.runtime.units.to_units` first), and must not show a memory
address; otherwise the transaction fails with that reason.
"""

from __future__ import annotations

import hashlib
from types import MappingProxyType
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from ..encoding import MAX_SIZE, EncodingError, decode, encode
from ..identity import Identity
from .meter import ContractFault, Meter
from .records import AnchoredReader, BlockContext, StateView
from .checks import shows_address
from .units import round_half_even, to_units

__all__ = ["BlockInfo", "Layer", "Context", "DeterministicRandom", "MAX_KEY_LENGTH", "canonical"]

MAX_KEY_LENGTH = 256


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """``ctx.block``: the block a transaction runs in (all fixed by consensus)."""

    channel: str
    height: int
    hash: bytes
    timestamp_ms: int
    # other channel -> the height ctx.read sees; read-only, as the BlockInfo is shared by
    # every transaction of the block (a contract must not leave anything for the next one)
    anchors: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


def block_info(block) -> BlockInfo:
    """The ``ctx.block`` of a :class:`BlockContext`."""
    return BlockInfo(block.channel, block.height, block.block_hash, block.timestamp_ms,
                     MappingProxyType(dict(block.anchors)))


def canonical(value: Any, what: str) -> bytes:
    """``value`` encoded canonically, or a :class:`ContractFault` saying why not."""
    try:
        data = encode(value)
    except EncodingError as exc:
        raise ContractFault(f"{what} is not a canonical value: {exc}") from None
    if len(data) > MAX_SIZE:
        raise ContractFault(f"{what} of {len(data)} bytes exceeds {MAX_SIZE}")
    # A default repr's " at 0x" appears verbatim in the msgpack bytes of any str holding it;
    # the slow walk runs only when the fast byte search finds the pattern.
    if b" at 0x" in data and _shows_address(value):
        raise ContractFault(f"{what} shows a memory address, which differs between nodes")
    return data


def _shows_address(value: Any) -> bool:
    if type(value) is str:
        return shows_address(value)
    if type(value) in (list, tuple):
        return any(_shows_address(v) for v in value)
    if type(value) is dict:
        return any(_shows_address(k) or _shows_address(v) for k, v in value.items())
    return False


class Layer:
    """Pending writes over a state view: ``get``/``scan`` see them, ``writes`` holds them."""

    __slots__ = ("below", "writes")

    def __init__(self, below: StateView) -> None:
        self.below = below
        self.writes: dict[tuple[str, str], bytes | None] = {}

    def get(self, namespace: str, key: str) -> bytes | None:
        if (namespace, key) in self.writes:
            return self.writes[(namespace, key)]
        return self.below.get(namespace, key)

    def scan(self, namespace: str, start: str = "", end: str | None = None,
             limit: int | None = None) -> Iterator[tuple[str, bytes]]:
        pending = sorted(
            (key, value) for (ns, key), value in self.writes.items()
            if ns == namespace and key >= start and (end is None or key < end)
        )
        # Each pending entry can hide at most one item below, so this many always suffice.
        below = iter(self.below.scan(namespace, start, end, None if limit is None else limit + len(pending)))
        count = 0
        index = 0
        item = next(below, None)
        while limit is None or count < limit:
            if index < len(pending) and (item is None or pending[index][0] <= item[0]):
                key, value = pending[index]
                index += 1
                if item is not None and item[0] == key:
                    item = next(below, None)
                if value is None:
                    continue
            elif item is not None:
                key, value = item
                item = next(below, None)
            else:
                return
            count += 1
            yield key, value

    def merge(self, other: Mapping[tuple[str, str], bytes | None]) -> None:
        self.writes.update(other)


class DeterministicRandom:
    """``ctx.rng()``: BLAKE2b in counter mode, seeded by block hash, tx id and call number.

    Every node draws the same numbers; nobody can choose them without choosing the block
    hash. Not for secrets: every node (and every observer of the chain) knows the seed.
    """

    __slots__ = ("_seed", "_counter")

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._counter = 0

    def _block(self) -> int:
        self._counter += 1
        data = hashlib.blake2b(self._counter.to_bytes(8, "big"), key=self._seed, digest_size=32).digest()
        return int.from_bytes(data, "big")

    def randbelow(self, n: int) -> int:
        """A uniform integer in ``[0, n)`` (rejection sampling: no modulo bias)."""
        if not isinstance(n, int) or n <= 0 or n.bit_length() > 256:
            raise ValueError("n must be a positive int below 2**256")
        bits = n.bit_length()
        while True:
            candidate = self._block() >> (256 - bits)
            if candidate < n:
                return candidate

    def randrange(self, start: int, stop: int) -> int:
        return start + self.randbelow(stop - start)

    def choice(self, seq: Any) -> Any:
        return seq[self.randbelow(len(seq))]

    def shuffle(self, items: list) -> None:
        """Fisher–Yates, in place."""
        for i in range(len(items) - 1, 0, -1):
            j = self.randbelow(i + 1)
            items[i], items[j] = items[j], items[i]


class Context:
    """The ``ctx`` argument of every contract function (see docs/contracts.md)."""

    __slots__ = ("_layer", "_namespace", "_block_ctx", "_reader", "_meter", "_tx_id", "_rngs",
                 "_events", "caller", "block", "contract")

    # Positional or keyword: the executor makes one per transaction and passes its arguments
    # by position (binding eight keywords costs more than the eleven stores below).
    def __init__(self, layer: Layer, contract: str, caller: Identity, block: BlockContext,
                 tx_id: bytes, meter: Meter, reader: AnchoredReader | None, info: BlockInfo | None = None) -> None:
        self._layer = layer
        self._namespace = contract
        self._block_ctx = block
        self._reader = reader
        self._meter = meter
        self._tx_id = tx_id
        self._rngs = 0
        self._events: list[bytes] = []
        self.caller = caller
        # ``info``: the executor makes one BlockInfo per block (it is immutable) for all its calls
        self.block = info or block_info(block)
        self.contract = contract

    @staticmethod
    def _key(key: Any) -> str:
        if type(key) is not str or not key or len(key) > MAX_KEY_LENGTH:
            raise ContractFault(f"keys are non-empty str of at most {MAX_KEY_LENGTH} characters")
        return key

    def _charge(self, data: bytes | None) -> None:
        self._meter.charge(1 + (len(data) >> 8 if data else 0))

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key`` in this contract's namespace, or ``default``."""
        data = self._layer.get(self._namespace, self._key(key))
        self._charge(data)
        return default if data is None else decode(data)

    def put(self, key: str, value: Any) -> None:
        """Write ``value`` (a canonical value: no floats) under ``key``."""
        data = canonical(value, f"write of {key!r}")
        self._charge(data)
        self._layer.writes[(self._namespace, self._key(key))] = data

    def delete(self, key: str) -> None:
        self._charge(None)
        self._layer.writes[(self._namespace, self._key(key))] = None

    def scan(self, start: str = "", end: str | None = None, limit: int | None = None) -> list[tuple[str, Any]]:
        """``(key, value)`` pairs with ``start <= key < end`` in key order, at most ``limit``."""
        if type(start) is not str or (end is not None and type(end) is not str):
            raise ContractFault("scan bounds are str")
        if limit is not None and (type(limit) is not int or limit < 0):
            raise ContractFault("scan limit is a non-negative int")
        result = []
        for key, data in self._layer.scan(self._namespace, start, end, limit):
            self._charge(data)
            result.append((key, decode(data)))
        return result

    def read(self, channel: str, key: str, contract: str | None = None) -> Any:
        """A committed value of another channel, as of the height anchored in this block."""
        if channel not in self._block_ctx.anchors or self._reader is None:
            raise ContractFault(f"channel {channel!r} is not anchored in this block")
        data = self._reader.read(channel, contract or self._namespace, self._key(key))
        self._charge(data)
        return None if data is None else decode(data)

    def emit(self, event: Any) -> None:
        """Record an event (a canonical value) in the transaction's result."""
        data = canonical(event, "event")
        self._charge(data)
        self._events.append(data)

    def rng(self) -> DeterministicRandom:
        """A PRNG seeded from the block hash, the transaction id and how many rng() came before."""
        self._rngs += 1
        seed = hashlib.blake2b(
            self._block_ctx.block_hash + self._tx_id + self._rngs.to_bytes(4, "big"), digest_size=32
        ).digest()
        return DeterministicRandom(seed)

    @staticmethod
    def to_units(value: Any, unit: Any = 1) -> int:
        """See :func:`p2pchain.runtime.units.to_units` (round half to even, exactly)."""
        return to_units(value, unit)

    @staticmethod
    def round_half_even(value: Any) -> int:
        return round_half_even(value)
