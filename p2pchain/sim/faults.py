"""Fault schedules: what goes wrong, to whom and when, drawn from a seed.

A :class:`Schedule` is plain data: a run is ``(schedule) -> result`` and nothing else, so
printing a failing schedule's seed is enough to replay it. The fault budget (DESIGN.md,
fault model): at most f nodes are Byzantine, twinned or amnesiac; crashes with durable
state, message loss, duplication, delay and partitions come on top, and all of them end
by ``heal_ms``, after which the network is synchronous.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .byzantine import BEHAVIOURS
from .network import NetworkConditions

__all__ = ["FAULT_KINDS", "Schedule", "random_schedule", "parse_faults"]

NETWORK_FAULTS = ("drop", "delay", "dup", "partition", "crash", "replay-requests")
BUDGET_FAULTS = ("amnesia", "twins") + tuple(BEHAVIOURS)
FAULT_KINDS = NETWORK_FAULTS + BUDGET_FAULTS


@dataclass(frozen=True)
class Schedule:
    seed: int
    nodes: int = 4
    clients: int = 3
    requests_per_client: int = 4
    conditions: NetworkConditions = NetworkConditions()
    heal_ms: int = 0
    byzantine: tuple[tuple[str, str], ...] = ()  # (node, behaviour kind)
    twins: tuple[str, ...] = ()
    amnesia: tuple[tuple[str, int, int], ...] = ()  # (node, crash_ms, restart_ms)
    crashes: tuple[tuple[str, int, int], ...] = ()  # durable restarts
    partitions: tuple[tuple[int, int, tuple[tuple[str, ...], ...]], ...] = ()  # (from, to, groups)
    replay_requests: bool = False
    label: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def f(self) -> int:
        return (self.nodes - 1) // 3

    def budget_nodes(self) -> set[str]:
        """Nodes that count against f."""
        return {n for n, _ in self.byzantine} | set(self.twins) | {n for n, _, _ in self.amnesia}

    def check_budget(self) -> None:
        if len(self.budget_nodes()) > self.f:
            raise ValueError(f"schedule {self.seed} makes {sorted(self.budget_nodes())} faulty; f = {self.f}")

    def describe(self) -> str:
        parts = [f"n={self.nodes}"]
        parts += [f"{kind}:{node}" for node, kind in self.byzantine]
        parts += [f"twins:{node}" for node in self.twins]
        parts += [f"amnesia:{n}@{a}-{b}" for n, a, b in self.amnesia]
        parts += [f"crash:{n}@{a}-{b}" for n, a, b in self.crashes]
        parts += [f"partition@{a}-{b}:{'|'.join(','.join(g) for g in groups)}" for a, b, groups in self.partitions]
        c = self.conditions
        if c.drop:
            parts.append(f"drop={c.drop:.2f}")
        if c.duplicate:
            parts.append(f"dup={c.duplicate:.2f}")
        if c.slow_delay_ms:
            parts.append(f"delay<={c.slow_delay_ms}ms")
        if self.replay_requests:
            parts.append("replay-requests")
        parts.append(f"heal@{self.heal_ms}")
        return " ".join(parts)


def parse_faults(text: str | None) -> tuple[str, ...]:
    if not text or text == "all":
        return FAULT_KINDS
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
    return kinds


def random_schedule(seed: int, *, nodes: int = 4, kinds: tuple[str, ...] = FAULT_KINDS,
                    clients: int = 3, requests_per_client: int = 4) -> Schedule:
    """A short random schedule: faults in the first ``heal_ms`` (400-1500 ms), then calm."""
    rng = random.Random(seed)
    names = [f"node{i}" for i in range(nodes)]
    f = (nodes - 1) // 3
    heal_ms = rng.randint(400, 1500)
    window = lambda: sorted(rng.randint(0, heal_ms) for _ in range(2))  # noqa: E731

    def chance(kind: str, p: float) -> bool:
        return kind in kinds and rng.random() < p

    conditions = NetworkConditions(
        drop=rng.choice((0.05, 0.1, 0.2)) if chance("drop", 0.5) else 0.0,
        duplicate=rng.choice((0.1, 0.3)) if chance("dup", 0.4) else 0.0,
        slow_delay_ms=rng.choice((50, 200, 400)) if chance("delay", 0.4) else 0,
    )
    budget = [k for k in BUDGET_FAULTS if k in kinds]
    byzantine, twins, amnesia = [], [], []
    faulty = rng.sample(names, k=rng.randint(0, f)) if budget else []
    for node in faulty:
        kind = rng.choice(budget)
        if kind == "twins":
            twins.append(node)
        elif kind == "amnesia":
            a, b = window()
            amnesia.append((node, a, b))
        else:
            if kind == "equivocate" and "node0" not in faulty:
                node = "node0"  # equivocation matters from the primary of view 0
            byzantine.append((node, kind))
    healthy = [n for n in names if n not in {x for x, _ in byzantine} | set(twins) | {x for x, _, _ in amnesia}]
    crashes = []
    if chance("crash", 0.5):
        for node in rng.sample(healthy, k=rng.randint(1, min(2, len(healthy)))):
            a, b = window()
            crashes.append((node, a, b))
    partitions = []
    if chance("partition", 0.5):
        for _ in range(rng.randint(1, 2)):
            shuffled = names[:]
            rng.shuffle(shuffled)
            cut = rng.randint(1, nodes - 1)
            a, b = window()
            partitions.append((a, b, (tuple(sorted(shuffled[:cut])), tuple(sorted(shuffled[cut:])))))
    schedule = Schedule(seed=seed, nodes=nodes, clients=clients, requests_per_client=requests_per_client,
                        conditions=conditions, heal_ms=heal_ms, byzantine=tuple(byzantine),
                        twins=tuple(twins), amnesia=tuple(amnesia), crashes=tuple(crashes),
                        partitions=tuple(partitions), replay_requests=chance("replay-requests", 0.3))
    schedule.check_budget()
    return schedule
