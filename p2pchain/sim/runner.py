"""Run a fault schedule in the simulator and judge it; run many from one seed.

``run_schedule(schedule)`` builds the simulation, installs the faults at their times, runs
until every client is served or ``heal_ms + liveness_bound_ms`` passes, and checks the run
(:mod:`.checker`). Everything is drawn from ``schedule.seed``: the same schedule gives the
same run, message for message.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

from .byzantine import make_behaviour
from .checker import Verdict, check_run
from .faults import FAULT_KINDS, Schedule, random_schedule
from .network import Simulation
from .trace import TraceWriter

__all__ = ["RunResult", "run_schedule", "run_many", "LIVENESS_BOUND_MS", "build_simulation", "finish"]

# After the heal: up to a capped view-change timeout (16 x 300 ms) for each of up to f+1
# faulty primaries in a row, plus client retries and state transfer.
LIVENESS_BOUND_MS = 30_000


@dataclass
class RunResult:
    schedule: Schedule
    verdict: Verdict
    end_ms: int
    messages: int
    last_accept_ms: int
    sim: Simulation | None = None

    @property
    def ok(self) -> bool:
        return self.verdict.ok


def build_simulation(schedule: Schedule, trace: TraceWriter | None = None, **options) -> Simulation:
    schedule.check_budget()
    sim = Simulation(seed=schedule.seed, nodes=schedule.nodes, clients=schedule.clients,
                     requests_per_client=schedule.requests_per_client,
                     conditions=schedule.conditions, heal_ms=schedule.heal_ms, trace=trace,
                     **options)
    behaviour_rng = random.Random(schedule.seed ^ 0x5EED)
    for node, kind in schedule.byzantine:
        sim.hosts[node].behaviour = make_behaviour(kind, behaviour_rng)
        sim.log("byzantine", node=node, kind=kind)
    others = [n for n in sim.names]
    for node in schedule.twins:
        twin = node + "'"
        sim.add_host(twin, node)
        rest = [n for n in others if n != node]
        side_a, side_b = rest[: len(rest) // 2 + 1], rest[len(rest) // 2 + 1:]
        for pid in side_b:
            sim.permanent_blocks.add(frozenset((node, pid)))
        for pid in side_a:
            sim.permanent_blocks.add(frozenset((twin, pid)))
        sim.log("twins", node=node, side_a=side_a, side_b=side_b)
    for node, crash_ms, restart_ms in schedule.crashes:
        sim.at(crash_ms, lambda n=node: sim.crash(n))
        sim.at(restart_ms, lambda n=node: sim.restart(n))
    for node, crash_ms, restart_ms in schedule.amnesia:
        sim.at(crash_ms, lambda n=node: sim.crash(n))
        sim.at(restart_ms, lambda n=node: sim.restart(n, amnesia=True))
    for start_ms, end_ms, groups in schedule.partitions:
        sim.at(start_ms, lambda g=groups: sim.partition([list(x) for x in g]))
        sim.at(end_ms, sim.heal)
    if schedule.heal_ms:
        sim.at(schedule.heal_ms, sim.heal)
    if schedule.replay_requests:
        _replay_requests(sim, schedule)
    return sim


def _replay_requests(sim: Simulation, schedule: Schedule) -> None:
    """A network adversary that re-delivers old client requests to random replicas."""
    rng = random.Random(schedule.seed ^ 0xBEEF)

    def replay() -> None:
        if sim.submitted:
            request = sim.submitted[rng.choice(sorted(sim.submitted))]
            host = sim.hosts[rng.choice(sorted(sim.hosts))]
            sim.log("replay-request", node=host.pid)
            sim._request_arrives(host, request)
        if sim.now_ms < schedule.heal_ms + 2000:
            sim.at(sim.now_ms + rng.randint(20, 120), replay)
    sim.at(50, replay)


def finish(sim: Simulation, schedule: Schedule, *, liveness_bound_ms: int = LIVENESS_BOUND_MS) -> RunResult:
    """Run ``sim`` on until every client is served (after the heal) or the deadline, and judge."""
    deadline = schedule.heal_ms + liveness_bound_ms
    sim.run(deadline, stop=lambda: sim.now_ms >= schedule.heal_ms and sim.all_clients_done())
    verdict = check_run(sim, schedule, deadline_ms=deadline)
    last = max((t for c in sim.clients.values() for t in c.done_ms.values()), default=0)
    sim.log("verdict", safety=verdict.safety, validity=verdict.validity, liveness=verdict.liveness)
    return RunResult(schedule, verdict, sim.now_ms, sim.messages_sent, last, sim)


def run_schedule(schedule: Schedule, *, trace: TraceWriter | None = None,
                 liveness_bound_ms: int = LIVENESS_BOUND_MS, **options) -> RunResult:
    return finish(build_simulation(schedule, trace, **options), schedule,
                  liveness_bound_ms=liveness_bound_ms)


def run_many(seed: int, count: int, *, nodes: int = 4, kinds: tuple[str, ...] = FAULT_KINDS,
             trace: TraceWriter | None = None) -> Iterator[RunResult]:
    """Schedules ``seed``, ``seed + 1``, ... ``seed + count - 1``."""
    for s in range(seed, seed + count):
        if trace is not None:
            trace.schedule = s
        yield run_schedule(random_schedule(s, nodes=nodes, kinds=kinds), trace=trace)
