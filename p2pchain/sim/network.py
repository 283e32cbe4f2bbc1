"""The simulated network: a seeded virtual clock, timed deliveries, links that fail.

Like the network object of 500 Lines' cluster, :class:`Simulation` owns the clock, the
timers and the one random generator, so a whole run is a function of its seed. Pending
deliveries sit in a heap keyed by (time, insertion counter); nothing else decides order.

Processes are replica *hosts* (the shell around one :class:`~p2pchain.consensus.Replica`
and its :class:`~.app.LogApp`) and clients. A host has a process id (``pid``) and a node
name; a Twins pair is two hosts with one name and one key (``node1`` and ``node1'``). A
message addressed to a name goes to every live host of that name that the link allows.
Until ``heal_ms`` the network may drop, duplicate and delay messages (which also reorders
them) and partition hosts; after it every link delivers within ``max_delay_ms``.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from ..consensus import (BlockExecuted, Broadcast, CancelTimer, ExecuteBatch, Fault, FetchState,
                         Keyring, Persist, Received, Replica, RequestReceived, Send, SendReply,
                         SetTimer, Start, StateTransferred, TimerFired, Trace)
from ..consensus.messages import Reply
from ..crypto import SigningKey
from ..encoding import digest
from ..genesis import ConsensusConfig
from .app import GENESIS_DIGEST, LogApp, SimVerifier, make_request
from .trace import TraceWriter, describe

__all__ = ["NetworkConditions", "Host", "SimClient", "Simulation", "CHANNEL"]

CHANNEL = "transaction"


@dataclass(frozen=True, slots=True)
class NetworkConditions:
    min_delay_ms: int = 1
    max_delay_ms: int = 20
    drop: float = 0.0  # probability, before heal only
    duplicate: float = 0.0
    slow_delay_ms: int = 0  # extra random delay up to this, before heal only


def node_key(name: str) -> SigningKey:
    return SigningKey.from_seed(digest({"sim-node-key": name}))


def client_key(name: str) -> SigningKey:
    return SigningKey.from_seed(digest({"sim-client-key": name}))


@dataclass
class Host:
    pid: str
    name: str
    replica: Replica
    app: LogApp
    behaviour: Any = None  # a byzantine.Behaviour, or None for an honest host
    alive: bool = True
    saved: Any = None  # the last DurableState persisted
    timers: dict[str, int] = field(default_factory=dict)
    timer_gen: int = 0
    incarnation: int = 0


@dataclass
class SimClient:
    name: str
    key: SigningKey
    total: int
    nonce: int = 0
    request: bytes | None = None
    replies: dict[str, bytes] = field(default_factory=dict)
    retry_gen: int = 0
    done_ms: dict[int, int] = field(default_factory=dict)
    submitted_ms: dict[int, int] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.nonce >= self.total and self.request is None


class Simulation:
    def __init__(self, *, seed: int, nodes: int = 4, clients: int = 3, requests_per_client: int = 4,
                 config: ConsensusConfig | None = None, conditions: NetworkConditions = NetworkConditions(),
                 heal_ms: int = 0, check_signatures: bool = True, trace: TraceWriter | None = None,
                 client_retry_ms: int = 400, client_start_ms: int = 10, persist: bool = True,
                 replica_trace: bool = True) -> None:
        f = (nodes - 1) // 3
        self.config = config or ConsensusConfig(
            n=nodes, f=f, batch_max=4, batch_timeout_ms=5, checkpoint_interval=4,
            watermark_window=12, view_change_timeout_ms=300)
        self.rng = random.Random(seed)
        self.seed = seed
        self.now_ms = 0
        self.heal_ms = heal_ms
        self.conditions = conditions
        self.check_signatures = check_signatures
        self.trace = trace
        self.replica_trace = replica_trace or trace is not None
        self.persist = persist
        self.client_retry_ms = client_retry_ms
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._counter = 0
        self.names = tuple(f"node{i}" for i in range(nodes))
        self.node_keys = {name: node_key(name) for name in self.names}
        self.public_keys = {name: key.public_key for name, key in self.node_keys.items()}
        self.clients = {f"client{i}": SimClient(f"client{i}", client_key(f"client{i}"), requests_per_client)
                        for i in range(clients)}
        self.verifier = SimVerifier({c.name: c.key.public_key for c in self.clients.values()},
                                    check_signatures=check_signatures)
        self.hosts: dict[str, Host] = {}
        self.client_keyring = Keyring("clients", None, self.public_keys, check_signatures=check_signatures)
        self.blocked: set[frozenset[str]] = set()  # pairs of pids that cannot talk
        self.permanent_blocks: set[frozenset[str]] = set()  # twins' sides, never healed
        self.faults_seen: list[tuple[str, Fault]] = []
        self.submitted: dict[tuple[str, int], bytes] = {}
        self.messages_sent = 0
        self.clients_done = 0
        for name in self.names:
            self.add_host(name, name)
        for client in self.clients.values():
            self.at(client_start_ms + self.rng.randint(0, 10), lambda c=client: self._client_next(c))

    # -- construction --------------------------------------------------------------------

    def new_replica(self, name: str, durable=None) -> Replica:
        keyring = Keyring(name, self.node_keys[name], self.public_keys,
                          check_signatures=self.check_signatures)
        return Replica(channel=CHANNEL, name=name, keyring=keyring, nodes=self.names,
                       config=self.config, verifier=self.verifier,
                       genesis_app_digest=GENESIS_DIGEST, durable=durable,
                       trace=self.replica_trace)

    def add_host(self, pid: str, name: str, behaviour=None) -> Host:
        host = Host(pid, name, self.new_replica(name), LogApp(), behaviour)
        self.hosts[pid] = host
        self.at(0, lambda: self._feed(host, Start(self.now_ms)))
        return host

    # -- the clock -----------------------------------------------------------------------

    def at(self, time_ms: int, thunk: Callable[[], None]) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (time_ms, self._counter, thunk))

    def run(self, until_ms: int, stop: Callable[[], bool] | None = None) -> None:
        while self._heap and self._heap[0][0] <= until_ms:
            time_ms, _, thunk = heapq.heappop(self._heap)
            self.now_ms = time_ms
            thunk()
            if stop is not None and stop():
                return
        self.now_ms = max(self.now_ms, until_ms) if not self._heap else self.now_ms

    def log(self, ev: str, **fields) -> None:
        if self.trace is not None:
            self.trace.write(self.now_ms, ev, fields)

    # -- links ---------------------------------------------------------------------------

    def connected(self, a: str, b: str) -> bool:
        pair = frozenset((a, b))
        return pair not in self.permanent_blocks and pair not in self.blocked

    def partition(self, groups: list[list[str]]) -> None:
        """Block every link between hosts of different groups (hosts not listed: alone)."""
        side = {pid: i for i, group in enumerate(groups) for pid in group}
        pids = sorted(self.hosts)
        self.blocked = {frozenset((a, b)) for a in pids for b in pids
                        if a < b and side.get(a, a) != side.get(b, b)}
        self.log("partition", groups=groups)

    def heal(self) -> None:
        self.blocked = set()
        self.log("heal")

    def _delay(self) -> int:
        c = self.conditions
        delay = self.rng.randint(c.min_delay_ms, c.max_delay_ms)
        if self.now_ms < self.heal_ms and c.slow_delay_ms:
            delay += self.rng.randint(0, c.slow_delay_ms)
        return delay

    def _lossy(self) -> bool:
        return self.now_ms < self.heal_ms

    def transmit(self, src: str, dst: str, message) -> None:
        """Put one message on the link src -> dst (pids), subject to the link's faults."""
        self.messages_sent += 1
        tracing = self.trace is not None
        if not self.connected(src, dst):
            if tracing:
                self.log("drop", src=src, dst=dst, reason="partition", msg=describe(message))
            return
        if self._lossy() and self.conditions.drop and self.rng.random() < self.conditions.drop:
            if tracing:
                self.log("drop", src=src, dst=dst, reason="loss", msg=describe(message))
            return
        copies = 2 if self._lossy() and self.conditions.duplicate and self.rng.random() < self.conditions.duplicate else 1
        for _ in range(copies):
            if tracing:
                self.log("send", src=src, dst=dst, msg=describe(message))
            self.at(self.now_ms + self._delay(), lambda: self._deliver(src, dst, message))

    def _deliver(self, src: str, dst: str, message) -> None:
        host = self.hosts.get(dst)
        if host is None or not host.alive:
            return
        if self.trace is not None:
            self.log("recv", node=dst, src=src, msg=describe(message))
        if host.behaviour is not None and not host.behaviour.incoming(self, host, message):
            return
        self._feed(host, Received(self.now_ms, message))

    def pids_named(self, name: str) -> list[str]:
        return [pid for pid, h in self.hosts.items() if h.name == name]

    # -- the shell around a replica ------------------------------------------------------

    def _feed(self, host: Host, event) -> None:
        if not host.alive:
            return
        events = [event]
        while events:
            actions = host.replica.handle(events.pop(0))
            if host.behaviour is not None:
                actions = host.behaviour.outgoing(self, host, actions)
            for action in actions:
                follow = self._perform(host, action)
                if follow is not None:
                    events.append(follow)

    def _perform(self, host: Host, action):
        kind = type(action)
        if kind is Broadcast:
            for pid, other in self.hosts.items():
                if other.name != host.name:
                    self.transmit(host.pid, pid, action.message)
        elif kind is Send:
            for pid in self.pids_named(action.to):
                self.transmit(host.pid, pid, action.message)
        elif kind is SetTimer:
            host.timer_gen += 1
            gen = host.timers[action.timer] = host.timer_gen
            inc = host.incarnation
            self.at(self.now_ms + action.delay_ms, lambda: self._fire(host, action.timer, gen, inc))
        elif kind is CancelTimer:
            host.timers.pop(action.timer, None)
        elif kind is ExecuteBatch:
            state, results = host.app.execute(action.seq, action.batch, action.certificate.batch_digest)
            if self.trace is not None:
                self.log("execute", node=host.pid, seq=action.seq, view=action.view,
                         digest=action.certificate.batch_digest.hex()[:16], requests=len(action.batch.requests))
            return BlockExecuted(self.now_ms, action.seq, state, results)
        elif kind is SendReply:
            self._send_reply(host, action.client, action.reply)
        elif kind is FetchState:
            self._fetch_state(host, action)
        elif kind is Persist:
            if self.persist:
                host.saved = host.replica.durable_state()
        elif kind is Fault:
            self.faults_seen.append((host.pid, action))
            self.log("fault", node=host.pid, kind=action.kind.value, peer=action.peer, detail=action.detail)
        elif kind is Trace:
            self.log(action.kind, node=host.pid, **action.fields)
        return None

    def _fire(self, host: Host, timer: str, gen: int, incarnation: int) -> None:
        if host.incarnation != incarnation or host.timers.get(timer) != gen:
            return
        del host.timers[timer]
        self.log("timer", node=host.pid, timer=timer)
        self._feed(host, TimerFired(self.now_ms, timer))

    def _fetch_state(self, host: Host, action: FetchState) -> None:
        """The shell's half of state transfer: find a reachable peer whose snapshot at
        ``seq`` verifies against the certified digest; deliver it after a network delay."""
        for name in action.peers:
            for pid in self.pids_named(name):
                peer = self.hosts[pid]
                if not peer.alive or not self.connected(host.pid, pid) or peer.app.seq < action.seq:
                    continue
                app = LogApp.from_snapshot(peer.app.snapshot(action.seq), action.state_digest)
                if app is None:
                    continue  # a peer whose state is not the certified one: try the next
                inc = host.incarnation

                def install(app=app, inc=inc) -> None:
                    if host.incarnation != inc or not host.alive or host.replica.transfer is None \
                            or host.replica.transfer.seq != action.seq:
                        return
                    host.app = app
                    self.log("snapshot", node=host.pid, seq=action.seq, src=pid)
                    self._feed(host, StateTransferred(self.now_ms, action.seq, action.state_digest))
                self.at(self.now_ms + self._delay(), install)
                return

    # -- crashes -------------------------------------------------------------------------

    def crash(self, pid: str) -> None:
        host = self.hosts[pid]
        host.alive = False
        host.incarnation += 1
        host.timers = {}
        self.log("crash", node=pid)

    def restart(self, pid: str, *, amnesia: bool = False) -> None:
        host = self.hosts[pid]
        if amnesia:
            host.app, host.saved = LogApp(), None
        host.replica = self.new_replica(host.name, None if amnesia else host.saved)
        host.alive = True
        host.incarnation += 1
        self.log("restart", node=pid, amnesia=amnesia)
        self._feed(host, Start(self.now_ms))

    # -- clients -------------------------------------------------------------------------

    def _client_next(self, client: SimClient) -> None:
        if client.nonce >= client.total:
            client.request = None
            self.clients_done += 1
            return
        client.nonce += 1
        op = f"{client.name}-op{client.nonce}".encode()
        client.request = make_request(client.key, client.name, client.nonce, op)
        client.replies = {}
        client.submitted_ms[client.nonce] = self.now_ms
        self.submitted[(client.name, client.nonce)] = client.request
        self.log("request", client=client.name, nonce=client.nonce)
        self._client_send(client)

    def _client_send(self, client: SimClient) -> None:
        request = client.request
        if request is None:
            return
        for pid, host in self.hosts.items():
            if self._lossy() and self.conditions.drop and self.rng.random() < self.conditions.drop:
                continue
            self.at(self.now_ms + self._delay(), lambda h=host, r=request: self._request_arrives(h, r))
        client.retry_gen += 1
        gen, nonce = client.retry_gen, client.nonce
        self.at(self.now_ms + self.client_retry_ms,
                lambda: self._client_retry(client, gen, nonce))

    def _request_arrives(self, host: Host, request: bytes) -> None:
        if host.alive:
            self._feed(host, RequestReceived(self.now_ms, request))

    def _client_retry(self, client: SimClient, gen: int, nonce: int) -> None:
        if client.retry_gen == gen and client.nonce == nonce and client.request is not None:
            self._client_send(client)

    def _send_reply(self, host: Host, client_name: str, reply: Reply) -> None:
        client = self.clients.get(client_name)
        if client is None:
            return
        if self._lossy() and self.conditions.drop and self.rng.random() < self.conditions.drop:
            return
        self.at(self.now_ms + self._delay(), lambda: self._reply_arrives(client, reply))

    def _reply_arrives(self, client: SimClient, reply: Reply) -> None:
        """A client accepts a result once f+1 replicas sent it the same one (OSDI'99 §4.1)."""
        if client.request is None or reply.nonce != client.nonce or reply.client != client.name:
            return
        payload = reply.signing_bytes() if self.check_signatures else b""
        if self.client_keyring.check(reply.sender, payload, reply.signature):
            return
        client.replies[reply.sender] = reply.result
        matching = sum(1 for r in client.replies.values() if r == reply.result)
        if matching >= self.config.f + 1:
            client.done_ms[client.nonce] = self.now_ms
            self.log("accepted", client=client.name, nonce=client.nonce, seq=reply.seq)
            client.request = None
            client.retry_gen += 1
            self._client_next(client)

    def all_clients_done(self) -> bool:
        return self.clients_done == len(self.clients)
