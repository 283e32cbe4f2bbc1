"""Peer links: mutual authentication against the genesis, frames, refusals, reconnects."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from p2pchain.consortium import create_consortium, load_identity_key
from p2pchain.crypto import SigningKey
from p2pchain.encoding import encode
from p2pchain.net.peers import _Outbox, PEER_PATH, LinkSettings, PeerNetwork

from ...conftest import NOW
from ...ports import free_port_block

FAST = LinkSettings(backoff_initial_s=0.02, backoff_max_s=0.1, max_frame_bytes=64 * 1024)


@pytest.fixture(scope="module")
def consortium(tmp_path_factory):
    directory = tmp_path_factory.mktemp("peers")
    genesis = create_consortium(directory, now=NOW, base_port=free_port_block(4))
    return directory, genesis


class Node:
    """One node's peer network served on its genesis port, recording what it receives."""

    def __init__(self, directory, genesis, name, accept=lambda peer, frame: None, key=None):
        self.name = name
        self.frames: list[tuple[str, bytes]] = []
        self.links_up: list[str] = []
        self._accept = accept
        self.net = PeerNetwork(name, key or load_identity_key(directory, name), genesis, self._on_frame, FAST,
                               on_link_up=self.links_up.append)
        self.port = genesis.node(name).port
        self.runner = None

    def _on_frame(self, peer, frame):
        self.frames.append((peer, frame))
        return self._accept(peer, frame)

    async def start(self):
        app = web.Application()
        app.router.add_get(PEER_PATH, self.net.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        await self.net.start()

    async def stop(self):
        await self.net.stop()
        await self.runner.cleanup()


async def eventually(condition, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_nodes_link_up_and_deliver_frames_in_order(consortium):
    directory, genesis = consortium
    nodes = [Node(directory, genesis, f"node{i}") for i in range(4)]
    for node in nodes:
        await node.start()
    try:
        await eventually(lambda: all(len(n.net.connected_out) == 3 for n in nodes))
        for i in range(50):
            nodes[0].net.broadcast(encode({"seq": i}))
        await eventually(lambda: all(len(n.frames) == 50 for n in nodes[1:]))
        for node in nodes[1:]:
            assert [frame for _, frame in node.frames] == [encode({"seq": i}) for i in range(50)]
            assert {peer for peer, _ in node.frames} == {"node0"}
    finally:
        for node in nodes:
            await node.stop()


async def test_a_node_that_restarts_is_reconnected(consortium):
    directory, genesis = consortium
    a, b = Node(directory, genesis, "node0"), Node(directory, genesis, "node1")
    await a.start()
    await b.start()
    try:
        await eventually(lambda: "node1" in a.net.connected_out)
        await b.stop()
        await eventually(lambda: "node1" not in a.net.connected_out)
        b = Node(directory, genesis, "node1")
        await b.start()
        await eventually(lambda: "node1" in a.net.connected_out)
        # each time the link is up again, the node is told (what left by the old one may be lost)
        assert a.links_up.count("node1") >= 2
        a.net.send("node1", b"after restart")
        await eventually(lambda: b.frames == [("node0", b"after restart")])
    finally:
        await a.stop()
        await b.stop()


class _RecordingSet(set):
    """A set that remembers every element ever added."""

    def __init__(self) -> None:
        super().__init__()
        self.added: list = []

    def add(self, item) -> None:
        self.added.append(item)
        super().add(item)


async def test_a_dialler_with_the_wrong_key_is_refused_and_counted(consortium):
    directory, genesis = consortium
    honest = Node(directory, genesis, "node1")
    impostor = Node(directory, genesis, "node0", key=SigningKey.generate())
    impostor.net.connected_out = counted_up = _RecordingSet()
    await honest.start()
    await impostor.start()
    try:
        await eventually(lambda: honest.net.refused["handshake"] >= 2)
        # the listener's refusal reaches the dialler: it never counted the link as up, not
        # even for the moment the listener took to check its signature
        assert counted_up.added == [] and "node1" not in impostor.net.connected_out
        assert honest.frames == []
    finally:
        await honest.stop()
        await impostor.stop()


async def _raw_hello(port, hello):
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{port}{PEER_PATH}") as ws:
            await ws.send_bytes(hello)
            message = await ws.receive()
            return message, ws.close_code


@pytest.mark.parametrize(
    "make_hello, reason",
    [
        (lambda g: encode({"type": "hello", "from": "ev01", "to": "node1", "genesis": g.digest, "nonce": bytes(32)}), "not a peer node"),
        (lambda g: encode({"type": "hello", "from": "node0", "to": "node1", "genesis": bytes(32), "nonce": bytes(32)}), "another consortium"),
        (lambda g: encode({"type": "hello", "from": "node0", "to": "node2", "genesis": g.digest, "nonce": bytes(32)}), "addressed to"),
        (lambda g: b"\xc1garbage", "malformed handshake"),
    ],
)
async def test_bad_hellos_are_refused_with_a_reason(consortium, make_hello, reason):
    directory, genesis = consortium
    node = Node(directory, genesis, "node1")
    await node.start()
    try:
        message, _ = await _raw_hello(node.port, make_hello(genesis))
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert reason in (message.extra or "")
        assert node.net.refused["handshake"] == 1
    finally:
        await node.stop()


async def test_a_link_that_closes_while_it_opens_is_no_error(consortium, monkeypatch, caplog):
    # a dialler killed in the middle of the upgrade: aiohttp cannot write the 101 answer
    directory, genesis = consortium
    node = Node(directory, genesis, "node1")
    await node.start()

    async def closing(self, request):
        raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")
    monkeypatch.setattr(web.WebSocketResponse, "prepare", closing)
    try:
        with caplog.at_level("DEBUG"):
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.ClientError):
                    await session.ws_connect(f"http://127.0.0.1:{node.port}{PEER_PATH}")
        assert "closed while it opened" in caplog.text
        assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    finally:
        monkeypatch.undo()
        await node.stop()


@pytest.mark.parametrize("signature", [5, "0" * 64, [0] * 64, None])
async def test_an_auth_whose_signature_is_not_bytes_is_refused_with_a_reason(consortium, signature):
    directory, genesis = consortium
    node = Node(directory, genesis, "node1")
    await node.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{node.port}{PEER_PATH}") as ws:
                await ws.send_bytes(encode({"type": "hello", "from": "node0", "to": "node1",
                                            "genesis": genesis.digest, "nonce": bytes(32)}))
                assert (await ws.receive()).type == aiohttp.WSMsgType.BINARY     # the challenge
                await ws.send_bytes(encode({"type": "auth", "signature": signature}))
                message = await ws.receive()
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert "did not prove" in (message.extra or "")
        assert node.net.refused["handshake"] == 1
    finally:
        await node.stop()


async def test_a_dialler_answered_with_a_challenge_not_signed_in_bytes_keeps_dialling(consortium):
    """A listener (or whoever holds its address) that answers a hello with a signature of
    another type is a refused handshake: the dialler tries again later, as after any other."""
    directory, genesis = consortium
    hellos = []

    async def listener(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        hellos.append(await ws.receive())
        await ws.send_bytes(encode({"type": "challenge", "nonce": bytes(32), "signature": 5}))
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get(PEER_PATH, listener)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", genesis.node("node1").port).start()
    dialler = Node(directory, genesis, "node0")
    await dialler.net.start()
    try:
        await eventually(lambda: len(hellos) >= 3)
        assert "node1" not in dialler.net.connected_out
    finally:
        await dialler.net.stop()
        await runner.cleanup()


async def test_a_peer_sending_garbage_is_disconnected_and_counted(consortium):
    directory, genesis = consortium
    receiver = Node(directory, genesis, "node1", accept=lambda peer, frame: None if frame.startswith(b"ok") else "garbage")
    sender = Node(directory, genesis, "node0")
    await receiver.start()
    await sender.start()
    try:
        await eventually(lambda: "node1" in sender.net.connected_out)
        sender.net.send("node1", b"ok 1")
        sender.net.send("node1", b"\x00\xff nonsense")
        await eventually(lambda: receiver.net.refused["garbage"] == 1)
        await eventually(lambda: "node1" in sender.net.connected_out)  # it may dial again
        sender.net.send("node1", b"ok 2")
        await eventually(lambda: [f for _, f in receiver.frames if f.startswith(b"ok")] == [b"ok 1", b"ok 2"])
    finally:
        await sender.stop()
        await receiver.stop()


async def test_an_oversized_frame_closes_the_link(consortium):
    directory, genesis = consortium
    receiver, sender = Node(directory, genesis, "node1"), Node(directory, genesis, "node0")
    await receiver.start()
    await sender.start()
    try:
        await eventually(lambda: "node1" in sender.net.connected_out)
        sender.net.send("node1", b"x" * (FAST.max_frame_bytes + 1))
        await eventually(lambda: receiver.net.refused["frame_oversized"] == 1)
        assert receiver.frames == []
    finally:
        await sender.stop()
        await receiver.stop()


async def test_a_full_queue_drops_and_counts(consortium):
    directory, genesis = consortium
    small = LinkSettings(queue_frames=3)
    net = PeerNetwork("node0", load_identity_key(directory, "node0"), genesis, lambda p, f: None, small)
    net._queues["node1"] = _Outbox(small.queue_frames)  # not started: nothing drains it
    assert [net.send("node1", b"f", bulk=i % 2 == 0) for i in range(5)] == [True, True, True, False, False]
    assert net.dropped["node1"] == 2


def test_consensus_frames_leave_before_relayed_requests_each_kind_in_order():
    outbox = _Outbox(10)
    for frame, bulk in ((b"req1", True), (b"req2", True), (b"vote1", False), (b"req3", True), (b"vote2", False)):
        assert outbox.put(frame, bulk)
    assert outbox.ready.is_set()
    assert [outbox.take() for _ in range(6)] == [b"vote1", b"vote2", b"req1", b"req2", b"req3", None]
    assert not outbox.ready.is_set()  # empty: the link's pump sleeps until the next put
