"""A node's last nonce of a client: its ledger's, or its replica's where a committed request
has yet to execute (``Node.last_nonce``). Right after one node answered a commit, another
node whose execution lagged it said the nonce before, and a client resuming there (as the
restart test's did, now and then under load) reused the nonce it had just spent."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, strategies as st

from nodes.api import NODE, nonce
from nodes.node import CheckedRequests, Node
from p2pchain.client import Signer
from p2pchain.ledger.transaction import TransactionRefused

CHANNEL = "transaction"


def _bare_node(genesis, executed: dict[str, int], committed: dict[str, int]) -> Node:
    """A node with only what admission reads: the genesis, its ledger's nonces (as of the
    last executed block) and its replica's client table (as of the last commit)."""
    node = object.__new__(Node)
    node.genesis = genesis
    node.checked = CheckedRequests()
    node.ledgers = {CHANNEL: SimpleNamespace(last_nonce=executed.get)}
    node.engines = {CHANNEL: SimpleNamespace(replica=SimpleNamespace(clients=committed))}
    return node


@given(st.none() | st.integers(0, 50), st.none() | st.integers(0, 50))
def test_the_last_nonce_is_the_higher_of_the_ledgers_and_the_replicas(genesis, executed, committed):
    node = _bare_node(genesis, {} if executed is None else {"ev01": executed},
                      {} if committed is None else {"ev01": committed})
    known = [n for n in (executed, committed) if n is not None]
    assert node.last_nonce(CHANNEL, "ev01") == (max(known) if known else None)
    assert node.last_nonce(CHANNEL, "ev02") is None


def test_the_nonce_route_answers_the_nonce_committed_but_not_yet_executed(genesis):
    node = _bare_node(genesis, executed={"ev01": 3}, committed={"ev01": 5})
    node.crashed = False
    app = web.Application()
    app[NODE] = node
    request = make_mocked_request("GET", f"/v1/channels/{CHANNEL}/nonces/ev01", app=app,
                                  match_info={"channel": CHANNEL, "creator": "ev01"})
    answer = json.loads(asyncio.run(nonce(request)).body)
    assert answer == {"channel": CHANNEL, "creator": "ev01", "nonce": 5}


def test_admission_still_takes_a_nonce_ordered_but_not_yet_executed(genesis, consortium_dir):
    """The same transaction sent again while its commit waits to execute here must reach the
    commit's answer: the admission checks the ledger's nonce, the replica orders."""
    node = _bare_node(genesis, executed={"ev01": 3}, committed={"ev01": 5})
    signer = Signer.load(consortium_dir, "ev01")

    def request(n: int) -> bytes:
        signer.next_nonce[CHANNEL] = n
        return signer.transaction(CHANNEL, "demo", "record", {"value": n}).to_bytes()

    assert node.validate(CHANNEL, request(5)).nonce == 5
    with pytest.raises(TransactionRefused) as refused:
        node.validate(CHANNEL, request(3))
    assert refused.value.code == "replayed_nonce"
