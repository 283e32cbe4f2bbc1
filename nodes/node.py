"""A p2pchain node: three channel engines, peer links and the HTTP API in one asyncio process.

``p2pchain node --dir DIR --name NODE`` runs it. The node loads the genesis and its key,
opens one ledger, one contract worker and one PBFT replica per channel, serves peers
(``/v1/peer``), clients (``/v1/...``), metrics (``/metrics``) and the dashboard (``/ui``) on
the one port the genesis gives it, and shuts down cleanly on SIGTERM or SIGINT.

On disk, under ``DIR/nodes/<node>/``: ``ledger/<channel>.db`` (blocks and world state,
``p2pchain.ledger``), ``node.sqlite`` (the replicas' durable state) and ``index.sqlite``
(transaction ids to heights, rebuilt from the blocks if lost). Its log is
``DIR/logs/<node>.log``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import os
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import aiohttp
from aiohttp import web

from p2pchain.bounded import BoundedDict
from p2pchain.consensus import Keyring, MalformedMessage, decode_message, encode_message
from p2pchain.consortium import load_identity_key
from p2pchain.client import read_bounded, read_status
from p2pchain.encoding import EncodingError, decode, encode
from p2pchain.genesis import CHANNELS, Genesis
from p2pchain.ledger.block import Block
from p2pchain.ledger.sql import transaction
from p2pchain.ledger.store import ChannelLedger, ledger_path
from p2pchain.ledger.transaction import Transaction, TransactionRefused, validate_transaction
from p2pchain.net.peers import PEER_PATH, PeerNetwork
from p2pchain.ordering import CommitCertificate
from p2pchain.runtime.lifecycle import LifecyclePolicy, committed
from p2pchain.runtime.worker import ChannelWorker

from .anchoring import NodeAnchoring
from .engine import ChannelEngine, DurableReplicaStore, EngineHooks, committed_transactions
from .faults import FaultState
from .memory import settle_collector, trim_forever
from .metrics import NodeMetrics

__all__ = ["Node", "run_node"]

log = logging.getLogger("p2pchain.node")
FRAME_CONSENSUS = b"C"
PEER_POLL_S = 1.0
POLLER_HEADER = "P2P-Poller"
"""Names the node behind a status poll, so that a node isolated from it by fault injection
can refuse the poll as a real partition would (nodes/api.py); claimed, not authenticated:
it decides only what the isolate fault emulates."""
FETCH_MAX_BYTES = 64 * 1024 * 1024
"""The most of a peer's answer to a state-transfer fetch (``raw-blocks``) that is read."""
FRAME_REQUEST = b"R"
RELAY_MAX_REQUESTS = 512
RELAY_MAX_BYTES = 2 * 1024 * 1024
"""Client requests in one relayed frame (a batch submission is relayed as one frame), and
the frame's size: well under the peer links' frame limit."""


def _relay_frames(requests: list[bytes]) -> Iterator[list[bytes]]:
    """``requests`` cut into the lists of successive relay frames: at most RELAY_MAX_REQUESTS
    each and, encoded, at most RELAY_MAX_BYTES (a bytes item costs at most 5 bytes of header,
    the list as much)."""
    chunk: list[bytes] = []
    size = 5
    for request in requests:
        if chunk and (len(chunk) == RELAY_MAX_REQUESTS or size + 5 + len(request) > RELAY_MAX_BYTES):
            yield chunk
            chunk, size = [], 5
        chunk.append(request)
        size += 5 + len(request)
    if chunk:
        yield chunk


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class LedgerVerifier:
    """The replica's ``RequestVerifier``: format, signature, identity and channel permission.

    Deliberately *not* the nonce against this node's ledger: how far the local ledger has
    executed differs between honest replicas, so such a check would make them disagree about
    a PRE-PREPARE. The replica orders each client's nonces itself, and the ledger screens
    replays deterministically when the block executes.
    """

    def __init__(self, channel: str, genesis: Genesis, ledger: ChannelLedger, checked: "CheckedRequests") -> None:
        self.channel, self.genesis, self.ledger = channel, genesis, ledger
        self.checked = checked

    def verify_request(self, request: bytes) -> tuple[str, int]:
        known = self.checked.get(request)
        if known is not None and known[0] == self.channel:
            return known[1], known[2]
        tx = validate_transaction(request, self.genesis, utc_now(), _no_nonce, channel=self.channel)
        self.checked.add(request, tx)
        return tx.creator, tx.nonce


class CheckedRequests:
    """Requests this node has already validated (format, signature, identity, permission),
    as ``bytes -> (channel, creator, nonce)``: the API or the relay validates a request once, and the
    replica's verifier does not check its signature a second time. Bounded (oldest out).
    A certificate that expires in the seconds between the two checks is still caught where
    it matters: the ledger screens every request as of its block's timestamp."""

    def __init__(self, limit: int = 10_000) -> None:
        self._known: BoundedDict[bytes, tuple[str, str, int]] = BoundedDict(limit)

    def get(self, request: bytes) -> tuple[str, str, int] | None:
        return self._known.get(request)

    def known(self, request: bytes) -> bool:
        """Has this node verified these exact bytes (the ledger's screen skips the signature)?"""
        return request in self._known

    def add(self, request: bytes, tx: Transaction) -> None:
        self._known.put(request, (tx.channel, tx.creator, tx.nonce))


def _no_nonce(creator: str) -> None:
    return None


def _index_connection(path: Path) -> sqlite3.Connection:
    """The index is rebuilt from the blocks on start, so it needs no fsync of its own."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    return conn


class TxIndex:
    """tx id -> (height, position) per channel, in ``index.sqlite``; rebuilt from blocks on start."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        conn.execute("CREATE TABLE IF NOT EXISTS tx_index (channel TEXT, tx_id BLOB, height INTEGER, position INTEGER, "
                     "PRIMARY KEY (channel, tx_id))")
        conn.execute("CREATE TABLE IF NOT EXISTS tx_indexed (channel TEXT PRIMARY KEY, height INTEGER)")

    def indexed_height(self, channel: str) -> int:
        row = self._conn.execute("SELECT height FROM tx_indexed WHERE channel = ?", (channel,)).fetchone()
        return 0 if row is None else row[0]

    def add(self, channel: str, height: int, committed: list) -> None:
        """Index ``committed``: the (position, transaction, result) of block ``height``."""
        rows = [(channel, tx.tx_id, height, position) for position, tx, _ in committed]
        with transaction(self._conn, "BEGIN") as conn:
            conn.executemany("INSERT OR IGNORE INTO tx_index VALUES (?, ?, ?, ?)", rows)
            conn.execute("INSERT OR REPLACE INTO tx_indexed VALUES (?, ?)", (channel, height))

    def find(self, channel: str, tx_id: bytes) -> tuple[int, int] | None:
        row = self._conn.execute("SELECT height, position FROM tx_index WHERE channel = ? AND tx_id = ?",
                                 (channel, tx_id)).fetchone()
        return None if row is None else (row[0], row[1])


@dataclass
class Subscribers:
    """Queues of ``/v1/events`` subscribers; a slow subscriber loses events, never the node."""

    queues: set[asyncio.Queue] = field(default_factory=set)

    def publish(self, event: dict) -> None:
        for queue in list(self.queues):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                pass


class Node:
    def __init__(self, directory: Path, name: str, *, tamper: tuple[str, ...] = ()) -> None:
        self.directory = Path(directory)
        self.name = name
        self.genesis = Genesis.load(self.directory)
        self.info = self.genesis.node(name)
        self.key = load_identity_key(self.directory, name)
        self.data_dir = self.directory / "nodes" / name
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = NodeMetrics(name)
        self.subscribers = Subscribers()
        self.checked = CheckedRequests()
        self._contracts_seen: set[tuple[str, str]] = set()  # (channel, contract) found committed
        self._relaying: dict[str, list[bytes]] = {}  # channel -> requests to relay this turn
        self._relay_due = False
        self.faults = FaultState()
        self.engines: dict[str, ChannelEngine] = {}
        self.anchoring: NodeAnchoring | None = None
        self.ledgers: dict[str, ChannelLedger] = {}
        self.workers: dict[str, ChannelWorker] = {}
        self.peers = PeerNetwork(name, self.key, self.genesis, self._on_frame, on_link_up=self._on_link_up)
        self.crashed = False
        # when each peer was last heard from (a frame, or its status); a node starts as if it
        # had heard them all, so that it is not cut off before it could hear anyone
        self._heard = dict.fromkeys(self.peer_names(), time.monotonic())
        self.tamper = tamper  # channels whose execution is tampered with (demonstration)
        self._store: DurableReplicaStore | None = None
        self._index: TxIndex | None = None
        self._session: aiohttp.ClientSession | None = None
        self._poller: asyncio.Task | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def open_channels(self) -> None:
        """Open ledgers, workers and replicas from what is on disk (also after a crash)."""
        self._store = DurableReplicaStore(self.data_dir / "node.sqlite")
        self._index = TxIndex(_index_connection(self.data_dir / "index.sqlite"))
        keyring = Keyring(self.name, self.key, {n.name: n.public_key for n in self.genesis.nodes})
        self.anchoring = NodeAnchoring(self.ledgers, self.engines, self.metrics, self.genesis.consensus.watermark_window)
        for channel in CHANNELS:
            ledger = ChannelLedger.open(ledger_path(self.data_dir, channel), channel, self.genesis,
                                        signature_known=self.checked.known)
            self.ledgers[channel] = ledger
            for height in range(self._index.indexed_height(channel) + 1, ledger.height + 1):
                self._index.add(channel, height, committed_transactions(ledger.block(height).block))
            worker = ChannelWorker(channel, LifecyclePolicy.from_channel(self.genesis.channels[channel]))
            worker.start()  # now, not at the first block: a start-up pause there would look like a faulty primary
            self.workers[channel] = worker
            hooks = EngineHooks(
                send=self._send, broadcast=self._broadcast, publish=self.subscribers.publish,
                fetch_blocks=self._fetch_blocks, on_commit=self._on_commit,
                anchors=functools.partial(self.anchoring.propose, channel), reader=self.anchoring.reader,
                reached=functools.partial(self.anchoring.reached, channel),
                held_for_execution=functools.partial(self.anchoring.held_for_execution, channel),
                peers_heard=self._peers_heard, relay=self.relay,
            )
            self.engines[channel] = ChannelEngine(
                channel=channel, node=self.name, genesis=self.genesis, keyring=keyring, ledger=ledger,
                worker=worker, durable=self._store, hooks=hooks, metrics=self.metrics,
                verifier=LedgerVerifier(channel, self.genesis, ledger, self.checked), tamper=channel in self.tamper,
            )
            self.metrics.height.labels(channel).set(ledger.height)
            log.info("%s: opened at height %d, view %d", channel, ledger.height, self.engines[channel].view)
        for engine in self.engines.values():
            engine.start()

    def close_channels(self, *, flush: bool) -> None:
        """Close every channel; ``flush`` (a clean stop) writes the replicas' last changes
        first, an emulated crash (``flush=False``) leaves the disk as a real one would."""
        if self.anchoring is not None:
            self.anchoring.stop()
        for engine in self.engines.values():
            engine.stop(flush=flush)
        for worker in self.workers.values():
            worker.close()
        for ledger in self.ledgers.values():
            ledger.close()
        if self._store is not None:
            self._store.close()
        self.engines, self.workers, self.ledgers = {}, {}, {}

    async def start(self) -> web.AppRunner:
        from .api import build_app  # the API module imports this one's types

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self.open_channels()
        runner = web.AppRunner(build_app(self), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        await web.TCPSite(runner, self.info.host, self.info.port).start()
        await self.peers.start()
        self._poller = asyncio.get_running_loop().create_task(self._poll_peers())
        log.info("node %s (%s) serving on http://%s:%d", self.name, self.info.org, self.info.host, self.info.port)
        return runner

    async def stop(self, runner: web.AppRunner) -> None:
        if self._poller is not None:
            self._poller.cancel()
        await self.peers.stop()
        self.close_channels(flush=True)
        await runner.cleanup()
        if self._session is not None:
            await self._session.close()
        log.info("node %s stopped", self.name)

    # -- fault injection (crash/restart emulate a process crash, with the same recovery) --

    def crash(self) -> None:
        if not self.crashed:
            self.crashed = True
            self.close_channels(flush=False)
            self.peers.blocked = set(self.genesis.node_names) - {self.name}
            settle_collector()  # the closed channels' objects were frozen at start: free them
            log.warning("fault injection: node crashed (state on disk only)")

    def restart(self) -> None:
        if self.crashed:
            self.crashed = False
            self.peers.blocked = set(self.faults.isolated_from)
            self.open_channels()
            settle_collector()
            log.warning("fault injection: node restarted from disk")

    # -- peers ---------------------------------------------------------------------------

    def _on_frame(self, peer: str, frame: bytes) -> str | None:
        """A frame from a peer: ``C`` + a consensus message, or ``R`` + channel + a client request."""
        if self.crashed or self.faults.byzantine == "silent":
            return None
        self._heard[peer] = time.monotonic()
        kind, body = frame[:1], frame[1:]
        if kind == FRAME_REQUEST:
            return self._on_relayed_request(peer, body)
        if kind != FRAME_CONSENSUS:
            self.metrics.refused.labels("peer", "unknown_frame").inc()
            return "unknown_frame"
        try:
            message = decode_message(body)
        except MalformedMessage as exc:
            self.metrics.refused.labels("peer", "malformed_message").inc()
            log.warning("malformed frame from %s: %s", peer, exc)
            return "malformed_message"
        engine = self.engines.get(message.channel)
        if engine is None:
            self.metrics.refused.labels("peer", "unknown_channel").inc()
            return "unknown_channel"
        seq = getattr(message, "seq", None)
        if type(seq) is int:
            engine.note_peer_height(peer, seq)
        return self.anchoring.receive(engine, message)  # PRE-PREPAREs wait for, or fail on, their anchors

    def _on_relayed_request(self, peer: str, body: bytes) -> str | None:
        """Client requests another node received: every replica must know them, so that each
        one times out on a primary that ignores them (OSDI'99 §4.1: the client multicasts).

        The frame is a channel index and the canonical list of the requests (one or a batch
        submission's). A malformed frame closes the link; each request is validated alone.
        """
        if not body or body[0] >= len(CHANNELS):
            self.metrics.refused.labels("peer", "unknown_channel").inc()
            return "unknown_channel"
        channel = CHANNELS[body[0]]
        try:
            requests = decode(body[1:], max_size=RELAY_MAX_BYTES)
        except EncodingError:
            requests = None
        if (type(requests) is not list or len(requests) > RELAY_MAX_REQUESTS
                or any(type(request) is not bytes for request in requests)):
            self.metrics.refused.labels("peer", "malformed_relay").inc()
            return "malformed_relay"
        engine = self.engines[channel]
        for request in requests:
            try:
                tx = self.validate(channel, request)
            except TransactionRefused as refusal:
                self.metrics.refused.labels("relay", refusal.code).inc()
                continue  # late (already committed) or a peer relaying junk: refused, counted
            engine.submit(request, tx.creator, tx.nonce)
        return None

    def relay(self, channel: str, requests: list[bytes]) -> None:
        """Send validated client requests to every peer. What is relayed in one turn of the
        event loop goes out together, one frame per channel (a new frame past
        RELAY_MAX_REQUESTS or RELAY_MAX_BYTES): under load the API admits many single
        submissions per turn, and each frame costs both ends more than a request in it."""
        self._relaying.setdefault(channel, []).extend(requests)
        if not self._relay_due:
            self._relay_due = True
            asyncio.get_running_loop().call_soon(self._send_relayed)

    def _send_relayed(self) -> None:
        self._relay_due = False
        relaying, self._relaying = self._relaying, {}
        targets = [target for target, _ in self.faults.outgoing(self, [(name, None) for name in self.peer_names()])]
        for channel, requests in relaying.items():
            self._transmit_requests(targets, channel, requests)

    def _transmit_requests(self, targets: list[str], channel: str, requests: list[bytes]) -> None:
        """``requests`` of ``channel`` to each of ``targets``, in relay frames."""
        for chunk in _relay_frames(requests):
            frame = FRAME_REQUEST + bytes([CHANNELS.index(channel)]) + encode(chunk)
            for target in targets:
                self._transmit(target, frame, bulk=True)  # behind any consensus frame waiting for the link

    def _peers_heard(self, within_s: float) -> int:
        """How many peers were heard from (a frame, or an answer to a status poll) within the
        last ``within_s`` seconds."""
        since = time.monotonic() - within_s
        return sum(1 for at in self._heard.values() if at >= since)

    def _on_link_up(self, peer: str) -> None:
        """The link to ``peer`` is up (again): the requests this node's replicas hold go to
        it once more. A relayed request is sent once, and whatever left by a link that then
        closed (a peer restarting, a link replaced as both ends dial) is lost with it: a
        request that reached only this node would then never reach the primary, and this
        node alone would suspect a primary that never saw it (found in CI: a restarted node
        stranded itself a view ahead that way). A copy a peer has already is harmless (one
        request per client and nonce)."""
        if self.crashed:
            return
        targets = [target for target, _ in self.faults.outgoing(self, [(peer, None)])]
        for channel, engine in self.engines.items():
            self._transmit_requests(targets, channel, list(engine.replica.pending))

    def peer_names(self) -> list[str]:
        return [name for name in self.genesis.node_names if name != self.name]

    def _send(self, peer: str, channel: str, message: Any) -> None:
        for target, out in self.faults.outgoing(self, [(peer, message)]):
            self._transmit(target, FRAME_CONSENSUS + encode_message(out))

    def _broadcast(self, channel: str, message: Any) -> None:
        pairs = [(name, message) for name in self.peer_names()]
        for target, out in self.faults.outgoing(self, pairs):
            self._transmit(target, FRAME_CONSENSUS + encode_message(out))

    def _transmit(self, peer: str, frame: bytes, *, bulk: bool = False) -> None:
        delay = self.faults.slow_ms
        if delay:
            asyncio.get_running_loop().call_later(delay / 1000, functools.partial(self.peers.send, peer, frame, bulk=bulk))
        else:
            self.peers.send(peer, frame, bulk=bulk)

    async def _poll_peers(self) -> None:
        """Every few seconds, learn how far the peers are (their ``/v1/status``): a replica that
        missed the last messages of an idle cluster would otherwise not know it is behind."""
        while True:
            await asyncio.sleep(PEER_POLL_S)
            if self.crashed:
                continue
            for peer in self.peer_names():
                if peer not in self.peers.blocked:
                    await self._poll_peer(peer)

    async def _poll_peer(self, peer: str) -> None:
        """Ask ``peer`` for its status: note that it was heard, and its channels' heights. An
        answer that is not a status (a faulty peer's: not JSON, nested past the parser,
        oversized, of another shape) is refused and counted, and the polling goes on."""
        node = self.genesis.node(peer)
        try:
            async with self._session.get(f"http://{node.host}:{node.port}/v1/status",
                                         headers={POLLER_HEADER: self.name},
                                         timeout=aiohttp.ClientTimeout(total=1)) as response:
                if response.status != 200:
                    return
                status = await read_status(response)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return
        channels = status.get("channels") if status is not None else None
        if not isinstance(channels, dict):
            self.metrics.refused.labels("poll", "malformed_status").inc()
            return
        self._heard[peer] = time.monotonic()
        for channel, engine in self.engines.items():
            entry = channels.get(channel)
            height = entry.get("height") if isinstance(entry, dict) else None
            if type(height) is int:
                engine.note_peer_height(peer, height)

    async def _fetch_blocks(self, peer: str, channel: str, start: int, end: int):
        """Certified blocks ``start..end`` from ``peer``'s API, for state transfer."""
        url = f"http://{self.genesis.node(peer).host}:{self.genesis.node(peer).port}/v1/channels/{channel}/raw-blocks"
        async with self._session.get(url, params={"from": str(start), "to": str(end)}) as response:
            if response.status != 200:
                raise ValueError(f"{peer} answered {response.status}")
            body = await read_bounded(response, FETCH_MAX_BYTES)
            if body is None:
                raise ValueError(f"{peer} answered more than {FETCH_MAX_BYTES} bytes")
            rows = decode(body, max_size=FETCH_MAX_BYTES)
        out = []
        for header, body, certificate in rows:
            out.append((Block.from_stored(header, body),
                        None if certificate is None else CommitCertificate.from_value(decode(certificate))))
        return out

    # -- the application around the engines ------------------------------------------------

    def _on_commit(self, channel: str, block: Block, committed: list) -> None:
        self._index.add(channel, block.height, committed)
        self.anchoring.committed()
        self.subscribers.publish({
            "type": "block", "channel": channel, "node": self.name, "height": block.height,
            "hash": block.hash.hex(), "view": self.engines[channel].view, "proposer": block.header.proposer,
            "transactions": len(block.requests), "state_root": (self.ledgers[channel].root_after(block.height) or b"").hex(),
        })
        for request, result in zip(block.requests, block.outputs.results):
            for event in result.events:
                self.subscribers.publish({"type": "contract", "channel": channel, "node": self.name,
                                          "height": block.height, "event": event})

    def find_transaction(self, channel: str, tx_id: bytes) -> tuple[int, int] | None:
        return self._index.find(channel, tx_id)

    def contract_committed(self, channel: str, contract: str) -> bool:
        """Has ``contract`` a committed definition on ``channel`` (this node's state)? A
        definition, once committed, is never removed (a new version replaces it), so a yes is
        kept and the state read once, not for every submission."""
        if (channel, contract) in self._contracts_seen:
            return True
        if committed(self.ledgers[channel].state, contract) is None:
            return False
        self._contracts_seen.add((channel, contract))
        return True

    def last_nonce(self, channel: str, creator: str) -> int | None:
        """The last nonce ``creator`` used on ``channel`` as far as this node knows: its
        ledger's (as of the last executed block), or the replica's if higher (a request
        committed in order that has yet to execute here). With the ledger's alone, a client
        told of a commit by one node and resuming its nonces at another reused the nonce it
        had just spent whenever that node's execution lagged the commit. Nonces need only
        increase, so the higher answer is always safe."""
        executed = self.ledgers[channel].last_nonce(creator)
        committed = self.engines[channel].replica.clients.get(creator)
        if committed is None:
            return executed
        return committed if executed is None else max(executed, committed)

    def validate(self, channel: str, data: bytes) -> Transaction:
        """A client request checked as the API and the relay admit it; raises
        ``TransactionRefused``. Its nonce is checked against the ledger's alone, not
        :meth:`last_nonce`: the same transaction sent again (a client's retry after a drop)
        while its commit waits to execute here must reach that commit's answer, not a
        refusal; another transaction with a nonce the replica has ordered is answered once
        the block executes (``replayed_nonce``)."""
        ledger = self.ledgers[channel]
        tx = validate_transaction(data, self.genesis, utc_now(), ledger.last_nonce, channel=channel)
        self.checked.add(data, tx)
        return tx


async def run_node(directory: Path, name: str, *, tamper: tuple[str, ...] = ()) -> int:
    node = Node(directory, name, tamper=tamper)
    if tamper:
        log.warning("TAMPERED node: execution on %s is altered for demonstration", ", ".join(tamper))
    runner = await node.start()
    log.info("garbage collector settled: %d objects alive after start frozen", settle_collector())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = loop.create_task(_exit_with_parent(stop))
    trimmer = loop.create_task(trim_forever())
    await stop.wait()
    watcher.cancel()
    trimmer.cancel()
    log.info("shutting down on signal")
    await node.stop(runner)
    return 0


async def _exit_with_parent(stop: asyncio.Event) -> None:
    """A node started by ``run_cluster.py`` (P2PCHAIN_PARENT_PID) stops when that process is
    gone — killed before it could stop its nodes — instead of holding the ports forever."""
    parent = os.environ.get("P2PCHAIN_PARENT_PID")
    if not parent:
        return
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != int(parent):
            log.warning("the process that started this node (pid %s) is gone: shutting down", parent)
            stop.set()
            return


def configure_logging(directory: Path, name: str, level: str = "INFO") -> None:
    logs = Path(directory) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(logs / f"{name}.log")
    handler.setFormatter(JsonLineFormatter(name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiohttp.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: time, node, level, logger, message."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
                 "node": self.node, "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)
