"""A run is a function of its seed; the checker catches what it claims to catch."""

from __future__ import annotations

import io
import json

from p2pchain.sim.app import Block
from p2pchain.sim.checker import check_run
from p2pchain.sim.faults import FAULT_KINDS, Schedule, random_schedule
from p2pchain.sim.runner import run_schedule
from p2pchain.sim.trace import TraceWriter


def trace_of(schedule) -> str:
    buffer = io.StringIO()
    run_schedule(schedule, trace=TraceWriter(buffer))
    return buffer.getvalue()


def test_the_same_seed_replays_the_same_run_event_for_event():
    schedule = random_schedule(4242, kinds=FAULT_KINDS)
    assert trace_of(schedule) == trace_of(random_schedule(4242, kinds=FAULT_KINDS))


def test_different_seeds_give_different_runs():
    assert trace_of(random_schedule(1)) != trace_of(random_schedule(2))


def test_random_schedules_respect_the_fault_budget():
    for seed in range(200):
        for nodes in (4, 7):
            schedule = random_schedule(seed, nodes=nodes)
            assert len(schedule.budget_nodes()) <= (nodes - 1) // 3


def test_every_trace_line_is_json_with_time_and_event():
    lines = [json.loads(l) for l in trace_of(Schedule(seed=5, crashes=(("node0", 1, 800),), heal_ms=800)).splitlines()]
    assert all(isinstance(l["t"], int) and isinstance(l["ev"], str) for l in lines)
    assert [l["t"] for l in lines] == sorted(l["t"] for l in lines)
    kinds = {l["ev"] for l in lines}
    assert {"send", "recv", "request", "accepted", "pre-prepared", "prepared", "committed",
            "execute", "view-change", "new-view", "crash", "restart", "verdict"} <= kinds


def test_checker_reports_two_honest_replicas_that_diverge():
    result = run_schedule(Schedule(seed=6))
    app = result.sim.hosts["node2"].app
    app.history[0] = Block(1, b"\x00" * 32, app.history[0].executed)
    verdict = check_run(result.sim, result.schedule, deadline_ms=result.end_ms)
    assert verdict.safety and "node2" in " ".join(verdict.safety)


def test_checker_reports_a_request_no_client_submitted():
    result = run_schedule(Schedule(seed=7))
    app = result.sim.hosts["node1"].app
    block = app.history[0]
    app.history[0] = Block(block.seq, block.batch_digest, block.executed + (("client0", 99, b"forged"),))
    assert check_run(result.sim, result.schedule, deadline_ms=result.end_ms).validity


def test_checker_reports_a_request_executed_twice():
    result = run_schedule(Schedule(seed=8))
    app = result.sim.hosts["node1"].app
    block = app.history[-1]
    app.history[-1] = Block(block.seq, block.batch_digest, block.executed + app.history[0].executed)
    assert check_run(result.sim, result.schedule, deadline_ms=result.end_ms).validity


def test_checker_reports_requests_never_served():
    # Two silent replicas exceed f: no quorum, so nothing can commit (the schedule is
    # outside the fault model; the point is that the checker notices).
    schedule = Schedule(seed=9, byzantine=(("node1", "silent"),))
    from p2pchain.sim.runner import build_simulation, finish
    from p2pchain.sim.byzantine import Silent
    import random
    sim = build_simulation(schedule)
    sim.hosts["node2"].behaviour = Silent(random.Random(0))
    result = finish(sim, schedule, liveness_bound_ms=3000)
    assert result.verdict.liveness and not result.verdict.safety
