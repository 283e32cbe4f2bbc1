"""The replica's durable state written as snapshot + journal reads back exactly as persisted."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from p2pchain.consensus import MalformedMessage
from p2pchain.consensus.journal import DurableJournal, replay
from p2pchain.sim.faults import Schedule
from p2pchain.sim.network import NetworkConditions
from p2pchain.sim.runner import build_simulation, finish
from nodes import durablestore
from nodes.durablestore import ChannelPersister, DurableReplicaStore


def _persisted_states(seed: int, limit: int) -> dict[str, list]:
    """Every durable state each replica asked to persist in a faulty simulated run
    (a crash and restart, dropped messages, hence view changes and state transfer)."""
    schedule = Schedule(seed=seed, crashes=(("node0", 40, 900),), heal_ms=900,
                        conditions=NetworkConditions(drop=0.1))
    sim = build_simulation(schedule)
    states: dict[str, list] = {}
    original = sim._perform

    def perform(host, action):
        if type(action).__name__ == "Persist":
            seen = states.setdefault(host.replica.name, [])
            if len(seen) < limit:
                seen.append(host.replica.durable_state())
        return original(host, action)

    sim._perform = perform
    assert finish(sim, schedule).ok
    return states


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 1000), every=st.integers(3, 40))
def test_snapshot_plus_deltas_replays_to_every_persisted_state(seed, every):
    for name, states in _persisted_states(seed, 300).items():
        journal = DurableJournal()
        snapshot, deltas = b"", []
        for i, state in enumerate(states):
            if i % every == 0:  # snapshots at arbitrary points, as the size rule may take them
                snapshot, deltas = journal.snapshot(state), []
            else:
                deltas.append(journal.delta(state))
            assert replay(snapshot, deltas) == state, (name, i)


def test_deltas_carry_what_arrived_not_what_is_held():
    states = _persisted_states(5, 400)["node1"]
    journal = DurableJournal()
    full = [len(journal.snapshot(s)) for s in states]
    journal = DurableJournal(states[0])
    deltas = [len(journal.delta(s)) for s in states[1:]]
    assert sum(deltas) < sum(full[1:]) / 3


def test_a_delta_needs_a_snapshot_first():
    states = _persisted_states(1, 2)["node1"]
    with pytest.raises(ValueError, match="snapshot first"):
        DurableJournal().delta(states[0])


def test_a_corrupt_journal_row_is_refused_with_a_reason():
    states = _persisted_states(2, 3)["node1"]
    journal = DurableJournal()
    snapshot = journal.snapshot(states[0])
    with pytest.raises(MalformedMessage, match="journal|durable|encoding|canonical"):
        replay(snapshot, [journal.delta(states[1])[:-3]])


def test_store_reopens_at_the_last_state_written_and_continues_its_journal(tmp_path, monkeypatch):
    monkeypatch.setattr(durablestore, "SNAPSHOT_SLACK_BYTES", 2000)  # snapshot often
    states = _persisted_states(7, 200)["node2"]
    path = tmp_path / "node.sqlite"
    store = DurableReplicaStore(path)
    persister = ChannelPersister(store, "transaction", store.load("transaction"))
    half = len(states) // 2
    for state in states[:half]:
        write, _ = persister.prepare(state)
        write()
    store.close()
    store = DurableReplicaStore(path)  # a restart: read back, then go on appending
    assert store.load("transaction") == states[half - 1]
    assert store.load("matching") is None
    persister = ChannelPersister(store, "transaction", store.load("transaction"))
    snapshots = 0
    for state in states[half:]:
        write, _ = persister.prepare(state)
        write()
        snapshots += not store.load_parts("transaction")[1]
        assert store.load("transaction") == state
    assert snapshots >= 1  # the size rule took at least one snapshot, and reading went on
    store.close()
