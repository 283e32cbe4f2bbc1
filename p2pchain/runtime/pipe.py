"""Frames between the node and a channel's worker: a length prefix and msgpack, on raw pipes.

A frame is a 4-byte big-endian length, a byte saying how the payload is packed, and the
payload: a msgpack array whose first item says what the frame is (the ``OP_*`` constants).
:class:`Pipe` reads and writes whole frames with ``os.read`` and ``os.write`` on the two file
descriptors, one write per frame and one read while a frame fits the pipe: no buffered stream objects
in between, and nothing that waits except the read itself.

A value is packed by the canonical encoder (its C accelerator where built) whenever it has a
canonical form — a block's invocations and results always have one, as they come from or
go to the chain — and by plain msgpack otherwise (a test's float argument), so that what
crosses the pipe is what the caller passed. Canonical payloads are read back by the
canonical decoder, the fastest way to build the contract's arguments (lists and maps);
:meth:`Pipe.recv_tuples` reads any payload with arrays as tuples, as result records hold them.
"""

from __future__ import annotations

import os
import select
import struct
from typing import Any

import msgpack

from ..encoding import EncodingError, decode, encode

__all__ = [
    "Pipe", "MAX_FRAME",
    "OP_READY", "OP_BLOCK", "OP_RESULT", "OP_GET", "OP_SCAN", "OP_READ", "OP_VALUE",
    "OP_ITEMS", "OP_ERROR", "OP_STOP",
]

MAX_FRAME = 64 * 1024 * 1024
_HEADER = struct.Struct(">IB")  # payload length, how it is packed
_CANONICAL, _MSGPACK = 0, 1
_CHUNK = 1 << 16  # a pipe's capacity on Linux: more is never there to read at once

# What a frame is, its first item. Node to worker:
OP_BLOCK = 1    # [OP_BLOCK, fresh, channel, height, block_hash, timestamp_ms, anchors,
                #  [[tx_id, contract, function, args, caller], ...]]
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



def _framed(value: Any) -> tuple[bytes, bytes]:
    try:
        payload, kind = encode(value), _CANONICAL
    except EncodingError:
        payload, kind = msgpack.packb(value, use_bin_type=True), _MSGPACK
    if len(payload) > MAX_FRAME:
        raise ValueError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME}")
    return _HEADER.pack(len(payload), kind), payload


class Pipe:
    """Whole frames over a read and a write file descriptor (blocking; EOF is ``EOFError``)."""

    __slots__ = ("read_fd", "write_fd", "timeout_s", "_buffer", "_offset")

    def __init__(self, read_fd: int, write_fd: int, timeout_s: float | None = None) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.timeout_s = timeout_s
        self._buffer = b""  # bytes read; those before ``_offset`` were returned
        self._offset = 0

    def send(self, value: Any) -> None:
        """``value`` as one frame, in one write (one system call, one wake-up of the reader)."""
        data = b"".join(_framed(value))
        written = os.write(self.write_fd, data)
        if written < len(data):  # a pipe write is whole unless a signal cut it short
            view = memoryview(data)
            while written < len(data):
                written += os.write(self.write_fd, view[written:])

    def recv(self) -> Any:
        """The next frame's value, arrays as lists (what a contract's arguments must be)."""
        kind, payload = self._frame()
        if kind == _CANONICAL:
            return decode(payload, max_size=MAX_FRAME)
        return msgpack.unpackb(payload, raw=False, use_list=True, strict_map_key=False)

    def recv_tuples(self) -> Any:
        """The next frame's value, arrays as tuples (what a result record holds)."""
        return msgpack.unpackb(self._frame()[1], raw=False, use_list=False, strict_map_key=False)

    def _read(self, size: int) -> bytes:
        if self.timeout_s is not None:
            ready, _, _ = select.select([self.read_fd], [], [], self.timeout_s)
            if not ready:
                raise TimeoutError(f"no reply within {self.timeout_s} s")
        data = os.read(self.read_fd, size)
        if not data:
            raise EOFError("pipe closed")
        return data

    def _frame(self) -> tuple[int, memoryview]:
        buffer, start = self._buffer, self._offset
        if len(buffer) - start < _HEADER.size:
            buffer = buffer[start:] + self._read(_CHUNK)
            start = 0
            while len(buffer) < _HEADER.size:
                buffer += self._read(_CHUNK)
        size, kind = _HEADER.unpack_from(buffer, start)
        if size > MAX_FRAME or kind not in (_CANONICAL, _MSGPACK):
            raise ValueError(f"malformed frame header (size {size}, kind {kind})")
        start += _HEADER.size
        end = start + size
        if len(buffer) < end:
            chunks = [buffer[start:]]
            have = len(chunks[0])
            while have < size:
                chunks.append(self._read(max(size - have, _CHUNK)))
                have += len(chunks[-1])
            buffer, start, end = b"".join(chunks), 0, size
        self._buffer, self._offset = buffer, end
        return kind, memoryview(buffer)[start:end]
