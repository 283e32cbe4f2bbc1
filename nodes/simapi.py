"""The dashboard's server side (``/ui``, nodes/ui/): simulated mode, trace replay, cluster helpers.

``register(app)`` is called once by ``nodes.api.build_app``. Every refusal is the API's
JSON ``{"error": CODE, "detail": ...}`` with a 4xx status (or the node's own answer,
passed through, for a fault order sent on to another node).

Simulated mode (:mod:`nodes.simsession`), all JSON:

* ``POST /v1/sim/sessions`` ``{"seed", "scenario"?, "clients"?, "requests"?}`` — a new run;
* ``POST /v1/sim/sessions/{id}/step`` ``{"until_ms"}`` or ``{"events": n}`` — run on; the
  answer has the new trace lines, the messages in flight, and each host's view, primary,
  executed sequence number and stable checkpoint;
* ``POST /v1/sim/sessions/{id}/drop`` ``{"id"}`` — drop a message in flight;
* ``POST /v1/sim/sessions/{id}/fault`` ``{"action", "node", "mode"?}`` — crash, restart,
  isolate, heal, byzantine (no token: the simulation harms nothing);
* ``POST /v1/sim/replays`` (body: a trace file of ``p2pchain simulate --trace``) and
  ``GET /v1/sim/replays/file`` (the file named by ``$P2PCHAIN_UI_TRACE`` when the node
  started) — a parsed trace; ``GET /v1/sim/replays/{id}/runs/{n}`` — the lines of run n.

Cluster helpers (the browser may only talk to the node that served the page, so this node
asks its peers on the browser's behalf):

* ``GET /v1/dashboard/cluster`` — the nodes, their orgs and addresses, the channels;
* ``GET /v1/dashboard/status`` — every node's ``/v1/status`` (or why it did not answer);
* ``POST /v1/dashboard/fault/{node}`` — forwards the admin order *and the browser's token*
  to that node's ``/v1/admin/fault``; the node decides and its answer (or refusal) is
  returned as it gave it;
* ``GET /v1/dashboard/channels/{channel}/blocks/{height}`` — the block as
  ``/v1/channels/.../blocks/{height}`` gives it, with each transaction's signature checked
  against its creator's certificate (``signature_valid``).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from p2pchain.client import STATUS_MAX_BYTES, read_bounded, read_status
from p2pchain.crypto import BadSignature, verify
from p2pchain.encoding import parse_json
from p2pchain.genesis import CHANNELS
from p2pchain.identity import IdentityError
from p2pchain.ledger.store import LedgerError
from p2pchain.ledger.transaction import Transaction, TransactionRefused, timestamp_to_datetime

from .api import Refusal, _channel, _ledger, _node, block_json
from .faults import BYZANTINE_MODES
from .simsession import SCENARIOS, SessionError, SessionStore, SimSession, parse_trace

__all__ = ["register", "TRACE_ENV", "MAX_TRACE_BYTES"]

TRACE_ENV = "P2PCHAIN_UI_TRACE"
SIM_STORE = web.AppKey("sim_store", SessionStore)
SIM_LOCKS = web.AppKey("sim_locks", dict)
TRACE_PATH = web.AppKey("sim_trace_path", object)  # a Path, or None
PEER_SESSION = web.AppKey("dashboard_session", aiohttp.ClientSession)
MAX_TRACE_BYTES = 32 * 1024 * 1024
PEER_TIMEOUT_S = 3.0
FAULT_TIMEOUT = aiohttp.ClientTimeout(total=30)  # a restart reopens ledgers and starts contract workers


def _store(request: web.Request) -> SessionStore:
    return request.app[SIM_STORE]


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = parse_json(await request.read())
    except ValueError:
        raise Refusal(400, "malformed", "expected a JSON object") from None
    if not isinstance(body, dict):
        raise Refusal(400, "malformed", "expected a JSON object")
    return body


def _int(body: dict[str, Any], name: str, default: int | None = None, low: int = 0, high: int = 10 ** 9) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if type(value) is not int or not low <= value <= high:
        raise Refusal(400, "bad_parameter", f"{name} must be an integer in {low}..{high}")
    return value


async def _run(request: web.Request, session: SimSession, work):
    """Run ``work`` off the event loop, one request per session at a time: a simulation step
    is CPU work, and the node serving the page has a cluster to run."""
    locks = request.app[SIM_LOCKS]
    lock = locks.setdefault(session.id, asyncio.Lock())
    async with lock:
        try:
            return await asyncio.to_thread(work)
        except SessionError as exc:
            raise Refusal(400, "bad_parameter", str(exc)) from None


# -- simulated mode ----------------------------------------------------------------------------

async def new_session(request: web.Request) -> web.Response:
    body = await _json_body(request)
    store = _store(request)
    scenario = body.get("scenario", "normal")
    if scenario not in SCENARIOS:
        raise Refusal(400, "bad_parameter", f"scenario must be one of {', '.join(SCENARIOS)}")
    try:
        session = SimSession(store.new_id("sim"), seed=_int(body, "seed", 1), scenario=scenario,
                             clients=_int(body, "clients", 2, 1, 8), requests=_int(body, "requests", 20, 1, 500))
    except (SessionError, ValueError) as exc:
        raise Refusal(400, "bad_parameter", str(exc)) from None
    store.add_session(session)
    return web.json_response({**session.view(), "scenarios": SCENARIOS}, status=201)


def _session(request: web.Request) -> SimSession:
    try:
        return _store(request).session(request.match_info["session"])
    except SessionError as exc:
        raise Refusal(404, "unknown_session", str(exc)) from None


async def step(request: web.Request) -> web.Response:
    session = _session(request)
    body = await _json_body(request)
    until_ms, events = _int(body, "until_ms"), _int(body, "events", None, 1, 10_000)
    return web.json_response(await _run(request, session, lambda: session.step(until_ms=until_ms, events=events)))


async def drop(request: web.Request) -> web.Response:
    session = _session(request)
    flight = _int(await _json_body(request), "id")
    return web.json_response(await _run(request, session, lambda: session.drop(flight)))


async def sim_fault(request: web.Request) -> web.Response:
    session = _session(request)
    body = await _json_body(request)
    action, node, mode = body.get("action"), body.get("node"), body.get("mode")
    return web.json_response(await _run(request, session, lambda: session.fault(action, node, mode)))


async def upload_replay(request: web.Request) -> web.Response:
    raw = bytearray()
    while chunk := await request.content.read(1 << 16):
        raw += chunk
        if len(raw) > MAX_TRACE_BYTES:
            raise Refusal(413, "oversized", f"a trace file may have at most {MAX_TRACE_BYTES} bytes")
    name = request.query.get("name", "uploaded trace")
    # parsed off the event loop, as file_replay does: 32 MiB of trace takes seconds
    replay = await asyncio.to_thread(_parse, raw.decode("utf-8", "replace"), name)
    return _replay_answer(request, replay)


def _parse(text: str, name: str):
    try:
        return parse_trace(text, name)
    except SessionError as exc:
        raise Refusal(400, "bad_trace", str(exc)) from None


def _replay_answer(request: web.Request, replay, key: str | None = None) -> web.Response:
    store = _store(request)
    key = key or store.new_id("replay")
    store.add_replay(key, replay)
    return web.json_response({"id": key, **replay.summary()})


async def file_replay(request: web.Request) -> web.Response:
    path = request.app[TRACE_PATH]
    if path is None:
        raise Refusal(404, "no_trace_file", f"no trace file was given when this node started (set ${TRACE_ENV})")
    try:
        size = path.stat().st_size
        if size > MAX_TRACE_BYTES:
            raise Refusal(413, "oversized", f"{path} has {size} bytes; the limit is {MAX_TRACE_BYTES}")
        text = await asyncio.to_thread(path.read_text, "utf-8", "replace")
    except OSError as exc:
        raise Refusal(404, "no_trace_file", f"cannot read {path}: {exc.strerror}") from None
    return _replay_answer(request, await asyncio.to_thread(_parse, text, path.name), "file")


async def replay_run(request: web.Request) -> web.Response:
    replay = _store(request).replays.get(request.match_info["replay"])
    if replay is None:
        raise Refusal(404, "unknown_replay", "no such replay (upload the trace again)")
    runs = list(replay.runs)
    try:
        index = int(request.match_info["run"])
        lines = replay.runs[runs[index]]
    except (ValueError, IndexError):
        raise Refusal(404, "unknown_run", f"runs are numbered 0..{len(runs) - 1}") from None
    return web.json_response({"schedule": runs[index], "lines": lines})


# -- cluster helpers -----------------------------------------------------------------------------

def _peer_url(node, name: str) -> str:
    info = node.genesis.node(name)
    host = "127.0.0.1" if info.host in ("0.0.0.0", "") else info.host
    return f"http://{host}:{info.port}"


async def cluster(request: web.Request) -> web.Response:
    node = _node(request)
    return web.json_response({
        "self": node.name, "channels": list(CHANNELS), "byzantine_modes": list(BYZANTINE_MODES),
        "nodes": [{"name": n.name, "org": n.org, "url": _peer_url(node, n.name)} for n in node.genesis.nodes],
        "trace_file": request.app[TRACE_PATH] is not None, "scenarios": list(SCENARIOS),
    })


async def _peer_status(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    try:
        async with session.get(url + "/v1/status") as response:
            if response.status != 200:
                return {"unreachable": f"answered {response.status}"}
            answer = await read_status(response)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        return {"unreachable": type(exc).__name__}
    if answer is None:
        return {"unreachable": "answered with no status object"}
    return answer


async def cluster_status(request: web.Request) -> web.Response:
    node = _node(request)
    names = node.genesis.node_names
    session = request.app[PEER_SESSION]
    answers = await asyncio.gather(*(_peer_status(session, _peer_url(node, name)) for name in names))
    return web.json_response({"nodes": dict(zip(names, answers))})


async def forward_fault(request: web.Request) -> web.Response:
    node = _node(request)
    target = request.match_info["node"]
    if target not in node.genesis.node_names:
        raise Refusal(404, "unknown_node", f"no node {target!r}; nodes are {', '.join(node.genesis.node_names)}")
    body = await request.read()
    headers = {"Content-Type": "application/json"}
    if "Authorization" in request.headers:
        headers["Authorization"] = request.headers["Authorization"]
    try:
        async with request.app[PEER_SESSION].post(_peer_url(node, target) + "/v1/admin/fault", data=body,
                                                         headers=headers, timeout=FAULT_TIMEOUT) as answer:
            reply = await read_bounded(answer, STATUS_MAX_BYTES)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise Refusal(502, "node_unreachable", f"{target} did not answer: {type(exc).__name__}") from None
    if reply is None:
        raise Refusal(502, "node_unreachable", f"{target} answered more than {STATUS_MAX_BYTES} bytes")
    return web.Response(body=reply, status=answer.status, content_type="application/json")


def signature_valid(genesis, tx: Transaction, timestamp_ms: int) -> bool | None:
    """Does ``tx`` verify against its creator's certificate (as of the block's time)?
    ``None`` if the creator has no valid certificate then."""
    try:
        identity = genesis.identity(tx.creator, now=timestamp_to_datetime(timestamp_ms))
    except IdentityError:
        return None
    try:
        verify(identity.public_key, tx.signing_bytes(), tx.signature)
    except BadSignature:
        return False
    return True


async def checked_block(request: web.Request) -> web.Response:
    channel = _channel(request)
    ledger = _ledger(request, channel)
    node = _node(request)
    try:
        stored = ledger.block(int(request.match_info["height"]))
    except (ValueError, LedgerError):
        raise Refusal(404, "unknown_block", f"no block {request.match_info['height']} on {channel} (height {ledger.height})") from None
    body = block_json(node, channel, stored)
    for entry, raw in zip(body["transactions"], stored.block.requests):
        try:
            entry["signature_valid"] = signature_valid(node.genesis, Transaction.from_bytes(raw),
                                                       stored.block.header.timestamp_ms)
        except TransactionRefused:
            entry["signature_valid"] = False
    return web.json_response(body)


# -- wiring --------------------------------------------------------------------------------------

async def _open_session(app: web.Application):
    app[PEER_SESSION] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_S))
    yield
    await app[PEER_SESSION].close()


def register(app: web.Application, trace_path: str | None = None) -> None:
    """Add the dashboard's routes to the node's ``app``; ``trace_path`` (or ``$P2PCHAIN_UI_TRACE``)
    names a trace file the dashboard may replay."""
    path = trace_path or os.environ.get(TRACE_ENV)
    app[TRACE_PATH] = Path(path) if path else None
    app[SIM_STORE] = SessionStore()
    app[SIM_LOCKS] = {}
    app.cleanup_ctx.append(_open_session)
    add = app.router
    add.add_post("/v1/sim/sessions", new_session)
    add.add_post("/v1/sim/sessions/{session}/step", step)
    add.add_post("/v1/sim/sessions/{session}/drop", drop)
    add.add_post("/v1/sim/sessions/{session}/fault", sim_fault)
    add.add_post("/v1/sim/replays", upload_replay)
    add.add_get("/v1/sim/replays/file", file_replay)
    add.add_get("/v1/sim/replays/{replay}/runs/{run}", replay_run)
    add.add_get("/v1/dashboard/cluster", cluster)
    add.add_get("/v1/dashboard/status", cluster_status)
    add.add_post("/v1/dashboard/fault/{node}", forward_fault)
    add.add_get("/v1/dashboard/channels/{channel}/blocks/{height}", checked_block)
