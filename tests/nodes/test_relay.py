"""Client requests relayed to the peers: what one turn of the event loop relays leaves
together, one frame per channel and peer, cut at the relay frame's limits."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from hypothesis import given, strategies as st

from nodes import node as node_module
from nodes.faults import FaultState
from nodes.node import FRAME_REQUEST, Node, _relay_frames
from p2pchain.encoding import decode, encode
from p2pchain.ledger.block import CHANNELS


def _bare_node(sent: list) -> Node:
    """A node with only what relaying uses: its name, its peers' names, faults, a link."""
    node = object.__new__(Node)
    node.name = "node0"
    node.genesis = SimpleNamespace(node_names=["node0", "node1", "node2", "node3"])
    node.faults = FaultState()
    node._relaying, node._relay_due = {}, False
    node.peers = SimpleNamespace(send=lambda peer, frame, bulk: sent.append((peer, frame, bulk)))
    return node


def _frames_by_peer(sent: list) -> dict[str, list[tuple[str, list[bytes]]]]:
    """Per peer, its relay frames in order as (channel, requests)."""
    out: dict[str, list] = {}
    for peer, frame, bulk in sent:
        assert bulk and frame[:1] == FRAME_REQUEST
        out.setdefault(peer, []).append((CHANNELS[frame[1]], decode(frame[2:])))
    return out


def test_requests_relayed_in_one_turn_leave_as_one_frame_per_channel_and_peer():
    async def run():
        sent: list = []
        node = _bare_node(sent)
        node.relay("transaction", [b"a"])
        node.relay("matching", [b"m"])
        node.relay("transaction", [b"b", b"c"])
        assert sent == []                    # nothing leaves before the turn ends
        await asyncio.sleep(0)
        frames = _frames_by_peer(sent)
        assert sorted(frames) == ["node1", "node2", "node3"]
        for peer_frames in frames.values():
            assert peer_frames == [("transaction", [b"a", b"b", b"c"]), ("matching", [b"m"])]
        node.relay("transaction", [b"d"])    # a later turn: a frame of its own
        await asyncio.sleep(0)
        assert _frames_by_peer(sent)["node1"][-1] == ("transaction", [b"d"])
    asyncio.run(run())


def test_a_node_made_silent_relays_to_no_one():
    async def run():
        sent: list = []
        node = _bare_node(sent)
        node.faults.byzantine = "silent"
        node.relay("transaction", [b"a"])
        await asyncio.sleep(0)
        assert sent == []
    asyncio.run(run())


@given(st.lists(st.integers(0, 9_000), max_size=60), st.integers(1, 6), st.integers(20, 30_000))
def test_relay_frames_keep_every_request_in_order_within_both_limits(sizes, most, max_bytes):
    requests = [bytes([k % 256]) * size for k, size in enumerate(sizes)]
    saved = node_module.RELAY_MAX_REQUESTS, node_module.RELAY_MAX_BYTES
    node_module.RELAY_MAX_REQUESTS, node_module.RELAY_MAX_BYTES = most, max_bytes
    try:
        chunks = list(_relay_frames(requests))
    finally:
        node_module.RELAY_MAX_REQUESTS, node_module.RELAY_MAX_BYTES = saved
    assert [r for chunk in chunks for r in chunk] == requests
    for chunk in chunks:
        assert 1 <= len(chunk) <= most
        # a request too large for a frame of its own still goes, alone
        assert len(encode(chunk)) <= max_bytes or len(chunk) == 1


def _node_holding(sent: list, pending: dict[str, list[bytes]], **faults) -> Node:
    node = _bare_node(sent)
    node.crashed = False
    node.faults = FaultState(**faults)
    node.engines = {channel: SimpleNamespace(replica=SimpleNamespace(pending=dict.fromkeys(requests, ("c", 1))))
                    for channel, requests in pending.items()}
    return node


def test_a_link_that_comes_up_gets_the_requests_the_replicas_hold_again():
    # whatever left by a link that then closed may be lost: a request that reached only this
    # node would never reach the primary, and this node alone would suspect it
    sent: list = []
    node = _node_holding(sent, {"transaction": [b"t1", b"t2"], "matching": [], "electricity": [b"e1"]})
    node._on_link_up("node2")
    assert _frames_by_peer(sent) == {"node2": [("transaction", [b"t1", b"t2"]), ("electricity", [b"e1"])]}


def test_nothing_is_resent_when_nothing_is_held_or_the_node_may_not_send():
    for pending, faults, crashed in (({"transaction": []}, {}, False),
                                     ({"transaction": [b"t1"]}, {"byzantine": "silent"}, False),
                                     ({"transaction": [b"t1"]}, {}, True)):
        sent: list = []
        node = _node_holding(sent, pending, **faults)
        node.crashed = crashed
        node._on_link_up("node1")
        assert sent == [], (pending, faults, crashed)
