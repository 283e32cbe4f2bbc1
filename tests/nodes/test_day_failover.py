"""The market day's driver goes around a node that is down (nodes/marketday.py, ``_Nodes``)
and its hourly check settles for 2f+1 agreeing nodes (nodes/agreement.py, ``quorum``)."""

from __future__ import annotations

import asyncio

import aiohttp

from nodes.agreement import wait_for_agreement
from nodes.marketday import _Nodes
from p2pchain.client import ApiError

TX = type("Tx", (), {"contract": "quotation", "function": "close", "creator": "operator-mgo", "tx_id": b"t"})()


class _Node:
    def __init__(self, name, answers, found=None):
        self.name, self.answers, self.found, self.sent = name, list(answers), found, 0

    async def submit(self, tx, wait):
        self.sent += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def find_committed(self, tx, wait):
        return self.found


def test_a_submission_goes_around_nodes_that_are_down_or_do_not_commit_it():
    notes = []
    nodes = _Nodes({"node0": _Node("node0", [ApiError(503, "node_crashed", "crashed")]),
                    "node1": _Node("node1", [aiohttp.ClientConnectionError("refused")]),
                    "node2": _Node("node2", [ApiError(504, "commit_timeout", "not within 20 s")]),
                    "node3": _Node("node3", [{"height": 9, "result": {"status": "ok"}}])}, notes.append)
    assert asyncio.run(nodes.submit(TX)) == {"height": 9, "result": {"status": "ok"}}
    assert [n.split(" (")[0] for n in notes] == ["node0 did not commit quotation.close of operator-mgo",
                                                 "node1 did not commit quotation.close of operator-mgo",
                                                 "node2 did not commit quotation.close of operator-mgo"]
    # the nodes that failed are asked last from now on; a preferred node that failed too
    assert nodes._from(None) == ["node3", "node0", "node1", "node2"]
    assert nodes._from("node1") == ["node3", "node1", "node2", "node0"]


def test_a_resent_transaction_that_committed_meanwhile_is_answered_with_its_commit():
    committed = {"tx_id": "74", "height": 5, "result": {"status": "ok"}}
    nodes = _Nodes({"node0": _Node("node0", [ApiError(504, "commit_timeout", "")]),
                    "node1": _Node("node1", [ApiError(409, "replayed_nonce", "nonce 3 taken")], found=committed)})
    assert asyncio.run(nodes.submit(TX)) == committed
    other = _Nodes({"node1": _Node("node1", [ApiError(409, "replayed_nonce", "taken by another")], found=None)})
    try:
        asyncio.run(other.submit(TX))
    except ApiError as exc:
        assert exc.code == "replayed_nonce"       # not ours: the caller signs the call again
    else:
        raise AssertionError("a nonce another transaction took was answered as committed")


class _Status:
    def __init__(self, heights, crashed=False):
        self.heights, self.crashed = heights, crashed

    async def status(self):
        if self.crashed:
            return {"crashed": True, "channels": {}}
        return {"channels": {c: {"height": h, "head": f"h{h}", "state_root": f"r{h}"}
                             for c, h in zip(("transaction", "matching", "electricity"), self.heights)}}


def test_the_hourly_check_waits_for_every_node_then_settles_for_a_quorum_and_names_the_others():
    clients = {"node0": _Status((5, 2, 2)), "node1": _Status((7, 3, 2)), "node2": _Status((7, 3, 2)),
               "node3": _Status((7, 3, 2))}
    agreement = asyncio.run(wait_for_agreement(clients, quorum=3, grace_s=0.2, timeout_s=5))
    assert agreement == {"transaction": (7, "h7", "r7"), "matching": (3, "h3", "r3"), "electricity": (2, "h2", "r2")}
    assert agreement.behind == ("node0",)
    clients["node0"] = _Status((), crashed=True)
    agreement = asyncio.run(wait_for_agreement(clients, quorum=3, grace_s=10, timeout_s=5))
    assert agreement.behind == ("node0",) and agreement["transaction"] == (7, "h7", "r7")   # at once: all up agree
    clients["node1"] = _Status((6, 3, 2))           # two of four behind: no quorum of 3 at any height
    try:
        asyncio.run(wait_for_agreement(clients, quorum=3, grace_s=0.1, timeout_s=0.5))
    except TimeoutError:
        pass
    else:
        raise AssertionError("settled without 2f+1 agreeing nodes")
