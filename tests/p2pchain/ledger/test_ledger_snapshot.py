"""Snapshots for state transfer: export, import, verify; refusal of anything altered."""

from __future__ import annotations

import sqlite3

import pytest

from p2pchain.encoding import decode, digest_bytes, encode
from p2pchain.ledger.snapshot import SnapshotError, SnapshotManifest, export_snapshot, import_snapshot
from p2pchain.ledger.state import WorldState
from p2pchain.ledger.store import ledger_path


def empty_state() -> WorldState:
    return WorldState(sqlite3.connect(":memory:", isolation_level=None))


@pytest.fixture
def source(chain, open_ledger, node_dir):
    ledger = open_ledger()
    for nonce in range(1, 6):
        chain.commit(ledger, [chain.tx("ev01", nonce, key=f"k{nonce}", value=nonce),
                              chain.tx("ev02", nonce, key=f"k{nonce + 10}", value=nonce)])
    return ledger


def test_snapshot_round_trip_reproduces_the_state_and_its_root(source, node_dir):
    with export_snapshot(ledger_path(node_dir, "transaction"), "transaction", 5, chunk_entries=3) as export:
        chunks = list(export.chunks())
        manifest = export.manifest
    assert len(chunks) == len(manifest.chunk_digests) == 4  # 10 kv entries and 2 nonces, 3 a chunk
    target = empty_state()
    root = import_snapshot(target, SnapshotManifest.from_value(decode(encode(manifest.to_value()))), chunks,
                           expected_digest=manifest.digest, expected_root=source.state.root)
    assert root == source.state.root == target.root and target.applied_height == 5
    assert list(target.scan("kv")) == list(source.state.scan("kv"))
    assert target.get("$nonce", "ev02") == source.state.get("$nonce", "ev02")


def test_export_is_a_consistent_view_while_blocks_are_committed(chain, source, node_dir):
    export = export_snapshot(ledger_path(node_dir, "transaction"), "transaction", 5, chunk_entries=4)
    root = source.state.root
    chain.commit(source, [chain.tx("ev01", 6, key="later")])
    target = empty_state()
    assert import_snapshot(target, export.manifest, export.chunks()) == root
    assert target.get("kv", "later") is None
    export.close()


def test_export_at_an_older_height_gives_the_state_of_then(source, node_dir):
    path = ledger_path(node_dir, "transaction")
    with export_snapshot(path, "transaction", 3, chunk_entries=2) as export:
        manifest, chunks = export.manifest, list(export.chunks())
    assert manifest.state_root == source.block(4).block.header.state_root
    target = empty_state()
    import_snapshot(target, manifest, chunks, expected_root=manifest.state_root)
    assert sorted(k for k, _ in target.scan("kv")) == sorted(k for k, _ in source.state.as_of(3).scan("kv"))
    assert len(list(target.scan("kv"))) == 6 and target.applied_height == 3


def test_export_beyond_the_applied_height_is_refused(source, node_dir):
    with pytest.raises(SnapshotError, match="at height 5; no snapshot at 6"):
        export_snapshot(ledger_path(node_dir, "transaction"), "transaction", 6)


@pytest.mark.parametrize("attack", ["altered_chunk", "missing_chunk", "forged_manifest", "unexpected_root"])
def test_altered_snapshot_is_refused_and_leaves_the_state_empty(source, node_dir, attack):
    with export_snapshot(ledger_path(node_dir, "transaction"), "transaction", 5, chunk_entries=3) as export:
        chunks, manifest = list(export.chunks()), export.manifest
    expected = {"expected_root": source.state.root}
    if attack == "altered_chunk":
        rows = decode(chunks[1])
        rows[0][2] = encode(12345)
        chunks[1] = encode(rows)
    elif attack == "missing_chunk":
        chunks.pop()
    elif attack == "forged_manifest":
        # A consistent forgery: the chunk digests match, the root is the forger's.
        rows = decode(chunks[1])
        rows[0][2] = encode(12345)
        chunks[1] = encode(rows)
        manifest = SnapshotManifest(manifest.channel, manifest.height, manifest.state_root,
                                    tuple(digest_bytes(c) for c in chunks))
        expected = {}
    else:
        expected = {"expected_root": bytes(32)}
    target = empty_state()
    with pytest.raises(SnapshotError):
        import_snapshot(target, manifest, chunks, **expected)
    assert target.applied_height == -1 and list(target.scan("kv")) == [] and target.root == bytes(32)
