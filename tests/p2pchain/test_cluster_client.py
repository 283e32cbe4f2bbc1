"""The cluster client goes around nodes that are down (p2pchain/client.py, ``ClusterClient``):
the market day's driver and ``p2pchain submit/blocks`` both use it."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from p2pchain.client import ApiError, ClusterClient, ClusterError

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
    nodes = ClusterClient({"node0": _Node("node0", [ApiError(503, "node_crashed", "crashed")]),
                    "node1": _Node("node1", [aiohttp.ClientConnectionError("refused")]),
                    "node2": _Node("node2", [ApiError(504, "commit_timeout", "not within 20 s")]),
                    "node3": _Node("node3", [{"height": 9, "result": {"status": "ok"}}])}, say=notes.append)
    assert asyncio.run(nodes.submit(TX)) == {"height": 9, "result": {"status": "ok"}}
    assert [n.split(" (")[0] for n in notes] == ["node0 did not commit quotation.close of operator-mgo",
                                                 "node1 did not commit quotation.close of operator-mgo",
                                                 "node2 did not commit quotation.close of operator-mgo"]
    # the nodes that failed are asked last from now on; a preferred node that failed too
    assert nodes.order(None) == ["node3", "node0", "node1", "node2"]
    assert nodes.order("node1") == ["node3", "node1", "node2", "node0"]


def test_a_resent_transaction_that_committed_meanwhile_is_answered_with_its_commit():
    committed = {"tx_id": "74", "height": 5, "result": {"status": "ok"}}
    nodes = ClusterClient({"node0": _Node("node0", [ApiError(504, "commit_timeout", "")]),
                    "node1": _Node("node1", [ApiError(409, "replayed_nonce", "nonce 3 taken")], found=committed)})
    assert asyncio.run(nodes.submit(TX)) == committed
    other = ClusterClient({"node1": _Node("node1", [ApiError(409, "replayed_nonce", "taken by another")], found=None)})
    try:
        asyncio.run(other.submit(TX))
    except ApiError as exc:
        assert exc.code == "replayed_nonce"       # not ours: the caller signs the call again
    else:
        raise AssertionError("a nonce another transaction took was answered as committed")


class _Reader:
    def __init__(self, answer):
        self.answer, self.asked = answer, 0

    async def status(self):
        self.asked += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_a_question_goes_to_the_first_node_that_answers_and_says_which_it_passed_over():
    notes = []
    nodes = ClusterClient({"node0": _Reader(ApiError(503, "node_stopping", "stopping")),
                           "node1": _Reader(aiohttp.ClientConnectionError("refused")),
                           "node2": _Reader({"node": "node2", "crashed": True}),
                           "node3": _Reader({"node": "node3", "channels": {}})}, say=notes.append)
    assert asyncio.run(nodes.status())["node"] == "node3"
    assert notes == ["node0 did not answer (503 node_stopping: stopping); asking node1",
                     "node1 did not answer (ClientConnectionError); asking node2",
                     "node2 did not answer (503 node_crashed: node2 is crashed); asking node3"]
    assert nodes.order() == ["node3", "node0", "node1", "node2"]


def test_a_refusal_other_than_503_is_the_answer_not_a_reason_to_ask_another_node():
    second = _Reader({"node": "node1"})
    nodes = ClusterClient({"node0": _Reader(ApiError(404, "unknown_channel", "no such channel")), "node1": second})
    with pytest.raises(ApiError) as refused:
        asyncio.run(nodes.ask(lambda client: client.status()))
    assert refused.value.code == "unknown_channel" and second.asked == 0


def test_when_no_node_answers_the_error_names_the_last_one_and_why():
    one = ClusterClient({"node2": _Reader(ApiError(503, "node_crashed", "restart it"))})
    with pytest.raises(ClusterError, match="node2 does not answer: 503 node_crashed: restart it"):
        asyncio.run(one.ask(lambda client: client.status()))
    both = ClusterClient({"node0": _Reader(aiohttp.ClientConnectionError()), "node1": _Reader(asyncio.TimeoutError())})
    with pytest.raises(ClusterError, match=r"no node answers \(node1: no answer in time\)"):
        asyncio.run(both.ask(lambda client: client.status()))


def test_a_single_node_that_gives_up_at_once_is_tried_once():
    node = _Node("node0", [ApiError(504, "commit_timeout", "not within 30 s"), {"height": 1}])
    nodes = ClusterClient({"node0": node}, give_up_s=0.0)
    with pytest.raises(ClusterError, match="node0 did not commit it: 504 commit_timeout"):
        asyncio.run(nodes.submit(TX))
    assert node.sent == 1


def test_a_submission_tries_every_node_in_rounds_until_one_ends_past_the_give_up_time():
    nodes = ClusterClient({name: _Node(name, [ApiError(503, "node_crashed", "")] * 10) for name in ("node0", "node1")},
                          give_up_s=0.05, round_pause_s=0.02)
    with pytest.raises(ClusterError, match=r"not committed by any node in \d+ tries \(the last, node1: 503 node_crashed\)"):
        asyncio.run(nodes.submit(TX))
    assert all(node.sent >= 2 for node in nodes.clients.values())


def test_giving_up_at_once_still_tries_every_node_once():
    nodes = ClusterClient({"node0": _Node("node0", [ApiError(503, "node_crashed", "")]),
                           "node1": _Node("node1", [{"tx_id": "74"}])}, give_up_s=0.0)
    assert asyncio.run(nodes.submit(TX, wait=False)) == {"tx_id": "74"}
