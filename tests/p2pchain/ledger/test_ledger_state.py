"""World state and its root: the sparse Merkle tree against a naive full-state hash."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings, strategies as st

from p2pchain.encoding import digest, encode
from p2pchain.ledger.merkle import merkle_root
from p2pchain.ledger.smt import EMPTY, key_path, leaf_hash, root_of_sorted_leaves, verify_proof
from p2pchain.ledger.state import StateError, WorldState


def fresh_state(cache_nodes: int = 65_536) -> WorldState:
    return WorldState(sqlite3.connect(":memory:", isolation_level=None), cache_nodes=cache_nodes)


def naive_hash(model: dict) -> bytes:
    """The test oracle: the hash of every entry, sorted — O(state) per call."""
    return digest(sorted([ns, key, value] for (ns, key), value in model.items()))


def apply(model: dict, writes: dict) -> None:
    for entry, value in writes.items():
        if value is None:
            model.pop(entry, None)
        else:
            model[entry] = value


# Few namespaces, keys and values, so that different sequences often reach equal states.
keys = st.tuples(st.sampled_from(["kv", "market", "$nonce"]), st.sampled_from(["", "a", "b", "ab", "é", "k1", "k2"]))
values = st.one_of(st.none(), st.integers(0, 2).map(encode))
blocks = st.lists(st.dictionaries(keys, values, max_size=6), max_size=8)


@settings(max_examples=60, deadline=None)
@given(blocks, blocks)
def test_state_roots_are_equal_exactly_when_states_are_equal(first, second):
    a, b = fresh_state(cache_nodes=8), fresh_state()
    model_a, model_b = {}, {}
    for height in range(max(len(first), len(second))):
        writes_a = first[height] if height < len(first) else {}
        writes_b = second[height] if height < len(second) else {}
        root_a, root_b = a.apply_block(height, writes_a), b.apply_block(height, writes_b)
        apply(model_a, writes_a)
        apply(model_b, writes_b)
        assert (root_a == root_b) == (naive_hash(model_a) == naive_hash(model_b))
        assert (root_a == EMPTY) == (not model_a)


@settings(max_examples=40, deadline=None)
@given(blocks)
def test_tree_is_the_canonical_one_for_its_entries(sequence):
    """Incremental updates leave exactly the nodes a from-scratch build of the state has."""
    incremental, model = fresh_state(cache_nodes=4), {}
    for height, writes in enumerate(sequence):
        incremental.apply_block(height, writes)
        apply(model, writes)
    rebuilt = fresh_state()
    rebuilt.apply_block(0, model)
    dump = "SELECT pos, hash, leaf FROM smt ORDER BY pos"
    assert incremental._conn.execute(dump).fetchall() == rebuilt._conn.execute(dump).fetchall()
    streamed = root_of_sorted_leaves(sorted((key_path(*k), leaf_hash(key_path(*k), v)) for k, v in model.items()))
    assert incremental.root == rebuilt.root == streamed == incremental.stored_root()


@settings(max_examples=40, deadline=None)
@given(blocks, st.sampled_from(["kv", "market"]), st.sampled_from(["", "a", "b"]), st.sampled_from([None, "b", "k"]),
       st.one_of(st.none(), st.integers(1, 3)))
def test_range_scans_are_ordered_and_bounded(sequence, namespace, start, end, limit):
    state, model = fresh_state(), {}
    for height, writes in enumerate(sequence):
        state.apply_block(height, writes)
        apply(model, writes)
    expected = sorted((key, value) for (ns, key), value in model.items()
                      if ns == namespace and key >= start and (end is None or key < end))
    assert list(state.scan(namespace, start, end, limit)) == expected[:limit]


@settings(max_examples=40, deadline=None)
@given(blocks, st.sampled_from(["kv", "market"]), st.sampled_from(["", "a", "b"]), st.one_of(st.none(), st.integers(1, 3)))
def test_state_as_of_any_applied_height_is_the_state_after_that_block(sequence, namespace, start, limit):
    state, model, past = fresh_state(), {}, []
    for height, writes in enumerate(sequence):
        state.apply_block(height, writes)
        apply(model, writes)
        past.append(dict(model))
    for height, then in enumerate(past):
        view = state.as_of(height)
        expected = sorted((key, value) for (ns, key), value in then.items() if ns == namespace and key >= start)
        assert list(view.scan(namespace, start, limit=limit)) == expected[:limit]
        assert all(view.get(*entry) == value for entry, value in then.items())
        assert list(map(list, view.entries())) == sorted([ns, key, value] for (ns, key), value in then.items())


def test_state_as_of_a_height_not_applied_is_refused():
    state = fresh_state()
    state.apply_block(0, {})
    with pytest.raises(StateError, match="no state as of height 1"):
        state.as_of(1)
    installed = fresh_state()
    installed.install(5, [[("kv", "a", encode(1))]], _root_of({("kv", "a"): encode(1)}))
    assert installed.as_of(5).get("kv", "a") == encode(1)
    with pytest.raises(StateError, match="history covers 5 to 5"):
        installed.as_of(4)


def _root_of(model: dict) -> bytes:
    return root_of_sorted_leaves(sorted((key_path(*k), leaf_hash(key_path(*k), v)) for k, v in model.items()))


def test_scan_pages_through_more_rows_than_one_query_fetches():
    state = fresh_state()
    writes = {("kv", f"{i:05d}"): encode(i) for i in range(1000)}
    state.apply_block(0, writes)
    scanned = list(state.scan("kv"))
    assert [key for key, _ in scanned] == sorted(key for _, key in writes)
    assert len(list(state.scan("kv", "00100", limit=300))) == 300


def test_keys_scan_in_code_point_order():
    state = fresh_state()
    state.apply_block(0, {("kv", k): encode(1) for k in ["b", "a", "é", "Z", "aa", "~", "\U0001f600"]})
    assert [k for k, _ in state.scan("kv")] == sorted(["b", "a", "é", "Z", "aa", "~", "\U0001f600"])


def test_get_put_delete():
    state = fresh_state()
    state.apply_block(0, {("kv", "a"): encode("x")})
    assert state.get("kv", "a") == encode("x") and state.get("other", "a") is None
    state.apply_block(1, {("kv", "a"): None})
    assert state.get("kv", "a") is None and state.root == EMPTY and state.applied_height == 1


def test_bytes_and_none_are_stored_as_blobs_and_nulls():
    """What the node's sqlite3 adapters for bytes and None must keep: the column types."""
    state = fresh_state()
    state.apply_block(0, {("kv", "a"): encode(1), ("kv", "b"): encode(2)})
    conn = state._conn
    assert conn.execute("SELECT DISTINCT typeof(path), typeof(value) FROM state").fetchall() == [("blob", "blob")]
    assert sorted(conn.execute("SELECT DISTINCT typeof(hash), typeof(leaf) FROM smt").fetchall()) == [
        ("blob", "blob"), ("blob", "null")]  # the leaves and the root above them
    state.apply_block(1, {("kv", "a"): None})
    assert conn.execute("SELECT typeof(value) FROM history WHERE height = 1").fetchall() == [("null",)]


@settings(max_examples=30, deadline=None)
@given(blocks, keys)
def test_merkle_proofs_prove_presence_and_absence(sequence, probe):
    state, model = fresh_state(), {}
    for height, writes in enumerate(sequence):
        state.apply_block(height, writes)
        apply(model, writes)
    proof = state.prove(*probe)
    path = key_path(*probe)
    assert verify_proof(state.root, path, model.get(probe), proof)
    assert not verify_proof(state.root, path, encode("forged"), proof)
    if probe in model:
        assert not verify_proof(state.root, path, None, proof)


def test_write_out_of_order_is_refused():
    state = fresh_state()
    state.apply_block(0, {})
    with pytest.raises(StateError, match="out of order"):
        state.apply_block(2, {})


def test_non_canonical_value_is_refused_and_nothing_is_written():
    state = fresh_state()
    state.apply_block(0, {("kv", "a"): encode(1)})
    root = state.root
    with pytest.raises(StateError, match="not canonical"):
        state.apply_block(1, {("kv", "b"): encode(2), ("kv", "c"): b"\xcb" + bytes(8)})  # a msgpack float
    assert state.root == root and state.get("kv", "b") is None and state.applied_height == 0


def test_tx_root_separates_leaves_from_nodes():
    a, b = b"a" * 32, b"b" * 32
    assert merkle_root([a, b]) != merkle_root([a, b, b]) != merkle_root([b, a])


def test_a_full_disk_fails_a_block_with_its_own_reason_and_changes_nothing():
    # SQLite rolls a transaction back by itself when the disk is full; the ROLLBACK after it
    # must not replace "database or disk is full" by "no transaction is active".
    state = fresh_state()
    state.apply_block(0, {("kv", "a"): encode(1)})
    root = state.root
    pages = state._conn.execute("PRAGMA page_count").fetchone()[0]
    state._conn.execute(f"PRAGMA max_page_count={pages + 1}")  # the disk as good as full
    big = {("kv", f"k{i}"): encode("x" * 2000) for i in range(20)}
    with pytest.raises(sqlite3.OperationalError, match="full"):
        state.apply_block(1, big)
    assert (state.applied_height, state.root, state.get("kv", "k0")) == (0, root, None)
    state._conn.execute("PRAGMA max_page_count=1073741823")  # room again: the same block goes in
    assert state.apply_block(1, big) == fresh_root({("kv", "a"): encode(1), **big})


def fresh_root(entries: dict) -> bytes:
    state = fresh_state()
    state.apply_block(0, entries)
    return state.root
