"""The client's submissions, single and batch, when the connection drops before the answer:
it sends the same signed transactions again, and a copy the node already committed is
answered from the node's record of it (p2pchain/client.py). Against a small fake node on
loopback."""
from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from p2pchain import client as client_module
from p2pchain.client import ApiError, Client
from p2pchain.crypto import SigningKey
from p2pchain.ledger.transaction import Transaction

TX = Transaction.create(SigningKey.from_seed(bytes(32)), channel="transaction", contract="demo",
                        function="record", args={"topic": "t"}, creator="ev01", nonce=7)
COMMIT = {"tx_id": TX.tx_id.hex(), "height": 12, "block": "ab" * 32,
          "result": {"status": "ok", "reason": None, "value": None, "events": []}}


async def _node(behaviour: list[str], looked_up: list[str]) -> TestServer:
    """A fake node whose n-th submission does ``behaviour[n]``: "drop" (close the connection
    without an answer), "commit" (answer the commit), "replayed" (409 replayed_nonce) or
    "other" (409 replayed_nonce, and the lookup finds no such transaction)."""
    calls = {"n": 0}

    async def submit(request: web.Request) -> web.StreamResponse:
        assert await request.read() == TX.to_bytes()
        what = behaviour[min(calls["n"], len(behaviour) - 1)]
        calls["n"] += 1
        if what == "drop":
            request.transport.close()
            return web.Response()
        if what == "commit":
            return web.json_response(COMMIT)
        return web.json_response({"error": "replayed_nonce", "detail": "nonce 7 is not above 7"}, status=409)

    async def transaction(request: web.Request) -> web.Response:
        looked_up.append(request.match_info["tx_id"])
        if behaviour[-1] == "other":
            return web.json_response({"error": "unknown_transaction", "detail": "none"}, status=404)
        return web.json_response({"channel": "transaction", "height": 12, "position": 0, "block": "ab" * 32,
                                  "tx_id": TX.tx_id.hex(), "creator": "ev01", "result": COMMIT["result"]})

    app = web.Application()
    app.router.add_post("/v1/channels/{channel}/transactions", submit)
    app.router.add_get("/v1/channels/{channel}/transactions/{tx_id}", transaction)
    server = TestServer(app)
    await server.start_server()
    server.calls = calls
    return server


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr(client_module, "RETRY_BACKOFF_S", 0.0)


async def _submit(server: TestServer, **kwargs):
    async with Client(str(server.make_url("/")), timeout_s=10) as client:
        return await client.submit(TX, **kwargs)


async def test_a_dropped_connection_is_tried_again_and_the_answer_arrives():
    server = await _node(["drop", "drop", "commit"], [])
    try:
        assert await _submit(server, wait=True) == COMMIT
        assert server.calls["n"] == 3
    finally:
        await server.close()


async def test_a_copy_committed_before_the_drop_is_answered_from_the_nodes_record():
    looked_up: list[str] = []
    server = await _node(["drop", "replayed"], looked_up)
    try:
        assert await _submit(server, wait=True) == COMMIT
        assert looked_up == [TX.tx_id.hex()]
    finally:
        await server.close()
    server = await _node(["drop", "replayed"], looked_up)
    try:
        assert await _submit(server) == {"tx_id": TX.tx_id.hex()}    # without waiting
    finally:
        await server.close()


async def test_a_replay_without_a_drop_or_of_another_transaction_is_refused():
    looked_up: list[str] = []
    server = await _node(["replayed"], looked_up)
    try:
        with pytest.raises(ApiError) as refused:
            await _submit(server, wait=True)
        assert refused.value.code == "replayed_nonce" and looked_up == []
    finally:
        await server.close()
    server = await _node(["drop", "other"], looked_up)
    try:
        with pytest.raises(ApiError) as refused:
            await _submit(server, wait=True)
        assert refused.value.code == "replayed_nonce" and looked_up == [TX.tx_id.hex()]
    finally:
        await server.close()


async def test_a_connection_that_keeps_dropping_ends_in_the_error_after_the_last_try():
    import aiohttp
    server = await _node(["drop"], [])
    try:
        with pytest.raises(aiohttp.ClientConnectionError):
            await _submit(server, wait=True)
        assert server.calls["n"] == client_module.SUBMIT_ATTEMPTS
    finally:
        await server.close()


async def test_a_dropped_batch_is_sent_again_and_its_copies_committed_meanwhile_are_answered():
    # the first try drops; the second answers one transaction committed by the first try
    # (replayed_nonce, found by id), one refused for its own reason, one committed now
    other = Transaction.create(SigningKey.from_seed(bytes(32)), channel="transaction", contract="demo",
                               function="record", args={"topic": "u"}, creator="ev01", nonce=8)
    looked_up: list[str] = []
    calls = {"n": 0}

    async def batch(request: web.Request) -> web.StreamResponse:
        await request.read()
        calls["n"] += 1
        if calls["n"] == 1:
            request.transport.close()
            return web.Response()
        return web.json_response({"results": [
            {"error": "replayed_nonce", "detail": "nonce 7 is not above 7"},
            {"error": "bad_signature", "detail": "no"},
            {**COMMIT, "tx_id": other.tx_id.hex()}]})

    async def transaction(request: web.Request) -> web.Response:
        looked_up.append(request.match_info["tx_id"])
        return web.json_response({"channel": "transaction", "height": 12, "position": 0, "block": "ab" * 32,
                                  "tx_id": TX.tx_id.hex(), "result": COMMIT["result"]})

    app = web.Application()
    app.router.add_post("/v1/channels/{channel}/batch", batch)
    app.router.add_get("/v1/channels/{channel}/transactions/{tx_id}", transaction)
    server = TestServer(app)
    await server.start_server()
    try:
        async with Client(str(server.make_url("/")), timeout_s=10) as client:
            results = await client.submit_batch("transaction", [TX, TX, other], wait=True)
        assert calls["n"] == 2 and looked_up == [TX.tx_id.hex()]
        assert results[0] == COMMIT
        assert results[1] == {"error": "bad_signature", "detail": "no"}
        assert results[2]["tx_id"] == other.tx_id.hex()
    finally:
        await server.close()


@pytest.mark.parametrize("status", [200, 500])
async def test_an_answer_nested_past_the_parser_is_a_bad_response_not_a_recursion_error(status):
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=b"[" * 100_000, status=status, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/status", answer)
    server = TestServer(app)
    await server.start_server()
    try:
        async with Client(str(server.make_url("/")), timeout_s=10) as client:
            if status == 200:
                assert (await client.status())["error"] == "bad_response"
            else:
                with pytest.raises(ApiError) as refused:
                    await client.status()
                assert (refused.value.status, refused.value.code) == (500, "bad_response")
    finally:
        await server.close()
