"""``verify``: a clean node passes; every kind of tampering is found and named (issue 3)."""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from p2pchain.encoding import decode, encode
from p2pchain.ledger.block import Anchor, Anchors, BlockError, check_metadata
from p2pchain.ledger.commands import add_commands
from p2pchain.ledger.store import ChannelLedger, ledger_path
from p2pchain.ledger.verify import verify_channel, verify_node

TAMPERED = 2  # the block the byte flips go to; blocks 3 and 4 follow it


@pytest.fixture(scope="module")
def pristine(chain, tmp_path_factory) -> Path:
    """A node with 4 blocks on each channel; transaction blocks anchor the side-chain heads."""
    node_dir = tmp_path_factory.mktemp("pristine") / "node0"
    ledgers = {c: ChannelLedger.open(ledger_path(node_dir, c), c, chain.genesis) for c in chain.genesis.channels}
    nonce = 0
    for height in range(1, 5):
        for side in ("matching", "electricity"):
            nonce += 1
            chain.commit(ledgers[side], [chain.tx("pv1", nonce, channel=side, key=f"{side}{height}")])
        anchors = Anchors.for_block("transaction", {"matching": ledgers["matching"].anchor(),
                                                    "electricity": ledgers["electricity"].anchor()})
        requests = [chain.tx("ev01", height, key="a", value=height), chain.tx("ev02", height, key=f"b{height}")]
        if height == 3:
            requests.append(chain.tx("ev03", 1, signer="ev04"))  # a forged one, refused in the block
        chain.commit(ledgers["transaction"], requests, metadata=anchors.to_metadata())
    for ledger in ledgers.values():
        ledger.close()
    return node_dir


@pytest.fixture
def node(pristine, tmp_path) -> Path:
    copy = tmp_path / "node0"
    shutil.copytree(pristine, copy)
    return copy


def sql(node_dir: Path, channel: str, statement: str, *params):
    conn = sqlite3.connect(ledger_path(node_dir, channel))
    try:
        rows = conn.execute(statement, params).fetchall()
        conn.commit()
        return rows
    finally:
        conn.close()


def fault_of(node_dir: Path, chain, channel: str = "transaction"):
    report = verify_channel(ledger_path(node_dir, channel), channel, chain.genesis)
    assert not report.ok, "tampering went unnoticed"
    return report.fault


def test_untouched_node_verifies(chain, pristine):
    reports = verify_node(pristine, chain.genesis)
    assert [r.ok for r in reports] == [True, True, True], [r.describe() for r in reports]
    assert [r.verified_height for r in reports] == [4, 4, 4]
    assert reports[0].transactions == 9


def flip_bytes_and_verify(chain, node: Path, column: str, sample: int | None) -> None:
    original = sql(node, "transaction", f"SELECT {column} FROM blocks WHERE height = ?", TAMPERED)[0][0]
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    positions = range(len(original)) if sample is None else rng.sample(range(len(original)), sample)
    for position in positions:
        flipped = bytearray(original)
        flipped[position] ^= 1 << rng.randrange(8)
        sql(node, "transaction", f"UPDATE blocks SET {column} = ? WHERE height = ?", bytes(flipped), TAMPERED)
        fault = fault_of(node, chain)
        assert fault.height == TAMPERED, f"byte {position} (seed {seed}): {fault}"
    sql(node, "transaction", f"UPDATE blocks SET {column} = ? WHERE height = ?", original, TAMPERED)
    assert verify_channel(ledger_path(node, "transaction"), "transaction", chain.genesis).ok


@pytest.mark.parametrize("column", ["header", "body", "certificate"])
def test_flipping_a_byte_of_a_stored_block_is_found(chain, node, column):
    """40 random bytes of each part; the slow test below flips every byte."""
    flip_bytes_and_verify(chain, node, column, sample=40)


@pytest.mark.slow
@pytest.mark.parametrize("column", ["header", "body", "certificate"])
def test_flipping_any_byte_of_a_stored_block_is_found(chain, node, column):
    flip_bytes_and_verify(chain, node, column, sample=None)


def rewrite_body(node_dir: Path, height: int, change) -> None:
    body = decode(sql(node_dir, "transaction", "SELECT body FROM blocks WHERE height = ?", height)[0][0])
    change(body)
    sql(node_dir, "transaction", "UPDATE blocks SET body = ? WHERE height = ?", encode(body), height)


def test_altered_transaction_signature_is_found_and_named(chain, node):
    def forge(body):
        tx = decode(body["requests"][0])
        tx["signature"] = bytes(64)
        body["requests"][0] = encode(tx)

    rewrite_body(node, TAMPERED, forge)
    fault = fault_of(node, chain)
    assert fault.height == TAMPERED and "transaction 0: signature does not verify" in fault.message


def test_altered_result_is_found_by_the_next_block(chain, node):
    rewrite_body(node, TAMPERED, lambda body: body["outputs"]["results"][0].__setitem__(0, "failed"))
    report = verify_channel(ledger_path(node, "transaction"), "transaction", chain.genesis)
    assert report.fault.height == TAMPERED and "results or write set" in report.fault.message
    assert report.verified_height == TAMPERED - 1


def test_altered_commit_signature_is_found_and_named(chain, node):
    certificate = decode(sql(node, "matching", "SELECT certificate FROM blocks WHERE height = 3")[0][0])
    certificate["signatures"][1][1] = bytes(64)
    sql(node, "matching", "UPDATE blocks SET certificate = ? WHERE height = 3", encode(certificate))
    fault = fault_of(node, chain, "matching")
    assert fault.height == 3 and f"commit signature of {certificate['signatures'][1][0]} does not verify" in fault.message


def test_certificate_short_of_a_quorum_is_found(chain, node):
    certificate = decode(sql(node, "electricity", "SELECT certificate FROM blocks WHERE height = 1")[0][0])
    certificate["signatures"].pop()
    sql(node, "electricity", "UPDATE blocks SET certificate = ? WHERE height = 1", encode(certificate))
    fault = fault_of(node, chain, "electricity")
    assert fault.height == 1 and "needs 3" in fault.message


def test_altered_state_value_is_found_and_named(chain, node):
    sql(node, "transaction", "UPDATE state SET value = ? WHERE ns = 'kv' AND key = 'a'", encode(999))
    fault = fault_of(node, chain)
    assert fault.height == 4 and "state entry kv/a" in fault.message


def test_deleted_state_entry_is_found(chain, node):
    sql(node, "transaction", "DELETE FROM state WHERE ns = 'kv' AND key = 'b2'")
    assert "state entry kv/b2" in fault_of(node, chain).message


def test_altered_state_history_is_found(chain, node):
    sql(node, "transaction", "UPDATE history SET value = ? WHERE ns = 'kv' AND key = 'a' AND height = 2", encode(7))
    assert "state history of kv/a at height 2" in fault_of(node, chain).message


def test_altered_tree_node_is_found(chain, node):
    sql(node, "transaction", "UPDATE smt SET hash = ? WHERE pos = (SELECT MAX(pos) FROM smt)", bytes(32))
    assert "state tree node" in fault_of(node, chain).message


def test_removed_block_is_found(chain, node):
    sql(node, "matching", "DELETE FROM blocks WHERE height = 2")
    fault = fault_of(node, chain, "matching")
    assert fault.height == 2 and "missing" in fault.message


def test_anchor_to_a_hash_the_side_chain_does_not_hold_is_found(chain, pristine, tmp_path):
    node_dir = tmp_path / "node0"
    shutil.copytree(pristine, node_dir)
    with ChannelLedger.open(ledger_path(node_dir, "transaction"), "transaction", chain.genesis) as ledger:
        forged = Anchors.for_block("transaction", {"matching": Anchor(4, bytes(32)),
                                                   "electricity": ledger_anchor(node_dir, "electricity", chain)})
        chain.commit(ledger, [], metadata=forged.to_metadata())
    fault = verify_node(node_dir, chain.genesis)[0].fault
    assert fault.height == 5 and "anchor of matching at height 4 is not the stored block's hash" in fault.message


def test_anchor_going_back_is_found(chain, pristine, tmp_path):
    node_dir = tmp_path / "node0"
    shutil.copytree(pristine, node_dir)
    with ChannelLedger.open(ledger_path(node_dir, "transaction"), "transaction", chain.genesis) as ledger:
        earlier = Anchor(1, sql(node_dir, "matching", "SELECT hash FROM blocks WHERE height = 1")[0][0])
        anchors = Anchors.for_block("transaction", {"matching": earlier,
                                                    "electricity": ledger_anchor(node_dir, "electricity", chain)})
        chain.commit(ledger, [], metadata=anchors.to_metadata())
    fault = verify_node(node_dir, chain.genesis)[0].fault
    assert fault.height == 5 and "anchor of matching goes back to height 1" in fault.message


def test_side_chain_anchor_to_a_hash_the_transaction_channel_does_not_hold_is_found(chain, pristine, tmp_path):
    node_dir = tmp_path / "node0"
    shutil.copytree(pristine, node_dir)
    with ChannelLedger.open(ledger_path(node_dir, "matching"), "matching", chain.genesis) as ledger:
        forged = Anchors.for_block("matching", {"transaction": Anchor(3, bytes(32)),
                                                "electricity": ledger_anchor(node_dir, "electricity", chain)})
        chain.commit(ledger, [], metadata=forged.to_metadata())
    reports = {report.channel: report for report in verify_node(node_dir, chain.genesis)}
    fault = reports["matching"].fault
    assert fault.height == 5 and "anchor of transaction at height 3 is not the stored block's hash" in fault.message
    assert reports["transaction"].fault is None and reports["electricity"].fault is None


def test_side_chain_anchor_going_back_is_found(chain, pristine, tmp_path):
    node_dir = tmp_path / "node0"
    shutil.copytree(pristine, node_dir)
    with ChannelLedger.open(ledger_path(node_dir, "electricity"), "electricity", chain.genesis) as ledger:
        anchors = {"transaction": ledger_anchor(node_dir, "transaction", chain),
                   "matching": ledger_anchor(node_dir, "matching", chain)}
        chain.commit(ledger, [], metadata=Anchors.for_block("electricity", anchors).to_metadata())
        earlier = Anchor(1, sql(node_dir, "transaction", "SELECT hash FROM blocks WHERE height = 1")[0][0])
        chain.commit(ledger, [], metadata=Anchors.for_block("electricity", dict(anchors, transaction=earlier)).to_metadata())
    fault = verify_channel(ledger_path(node_dir, "electricity"), "electricity", chain.genesis,
                           {c: sqlite3.connect(ledger_path(node_dir, c)) for c in ("transaction", "matching")}).fault
    assert fault.height == 6 and "anchor of transaction goes back to height 1" in fault.message


def test_block_with_requests_and_no_anchors_is_found(chain, pristine, tmp_path):
    node_dir = tmp_path / "node0"
    shutil.copytree(pristine, node_dir)
    with ChannelLedger.open(ledger_path(node_dir, "matching"), "matching", chain.genesis) as ledger:
        chain.commit(ledger, [chain.tx("pv1", 9, channel="matching", key="x")], metadata=b"")
    fault = fault_of(node_dir, chain, "matching")
    assert fault.height == 5 and "must anchor the other channels" in fault.message


def test_null_batch_without_anchors_passes(chain, pristine, tmp_path):
    node_dir = tmp_path / "node0"
    shutil.copytree(pristine, node_dir)
    with ChannelLedger.open(ledger_path(node_dir, "transaction"), "transaction", chain.genesis) as ledger:
        chain.commit(ledger, [], metadata=b"")
    assert all(report.fault is None for report in verify_node(node_dir, chain.genesis))


def test_anchors_of_a_side_chain_block_must_name_the_other_two_channels():
    with pytest.raises(BlockError, match="anchors exactly"):
        Anchors.for_block("matching", {"matching": Anchor(0, bytes(32)), "electricity": Anchor(0, bytes(32))})
    transaction_style = Anchors.for_block("transaction", {"matching": Anchor(1, bytes(32)),
                                                          "electricity": Anchor(2, bytes(32))}).to_metadata()
    assert check_metadata("matching", transaction_style) is not None
    assert check_metadata("transaction", transaction_style) is None
    assert Anchors.from_metadata(transaction_style).heights() == {"matching": 1, "electricity": 2}


def ledger_anchor(node_dir: Path, channel: str, chain) -> Anchor:
    with ChannelLedger.open(ledger_path(node_dir, channel), channel, chain.genesis) as side:
        return side.anchor()


def test_verify_command_exit_status(chain, pristine, node, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    genesis_file = str(chain.directory / "genesis.json")

    def run(*argv) -> int:
        args = parser.parse_args(["verify", *argv])
        return args.func(args)

    assert run(str(pristine), "--genesis", genesis_file) == 0
    assert "verified to height 4" in capsys.readouterr().out
    sql(node, "matching", "UPDATE blocks SET header = ? WHERE height = 1", b"\x80")
    assert run(str(node), "--genesis", genesis_file) == 1
    out = capsys.readouterr().out
    assert "matching     FAULT at block 1" in out and "transaction  ok" in out
    assert run(str(tmp_path / "absent"), "--genesis", genesis_file) == 2


def test_anchors_beyond_the_local_side_chains_are_notes_not_faults(chain, pristine):
    """A node whose side chains lag (here: not given at all) still verifies; notes are capped."""
    report = verify_channel(ledger_path(pristine, "transaction"), "transaction", chain.genesis)
    assert report.ok and report.verified_height == 4
    assert any("anchors matching block 4, not stored here" in note for note in report.notes)
    assert len(report.notes) <= 11
