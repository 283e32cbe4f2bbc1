"""The node's HTTP interface (aiohttp): client API, events, metrics, admin, peer links, UI.

Every refusal is JSON ``{"error": CODE, "detail": ...}`` with a 4xx status (a 503 when the
node cannot serve the request now, a 504 when a ``?wait=commit`` ran out), is counted in
``p2pchain_refused_total{edge="api",reason=CODE}``, and changes nothing -- except that a
transaction refused after its wait began stays admitted (it may still commit). Binary
values (hashes, signatures) are hex in JSON. The reference: docs/api.md.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

from aiohttp import web

from p2pchain.client import MSGPACK, transaction_from_json
from p2pchain.encoding import EncodingError, decode, encode, parse_json
from p2pchain.genesis import CHANNELS
from p2pchain.ledger.store import LedgerError
from p2pchain.ledger.transaction import MAX_TX_BYTES, Transaction, TransactionRefused

from p2pchain.runtime.lifecycle import LIFECYCLE

from .admin import AdminRefused, check_token
from .anchoring import anchors_of
from .execution import NonceTaken
from .faults import BYZANTINE_MODES
from .metrics import CONTENT_TYPE_LATEST
from .node import POLLER_HEADER, RELAY_MAX_BYTES as BATCH_MAX_BYTES, RELAY_MAX_REQUESTS as BATCH_MAX_TXS, Node, utc_now

__all__ = ["NODE", "build_app", "jsonable"]

WAIT_LIMIT_S = 30.0  # default bound of ?wait=commit; a client may ask for up to MAX_WAIT_S
MAX_WAIT_S = 600.0
PAGE_LIMIT = 100
MAX_SLOW_MS = 60_000  # the slow fault's longest delay per frame
MAX_SUBSCRIBERS = 64
"""``/v1/events`` streams a node serves at once. Each holds a queue of up to EVENT_QUEUE
events while its reader lags; the dashboard opens one per browser tab. More are refused, so
that opening connections cannot grow a node's memory without bound."""
EVENT_QUEUE = 10_000
STREAM_CHECK_S = 1.0   # how often a quiet event stream checks that its reader is still there
KEEP_ALIVE_S = 15.0    # a comment line on a stream with no event for this long
RAW_PAGE_LIMIT = 200
UI_DIR = Path(__file__).with_name("ui")
NODE = web.AppKey("node", object)  # the Node this application serves
# HTTP status for each refusal code of the ledger's validation (TransactionRefused.code).
REFUSAL_STATUS = {
    "oversized": 413, "malformed": 400, "non_canonical": 400, "wrong_channel": 400,
    "unknown_creator": 403, "invalid_creator": 403, "not_permitted": 403, "bad_signature": 401,
    "replayed_nonce": 409,
}


def jsonable(value: Any) -> Any:
    """``value`` with bytes as hex, for JSON."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


class Refusal(Exception):
    def __init__(self, status: int, code: str, detail: Any) -> None:
        super().__init__(code)
        self.status, self.code, self.detail = status, code, detail

    def answer(self, node: Node) -> dict[str, Any]:
        """Count this refusal in the node's metrics; its JSON body (a request's, or one
        transaction's within a batch submission)."""
        node.metrics.refused.labels("api", self.code).inc()
        return {"error": self.code, "detail": self.detail}


def _node(request: web.Request) -> Node:
    return request.app[NODE]


def _channel(request: web.Request) -> str:
    channel = request.match_info["channel"]
    if channel not in CHANNELS:
        raise Refusal(404, "unknown_channel", f"no channel {channel!r}; channels are {', '.join(CHANNELS)}")
    return channel


def _ledger(request: web.Request, channel: str):
    node = _node(request)
    if node.crashed:
        raise Refusal(503, "node_crashed", "this node is crashed (fault injection); restart it")
    return node.ledgers[channel]


def _height(name: str, raw: str) -> int:
    """A height or bound given in a URL: ASCII decimal digits only (``int`` would also take
    signs, underscores, spaces and other scripts' digits)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise Refusal(400, "bad_parameter", f"{name} must be an integer >= 0, got {raw[:40]!r}")
    return int(raw)


def _int_param(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    return default if raw is None else _height(name, raw)


@web.middleware
async def refusals(request: web.Request, handler):
    try:
        return await handler(request)
    except Refusal as refusal:
        return web.json_response(refusal.answer(_node(request)), status=refusal.status)


# -- reading ----------------------------------------------------------------------------------

async def status(request: web.Request) -> web.Response:
    node = _node(request)
    poller = request.headers.get(POLLER_HEADER)
    if poller is not None and poller in node.faults.isolated_from:
        # the isolate fault cuts the peer's status polls too, as a real partition would:
        # else the peer would still hear this node, and take itself for not cut off
        raise Refusal(503, "isolated", f"{node.name} is isolated from {poller} (fault injection)")
    channels = {}
    for channel in CHANNELS:
        engine = node.engines.get(channel)
        if engine is None:
            continue
        replica = engine.replica
        height, head, root = node.ledgers[channel].applied  # one consistent triple
        channels[channel] = {
            "height": height, "head": head.hex(), "state_root": root.hex(),
            "view": replica.view, "primary": replica.ctx.primary(replica.view),
            "stable_checkpoint": replica.stable_state.seq, "halted": engine.halted,
        }
    return web.json_response({
        "node": node.name, "org": node.info.org, "genesis": node.genesis.digest.hex(),
        "crashed": node.crashed, "channels": channels,
        "peers": {"out": sorted(node.peers.connected_out), "in": sorted(node.peers.connected_in)},
        "faults": node.faults.describe(),
    })


def block_json(node: Node, channel: str, stored) -> dict[str, Any]:
    block, certificate = stored.block, stored.certificate
    header = block.header
    transactions = []
    results = block.outputs.results if block.outputs is not None else [None] * len(block.requests)
    for request, result in zip(block.requests, results):
        entry: dict[str, Any] = {"size": len(request)}
        try:
            tx = Transaction.from_bytes(request)
            entry.update(tx_id=tx.tx_id.hex(), creator=tx.creator, contract=tx.contract, function=tx.function,
                         args=jsonable(tx.args), nonce=tx.nonce, signature=tx.signature.hex())
        except TransactionRefused as refusal:
            entry.update(malformed=str(refusal))
        if result is not None:
            entry["result"] = {"status": result.status, "reason": result.reason,
                               "value": jsonable(result.value), "events": jsonable(list(result.events))}
        transactions.append(entry)
    body: dict[str, Any] = {"channel": channel, "height": block.height, "hash": block.hash.hex(),
                            "header": jsonable(header.to_value()), "transactions": transactions}
    anchors = anchors_of(channel, header.metadata)
    if anchors is not None:
        body["anchors"] = {name: {"height": anchor.height, "hash": anchor.block_hash.hex()}
                           for name, anchor in anchors.by_channel}
    if certificate is not None:
        body["certificate"] = {"view": certificate.view, "seq": certificate.seq, "digest": certificate.batch_digest.hex(),
                               "signers": [name for name, _ in certificate.signatures]}
    return body


async def block(request: web.Request) -> web.Response:
    channel = _channel(request)
    ledger = _ledger(request, channel)
    height = _height("height", request.match_info["height"])
    try:
        stored = ledger.block(height)
    except LedgerError:
        raise Refusal(404, "unknown_block", f"no block {request.match_info['height']} on {channel} (height {ledger.height})") from None
    return web.json_response(block_json(_node(request), channel, stored))


async def blocks(request: web.Request) -> web.Response:
    channel = _channel(request)
    ledger = _ledger(request, channel)
    end = min(_int_param(request, "to", ledger.height), ledger.height)
    start = _int_param(request, "from", max(0, end - PAGE_LIMIT + 1))
    if end - start + 1 > PAGE_LIMIT:
        end = start + PAGE_LIMIT - 1
    items = [block_json(_node(request), channel, stored) for stored in ledger.blocks(start, end + 1)] if start <= end else []
    return web.json_response({"channel": channel, "height": ledger.height, "from": start, "to": end, "blocks": items})


async def raw_blocks(request: web.Request) -> web.Response:
    """Stored blocks as canonical msgpack ``[[header, body, certificate], ...]`` (state transfer)."""
    channel = _channel(request)
    ledger = _ledger(request, channel)
    start = _int_param(request, "from", 1)
    end = min(_int_param(request, "to", ledger.height), ledger.height, start + RAW_PAGE_LIMIT - 1)
    rows = []
    for stored in ledger.blocks(start, end + 1):
        certificate = None if stored.certificate is None else encode(stored.certificate.to_value())
        rows.append([stored.block.header.to_bytes(), stored.block.body_bytes(), certificate])
    return web.Response(body=encode(rows), content_type=MSGPACK)


async def transaction(request: web.Request) -> web.Response:
    channel = _channel(request)
    ledger = _ledger(request, channel)
    try:
        tx_id = bytes.fromhex(request.match_info["tx_id"])
    except ValueError:
        raise Refusal(400, "bad_parameter", "tx_id must be hex") from None
    found = _node(request).find_transaction(channel, tx_id)
    if found is None:
        raise Refusal(404, "unknown_transaction", f"no committed transaction {tx_id.hex()} on {channel}")
    height, position = found
    body = block_json(_node(request), channel, ledger.block(height))
    return web.json_response({"channel": channel, "height": height, "position": position,
                              "block": body["hash"], **body["transactions"][position]})


async def state(request: web.Request) -> web.Response:
    channel = _channel(request)
    ledger = _ledger(request, channel)
    namespace, key = request.match_info["namespace"], request.match_info["key"]
    raw = ledger.state.get(namespace, key)
    if raw is None:
        raise Refusal(404, "unknown_key", f"no key {key!r} in namespace {namespace!r} of {channel}")
    return web.json_response({"channel": channel, "namespace": namespace, "key": key, "height": ledger.height,
                              "value": jsonable(decode(raw))})


async def nonce(request: web.Request) -> web.Response:
    channel = _channel(request)
    _ledger(request, channel)       # refused on a crashed node
    node, creator = _node(request), request.match_info["creator"]
    return web.json_response({"channel": channel, "creator": creator, "nonce": node.last_nonce(channel, creator)})


# -- writing ----------------------------------------------------------------------------------

def _admit(node: Node, channel: str, data: bytes, *, wait: bool):
    """Validate one client request and hand it to the channel's replica: ``(tx, future)``.

    Raises :class:`Refusal` with the request's precise reason; nothing is written then.
    """
    try:
        tx = node.validate(channel, data)
    except TransactionRefused as refusal:
        raise Refusal(REFUSAL_STATUS[refusal.code], refusal.code, refusal.detail) from None
    if tx.contract != LIFECYCLE and not node.contract_committed(channel, tx.contract):
        # this node's committed state: a node still catching up may not have the commit yet
        raise Refusal(404, "unknown_contract", f"no contract {tx.contract!r} is committed on {channel} "
                                               f"as of this node's height {node.ledgers[channel].height}")
    return tx, node.engines[channel].submit(data, tx.creator, tx.nonce, wait=tx.tx_id if wait else None)


def _open_channel(request: web.Request):
    """The submission's channel engine, if it takes requests."""
    channel = _channel(request)
    _ledger(request, channel)
    engine = _node(request).engines[channel]
    if engine.halted:
        raise Refusal(503, "channel_halted", engine.halted)
    return channel, engine


async def _body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise Refusal(413, "oversized", f"body of {request.content_length} bytes exceeds {limit}")
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise Refusal(413, "oversized", f"body exceeds {limit} bytes")
    return body


def _wait_params(request: web.Request) -> tuple[bool, float]:
    wait = request.query.get("wait")
    if wait not in (None, "commit"):
        raise Refusal(400, "bad_parameter", f"wait takes only 'commit' (to wait for the commit), got {wait!r}")
    try:
        wait_s = float(request.query.get("timeout", WAIT_LIMIT_S))
    except ValueError:
        wait_s = math.nan
    if not wait_s >= 0:     # refuses NaN too; +inf is capped below
        raise Refusal(400, "bad_parameter", f"timeout must be a number of seconds >= 0, got {request.query['timeout']!r}")
    return wait == "commit", min(wait_s, MAX_WAIT_S)


def _committed_json(block, tx_id: bytes, result) -> dict[str, Any]:
    return {"tx_id": tx_id.hex(), "height": block.height, "block": block.hash.hex(),
            "result": {"status": result.status, "reason": result.reason,
                       "value": jsonable(result.value), "events": jsonable(list(result.events))}}


async def submit(request: web.Request) -> web.Response:
    node = _node(request)
    channel, engine = _open_channel(request)
    body = await _body(request, 2 * MAX_TX_BYTES)
    if request.content_type == MSGPACK:
        data = body
    elif request.content_type == "application/json" or "Content-Type" not in request.headers:
        try:
            data = transaction_from_json(parse_json(body)).to_bytes()
        except TransactionRefused as refusal:
            raise Refusal(REFUSAL_STATUS[refusal.code], refusal.code, refusal.detail) from None
        except EncodingError as exc:
            raise Refusal(400, "non_canonical", str(exc)) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise Refusal(400, "malformed", f"malformed JSON transaction: {exc!r}") from None
    else:
        raise Refusal(415, "unsupported_media_type", f"send {MSGPACK} or application/json")
    wait, wait_s = _wait_params(request)
    tx, future = _admit(node, channel, data, wait=wait)
    node.relay(channel, [data])
    if not wait:
        return web.json_response({"tx_id": tx.tx_id.hex()}, status=202)
    try:
        block, tx_id, result = await asyncio.wait_for(future, wait_s)
    except NonceTaken as taken:
        raise _nonce_taken(taken) from None
    except asyncio.TimeoutError:
        raise _not_committed(wait_s) from None
    except asyncio.CancelledError:
        raise _not_committed(None) from None
    return web.json_response(_committed_json(block, tx_id, result))


def _nonce_taken(taken: NonceTaken) -> Refusal:
    """The refusal of a ``?wait=commit`` whose nonce another transaction of the client took."""
    return Refusal(409, "replayed_nonce", str(taken))


def _not_committed(wait_s: float | None) -> Refusal:
    """The refusal of a ``?wait=commit`` that ended without the commit: the wait ran out
    after ``wait_s`` seconds, or (``None``) the node stopped. Single and batch submissions
    answer and count it alike."""
    if wait_s is None:
        return Refusal(503, "node_stopping", "the node stopped before the transaction committed")
    return Refusal(504, "commit_timeout", f"not committed within {wait_s:g} s; it may still commit")


async def submit_batch(request: web.Request) -> web.Response:
    """Several signed transactions in one request: a canonical msgpack list of their bytes.

    For a gateway or a load generator that speaks for many clients: each transaction is
    validated, refused (and counted) or admitted on its own exactly as by ``submit``, and the
    admitted ones are relayed to the peers in one frame. The answer lists, in order, each
    transaction's outcome: ``{"error", "detail"}`` for a refusal, ``{"tx_id"}`` when not
    waiting, or its commit (as ``submit`` answers) with ``?wait=commit``; a transaction not
    committed in time answers ``{"error": "commit_timeout"}`` and is counted as the single
    path counts it.
    """
    node = _node(request)
    channel, _ = _open_channel(request)
    if request.content_type != MSGPACK:
        raise Refusal(415, "unsupported_media_type", f"send a {MSGPACK} list of transactions")
    body = await _body(request, BATCH_MAX_BYTES)
    try:
        items = decode(body, max_size=BATCH_MAX_BYTES)
    except EncodingError as exc:
        raise Refusal(400, "non_canonical", str(exc)) from None
    if type(items) is not list or not all(type(item) is bytes for item in items):
        raise Refusal(400, "malformed", "the body must be a list of transactions' bytes")
    if not 1 <= len(items) <= BATCH_MAX_TXS:
        raise Refusal(413 if items else 400, "bad_batch_size", f"a batch holds 1 to {BATCH_MAX_TXS} transactions, not {len(items)}")
    wait, wait_s = _wait_params(request)
    answers: list[Any] = []
    admitted: list[bytes] = []
    for data in items:
        try:
            tx, future = _admit(node, channel, data, wait=wait)
        except Refusal as refusal:
            answers.append(refusal.answer(node))
            continue
        admitted.append(data)
        answers.append(future if wait else {"tx_id": tx.tx_id.hex()})
    if admitted:
        node.relay(channel, admitted)
    if wait:
        futures = [answer for answer in answers if isinstance(answer, asyncio.Future)]
        if futures:
            await asyncio.wait(futures, timeout=wait_s)
        answers = [_batch_answer(node, answer, wait_s) for answer in answers]
    return web.json_response({"results": answers}, status=200 if wait else 202)


def _batch_answer(node: Node, answer: Any, wait_s: float) -> dict[str, Any]:
    if not isinstance(answer, asyncio.Future):
        return answer
    if not answer.done():
        answer.cancel()
        return _not_committed(wait_s).answer(node)
    if answer.cancelled():
        return _not_committed(None).answer(node)
    if isinstance(answer.exception(), NonceTaken):
        return _nonce_taken(answer.exception()).answer(node)
    return _committed_json(*answer.result())


# -- events and metrics -----------------------------------------------------------------------

async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: committed blocks, consensus traces, contract events, faults."""
    node = _node(request)
    if len(node.subscribers.queues) >= MAX_SUBSCRIBERS:
        raise Refusal(503, "too_many_subscribers",
                      f"this node serves at most {MAX_SUBSCRIBERS} event streams at once; close one or ask another node")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "Access-Control-Allow-Origin": "*"})
    await response.prepare(request)
    queue: asyncio.Queue = asyncio.Queue(maxsize=EVENT_QUEUE)
    node.subscribers.queues.add(queue)
    try:
        await response.write(b": connected\n\n")
        quiet_s = 0.0
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), STREAM_CHECK_S)
            except asyncio.TimeoutError:
                # a reader that went away frees its place within STREAM_CHECK_S, not at the
                # next event written to it (on a quiet cluster, long after)
                if request.transport is None or request.transport.is_closing():
                    break
                quiet_s += STREAM_CHECK_S
                if quiet_s >= KEEP_ALIVE_S:
                    quiet_s = 0.0
                    await response.write(b": keep-alive\n\n")
                continue
            quiet_s = 0.0
            await response.write(f"event: {event['type']}\ndata: {json.dumps(jsonable(event))}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        node.subscribers.queues.discard(queue)
    return response


async def metrics(request: web.Request) -> web.Response:
    node = _node(request)
    node.metrics.observe_links(node.peers)
    response = web.Response(body=node.metrics.render())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


# -- admin: fault injection ----------------------------------------------------------------

def _isolated_from(names: Any, peers: set[str]) -> set[str]:
    """The peers an ``isolate`` order cuts the node off from: every peer, or the ones it
    names (a partition: isolate node0 and node1 from node2 and node3)."""
    if names is None:
        return set(peers)
    if type(names) is not list or not names or any(type(n) is not str for n in names):
        raise Refusal(400, "bad_parameter", "from must be a non-empty list of peer names")
    unknown = sorted(set(names) - peers)
    if unknown:
        raise Refusal(400, "bad_parameter", f"not peers of this node: {', '.join(unknown)} "
                                            f"(its peers: {', '.join(sorted(peers))})")
    return set(names)


async def fault(request: web.Request) -> web.Response:
    node = _node(request)
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() or request.query.get("token")
    try:
        admin = check_token(token, node.genesis, utc_now())
    except AdminRefused as exc:
        raise Refusal(403, "admin_refused", str(exc)) from None
    try:
        order = parse_json(await request.read())
        action = order["action"]
    except (ValueError, KeyError, TypeError):
        raise Refusal(400, "malformed", 'expected JSON {"action": ..., "mode"?: ..., "delay_ms"?: ...}') from None
    peers = set(node.genesis.node_names) - {node.name}
    if action == "crash":
        node.crash()
    elif action == "restart":
        node.restart()
    elif action == "isolate":
        cut = _isolated_from(order.get("from"), peers)
        node.faults.isolated_from = cut
        if not node.crashed:    # a crashed node's links stay cut; restart applies the isolation
            node.peers.blocked = set(cut)
    elif action == "heal":
        node.faults.isolated_from = set()
        node.faults.slow_ms = 0
        node.faults.byzantine = None
        if not node.crashed:
            node.peers.blocked = set()
    elif action == "slow":
        delay_ms = order.get("delay_ms", 200)
        if type(delay_ms) is not int or not 0 <= delay_ms <= MAX_SLOW_MS:
            raise Refusal(400, "bad_parameter", f"delay_ms must be an integer from 0 to {MAX_SLOW_MS}, got {delay_ms!r}")
        node.faults.slow_ms = delay_ms
    elif action == "byzantine":
        mode = order.get("mode")
        if mode not in BYZANTINE_MODES:
            raise Refusal(400, "bad_parameter", f"mode must be one of {', '.join(BYZANTINE_MODES)}")
        node.faults.byzantine = mode
    else:
        raise Refusal(400, "bad_parameter", "action must be crash, restart, isolate, heal, slow or byzantine")
    node.subscribers.publish({"type": "fault-injected", "node": node.name, "action": action, "by": admin,
                              **node.faults.describe(), "crashed": node.crashed})
    return web.json_response({"node": node.name, "action": action, "crashed": node.crashed, **node.faults.describe()})


async def ui_index(request: web.Request) -> web.StreamResponse:
    index = UI_DIR / "index.html"
    if not index.exists():
        raise Refusal(404, "no_ui", "the dashboard is not installed on this node")
    return web.FileResponse(index)


def build_app(node: Node) -> web.Application:
    app = web.Application(middlewares=[refusals], client_max_size=4 * MAX_TX_BYTES)
    app[NODE] = node
    from p2pchain.net.peers import PEER_PATH

    app.router.add_get(PEER_PATH, node.peers.handle)
    app.router.add_get("/v1/status", status)
    app.router.add_post("/v1/channels/{channel}/transactions", submit)
    app.router.add_post("/v1/channels/{channel}/batch", submit_batch)
    app.router.add_get("/v1/channels/{channel}/transactions/{tx_id}", transaction)
    app.router.add_get("/v1/channels/{channel}/blocks", blocks)
    app.router.add_get("/v1/channels/{channel}/blocks/{height}", block)
    app.router.add_get("/v1/channels/{channel}/raw-blocks", raw_blocks)
    app.router.add_get("/v1/channels/{channel}/state/{namespace}/{key:.+}", state)
    app.router.add_get("/v1/channels/{channel}/nonces/{creator}", nonce)
    app.router.add_get("/v1/events", events)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/admin/fault", fault)
    app.router.add_get("/ui", ui_index)
    from .simapi import register as register_dashboard  # the dashboard's routes (imports this module)
    register_dashboard(app)
    if UI_DIR.exists():
        app.router.add_static("/ui/", UI_DIR)
    return app
