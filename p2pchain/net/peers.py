"""Authenticated, persistent peer links between nodes: websockets through aiohttp.

One HTTP request per consensus message would cost 13× a websocket frame (LIMITS.md), so each
node keeps one websocket open to every other node and sends its consensus frames down it.
Links are one-way: a node *sends* on the links it dialled and *receives* on the links others
dialled to it, so there is never a question of which of two crossing connections wins.

Authentication binds a link to the genesis (DESIGN.md, decision 3). The dialler says who it
is and whom it wants, with a fresh nonce; the listener answers with its own nonce and a
signature over both nonces, both names and the genesis digest; the dialler checks it against
the listener's genesis key and answers with its own signature over the same transcript
(with a different label, so neither signature can be replayed as the other). The listener
checks that and says ``welcome``; only then does the dialler count the link as up and send
frames down it (a dialler that counted it up on sending its signature would pump frames into
a link the listener is closing, and lose them), and only then are frames accepted. Every
frame is still a signed consensus message checked above this layer: the link proves *who is
talking*, the message signature proves *who said it*.

What a peer sends that is malformed or oversized is counted in :attr:`PeerNetwork.refused`
by reason, and the link is closed; nothing it sends can raise into the node.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable

import aiohttp
from aiohttp import web

from ..crypto import BadSignature, SigningKey, verify
from ..encoding import EncodingError, decode, encode
from ..genesis import Genesis

__all__ = ["PEER_PATH", "PeerNetwork", "LinkSettings"]

PEER_PATH = "/v1/peer"
log = logging.getLogger("p2pchain.net")


@dataclass(frozen=True, slots=True)
class LinkSettings:
    max_frame_bytes: int = 4 * 1024 * 1024
    queue_frames: int = 20_000  # per peer; beyond it frames are dropped and counted
    handshake_timeout_s: float = 5.0
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0
    heartbeat_s: float = 5.0


class _Outbox:
    """One peer's frames waiting to leave: urgent ones (consensus) before bulk ones (relayed
    requests), each kind in order; at most ``limit`` frames in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.urgent: deque[bytes] = deque()
        self.bulk: deque[bytes] = deque()
        self.ready = asyncio.Event()  # set while a frame waits

    def put(self, frame: bytes, bulk: bool = False) -> bool:
        if len(self.urgent) + len(self.bulk) >= self.limit:
            return False
        (self.bulk if bulk else self.urgent).append(frame)
        self.ready.set()
        return True

    def take(self) -> bytes | None:
        if self.urgent:
            return self.urgent.popleft()
        if self.bulk:
            return self.bulk.popleft()
        self.ready.clear()
        return None


def _transcript(label: str, genesis: bytes, dialler: str, listener: str, n1: bytes, n2: bytes) -> bytes:
    return encode({"label": label, "genesis": genesis, "dialler": dialler, "listener": listener,
                   "dialler_nonce": n1, "listener_nonce": n2})


class PeerNetwork:
    """This node's links to its peers.

    Parameters
    ----------
    me, key : this node's name in the genesis and its signing key.
    genesis : the consortium genesis (node names, addresses, keys, digest).
    on_frame : called with (peer name, frame bytes) for every frame received; it returns
        ``None`` if the frame was acceptable, or a short reason, after which the link is
        closed and the reason counted.
    on_link_up : called with the peer's name each time this node's link to it (the one
        its frames leave by) is up and authenticated: frames that left by the link before
        may have been lost with it.
    """

    def __init__(
        self,
        me: str,
        key: SigningKey,
        genesis: Genesis,
        on_frame: Callable[[str, bytes], str | None],
        settings: LinkSettings = LinkSettings(),
        nonce: Callable[[int], bytes] = secrets.token_bytes,
        on_link_up: Callable[[str], None] = lambda peer: None,
    ) -> None:
        self.me, self._key, self._genesis = me, key, genesis
        self._on_frame = on_frame
        self._on_link_up = on_link_up
        self.settings = settings
        self._nonce = nonce
        self._keys = {node.name: node.public_key for node in genesis.nodes}
        self._peers = [node for node in genesis.nodes if node.name != me]
        self._queues: dict[str, _Outbox] = {}
        self._tasks: list[asyncio.Task] = []
        self._session: aiohttp.ClientSession | None = None
        self.connected_out: set[str] = set()
        self.connected_in: set[str] = set()
        self.refused: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.blocked: set[str] = set()  # fault injection: peers this node neither sends to nor hears
        self._inbound: set[web.WebSocketResponse] = set()

    # -- sending ---------------------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        for peer in self._peers:
            self._queues[peer.name] = _Outbox(self.settings.queue_frames)
            self._tasks.append(asyncio.create_task(self._dial_forever(peer.name), name=f"link-{peer.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await asyncio.gather(*(ws.close(code=aiohttp.WSCloseCode.GOING_AWAY) for ws in list(self._inbound)),
                             return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def send(self, peer: str, frame: bytes, *, bulk: bool = False) -> bool:
        """Queue ``frame`` for ``peer``; ``False`` (and counted) if its queue is full.

        ``bulk`` frames (relayed client requests) leave only when no other frame waits:
        consensus votes must not queue behind a burst of requests, or every replica's
        request timer fires on a primary that is in fact ordering.
        """
        queue = self._queues.get(peer)
        if queue is None or peer in self.blocked:
            return False
        if not queue.put(frame, bulk):
            self.dropped[peer] += 1
            return False
        return True

    def broadcast(self, frame: bytes) -> None:
        for peer in self._queues:
            self.send(peer, frame)

    async def _dial_forever(self, peer: str) -> None:
        node = self._genesis.node(peer)
        url = f"http://{node.host}:{node.port}{PEER_PATH}"
        backoff = self.settings.backoff_initial_s
        while True:
            try:
                async with self._session.ws_connect(
                    url, max_msg_size=self.settings.max_frame_bytes, heartbeat=self.settings.heartbeat_s,
                    timeout=aiohttp.ClientWSTimeout(ws_close=1.0),
                ) as ws:
                    await asyncio.wait_for(self._authenticate_as_dialler(ws, peer), self.settings.handshake_timeout_s)
                    self.connected_out.add(peer)
                    log.info("link to %s up", peer)
                    backoff = self.settings.backoff_initial_s
                    self._on_link_up(peer)
                    await self._pump(ws, peer)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError, _HandshakeError) as exc:
                if peer in self.connected_out:
                    log.info("link to %s down: %s", peer, exc or type(exc).__name__)
            finally:
                self.connected_out.discard(peer)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.settings.backoff_max_s)

    async def _pump(self, ws: aiohttp.ClientWebSocketResponse, peer: str) -> None:
        queue = self._queues[peer]
        closed = asyncio.create_task(ws.receive())  # completes when the peer closes the link
        try:
            while not ws.closed:
                frame = queue.take()
                if frame is None:  # nothing waits: sleep until something does, or the link closes
                    waiter = asyncio.create_task(queue.ready.wait())
                    done, _ = await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
                    if closed in done:
                        waiter.cancel()
                        return
                    continue
                if peer in self.blocked:
                    continue
                await ws.send_bytes(frame)
                self.sent[peer] += 1
        finally:
            closed.cancel()

    async def _authenticate_as_dialler(self, ws, peer: str) -> None:
        my_nonce = self._nonce(32)
        await ws.send_bytes(encode({"type": "hello", "from": self.me, "to": peer,
                                    "genesis": self._genesis.digest, "nonce": my_nonce}))
        reply = _decode_handshake(await ws.receive())
        if reply.get("type") != "challenge" or not isinstance(reply.get("nonce"), bytes):
            raise _HandshakeError(f"{peer} answered the hello with {reply.get('type')!r}")
        their_nonce = reply["nonce"]
        try:
            verify(self._keys[peer], _transcript("listener", self._genesis.digest, self.me, peer, my_nonce, their_nonce),
                   reply.get("signature", b""))
        except BadSignature:
            raise _HandshakeError(f"{peer} did not prove its genesis key") from None
        signature = self._key.sign(_transcript("dialler", self._genesis.digest, self.me, peer, my_nonce, their_nonce))
        await ws.send_bytes(encode({"type": "auth", "signature": signature}))
        message = await ws.receive()
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            raise _HandshakeError(f"{peer} refused the link: {message.extra or 'closed'}")
        if _decode_handshake(message).get("type") != "welcome":
            raise _HandshakeError(f"{peer} answered the signature with something else than a welcome")

    # -- receiving -------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """The aiohttp handler for ``PEER_PATH``: authenticate, then deliver frames."""
        ws = web.WebSocketResponse(max_msg_size=self.settings.max_frame_bytes, heartbeat=self.settings.heartbeat_s)
        try:
            await ws.prepare(request)
        except ConnectionError:  # the dialler went away while the link opened (killed, say): nothing to serve
            log.info("a peer link from %s closed while it opened", request.remote)
            return ws
        self._inbound.add(ws)
        try:
            return await self._serve_link(request, ws)
        finally:
            self._inbound.discard(ws)

    async def _serve_link(self, request: web.Request, ws: web.WebSocketResponse) -> web.WebSocketResponse:
        try:
            peer = await asyncio.wait_for(self._authenticate_as_listener(ws), self.settings.handshake_timeout_s)
        except (_HandshakeError, asyncio.TimeoutError) as exc:
            reason = str(exc) or "handshake timed out"
            self.refused["handshake"] += 1
            log.warning("refused a peer link from %s: %s", request.remote, reason)
            await ws.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION, message=reason.encode()[:120])
            return ws
        self.connected_in.add(peer)
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.BINARY:
                    self._refuse(peer, _frame_fault(message))
                    break
                if peer in self.blocked:
                    continue
                self.received[peer] += 1
                reason = self._on_frame(peer, message.data)
                if reason is not None:
                    self._refuse(peer, reason)
                    break
        finally:
            self.connected_in.discard(peer)
            await ws.close()
        return ws

    def _refuse(self, peer: str, reason: str) -> None:
        self.refused[reason] += 1
        log.warning("closing the link from %s: %s", peer, reason)

    async def _authenticate_as_listener(self, ws: web.WebSocketResponse) -> str:
        hello = _decode_handshake(await ws.receive())
        peer, nonce = hello.get("from"), hello.get("nonce")
        if hello.get("type") != "hello" or not isinstance(nonce, bytes) or len(nonce) != 32:
            raise _HandshakeError("expected a hello with a 32-byte nonce")
        if peer not in self._keys or peer == self.me:
            raise _HandshakeError(f"{peer!r} is not a peer node of this consortium")
        if hello.get("to") != self.me:
            raise _HandshakeError(f"hello addressed to {hello.get('to')!r}, this is {self.me}")
        if hello.get("genesis") != self._genesis.digest:
            raise _HandshakeError("genesis digest differs: another consortium")
        my_nonce = self._nonce(32)
        signature = self._key.sign(_transcript("listener", self._genesis.digest, peer, self.me, nonce, my_nonce))
        await ws.send_bytes(encode({"type": "challenge", "nonce": my_nonce, "signature": signature}))
        auth = _decode_handshake(await ws.receive())
        try:
            verify(self._keys[peer], _transcript("dialler", self._genesis.digest, peer, self.me, nonce, my_nonce),
                   auth.get("signature", b"") if auth.get("type") == "auth" else b"")
        except BadSignature:
            raise _HandshakeError(f"dialler did not prove it holds the key of {peer}") from None
        await ws.send_bytes(encode({"type": "welcome"}))
        return peer


class _HandshakeError(Exception):
    pass


def _frame_fault(message: aiohttp.WSMessage) -> str:
    if message.type == aiohttp.WSMsgType.TEXT:
        return "frame_not_binary"
    if getattr(message.data, "code", None) == aiohttp.WSCloseCode.MESSAGE_TOO_BIG:
        return "frame_oversized"
    return "frame_error"


def _decode_handshake(message: aiohttp.WSMessage) -> dict:
    if message.type != aiohttp.WSMsgType.BINARY:
        raise _HandshakeError(f"expected a binary handshake frame, got {message.type.name}")
    try:
        value = decode(message.data, max_size=4096)
    except EncodingError as exc:
        raise _HandshakeError(f"malformed handshake frame: {exc}") from None
    if not isinstance(value, dict):
        raise _HandshakeError("handshake frame is not a map")
    return value
