"""Frames between the node and a channel's worker: a length prefix and msgpack, on raw pipes.

Each frame is a 4-byte big-endian length and a msgpack array whose first item says what it
is (the ``OP_*`` constants). :class:`Pipe` reads and writes whole frames with ``os.read`` and
``os.write`` on the two file descriptors, one system call per batch of frames where it can:
no buffered stream objects in between, and nothing that waits except the read itself.

Payloads are packed by :func:`pack`, the canonical encoder (its C accelerator where built)
for every value that has a canonical form — a block's invocations and results always have
one, as they come from or go to the chain — and plain msgpack for anything else (a test's
float argument), so that what crosses the pipe is what the caller passed. Either way the
receiver reads them with one ``msgpack.unpackb``.
"""

from __future__ import annotations

import os
import select
import struct
from typing import Any, Iterable

import msgpack

from ..encoding import EncodingError, encode

__all__ = [
    "Pipe", "pack", "unpack", "unpack_tuples", "MAX_FRAME",
    "OP_READY", "OP_BLOCK", "OP_INVOKE", "OP_RESULT", "OP_GET", "OP_SCAN", "OP_READ", "OP_VALUE",
    "OP_ITEMS", "OP_ERROR", "OP_STOP",
]

MAX_FRAME = 64 * 1024 * 1024
_HEADER = struct.Struct(">I")
_CHUNK = 1 << 16  # a pipe's capacity on Linux: more is never there to read at once

# What a frame is, its first item. Node to worker:
OP_BLOCK = 1    # [OP_BLOCK, fresh, channel, height, block_hash, timestamp_ms, anchors, count]
OP_INVOKE = 2   # [OP_INVOKE, tx_id, contract, function, args, caller], ``count`` of them
OP_VALUE = 3    # [OP_VALUE, value]: the answer to OP_GET or OP_READ
OP_ITEMS = 4    # [OP_ITEMS, [[key, value], ...]]: the answer to OP_SCAN
OP_STOP = 5     # [OP_STOP]
# Worker to node:
OP_READY = 10   # [OP_READY]
OP_RESULT = 11  # [OP_RESULT, [[tx_id, ok, reason, value, events, writes, steps], ...], writes]
OP_GET = 12     # [OP_GET, namespace, key]
OP_SCAN = 13    # [OP_SCAN, namespace, start, end, limit]
OP_READ = 14    # [OP_READ, channel, namespace, key]
OP_ERROR = 15   # [OP_ERROR, kind, detail]


def pack(value: Any) -> bytes:
    """``value`` as a frame's payload: canonical bytes if it has a canonical form, else msgpack."""
    try:
        return encode(value)
    except EncodingError:
        return msgpack.packb(value, use_bin_type=True)


def unpack(data: bytes) -> Any:
    """A payload with msgpack arrays as lists (what a contract's arguments must be)."""
    return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)


def unpack_tuples(data: bytes) -> Any:
    """A payload with msgpack arrays as tuples (what a result record holds)."""
    return msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=False)


def frame(payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME:
        raise ValueError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME}")
    return _HEADER.pack(len(payload)) + payload


class Pipe:
    """Whole frames over a read and a write file descriptor (blocking; EOF is ``EOFError``)."""

    __slots__ = ("read_fd", "write_fd", "timeout_s", "_buffer")

    def __init__(self, read_fd: int, write_fd: int, timeout_s: float | None = None) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.timeout_s = timeout_s
        self._buffer = b""  # bytes read past the last frame returned

    def send(self, payload: bytes) -> None:
        self.write(frame(payload))

    def send_many(self, payloads: Iterable[bytes]) -> None:
        """Several frames in one write (one system call, one wake-up of the reader)."""
        self.write(b"".join([frame(p) for p in payloads]))

    def write(self, data: bytes) -> None:
        written = os.write(self.write_fd, data)
        if written < len(data):  # a pipe write is whole unless a signal cut it short
            view = memoryview(data)
            while written < len(data):
                written += os.write(self.write_fd, view[written:])

    def _read(self, size: int) -> bytes:
        if self.timeout_s is not None:
            ready, _, _ = select.select([self.read_fd], [], [], self.timeout_s)
            if not ready:
                raise TimeoutError(f"no reply within {self.timeout_s} s")
        data = os.read(self.read_fd, size)
        if not data:
            raise EOFError("pipe closed")
        return data

    def recv(self) -> bytes:
        """The next frame's payload."""
        buffer = self._buffer
        while len(buffer) < 4:
            buffer += self._read(_CHUNK)
        (size,) = _HEADER.unpack_from(buffer)
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes exceeds {MAX_FRAME}")
        end = 4 + size
        if len(buffer) < end:
            chunks = [buffer]
            have = len(buffer)
            while have < end:
                chunk = self._read(max(end - have, _CHUNK))
                chunks.append(chunk)
                have += len(chunk)
            buffer = b"".join(chunks)
        self._buffer = buffer[end:]
        return buffer[4:end]
