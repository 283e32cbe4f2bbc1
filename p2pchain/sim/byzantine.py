"""Byzantine replicas: an honest replica whose inputs and outputs are tampered with.

Each behaviour wraps the ordinary :class:`~p2pchain.consensus.Replica` (so it otherwise
follows the protocol and stays in step, which makes its lies more dangerous) and rewrites
the actions it emits, signing what it forges with the node's own key, as a real attacker
holding that key would. Twins and amnesia are not behaviours: a twin is a second honest
host with the same key (``Simulation.add_host``), amnesia a restart from nothing.
"""

from __future__ import annotations

import random
from dataclasses import replace

from ..consensus import Broadcast, Send
from ..consensus.messages import Commit, PrePrepare, Prepare
from ..encoding import digest

__all__ = ["Behaviour", "Silent", "EquivocatingPrimary", "DoubleVoter", "Replayer", "Forger",
           "BEHAVIOURS", "make_behaviour"]


class Behaviour:
    kind = "honest"

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def incoming(self, sim, host, message) -> bool:
        return True

    def outgoing(self, sim, host, actions: list) -> list:
        return actions

    @staticmethod
    def sign(sim, host, message):
        key = sim.node_keys[host.name]
        return replace(message, signature=key.sign(message.signing_bytes()))

    @staticmethod
    def peers(sim, host) -> list[str]:
        return [name for name in sim.names if name != host.name]


class Silent(Behaviour):
    """Receives nothing and says nothing (a crashed node that never comes back)."""

    kind = "silent"

    def incoming(self, sim, host, message) -> bool:
        return False

    def outgoing(self, sim, host, actions: list) -> list:
        return []


class EquivocatingPrimary(Behaviour):
    """As primary, sends half the backups one pre-prepare and the rest another, for the same
    view and sequence number (both batches valid: only the timestamp differs)."""

    kind = "equivocate"

    def outgoing(self, sim, host, actions: list) -> list:
        out = []
        for action in actions:
            msg = getattr(action, "message", None)
            if type(action) is Broadcast and type(msg) is PrePrepare and msg.sender == host.name:
                peers = self.peers(sim, host)
                self.rng.shuffle(peers)
                other_batch = replace(msg.batch, timestamp_ms=msg.batch.timestamp_ms + 1)
                other = self.sign(sim, host, replace(msg, batch=other_batch, digest=other_batch.digest()))
                half = len(peers) // 2
                out += [Send(p, msg) for p in peers[:half]] + [Send(p, other) for p in peers[half:]]
            else:
                out.append(action)
        return out


class DoubleVoter(Behaviour):
    """Sends conflicting PREPAREs and COMMITs: the real vote to some peers, a vote for
    another digest to the others."""

    kind = "double-vote"

    def outgoing(self, sim, host, actions: list) -> list:
        out = []
        for action in actions:
            msg = getattr(action, "message", None)
            if type(action) is Broadcast and type(msg) in (Prepare, Commit):
                peers = self.peers(sim, host)
                self.rng.shuffle(peers)
                fake = self.sign(sim, host, replace(msg, digest=digest(["fake", msg.digest])))
                half = len(peers) // 2
                out += [Send(p, msg) for p in peers[:half]] + [Send(p, fake) for p in peers[half:]]
                out.append(Send(peers[0], fake))  # one peer sees both: evidence of the lie
            else:
                out.append(action)
        return out


class Replayer(Behaviour):
    """Re-sends old messages it has seen to random peers, and as primary slips already
    committed client requests back into its batches."""

    kind = "replay"

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.seen: list = []
        self.old_requests: list[bytes] = []

    def incoming(self, sim, host, message) -> bool:
        if len(self.seen) < 400:
            self.seen.append(message)
        batch = getattr(message, "batch", None)
        if batch is not None and len(self.old_requests) < 200:
            self.old_requests.extend(batch.requests)
        return True

    def outgoing(self, sim, host, actions: list) -> list:
        out = []
        for action in actions:
            msg = getattr(action, "message", None)
            if type(action) is Broadcast and type(msg) is PrePrepare and self.old_requests \
                    and msg.batch.requests and self.rng.random() < 0.5:
                stale = self.rng.choice(self.old_requests)
                batch = replace(msg.batch, requests=(stale, *msg.batch.requests))
                action = Broadcast(self.sign(sim, host, replace(msg, batch=batch, digest=batch.digest())))
            elif type(action) is Broadcast and type(msg) is PrePrepare and len(self.old_requests) < 200:
                self.old_requests.extend(msg.batch.requests)  # its own proposals, to replay later
            out.append(action)
        if self.seen and self.rng.random() < 0.3:
            out.append(Send(self.rng.choice(self.peers(sim, host)), self.rng.choice(self.seen)))
        return out


class Forger(Behaviour):
    """Sends messages with forged signatures: votes in another replica's name, and its own
    votes with a field changed after signing."""

    kind = "forge"

    def outgoing(self, sim, host, actions: list) -> list:
        out = list(actions)
        for action in actions:
            msg = getattr(action, "message", None)
            if type(action) is Broadcast and type(msg) in (PrePrepare, Prepare, Commit) \
                    and self.rng.random() < 0.5:
                victim = self.rng.choice(self.peers(sim, host))
                forged = replace(msg, sender=victim)  # signature is still ours: must fail
                tampered = replace(msg, seq=msg.seq + 1)
                out.append(Broadcast(forged))
                out.append(Broadcast(tampered))
        return out


BEHAVIOURS = {cls.kind: cls for cls in (Silent, EquivocatingPrimary, DoubleVoter, Replayer, Forger)}


def make_behaviour(kind: str, rng: random.Random) -> Behaviour:
    try:
        return BEHAVIOURS[kind](rng)
    except KeyError:
        raise ValueError(f"unknown Byzantine behaviour {kind!r}; known: {', '.join(BEHAVIOURS)}") from None
