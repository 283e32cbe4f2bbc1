"""The dashboard's simulated mode (nodes/simsession.py): stepping, dropping, replay parsing."""

from __future__ import annotations

import io

import pytest

from nodes.simsession import SCENARIOS, SessionError, SimSession, parse_trace
from p2pchain.sim.faults import Schedule
from p2pchain.sim.runner import run_schedule
from p2pchain.sim.trace import TraceWriter


def run_to(session: SimSession, until_ms: int) -> list[dict]:
    lines = []
    while session.sim.now_ms < until_ms and session.sim._heap:
        view = session.step(until_ms=until_ms)
        lines += view["events"]
        if view["next_ms"] is None or view["next_ms"] > until_ms:
            break
    return lines


def test_the_same_seed_and_scenario_give_the_same_run():
    a = run_to(SimSession("a", seed=5, scenario="crash-primary"), 800)
    b = run_to(SimSession("b", seed=5, scenario="crash-primary"), 800)
    assert a == b and len(a) > 100


def test_a_single_step_shows_at_least_one_visible_event():
    session = SimSession("s", seed=1)
    view = session.step(events=1)
    assert any(line["ev"] not in ("timer", "request") for line in view["events"])
    assert view["now_ms"] == 0


def test_a_dropped_message_is_never_delivered_and_is_logged_as_dropped_by_the_user():
    session = SimSession("s", seed=2)
    view = session.step(until_ms=30)
    while not view["in_flight"]:
        view = session.step(events=1)
    flight = view["in_flight"][0]
    session.drop(flight["id"])
    lines = run_to(session, flight["arrive_ms"] + 1)
    assert not [l for l in lines if l["ev"] == "recv" and l.get("id") == flight["id"]]
    dropped = [l for l in lines if l["ev"] == "drop" and l.get("id") == flight["id"]]
    assert dropped and dropped[0]["reason"] == "user" and dropped[0]["t"] == flight["arrive_ms"]


def test_dropping_a_message_no_longer_in_flight_is_refused():
    session = SimSession("s", seed=2)
    with pytest.raises(SessionError, match="not in flight"):
        session.drop(12345)


def test_every_message_in_flight_has_its_send_line_with_the_same_id():
    session = SimSession("s", seed=3)
    view = session.step(until_ms=40)
    sends = {l["id"]: l for l in view["events"] if l["ev"] == "send"}
    for flight in view["in_flight"]:
        assert sends[flight["id"]]["arrive"] == flight["arrive_ms"]


def test_crashing_the_primary_in_a_session_brings_a_new_view():
    session = SimSession("s", seed=4)
    run_to(session, 50)
    session.fault("crash", "node0")
    lines = run_to(session, 3000)
    assert any(l["ev"] == "new-view" and l["primary"] == "node1" for l in lines)
    assert session.hosts()["node1"]["primary"] == "node1"


def test_every_scenario_builds_and_runs():
    for scenario in SCENARIOS:
        assert run_to(SimSession("s", seed=1, scenario=scenario), 200)


def test_an_unknown_fault_action_is_refused_with_the_known_ones():
    with pytest.raises(SessionError, match="crash, restart"):
        SimSession("s", seed=1).fault("explode", "node0")


def test_a_recorded_trace_pairs_each_receive_with_its_send():
    stream = io.StringIO()
    run_schedule(Schedule(seed=9, requests_per_client=2), trace=TraceWriter(stream))
    replay = parse_trace(stream.getvalue())
    (lines,) = replay.runs.values()
    sends = {l["id"]: l for l in lines if l["ev"] == "send"}
    receives = [l for l in lines if l["ev"] == "recv"]
    assert receives and all("id" in r for r in receives)
    for r in receives:
        sent = sends[r["id"]]
        assert (sent["src"], sent["dst"], sent["msg"]) == (r["src"], r["node"], r["msg"])
        assert sent["arrive"] == r["t"]
    assert replay.summary()["runs"][0]["ok"] is True


def test_a_trace_with_a_bad_line_is_refused_naming_the_line():
    with pytest.raises(SessionError, match="line 2"):
        parse_trace('{"t": 0, "ev": "heal"}\nnot json\n')
    with pytest.raises(SessionError, match="empty"):
        parse_trace("\n")
