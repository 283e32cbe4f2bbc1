"""The channel store: appending, refusing blocks that do not extend it, recovery on open."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest

from p2pchain.ledger.block import Block, TxResult, genesis_block
from p2pchain.ledger.devchain import kv_executor
from p2pchain.ledger.store import ChannelLedger, LedgerError, StoreCorrupt, assemble_outputs, ledger_path
from p2pchain.ledger.transaction import (
    NONCE_NAMESPACE, Transaction, TransactionRefused, read_nonce, timestamp_to_datetime, validate_transaction,
)
from p2pchain.ordering import Batch

from conftest import T0_MS


def test_new_ledger_starts_with_the_genesis_block(chain, open_ledger):
    ledger = open_ledger("matching")
    stored = ledger.block(0)
    assert ledger.height == 0 and stored.certificate is None
    assert stored.block.header.genesis_digest == chain.genesis.digest
    assert stored.block.hash == genesis_block("matching", chain.genesis.digest).hash


def test_committed_blocks_chain_and_survive_reopening(chain, open_ledger, node_dir):
    ledger = open_ledger()
    for nonce in range(1, 4):
        chain.commit(ledger, [chain.tx("ev01", nonce, key=f"k{nonce}", value=nonce)])
    root, head = ledger.state.root, ledger.head_hash
    ledger.close()
    reopened = open_ledger()
    assert (reopened.height, reopened.head_hash, reopened.state.root) == (3, head, root)
    for height in range(1, 4):
        assert reopened.block(height).block.header.prev_hash == reopened.block_hash(height - 1)
    assert reopened.state.get("kv", "k2") is not None


def test_each_header_carries_the_state_root_after_the_previous_block(chain, open_ledger):
    ledger = open_ledger()
    roots = [ledger.state.root]
    for nonce in range(1, 4):
        chain.commit(ledger, [chain.tx("ev01", nonce, key=f"k{nonce}")])
        roots.append(ledger.state.root)
    assert [ledger.block(h).block.header.state_root for h in range(1, 4)] == roots[:3]
    assert len(set(roots)) == 4


def test_empty_batch_makes_an_empty_block(chain, open_ledger):
    ledger = open_ledger("electricity")
    block = chain.commit(ledger, [])
    assert ledger.height == 1 and block.requests == () and block.outputs.results == ()


def test_block_that_does_not_extend_the_head_is_refused(chain, open_ledger):
    ledger = open_ledger()
    batch = Batch((chain.tx("ev01", 1),), "node0", T0_MS, chain.genesis_anchors().to_metadata())
    block = ledger.prepare(batch, 0)
    screened = ledger.screen(block)
    results, writes = kv_executor(block, [t for t in screened if isinstance(t, Transaction)])
    block = block.with_outputs(assemble_outputs(screened, results, writes))
    certificate = chain.certifier.certify("transaction", 0, 1, batch)
    wrong_prev = Block(dataclasses.replace(block.header, prev_hash=bytes(32)), block.requests, block.outputs)
    with pytest.raises(LedgerError, match="prev_hash"):
        ledger.append(wrong_prev, certificate)
    other_batch = Batch((), "node0", T0_MS, batch.metadata)
    with pytest.raises(LedgerError, match="certificate is for another batch"):
        ledger.append(block, chain.certifier.certify("transaction", 0, 1, other_batch))
    with pytest.raises(LedgerError, match="execute it first"):
        ledger.append(Block(block.header, block.requests), certificate)
    assert ledger.height == 0
    ledger.commit(block, certificate)
    assert ledger.height == 1


def test_contracts_cannot_write_the_nonce_namespace(chain, open_ledger):
    ledger = open_ledger()

    def forging(block, admitted):
        return [], {("$nonce", "ev01"): b"\x00"}

    with pytest.raises(LedgerError, match="nonce"):
        chain.commit(ledger, [], execute=forging)


def test_state_lagging_the_blocks_is_re_applied_on_open(chain, open_ledger, node_dir):
    """A crash between appending a block and applying it: recovery applies it."""
    ledger = open_ledger()
    chain.commit(ledger, [chain.tx("ev01", 1, key="a")])
    batch = Batch((chain.tx("ev01", 2, key="b"),), "node0", T0_MS + 9, chain.genesis_anchors().to_metadata())
    block = ledger.prepare(batch, 0)
    screened = ledger.screen(block)
    results, writes = kv_executor(block, [t for t in screened if isinstance(t, Transaction)])
    block = block.with_outputs(assemble_outputs(screened, results, writes))
    ledger.append(block, chain.certifier.certify("transaction", 0, 2, batch))  # crash before apply
    ledger.close()
    reopened = open_ledger()
    assert reopened.state.applied_height == 2 == reopened.height
    assert reopened.state.get("kv", "b") is not None and reopened.last_nonce("ev01") == 2


def test_ledger_of_another_consortium_is_refused(chain, open_ledger, node_dir, tmp_path):
    open_ledger("matching").close()
    # Swap the file in under another channel's name: block 0 names the wrong channel.
    ledger_path(node_dir, "matching").rename(ledger_path(node_dir, "electricity"))
    with pytest.raises(LedgerError, match="another channel or consortium"):
        open_ledger("electricity")


def test_tail_that_does_not_link_is_reported_as_corrupt(chain, open_ledger, node_dir):
    ledger = open_ledger()
    chain.commit(ledger, [chain.tx("ev01", 1)])
    chain.commit(ledger, [chain.tx("ev01", 2)])
    ledger.close()
    conn = sqlite3.connect(ledger_path(node_dir, "transaction"))
    conn.execute("UPDATE blocks SET hash = ? WHERE height = 1", (bytes(32),))
    conn.commit()
    conn.close()
    with pytest.raises(StoreCorrupt):
        open_ledger()


def test_header_is_the_stored_blocks_header_and_checked_like_it(chain, open_ledger, node_dir):
    ledger = open_ledger()
    chain.commit(ledger, [chain.tx("ev01", 1)])
    chain.commit(ledger, [chain.tx("ev01", 2)])
    assert [ledger.header(height) for height in range(3)] == [ledger.block(height).block.header for height in range(3)]
    with pytest.raises(LedgerError, match="no block 3"):
        ledger.header(3)
    conn = sqlite3.connect(ledger_path(node_dir, "transaction"))
    conn.execute("UPDATE blocks SET hash = ? WHERE height = 1", (bytes(32),))
    conn.commit()
    conn.close()
    with pytest.raises(StoreCorrupt, match="stored hash"):
        ledger.header(1)


def test_anchor_names_the_head(chain, open_ledger):
    ledger = open_ledger("matching")
    chain.commit(ledger, [])
    assert (ledger.anchor().height, ledger.anchor().block_hash) == (1, ledger.head_hash)


def test_readers_see_a_block_only_once_its_writes_are_applied(chain, open_ledger):
    """A node executes on its own thread while status and anchoring read: between storing a
    block and applying it, readers keep seeing the previous block with its own root."""
    ledger = open_ledger("transaction")
    chain.commit(ledger, [chain.tx("ev01", 1, key="a", value=1)])
    before = ledger.applied
    assert before == (1, ledger.head_hash, ledger.state.root)
    seen = []
    real_apply = ledger._apply

    def apply_and_look(block, staged=None):  # the moment between the durable append and the state's apply
        seen.append(ledger.applied)
        return real_apply(block, staged)

    ledger._apply = apply_and_look
    chain.commit(ledger, [chain.tx("ev01", 2, key="a", value=2)])
    assert seen == [before]
    assert ledger.applied == (2, ledger.head_hash, ledger.state.root)
    assert ledger.root_after(1) == before[2] and ledger.root_after(2) == ledger.state.root


def test_a_lagging_node_replaying_certified_batches_reaches_the_same_chain(chain, tmp_path):
    """Two nodes, the same committed batches: identical block hashes and state roots."""
    ahead = ChannelLedger.open(ledger_path(tmp_path / "a", "transaction"), "transaction", chain.genesis)
    behind = ChannelLedger.open(ledger_path(tmp_path / "b", "transaction"), "transaction", chain.genesis)
    for nonce in range(1, 5):
        chain.commit(ahead, [chain.tx("ev01", nonce, key=f"k{nonce % 2}", value=nonce), chain.tx("ev02", 1)])
    for height in range(1, ahead.height + 1):
        batch, view, certificate = ahead.certified_batch(height)
        assert certificate.check({n.name: n.public_key for n in chain.genesis.nodes}, chain.genesis.consensus.f) is None
        behind.commit_batch(batch, view, certificate, kv_executor)
    assert (behind.height, behind.head_hash, behind.state.root) == (ahead.height, ahead.head_hash, ahead.state.root)
    with pytest.raises(LedgerError, match="genesis block"):
        ahead.certified_batch(0)
    ahead.close()
    behind.close()


CREATORS = ("ev01", "ev02", "ev03", "nobody")


def _recorded_nonces(ledger: ChannelLedger) -> dict:
    """Each creator's last nonce as the world state records it (the ledger's answers must match)."""
    return {creator: read_nonce(ledger.state.get(NONCE_NAMESPACE, creator)) for creator in CREATORS}


def _replay_refused(chain, ledger: ChannelLedger, creator: str, nonce: int) -> bool:
    try:
        validate_transaction(chain.tx(creator, nonce, key="again"), chain.genesis, timestamp_to_datetime(T0_MS),
                             ledger.last_nonce, channel=ledger.channel)
    except TransactionRefused as refusal:
        return refusal.code == "replayed_nonce"
    return False


def test_last_nonce_answers_as_the_state_records_after_every_block_and_reopening(chain, open_ledger):
    ledger = open_ledger()
    blocks = [
        [chain.tx("ev01", 1), chain.tx("ev02", 5)],
        [chain.tx("ev01", 1, key="replayed"), chain.tx("ev01", 3), chain.tx("ev01", 2)],  # 1 and 2 refused
        [],
        [chain.tx("ev03", 7), chain.tx("ev02", 6)],
    ]
    for requests in blocks:
        chain.commit(ledger, requests)
        assert {creator: ledger.last_nonce(creator) for creator in CREATORS} == _recorded_nonces(ledger)
    assert _recorded_nonces(ledger) == {"ev01": 3, "ev02": 6, "ev03": 7, "nobody": None}
    ledger.close()
    reopened = open_ledger()
    assert {creator: reopened.last_nonce(creator) for creator in CREATORS} == _recorded_nonces(reopened)
    assert _replay_refused(chain, reopened, "ev01", 3) and not _replay_refused(chain, reopened, "ev01", 4)


def test_a_replay_is_refused_after_state_transfer(chain, tmp_path):
    """A node that caught up by re-executing certified batches refuses the same replays."""
    ahead = ChannelLedger.open(ledger_path(tmp_path / "a", "transaction"), "transaction", chain.genesis)
    behind = ChannelLedger.open(ledger_path(tmp_path / "b", "transaction"), "transaction", chain.genesis)
    for nonce in range(1, 4):
        chain.commit(ahead, [chain.tx("ev01", nonce, key="k", value=nonce)])
    for height in range(1, ahead.height + 1):
        behind.commit_batch(*ahead.certified_batch(height), kv_executor)
    assert behind.last_nonce("ev01") == 3 == ahead.last_nonce("ev01")
    assert _replay_refused(chain, behind, "ev01", 3) and not _replay_refused(chain, behind, "ev01", 4)
    ahead.close()
    behind.close()


def test_block_whose_writes_cannot_be_applied_is_not_stored(chain, open_ledger):
    ledger = open_ledger()

    def float_writer(block, admitted):
        return [TxResult("ok") for _ in admitted], {("kv", "x"): b"\xcb" + bytes(8)}  # a msgpack float

    with pytest.raises(LedgerError, match="not canonical"):
        chain.commit(ledger, [chain.tx("ev01", 1)], execute=float_writer)
    assert ledger.height == 0 and ledger.state.applied_height == 0


def test_a_batch_committed_in_different_views_on_two_nodes_gives_the_same_block(chain, tmp_path):
    """PBFT may commit a batch in view v at some replicas and, re-proposed by the NEW-VIEW,
    in v+1 at others: their blocks (hashes, state roots) must still be identical, and each
    node's chain must verify with its own certificate."""
    from p2pchain.ledger.verify import verify_channel
    first = ChannelLedger.open(ledger_path(tmp_path / "a", "transaction"), "transaction", chain.genesis)
    second = ChannelLedger.open(ledger_path(tmp_path / "b", "transaction"), "transaction", chain.genesis)
    for nonce in range(1, 4):
        requests = [chain.tx("ev01", nonce, key="k", value=nonce)]
        a = chain.commit(first, requests, view=nonce)
        b = chain.commit(second, requests, view=nonce + 1)
        assert (a.hash, a.header.state_root) == (b.hash, b.header.state_root)
    assert (first.head_hash, first.state.root) == (second.head_hash, second.state.root)
    assert first.block(2).certificate.view != second.block(2).certificate.view
    first.close()
    second.close()
    for directory in ("a", "b"):
        report = verify_channel(ledger_path(tmp_path / directory, "transaction"), "transaction", chain.genesis)
        assert report.verified_height == 3
        assert report.ok, report.describe()
