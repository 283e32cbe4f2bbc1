"""The dashboard's simulated-mode routes (nodes/simapi.py) over HTTP, without a cluster."""

from __future__ import annotations

import io

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from nodes.api import NODE, refusals
from nodes.simapi import register
from p2pchain.sim.faults import Schedule
from p2pchain.sim.runner import run_schedule
from p2pchain.sim.trace import TraceWriter


class _Refused:
    def labels(self, *labels):
        return self

    def inc(self) -> None:
        pass


class _Node:
    """What the refusal middleware needs of a node: a counter."""

    metrics = type("Metrics", (), {"refused": _Refused()})()


async def serve(trace_path=None) -> TestClient:
    app = web.Application(middlewares=[refusals])
    app[NODE] = _Node()
    register(app, trace_path=trace_path)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


def recorded_trace() -> str:
    stream = io.StringIO()
    run_schedule(Schedule(seed=6, requests_per_client=1), trace=TraceWriter(stream))
    return stream.getvalue()


async def test_a_session_steps_and_drops_a_message_once():
    client = await serve()
    try:
        created = await client.post("/v1/sim/sessions", json={"seed": 2, "scenario": "normal"})
        assert created.status == 201
        session = (await created.json())["id"]
        view = await (await client.post(f"/v1/sim/sessions/{session}/step", json={"until_ms": 30})).json()
        while not view["in_flight"]:
            view = await (await client.post(f"/v1/sim/sessions/{session}/step", json={"events": 1})).json()
        flight = view["in_flight"][0]["id"]
        assert (await client.post(f"/v1/sim/sessions/{session}/drop", json={"id": flight})).status == 200
        again = await client.post(f"/v1/sim/sessions/{session}/drop", json={"id": flight})
        assert again.status == 400 and "already dropped" in (await again.json())["detail"]
    finally:
        await client.close()


async def test_bad_requests_are_refused_with_a_reason():
    client = await serve()
    try:
        answer = await client.post("/v1/sim/sessions", json={"seed": 1, "scenario": "meteor"})
        assert answer.status == 400 and "crash-primary" in (await answer.json())["detail"]
        answer = await client.post("/v1/sim/sessions/nope/step", json={"events": 1})
        assert answer.status == 404 and (await answer.json())["error"] == "unknown_session"
        answer = await client.post("/v1/sim/sessions", json={"seed": "x"})
        assert answer.status == 400 and (await answer.json())["error"] == "bad_parameter"
        for body in (b"[" * 100_000, b"\xff", b"[1]"):    # nested past the parser, not UTF-8, not an object
            answer = await client.post("/v1/sim/sessions", data=body, headers={"Content-Type": "application/json"})
            assert answer.status == 400 and (await answer.json())["error"] == "malformed", body[:8]
    finally:
        await client.close()


async def test_an_uploaded_trace_is_summarised_and_its_run_served_with_message_ids():
    client = await serve()
    try:
        answer = await client.post("/v1/sim/replays?name=run", data=recorded_trace())
        summary = await answer.json()
        assert answer.status == 200 and summary["runs"][0]["ok"] is True
        run = await (await client.get(f"/v1/sim/replays/{summary['id']}/runs/0")).json()
        assert any(line["ev"] == "recv" and "id" in line for line in run["lines"])
        bad = await client.post("/v1/sim/replays", data='{"t": 0, "ev": "heal"}\n{oops\n')
        assert bad.status == 400 and "line 2" in (await bad.json())["detail"]
        deep = await client.post("/v1/sim/replays", data='{"t": 0, "ev": "heal"}\n' + "[" * 100_000)
        assert deep.status == 400 and "line 2" in (await deep.json())["detail"]
    finally:
        await client.close()


async def test_the_trace_file_given_at_start_is_offered_and_its_absence_explained(tmp_path):
    client = await serve()
    try:
        answer = await client.get("/v1/sim/replays/file")
        assert answer.status == 404 and "P2PCHAIN_UI_TRACE" in (await answer.json())["detail"]
    finally:
        await client.close()
    path = tmp_path / "run.jsonl"
    path.write_text(recorded_trace())
    client = await serve(str(path))
    try:
        answer = await client.get("/v1/sim/replays/file")
        assert answer.status == 200 and (await answer.json())["id"] == "file"
    finally:
        await client.close()
