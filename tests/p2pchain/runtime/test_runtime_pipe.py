"""The worker's framing: whole frames over raw pipes, however the bytes arrive."""

from __future__ import annotations

import os
import struct
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchain.runtime.pipe import MAX_FRAME, Pipe


@pytest.fixture
def pipe_pair():
    read_fd, write_fd = os.pipe()
    yield Pipe(read_fd, write_fd), read_fd, write_fd
    for fd in (read_fd, write_fd):
        try:
            os.close(fd)
        except OSError:
            pass


canonical_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(canonical_values, min_size=1, max_size=6))
def test_frames_written_together_are_read_back_one_by_one(values):
    read_fd, write_fd = os.pipe()
    try:
        pipe = Pipe(read_fd, write_fd)
        for value in values:
            pipe.send(value)
        assert [pipe.recv() for _ in values] == values
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_a_frame_larger_than_the_pipe_arrives_whole_and_tuples_on_request(pipe_pair):
    pipe, _, _ = pipe_pair
    big = [list(range(i, i + 1000)) for i in range(0, 40_000, 1000)]  # ~120 KiB, twice a pipe
    writer = threading.Thread(target=pipe.send, args=([11, big, b"x"],))
    writer.start()
    value = pipe.recv_tuples()
    writer.join()
    assert value == (11, tuple(tuple(row) for row in big), b"x")


def test_a_value_without_canonical_form_is_sent_as_plain_msgpack(pipe_pair):
    pipe, _, _ = pipe_pair
    pipe.send([1, {"b": 0.5, "a": [1.25]}])  # floats, keys out of order: kept as given
    value = pipe.recv()
    assert value == [1, {"b": 0.5, "a": [1.25]}] and list(value[1]) == ["b", "a"]


class TrickleReads(Pipe):
    """A pipe whose reads return one byte at most, as a slow writer may leave them."""

    __slots__ = ()

    def _read(self, size: int) -> bytes:
        return super()._read(1)


def test_frames_split_across_reads_are_reassembled(pipe_pair):
    _, read_fd, write_fd = pipe_pair
    Pipe(read_fd, write_fd).send([1, "abc"])
    Pipe(read_fd, write_fd).send([2, 0.5])
    pipe = TrickleReads(read_fd, write_fd)
    assert pipe.recv() == [1, "abc"] and pipe.recv() == [2, 0.5]


def test_a_malformed_header_is_refused(pipe_pair):
    pipe, _, write_fd = pipe_pair
    os.write(write_fd, struct.pack(">IB", MAX_FRAME + 1, 0))
    with pytest.raises(ValueError, match="malformed frame header"):
        pipe.recv()


def test_a_closed_pipe_is_end_of_file(pipe_pair):
    pipe, _, write_fd = pipe_pair
    os.write(write_fd, struct.pack(">IB", 10, 0) + b"abc")  # the writer dies mid-frame
    os.close(write_fd)
    with pytest.raises(EOFError):
        pipe.recv()
