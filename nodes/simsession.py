"""The dashboard's simulated mode: one seeded simulation, stepped event by event, and trace replay.

A :class:`SimSession` wraps :class:`p2pchain.sim.network.Simulation` — the same PBFT replica
core the nodes run, on the simulator's virtual clock — so that a browser can drive it as
RaftScope drives its Raft model: step one event, run to a time, see every message in
flight, and drop one by clicking it. Nothing here reads a clock or a random source of its
own: the run is a function of the seed, the scenario and the user's actions.

Messages in flight get an id the moment the simulator puts them on a link
(``Simulation.transmit`` schedules the delivery through ``Simulation.at``; the session
intercepts that one call), and keep it until they are delivered or dropped. A dropped
message is logged as the trace's ``drop`` with ``reason="user"``.

:func:`parse_trace` reads a file written by ``p2pchain simulate --trace`` (docs/consensus.md
§12) for replay, and gives each ``send`` the same id and arrival time that a live session
would, by matching it with its ``recv``.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from p2pchain.bounded import BoundedDict
from p2pchain.encoding import parse_json
from p2pchain.sim.byzantine import BEHAVIOURS, make_behaviour
from p2pchain.sim.faults import Schedule
from p2pchain.sim.network import NetworkConditions, Simulation
from p2pchain.sim.runner import build_simulation
from p2pchain.sim.trace import describe

__all__ = ["SCENARIOS", "SessionError", "SimSession", "Replay", "parse_trace", "SessionStore"]

MAX_EVENTS_PER_STEP = 5000
MAX_LINES_PER_REPLAY = 200_000


class SessionError(Exception):
    """A request the session cannot honour; the message says why."""


def _schedule(seed: int, scenario: str, clients: int, requests: int) -> Schedule:
    """The fault schedule of each teaching scenario (times in simulated milliseconds)."""
    base = dict(seed=seed, nodes=4, clients=clients, requests_per_client=requests)
    if scenario == "normal":
        return Schedule(**base, label="normal operation")
    if scenario == "crash-primary":
        return Schedule(**base, crashes=(("node0", 120, 2500),), heal_ms=0, label="primary crash")
    if scenario == "equivocate":
        return Schedule(**base, byzantine=(("node0", "equivocate"),), label="equivocating primary")
    if scenario == "partition":
        return Schedule(**base, partitions=((100, 1200, (("node0", "node1"), ("node2", "node3"))),),
                        heal_ms=0, label="partition and heal")
    if scenario == "lossy":
        return Schedule(**base, conditions=NetworkConditions(drop=0.1, slow_delay_ms=40), heal_ms=1500,
                        label="lossy, slow links until 1.5 s")
    raise SessionError(f"unknown scenario {scenario!r}; scenarios are {', '.join(SCENARIOS)}")


SCENARIOS = ("normal", "crash-primary", "equivocate", "partition", "lossy")


class _ListTrace:
    """A ``TraceWriter`` look-alike that keeps the lines as dicts, for the next response."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.schedule = None

    def write(self, now_ms: int, ev: str, fields: dict[str, Any]) -> None:
        record = {"t": now_ms, "ev": ev}
        record.update((k, v) for k, v in fields.items() if v is not None)
        self.lines.append(record)


@dataclass
class InFlight:
    id: int
    src: str
    dst: str
    msg: dict[str, Any]
    sent_ms: int
    arrive_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "src": self.src, "dst": self.dst, "msg": self.msg,
                "sent_ms": self.sent_ms, "arrive_ms": self.arrive_ms}


class SimSession:
    """One interactive simulation (see the module docstring)."""

    def __init__(self, session_id: str, *, seed: int, scenario: str = "normal", clients: int = 2,
                 requests: int = 20) -> None:
        if not 1 <= clients <= 8 or not 1 <= requests <= 500:
            raise SessionError("clients must be 1..8 and requests 1..500")
        self.id, self.seed, self.scenario = session_id, seed, scenario
        self.schedule = _schedule(seed, scenario, clients, requests)
        self.trace = _ListTrace()
        self.sim: Simulation = build_simulation(self.schedule, self.trace)
        self.in_flight: dict[int, InFlight] = {}
        self.dropped: set[int] = set()
        self._next_id = 0
        self._sending: tuple[str, str, Any] | None = None
        self._behaviour_rng = random.Random(seed ^ 0xDA5B)
        self._intercept()

    # -- the one interception: deliveries become visible, droppable messages ---------------

    def _intercept(self) -> None:
        sim = self.sim
        plain_at, plain_transmit = sim.at, sim.transmit

        def transmit(src: str, dst: str, message) -> None:
            self._sending = (src, dst, message)
            try:
                plain_transmit(src, dst, message)
            finally:
                self._sending = None

        def at(time_ms: int, thunk: Callable[[], None]) -> None:
            if self._sending is None:
                return plain_at(time_ms, thunk)
            src, dst, message = self._sending
            self._next_id += 1
            flight = InFlight(self._next_id, src, dst, describe(message), sim.now_ms, time_ms)
            self.in_flight[flight.id] = flight
            # the trace's send line for this copy was just written: give it the id and arrival
            last = self.trace.lines[-1] if self.trace.lines else None
            if last is not None and last["ev"] == "send" and "id" not in last:
                last["id"], last["arrive"] = flight.id, time_ms
            plain_at(time_ms, lambda: self._arrive(flight, thunk))

        sim.transmit, sim.at = transmit, at  # instance attributes shadow the methods

    def _arrive(self, flight: InFlight, deliver: Callable[[], None]) -> None:
        self.in_flight.pop(flight.id, None)
        if flight.id in self.dropped:
            self.dropped.discard(flight.id)
            self.sim.log("drop", src=flight.src, dst=flight.dst, reason="user", msg=flight.msg, id=flight.id)
            return
        mark = len(self.trace.lines)
        deliver()
        if len(self.trace.lines) > mark and self.trace.lines[mark]["ev"] == "recv":
            self.trace.lines[mark]["id"] = flight.id

    # -- what the browser asks for ---------------------------------------------------------

    def step(self, *, until_ms: int | None = None, events: int | None = None) -> dict[str, Any]:
        """Run to ``until_ms`` (simulated), or ``events`` events that show in the trace
        (``events=1`` is the single step), at most :data:`MAX_EVENTS_PER_STEP` events."""
        if until_ms is None and events is None:
            events = 1
        limit = until_ms if until_ms is not None else 10 ** 12
        lines = self.trace.lines
        # [events run, next trace line to look at, visible lines among those looked at]:
        # each line is looked at once, not every line again after every event
        count = [0, len(lines), 0]

        def stop() -> bool:
            count[0] += 1
            if count[0] >= MAX_EVENTS_PER_STEP:
                return True
            if events is None:
                return False
            while count[1] < len(lines):
                count[2] += lines[count[1]]["ev"] not in ("timer", "request")
                count[1] += 1
            return count[2] >= events

        self.sim.run(limit, stop=stop)
        return self.view()

    def drop(self, flight_id: int) -> dict[str, Any]:
        if flight_id not in self.in_flight:
            raise SessionError(f"message {flight_id} is not in flight (delivered or dropped already)")
        if flight_id in self.dropped:
            raise SessionError(f"message {flight_id} is already dropped")
        self.dropped.add(flight_id)
        return {"dropped": flight_id}

    def fault(self, action: str, node: str, mode: str | None = None) -> dict[str, Any]:
        sim = self.sim
        if node not in sim.hosts:
            raise SessionError(f"no node {node!r}; nodes are {', '.join(sorted(sim.hosts))}")
        host = sim.hosts[node]
        mark = len(self.trace.lines)
        if action == "crash":
            if host.alive:
                sim.crash(node)
        elif action == "restart":
            if not host.alive:
                sim.restart(node)
        elif action == "isolate":
            sim.partition([[node], [p for p in sim.hosts if p != node]])
        elif action == "heal":
            sim.heal()
            host.behaviour = None
        elif action == "byzantine":
            if mode not in BEHAVIOURS:
                raise SessionError(f"mode must be one of {', '.join(BEHAVIOURS)}")
            host.behaviour = make_behaviour(mode, self._behaviour_rng)
            sim.log("byzantine", node=node, kind=mode)
        else:
            raise SessionError("action must be crash, restart, isolate, heal or byzantine")
        return self.view()

    def hosts(self) -> dict[str, dict[str, Any]]:
        out = {}
        for pid, host in sorted(self.sim.hosts.items()):
            replica = host.replica
            out[pid] = {"alive": host.alive, "view": replica.view, "primary": replica.ctx.primary(replica.view),
                        "active": replica.active, "executed": host.app.seq, "stable": replica.stable_state.seq,
                        "behaviour": None if host.behaviour is None else host.behaviour.kind}
        return out

    def view(self) -> dict[str, Any]:
        """The state now, with the trace lines written since the last view (then forgotten:
        the browser keeps what it shows)."""
        sim = self.sim
        events, self.trace.lines = self.trace.lines, []
        return {
            "id": self.id, "seed": self.seed, "scenario": self.scenario, "label": self.schedule.label,
            "now_ms": sim.now_ms, "next_ms": sim._heap[0][0] if sim._heap else None,
            "events": events, "in_flight": [f.to_json() for f in self.in_flight.values()],
            "hosts": self.hosts(), "clients_done": sim.clients_done, "clients": len(sim.clients),
            "blocked": sorted(sorted(pair) for pair in sim.blocked),
        }


# -- replay of a recorded trace ----------------------------------------------------------------

@dataclass
class Replay:
    """A parsed trace file: lines per schedule (``None`` for a file of one unnamed run)."""

    name: str
    runs: dict[Any, list[dict[str, Any]]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        runs = []
        for schedule, lines in self.runs.items():
            verdict = next((line for line in reversed(lines) if line["ev"] == "verdict"), None)
            runs.append({"schedule": schedule, "lines": len(lines), "end_ms": lines[-1]["t"] if lines else 0,
                         "ok": None if verdict is None else not any(verdict.get(k) for k in ("safety", "validity", "liveness"))})
        return {"name": self.name, "runs": runs}


def _message_key(src: str, dst: str, msg: dict[str, Any]) -> str:
    return json.dumps([src, dst, msg], sort_keys=True)


def parse_trace(text: str, name: str = "trace") -> Replay:
    """Parse JSON lines; raise :class:`SessionError` naming the first bad line."""
    replay = Replay(name)
    total = 0
    pending: dict[Any, dict[str, deque]] = defaultdict(lambda: defaultdict(deque))
    next_id: dict[Any, int] = defaultdict(int)
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = parse_json(raw)
        except ValueError as exc:
            raise SessionError(f"line {number} is not JSON: {exc}") from None
        if not isinstance(line, dict) or not isinstance(line.get("t"), int) or not isinstance(line.get("ev"), str):
            raise SessionError(f"line {number} is not a trace line (needs integer 't' and string 'ev')")
        total += 1
        if total > MAX_LINES_PER_REPLAY:
            raise SessionError(f"the trace has more than {MAX_LINES_PER_REPLAY} lines; trace fewer schedules")
        run = line.get("schedule")
        if line["ev"] == "send":
            next_id[run] += 1
            line["id"] = next_id[run]
            pending[run][_message_key(line.get("src"), line.get("dst"), line.get("msg"))].append(line)
        elif line["ev"] == "recv":
            queue = pending[run].get(_message_key(line.get("src"), line.get("node"), line.get("msg")))
            if queue:
                sent = queue.popleft()
                sent["arrive"], line["id"] = line["t"], sent["id"]
        replay.runs.setdefault(run, []).append(line)
    if not replay.runs:
        raise SessionError("the trace is empty")
    return replay


class SessionStore:
    """The sessions and replays of one server, the oldest forgotten first beyond a bound."""

    def __init__(self, limit: int = 8) -> None:
        self.sessions: BoundedDict[str, SimSession] = BoundedDict(limit)
        self.replays: BoundedDict[str, Replay] = BoundedDict(limit)
        self._counter = 0

    def new_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def add_session(self, session: SimSession) -> SimSession:
        return self.sessions.put(session.id, session)

    def add_replay(self, key: str, replay: Replay) -> Replay:
        return self.replays.put(key, replay)

    def session(self, session_id: str) -> SimSession:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise SessionError(f"no simulation session {session_id!r} (sessions expire; start a new run)") from None
