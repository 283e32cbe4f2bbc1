"""A client of a node's HTTP API (issue 8's client API), asynchronous, over aiohttp.

A :class:`Signer` holds one client identity's key and hands out strictly increasing nonces
per channel; :class:`Client` talks to one node; :class:`ClusterClient` to all of them, going
around a node that is down. Transactions travel as canonical msgpack (``application/msgpack``,
the fast path) or as JSON with binary fields in hex (``application/json``, for people and
curl): see :func:`transaction_to_json`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from .consortium import load_identity_key
from .crypto import SigningKey
from .encoding import encode, parse_json
from .ledger.transaction import Transaction

__all__ = ["ApiError", "Client", "ClusterClient", "ClusterError", "Signer", "STATUS_MAX_BYTES", "read_bounded",
           "read_status", "transaction_to_json", "transaction_from_json"]

MSGPACK = "application/msgpack"
SUBMIT_ATTEMPTS = 4     # tries of one submission whose connection drops before the answer
RETRY_BACKOFF_S = 0.1   # before the second try; doubled before each later one
STATUS_MAX_BYTES = 64 * 1024
"""A peer's ``/v1/status`` answer is read up to this size (a real one is ~1 KiB): a faulty
peer's endless answer is refused, not buffered."""


class ApiError(Exception):
    """A 4xx/5xx answer from a node: ``status``, ``code`` and ``detail`` as the node gave them."""

    def __init__(self, status: int, code: str, detail: Any) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail
        self.after_retry = False    # the answer to a submission sent again after a drop


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body of another node's answer, or ``None`` once it passes ``limit`` bytes: a
    faulty peer's endless answer is cut off, not buffered."""
    body = bytearray()
    while chunk := await response.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def read_status(response: aiohttp.ClientResponse) -> dict[str, Any] | None:
    """A node's ``/v1/status`` answer as a JSON object, read up to ``STATUS_MAX_BYTES``;
    ``None`` if it is larger, not JSON, or not an object."""
    body = await read_bounded(response, STATUS_MAX_BYTES)
    if body is None:
        return None
    try:
        status = parse_json(body)
    except ValueError:      # UnicodeDecodeError included
        return None
    return status if isinstance(status, dict) else None


def transaction_to_json(tx: Transaction) -> dict[str, Any]:
    return {
        "channel": tx.channel, "contract": tx.contract, "function": tx.function,
        "args": tx.args, "creator": tx.creator, "nonce": tx.nonce, "signature": tx.signature.hex(),
    }


def transaction_from_json(value: Any) -> Transaction:
    """The inverse of :func:`transaction_to_json`; raises ``ValueError``/``KeyError``/``TypeError``."""
    if not isinstance(value, dict):
        raise TypeError("a transaction is a JSON object")
    return Transaction.from_value({**value, "type": "tx", "signature": bytes.fromhex(value["signature"])})


@dataclass
class Signer:
    """One client identity: its name, key, and the next nonce per channel."""

    name: str
    key: SigningKey
    first_nonce: int = 1
    next_nonce: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, consortium_dir: Path, name: str, *, first_nonce: int = 1) -> Signer:
        return cls(name, load_identity_key(consortium_dir, name), first_nonce)

    async def resume(self, client: Client, channel: str) -> None:
        """Continue after the last nonce this identity used on ``channel`` as far as that node
        knows (its ledger's, or a higher one it has committed but not yet executed); never
        back, so resuming at several nodes keeps the highest."""
        last = (await client.nonce(channel, self.name)).get("nonce")
        self.next_nonce[channel] = max(self.next_nonce.get(channel, self.first_nonce), (last or 0) + 1)

    def transaction(self, channel: str, contract: str, function: str, args: Any = None) -> Transaction:
        nonce = self.next_nonce.get(channel, self.first_nonce)
        self.next_nonce[channel] = nonce + 1
        return Transaction.create(self.key, channel=channel, contract=contract, function=function,
                                  args=args if args is not None else {}, creator=self.name, nonce=nonce)


class Client:
    """One node's client API. Use as ``async with Client(url) as client: ...``."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0, session: aiohttp.ClientSession | None = None):
        self.base_url = base_url.rstrip("/")
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def __aenter__(self) -> Client:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()

    async def _answer(self, response: aiohttp.ClientResponse) -> Any:
        raw = await response.read()
        try:
            body = parse_json(raw)
        except ValueError:          # not JSON (a proxy's page, a faulty node): its first bytes
            body = {"error": "bad_response", "detail": raw[:200].decode("utf-8", "replace")}
        if response.status >= 400:
            body = body if isinstance(body, dict) else {}
            raise ApiError(response.status, body.get("error", "error"), body.get("detail"))
        return body

    async def get(self, path: str, **params: Any) -> Any:
        query = {k: str(v) for k, v in params.items() if v is not None}
        async with self._session.get(self.base_url + path, params=query) as response:
            return await self._answer(response)

    async def status(self) -> dict[str, Any]:
        return await self.get("/v1/status")

    async def fault(self, order: dict[str, Any], token: str) -> dict[str, Any]:
        """Inject a fault through the node's admin API (``{"action": ...}``, docs/teaching.md),
        authorised by an admin ``token``; the node's answer."""
        async with self._session.post(self.base_url + "/v1/admin/fault", json=order,
                                      headers={"Authorization": f"Bearer {token}"}) as response:
            return await self._answer(response)

    def _wait_params(self) -> dict[str, str]:
        """The query of a submission that waits for its commit: the node gives up a second
        before this client does, so that its 504 (the transaction admitted, not yet
        committed) arrives instead of a local timeout."""
        total = self._timeout.total
        return {"wait": "commit", "timeout": f"{max(total / 2, total - 1.0):g}"}

    async def submit(self, tx: Transaction, *, wait: bool = False, as_json: bool = False) -> dict[str, Any]:
        """Send ``tx``; with ``wait``, return only once it is committed (height and result); the
        node waits a second less than this client does (``timeout_s``, at most 600 s).

        A connection that drops before the answer (the node restarting, a proxy closing it)
        is tried again, ``SUBMIT_ATTEMPTS`` times in all with a short backoff: sending the
        same signed transaction twice is safe, as a node keeps one request per creator and
        nonce. If the first copy got committed meanwhile, the node refuses the second as
        ``replayed_nonce``; the client then looks the transaction up by its id and answers
        with its commit, as if the first answer had arrived.
        """
        url = f"{self.base_url}/v1/channels/{tx.channel}/transactions"
        params = self._wait_params() if wait else {}
        if as_json:
            kwargs = {"data": json.dumps(transaction_to_json(tx)), "headers": {"Content-Type": "application/json"}}
        else:
            kwargs = {"data": tx.to_bytes(), "headers": {"Content-Type": MSGPACK}}
        try:
            return (await self._post(url, params, **kwargs))[0]
        except ApiError as error:
            if not error.after_retry or error.code != "replayed_nonce":
                raise
            committed = await self.find_committed(tx, wait)
            if committed is None:
                raise
            return committed

    async def _post(self, url: str, params: dict[str, str], **kwargs: Any) -> tuple[Any, bool]:
        """POST and read the answer, sending again when the connection drops before it
        (``SUBMIT_ATTEMPTS`` tries in all, backoff from ``RETRY_BACKOFF_S``): (answer, whether
        it came after a retry). An :class:`ApiError` carries the same as ``after_retry``."""
        for attempt in range(SUBMIT_ATTEMPTS):
            try:
                async with self._session.post(url, params=params, **kwargs) as response:
                    return await self._answer(response), attempt > 0
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                if attempt == SUBMIT_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(RETRY_BACKOFF_S * 2 ** attempt)
            except ApiError as error:
                error.after_retry = attempt > 0
                raise
        raise AssertionError("unreachable")

    async def find_committed(self, tx: Transaction, wait: bool) -> dict[str, Any] | None:
        """``tx`` as ``submit`` answers it once committed -- its commit with ``wait``, else
        ``{"tx_id"}`` -- or None if this node has no committed transaction with its id
        (another one took its nonce)."""
        try:
            found = await self.transaction(tx.channel, tx.tx_id)
        except ApiError as error:
            if error.code == "unknown_transaction":
                return None
            raise
        if not wait:
            return {"tx_id": found["tx_id"]}
        return {"tx_id": found["tx_id"], "height": found["height"], "block": found["block"],
                "result": found.get("result")}

    async def submit_batch(self, channel: str, txs: list[Transaction], *, wait: bool = False) -> list[dict[str, Any]]:
        """Send several transactions of ``channel`` in one request (at most 512, 2 MiB); return
        each one's outcome in order: its commit (with ``wait``) or ``{"tx_id"}``, or
        ``{"error", "detail"}`` if the node refused it (the others go on regardless). A dropped
        connection is handled as by :meth:`submit`."""
        url = f"{self.base_url}/v1/channels/{channel}/batch"
        params = self._wait_params() if wait else {}
        body = encode([tx.to_bytes() for tx in txs])
        answer, after_retry = await self._post(url, params, data=body, headers={"Content-Type": MSGPACK})
        results = answer["results"]
        if after_retry:     # as submit does: a copy committed before the drop is no refusal
            for k, (tx, result) in enumerate(zip(txs, results)):
                if result.get("error") == "replayed_nonce":
                    committed = await self.find_committed(tx, wait)
                    if committed is not None:
                        results[k] = committed
        return results

    async def block(self, channel: str, height: int) -> dict[str, Any]:
        return await self.get(f"/v1/channels/{channel}/blocks/{height}")

    async def blocks(self, channel: str, start: int | None = None, end: int | None = None) -> dict[str, Any]:
        return await self.get(f"/v1/channels/{channel}/blocks", **{"from": start, "to": end})

    async def transaction(self, channel: str, tx_id: bytes | str) -> dict[str, Any]:
        tx_hex = tx_id.hex() if isinstance(tx_id, bytes) else tx_id
        return await self.get(f"/v1/channels/{channel}/transactions/{tx_hex}")

    async def nonce(self, channel: str, creator: str) -> dict[str, Any]:
        """``{"nonce": last nonce of creator on channel, or None}``."""
        return await self.get(f"/v1/channels/{channel}/nonces/{creator}")

    async def state(self, channel: str, namespace: str, key: str) -> dict[str, Any]:
        return await self.get(f"/v1/channels/{channel}/state/{namespace}/{key}")


class ClusterError(Exception):
    """No node of the cluster answered a question, or none committed a transaction in time."""


def why_not(error: Exception) -> str:
    """A node's failure in a few words, for a note that the call goes to the next node."""
    if isinstance(error, ApiError):
        return f"{error.status} {error.code}" + (f": {error.detail}" if error.detail else "")
    if isinstance(error, asyncio.TimeoutError):
        return "no answer in time"
    return f"cannot connect: {error}" if isinstance(error, aiohttp.ClientConnectorError) else type(error).__name__


class ClusterClient:
    """Every node of a consortium as one client, going around nodes that are down.

    A node may be crashed, stopped, isolated or slowed down (fault injection invites it).
    :meth:`ask` puts a question to the first node, from a preferred one on, that answers,
    skipping one that cannot be reached or answers 503 (crashed, stopping, channel halted).
    :meth:`submit` sends *one signed transaction* to node after node until one takes it (with
    ``wait``: commits it), also past a 504 (not committed within the client's timeout).
    That is safe because a node keeps one request per creator and nonce: a copy that
    finds its nonce taken is looked up by its id, and answered with its commit if it is
    the one that committed. A node that failed is asked last for ``suspect_s``; a caller
    that knows better (a node left behind) may :meth:`suspect` it too.

    ``clients``: one :class:`Client` per node name, in the order to ask them; their timeout
    is how long a node gets before the next is tried. ``say`` hears a line for each node
    passed over.
    """

    def __init__(self, clients: Mapping[str, Client], *, say: Callable[[str], None] = lambda line: None,
                 suspect_s: float = 60.0, give_up_s: float = 600.0, round_pause_s: float = 1.0) -> None:
        if not clients:
            raise ValueError("a cluster needs at least one node")
        self.clients = dict(clients)
        self.names = list(self.clients)
        self.say = say
        self.suspect_s, self.give_up_s, self.round_pause_s = suspect_s, give_up_s, round_pause_s
        self._suspect: dict[str, float] = {}  # node -> until when it is asked last

    async def __aenter__(self) -> ClusterClient:
        for client in self.clients.values():
            await client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self.clients.values():
            await client.__aexit__(*exc)

    def suspect(self, names) -> None:
        until = time.monotonic() + self.suspect_s
        for name in names:
            self._suspect[name] = until

    def is_suspect(self, name: str) -> bool:
        return self._suspect.get(name, 0.0) > time.monotonic()

    def order(self, prefer: str | None = None) -> list[str]:
        """The nodes in the order to ask them: from ``prefer`` on, those that failed lately last."""
        k = self.names.index(prefer) if prefer in self.clients else 0
        return sorted(self.names[k:] + self.names[:k], key=self.is_suspect)   # stable: healthy first

    async def ask(self, act, prefer: str | None = None):
        """``await act(client)`` on the first node, from ``prefer`` on, that answers."""
        error: Exception | None = None
        names = self.order(prefer)
        for k, name in enumerate(names):
            try:
                return await act(self.clients[name])
            except ApiError as exc:
                if exc.status != 503:
                    raise
                error = exc
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                error = exc
            self.suspect([name])
            if k + 1 < len(names):
                self.say(f"{name} did not answer ({why_not(error)}); asking {names[k + 1]}")
        raise ClusterError(f"no node answers ({names[-1]}: {why_not(error)})" if len(names) > 1
                           else f"{names[0]} does not answer: {why_not(error)}")

    async def status(self, prefer: str | None = None) -> dict[str, Any]:
        """The status of the first node, from ``prefer`` on, that runs its channels."""
        async def running(client: Client) -> dict[str, Any]:
            status = await client.status()
            if status.get("crashed"):
                raise ApiError(503, "node_crashed", f"{status.get('node')} is crashed")
            return status
        return await self.ask(running, prefer)

    async def submit(self, tx: Transaction, *, wait: bool = True, prefer: str | None = None) -> dict[str, Any]:
        """``tx`` submitted (and with ``wait`` committed), from node ``prefer`` on; the
        node's answer. Every node is tried in turn, in rounds with a pause between them (a
        view change may be under way), until a round ends past ``give_up_s`` (with 0: one
        round)."""
        deadline = time.monotonic() + self.give_up_s
        names = self.order(prefer)
        for attempt in itertools.count():
            name = names[attempt % len(names)]
            client = self.clients[name]
            try:
                return await client.submit(tx, wait=wait)
            except ApiError as exc:
                if exc.code == "replayed_nonce":
                    # this very transaction, taken or committed meanwhile through another node?
                    found = await client.find_committed(tx, wait)
                    if found is None:
                        raise
                    return found
                if exc.status not in (503, 504):
                    raise
                error: Exception = exc
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                error = exc
            self.suspect([name])
            round_done = attempt % len(names) == len(names) - 1
            if round_done and time.monotonic() >= deadline:
                if len(names) == 1:
                    raise ClusterError(f"{name} did not {'commit' if wait else 'take'} it: {why_not(error)}")
                raise ClusterError(f"not {'committed' if wait else 'taken'} by any node in {attempt + 1} tries "
                                   f"(the last, {name}: {why_not(error)})")
            self.say(f"{name} did not {'commit' if wait else 'take'} {tx.contract}.{tx.function} of {tx.creator} "
                     f"({why_not(error)}); it goes to {names[(attempt + 1) % len(names)]}")
            if round_done:
                await asyncio.sleep(self.round_pause_s)        # every node tried: give a view change time
        raise AssertionError("unreachable")
