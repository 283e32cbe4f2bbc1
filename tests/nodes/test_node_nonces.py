"""A node's last nonce of a client: its ledger's, or its replica's where a committed request
has yet to execute (``Node.last_nonce``). Right after one node answered a commit, another
node whose execution lagged it said the nonce before, and a client resuming there (as the
restart test's did, now and then under load) reused the nonce it had just spent."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, strategies as st

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


def test_a_nonce_committed_but_not_yet_executed_is_refused_at_admission(genesis, consortium_dir):
    node = _bare_node(genesis, executed={"ev01": 3}, committed={"ev01": 5})
    signer = Signer.load(consortium_dir, "ev01")

    def request(nonce: int) -> bytes:
        signer.next_nonce[CHANNEL] = nonce
        return signer.transaction(CHANNEL, "demo", "record", {"value": nonce}).to_bytes()

    for taken in (4, 5):            # above the ledger's, but the replica ordered them
        with pytest.raises(TransactionRefused) as refused:
            node.validate(CHANNEL, request(taken))
        assert refused.value.code == "replayed_nonce"
    assert node.validate(CHANNEL, request(6)).nonce == 6
