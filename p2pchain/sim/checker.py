"""What every simulated run must satisfy, checked from the final state of the run.

* **Safety**: the committed blocks of all honest replicas are prefixes of one another (for
  every sequence number two honest replicas both executed, the same batch digest).
* **Validity**: every request an honest replica executed was submitted and signed by its
  client, no (client, nonce) executes twice, and each client's nonces execute in order.
* **Liveness**: every request a client submitted was accepted by it (f+1 matching replies,
  so at least one honest replica executed it) by ``heal_ms`` + the bound.

Honest replicas are those that are not Byzantine, twinned or amnesiac (the fault budget).
Replicas that crashed and restarted from durable state stay honest: safety must hold for
them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..consensus.context import RequestRefused
from .app import SimVerifier

__all__ = ["Verdict", "check_run", "honest_pids"]


@dataclass
class Verdict:
    safety: list[str] = field(default_factory=list)
    validity: list[str] = field(default_factory=list)
    liveness: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.safety or self.validity or self.liveness)


def honest_pids(sim, schedule) -> list[str]:
    faulty = schedule.budget_nodes()
    return sorted(pid for pid, host in sim.hosts.items()
                  if host.behaviour is None and host.name not in faulty)


def check_run(sim, schedule, *, deadline_ms: int) -> Verdict:
    verdict = Verdict()
    honest = honest_pids(sim, schedule)
    histories = {pid: [b.batch_digest for b in sim.hosts[pid].app.history] for pid in honest}
    longest = max(histories.values(), key=len, default=[])
    for pid, history in histories.items():
        for seq, (mine, ref) in enumerate(zip(history, longest), start=1):
            if mine != ref:
                verdict.safety.append(f"{pid} committed {mine.hex()[:16]} at seq {seq}, another honest replica {ref.hex()[:16]}")
                break
    signed: dict[bytes, bool] = {}
    for pid in honest:
        seen: dict[str, int] = {}
        for block in sim.hosts[pid].app.history:
            for client, nonce, request in block.executed:
                if request not in signed:
                    signed[request] = _client_signed(sim, request, client, nonce)
                if not signed[request]:
                    verdict.validity.append(f"{pid} executed a request not signed by {client} ({client}, {nonce}) at seq {block.seq}")
                elif sim.submitted.get((client, nonce)) != request:
                    verdict.validity.append(f"{pid} executed a request no client submitted ({client}, {nonce}) at seq {block.seq}")
                elif nonce <= seen.get(client, 0):
                    verdict.validity.append(f"{pid} executed {client} nonce {nonce} after nonce {seen[client]} (seq {block.seq})")
                seen[client] = max(nonce, seen.get(client, 0))
    for client in sim.clients.values():
        if not client.finished:
            verdict.liveness.append(
                f"{client.name} request {client.nonce} (submitted at {client.submitted_ms.get(client.nonce)} ms) "
                f"not accepted by {deadline_ms} ms")
        for nonce, done in client.done_ms.items():
            if done > deadline_ms:
                verdict.liveness.append(f"{client.name} request {nonce} accepted only at {done} ms > {deadline_ms} ms")
    return verdict


def _client_signed(sim, request: bytes, client: str, nonce: int) -> bool:
    """The request verifies under ``client``'s key (checked even if the run's replicas skip
    signatures) and names that client and nonce."""
    verifier = SimVerifier(sim.verifier.client_keys, check_signatures=True)
    try:
        return verifier.verify_request(request) == (client, nonce)
    except RequestRefused:
        return False
