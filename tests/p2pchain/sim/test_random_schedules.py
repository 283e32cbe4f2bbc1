"""Hypothesis-generated fault schedules: safety, validity and liveness on every one.

Each example is a schedule seed plus the set of fault kinds it may draw from; the schedule
itself is :func:`random_schedule` of that seed, so a failure message names the seed and
``p2pchain simulate --seed SEED --schedules 1`` replays it exactly. ``derandomize=True``
makes the examples the same on every run (CI is reproducible).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pchain.consensus import FaultKind
from p2pchain.sim.faults import FAULT_KINDS, random_schedule
from p2pchain.sim.runner import run_schedule

kinds = st.sets(st.sampled_from(FAULT_KINDS), min_size=1).map(lambda s: tuple(sorted(s)))
SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def judge(seed: int, fault_kinds: tuple[str, ...], nodes: int = 4) -> None:
    schedule = random_schedule(seed, nodes=nodes, kinds=fault_kinds)
    result = run_schedule(schedule)
    honest = {h.name for h in result.sim.hosts.values() if h.behaviour is None} - schedule.budget_nodes()
    malformed = [f for _, f in result.sim.faults_seen if f.kind is FaultKind.MALFORMED and f.peer in honest]
    assert not malformed, f"seed {seed}: honest replicas sent malformed messages (a bug): {malformed[:3]}"
    assert result.ok, (f"schedule seed {seed} kinds {','.join(fault_kinds)} [{schedule.describe()}]: "
                       f"{result.verdict} (replay: p2pchain simulate --seed {seed} --schedules 1 "
                       f"--faults {','.join(fault_kinds)})")


@settings(max_examples=400, **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1), fault_kinds=kinds)
def test_no_two_honest_replicas_commit_different_batches_and_every_request_is_served(seed, fault_kinds):
    judge(seed, fault_kinds)


@settings(max_examples=100, **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1))
def test_every_fault_kind_at_once_is_survived(seed):
    judge(seed, FAULT_KINDS)


@settings(max_examples=25, **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1))
def test_seven_replicas_survive_random_schedules_with_two_faulty(seed):
    judge(seed, FAULT_KINDS, nodes=7)


@pytest.mark.slow
@settings(max_examples=1000, **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1), fault_kinds=kinds)
def test_many_more_random_schedules(seed, fault_kinds):
    judge(seed, fault_kinds)


@settings(max_examples=15, **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_replica_waits_on_exactly_the_requests_its_clients_have_not_committed(seed):
    # After every event a replica handles, through crashes, view changes and state
    # transfer: its pending requests, indexed by client too (a delivery looks only at the
    # clients it moved), are the same requests, and none of them is at or below its
    # client's committed nonce (a committed or superseded request is never waited on).
    from p2pchain.consensus import Replica
    original, checked = Replica.handle, [0]

    def handle(self, event):
        actions = original(self, event)
        by_client = {r: (c, n) for c, waiting in self.pending_of.items() for r, n in waiting.items()}
        assert by_client == self.pending and all(self.pending_of.values()), (seed, self.name)
        assert all(n > self.clients.get(c, 0) for c, n in self.pending.values()), (seed, self.name)
        checked[0] += bool(self.pending)
        return actions

    Replica.handle = handle
    try:
        judge(seed, FAULT_KINDS)
    finally:
        Replica.handle = original
    assert checked[0] > 0


@pytest.mark.parametrize("seed", [97001874])
def test_schedules_that_once_failed_are_survived(seed):
    # 97001874: node3 silent, node1 and node2 crashed and cut off early on; node2 came back
    # missing committed batches, the checkpoint waited for its vote and the primary, its
    # window full, for the checkpoint -- until f+1 checkpoints made a replica fetch.
    judge(seed, FAULT_KINDS)
