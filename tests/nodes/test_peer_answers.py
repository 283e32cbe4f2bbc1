"""What a node takes from its peers' HTTP answers, against a peer that answers anything.

The status poll (``Node._poll_peer``): a status is noted, every other answer is refused and
counted, and the poll never raises. Before, a faulty peer answering JSON nested past the
parser, or a list, ended the polling task of every node that asked it. A state-transfer
fetch (``Node._fetch_blocks``) reads a bounded answer: before, it buffered the whole body,
however large, before its size was checked."""

from __future__ import annotations

from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from nodes.metrics import NodeMetrics
import nodes.node
from nodes.node import Node
from p2pchain.client import STATUS_MAX_BYTES
from p2pchain.encoding import encode

STATUS = b'{"node": "node1", "channels": {"transaction": {"height": 7}, "matching": {"height": 3}}}'
NOT_STATUSES = {
    "nested past the parser": b"[" * 100_000,
    "not JSON": b"{oops",
    "not UTF-8": b"\xff\xfe",
    "a list": b"[1, 2]",
    "channels of another shape": b'{"channels": [1]}',
    "no channels": b'{"node": "node1"}',
    "oversized": b'{"pad": "' + b"x" * STATUS_MAX_BYTES + b'"}',
}


class _Engine:
    def __init__(self) -> None:
        self.heights: list[tuple[str, int]] = []

    def note_peer_height(self, peer: str, height: int) -> None:
        self.heights.append((peer, height))


async def _poller(answer: bytes):
    """A bare node whose one peer, ``node1``, answers ``answer`` to every status poll and
    every fetch of blocks; and the peer's server, to close."""
    async def status(request: web.Request) -> web.Response:
        return web.Response(body=answer, content_type="application/json")

    async def raw_blocks(request: web.Request) -> web.Response:
        return web.Response(body=answer, content_type="application/msgpack")

    app = web.Application()
    app.router.add_get("/v1/status", status)
    app.router.add_get("/v1/channels/{channel}/raw-blocks", raw_blocks)
    server = TestServer(app)
    await server.start_server()
    node = object.__new__(Node)
    node.name = "node0"
    node.genesis = SimpleNamespace(node=lambda name: SimpleNamespace(host="127.0.0.1", port=server.port))
    node.metrics = NodeMetrics("node0")
    node.engines = {"transaction": _Engine(), "matching": _Engine(), "electricity": _Engine()}
    node._heard = {"node1": 0.0}
    node._session = aiohttp.ClientSession()
    return node, server


def _refused(node: Node) -> float:
    counted = node.metrics.registry.get_sample_value("p2pchain_refused_total",
                                                     {"edge": "poll", "reason": "malformed_status"})
    return counted or 0.0


async def test_a_status_is_heard_and_its_heights_noted():
    node, server = await _poller(STATUS)
    try:
        await node._poll_peer("node1")
    finally:
        await node._session.close()
        await server.close()
    assert node._heard["node1"] > 0.0 and _refused(node) == 0
    assert node.engines["transaction"].heights == [("node1", 7)]
    assert node.engines["matching"].heights == [("node1", 3)]
    assert node.engines["electricity"].heights == []


@pytest.mark.parametrize("answer", NOT_STATUSES.values(), ids=NOT_STATUSES.keys())
async def test_any_other_answer_is_refused_and_counted_and_changes_nothing(answer):
    node, server = await _poller(answer)
    try:
        await node._poll_peer("node1")
        await node._poll_peer("node1")
    finally:
        await node._session.close()
        await server.close()
    assert _refused(node) == 2
    assert node._heard["node1"] == 0.0
    assert all(engine.heights == [] for engine in node.engines.values())


async def test_a_channel_entry_of_another_shape_is_skipped_and_the_rest_noted():
    node, server = await _poller(b'{"channels": {"transaction": 5, "matching": {"height": "9"}, '
                                 b'"electricity": {"height": 2}}}')
    try:
        await node._poll_peer("node1")
    finally:
        await node._session.close()
        await server.close()
    assert node.engines["electricity"].heights == [("node1", 2)]
    assert node.engines["transaction"].heights == node.engines["matching"].heights == []


async def test_a_fetch_reads_a_bounded_answer(monkeypatch):
    monkeypatch.setattr(nodes.node, "FETCH_MAX_BYTES", 1_000)
    node, server = await _poller(encode([b"x" * 2_000]))
    try:
        with pytest.raises(ValueError, match="answered more than 1000 bytes"):
            await node._fetch_blocks("node1", "transaction", 1, 1)
    finally:
        await node._session.close()
        await server.close()
    node, server = await _poller(encode([]))
    try:
        assert await node._fetch_blocks("node1", "transaction", 1, 1) == []
    finally:
        await node._session.close()
        await server.close()
