"""The issue's "must survive" list, one named regression test each, in the simulator.

Every test checks the run with the full checker (safety, validity, liveness) and then the
scenario's own point (a view change happened, a state transfer happened, ...).
"""

from __future__ import annotations

import io
import json
from collections import Counter

from p2pchain.consensus import FaultKind
from p2pchain.sim.checker import check_run
from p2pchain.sim.faults import Schedule
from p2pchain.sim.network import NetworkConditions
from p2pchain.sim.runner import build_simulation, finish, run_schedule
from p2pchain.sim.trace import TraceWriter

HONEST4 = ("node0", "node1", "node2", "node3")


def traced(schedule, prepare=None):
    """Run ``schedule`` with a trace; ``prepare(sim)`` may drive the run before it finishes."""
    buffer = io.StringIO()
    sim = build_simulation(schedule, TraceWriter(buffer))
    if prepare is not None:
        prepare(sim)
    result = finish(sim, schedule)
    assert result.ok, f"seed {schedule.seed} [{schedule.describe()}]: {result.verdict}"
    malformed = [f for _, f in result.sim.faults_seen if f.kind is FaultKind.MALFORMED]
    assert not malformed, malformed[:3]  # only a bug makes well-typed replicas send these
    return result, [json.loads(line) for line in buffer.getvalue().splitlines()]


def events(lines, ev, **match):
    return [l for l in lines if l["ev"] == ev and all(l.get(k) == v for k, v in match.items())]


def faults_against(result, peer, kind):
    return [f for pid, f in result.sim.faults_seen if f.peer == peer and f.kind == kind]


def test_primary_crash_before_pre_prepare():
    schedule = Schedule(seed=11, crashes=(("node0", 1, 5000),), heal_ms=5000)
    result, lines = traced(schedule)
    assert events(lines, "new-view", node="node1", view=1)
    assert not events(lines, "pre-prepared", view=0)


def test_primary_crash_after_pre_prepare():
    schedule = Schedule(seed=12, heal_ms=0)

    def crash_after_first_pre_prepare(sim):
        sim.run(10_000, stop=lambda: sim.hosts["node0"].replica.next_seq > 1)
        sim.crash("node0")
    result, lines = traced(schedule, crash_after_first_pre_prepare)
    assert events(lines, "pre-prepared", node="node0", view=0, seq=1)
    assert events(lines, "new-view", view=1)


def test_equivocating_primary():
    schedule = Schedule(seed=13, byzantine=(("node0", "equivocate"),))
    result, lines = traced(schedule)
    digests = {l["digest"] for l in events(lines, "pre-prepared", view=0, seq=1) if l["node"] != "node0"}
    assert len(digests) == 2  # honest backups were told two different things
    assert events(lines, "new-view", view=1)


def test_replica_double_voting_prepare_and_commit():
    schedule = Schedule(seed=14, byzantine=(("node2", "double-vote"),))
    result, _ = traced(schedule)
    assert faults_against(result, "node2", FaultKind.CONFLICT)


def test_restart_with_state_lost_amnesia():
    schedule = Schedule(seed=15, requests_per_client=8, amnesia=(("node3", 150, 400),), heal_ms=400)
    result, lines = traced(schedule)
    restarted = result.sim.hosts["node3"].app
    reference = result.sim.hosts["node1"].app
    assert restarted.seq > 0
    assert restarted.history == reference.history[: restarted.seq]


def test_partition_where_only_the_primary_reaches_the_others_then_heals():
    schedule = Schedule(seed=16, heal_ms=900)

    def isolate_backups(sim):
        backups = ("node1", "node2", "node3")
        sim.blocked = {frozenset((a, b)) for a in backups for b in backups if a < b}
        sim.at(900, sim.heal)
    result, _ = traced(schedule, isolate_backups)
    assert result.sim.all_clients_done()


def test_view_change_before_any_stable_checkpoint():
    schedule = Schedule(seed=17, crashes=(("node0", 30, 3000),), heal_ms=3000)
    result, lines = traced(schedule)
    changes = events(lines, "view-change", view=1)
    assert changes and all(l["stable_seq"] == 0 for l in changes)
    assert events(lines, "new-view", view=1, min_seq=0)


def test_view_change_while_a_checkpoint_becomes_stable():
    schedule = Schedule(seed=18, requests_per_client=8)
    interval = 4

    def crash_as_first_checkpoint_is_taken(sim):
        sim.run(20_000, stop=lambda: any(h.replica.last_executed >= interval for h in sim.hosts.values()))
        sim.crash("node0")
    result, lines = traced(schedule, crash_as_first_checkpoint_is_taken)
    new_views = events(lines, "new-view", view=1)
    assert new_views
    assert {l["min_seq"] for l in new_views} <= {0, interval}
    assert events(lines, "checkpoint-stable", seq=interval)


def test_cascading_view_changes_v_to_v_plus_2_without_storm_or_loop():
    schedule = Schedule(seed=19, byzantine=(("node1", "silent"),), crashes=(("node0", 1, 700),), heal_ms=700)
    result, lines = traced(schedule)
    final_views = {pid: h.replica.view for pid, h in result.sim.hosts.items() if pid != "node1"}
    assert set(final_views.values()) == {2}
    for node in ("node0", "node2", "node3"):
        views = [l["view"] for l in events(lines, "view-change", node=node)]
        assert views == sorted(set(views)) and max(views) <= 2  # monotone, each view once
    assert events(lines, "new-view", node="node2", view=2)


def test_n4_new_primary_sends_one_new_view_although_f_plus_1_equals_2f():
    schedule = Schedule(seed=20, crashes=(("node0", 1, 4000),), heal_ms=4000)
    result, lines = traced(schedule)
    entered = Counter((l["node"], l["view"]) for l in events(lines, "new-view"))
    assert entered and max(entered.values()) == 1
    assert {l["primary"] for l in events(lines, "new-view", view=1)} == {"node1"}


def test_replica_beyond_the_high_watermark_catches_up_by_state_transfer():
    schedule = Schedule(seed=21, clients=4, requests_per_client=14)

    def cut_off_node3_until_others_are_far_ahead(sim):
        sim.partition([["node0", "node1", "node2"], ["node3"]])
        window = sim.config.watermark_window
        sim.run(60_000, stop=lambda: sim.hosts["node0"].replica.low > window)
        assert sim.hosts["node3"].replica.last_committed == 0
        sim.heal()
    result, lines = traced(schedule, cut_off_node3_until_others_are_far_ahead)
    assert events(lines, "state-transferred", node="node3")
    node3, node0 = result.sim.hosts["node3"].app, result.sim.hosts["node0"].app
    assert node3.seq > schedule.clients  # caught up, and ...
    assert node3.history == node0.history[: node3.seq]  # ... on the same chain


def test_replayed_client_requests_execute_once():
    schedule = Schedule(seed=22, byzantine=(("node0", "replay"),), replay_requests=True, heal_ms=1500)
    result, _ = traced(schedule)
    assert faults_against(result, "node0", FaultKind.REQUEST_ORDER)


def test_duplicated_reordered_delayed_and_dropped_messages():
    conditions = NetworkConditions(drop=0.2, duplicate=0.3, slow_delay_ms=300)
    for seed in (23, 24, 25):
        traced(Schedule(seed=seed, conditions=conditions, heal_ms=1500, requests_per_client=6))


def test_twins_on_two_sides_of_the_network_do_not_break_safety():
    for seed in (26, 27):
        result, _ = traced(Schedule(seed=seed, twins=("node0",), heal_ms=800))
        assert "node0'" in result.sim.hosts


def test_forged_signatures_are_refused():
    result, _ = traced(Schedule(seed=28, byzantine=(("node2", "forge"),)))
    assert any(f.kind is FaultKind.BAD_SIGNATURE for _, f in result.sim.faults_seen)


def test_silent_primary_is_replaced():
    result, lines = traced(Schedule(seed=29, byzantine=(("node0", "silent"),)))
    assert events(lines, "new-view", view=1)


def test_seven_replicas_tolerate_two_byzantine():
    schedule = Schedule(seed=30, nodes=7, byzantine=(("node0", "equivocate"), ("node3", "double-vote")))
    traced(schedule)


def test_checker_run_is_judged_by_the_honest_replicas_only():
    result = run_schedule(Schedule(seed=31, byzantine=(("node1", "silent"),)))
    assert result.ok
    assert result.sim.hosts["node1"].app.seq == 0
    assert check_run(result.sim, result.schedule, deadline_ms=result.end_ms).ok


def test_state_held_by_a_replica_stays_bounded_by_the_watermark_window():
    result = run_schedule(Schedule(seed=32, clients=4, requests_per_client=40))
    assert result.ok
    window = result.sim.config.watermark_window
    for host in result.sim.hosts.values():
        replica = host.replica
        assert replica.low >= host.app.seq - window
        for held in (replica.slots, replica.committed, replica.prepared, replica.own_states,
                     replica.client_snapshots):
            assert all(seq > replica.low for seq in held) and len(held) <= window
        assert len(replica.request_info) <= len(result.sim.clients) * 2
