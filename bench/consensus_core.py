"""Benchmark: committed requests/s of the PBFT core in the simulator, beside its ceiling.

    python bench/consensus_core.py

Four replicas on the simulated network (1 ms links, no faults, no tracing, no durable
snapshots), closed-loop clients, batch sizes 1, 10 and 100, with Ed25519 signatures on and
off. For each run with signatures on it counts the Ed25519 verifications the run made
(replicas checking requests and votes, clients checking replies) and prices them at the
bare pynacl verification rate measured in the same process: that is the ceiling, the rate
the run would reach if verifying were the only work. The wall time includes the simulated
clients (signing each request, checking f+1 replies) and the simulator's event heap.
Times are CPU seconds of this process (``time.process_time``): the machine is shared, and
CPU time does not count the moments another process held the core.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nacl.bindings  # noqa: E402

import p2pchain.consensus.keys as keys_module  # noqa: E402
import p2pchain.sim.app as app_module  # noqa: E402
from p2pchain.crypto import SigningKey  # noqa: E402
from p2pchain.genesis import ConsensusConfig  # noqa: E402
from p2pchain.sim.network import NetworkConditions, Simulation  # noqa: E402

BATCHES = (1, 10, 100)
REQUESTS = 3000
REPEATS = 3


def bare_verify_seconds() -> float:
    key = SigningKey.from_seed(b"\x01" * 32)
    message = b"m" * 120
    signed = key.sign(message) + message
    public = key.public_key
    timer = timeit.Timer(lambda: nacl.bindings.crypto_sign_open(signed, public), timer=time.process_time)
    number = 2000
    return min(timer.repeat(repeat=5, number=number)) / number


class CountingVerify:
    def __init__(self, real):
        self.real, self.calls = real, 0

    def __call__(self, *args):
        self.calls += 1
        return self.real(*args)


def run(batch: int, signatures: bool) -> tuple[float, int, int]:
    clients = {1: 8, 10: 40, 100: 300}[batch]
    per_client = max(1, REQUESTS // clients)
    config = ConsensusConfig(n=4, f=1, batch_max=batch, batch_timeout_ms=5, checkpoint_interval=50,
                             watermark_window=200, view_change_timeout_ms=1000)
    counters = [CountingVerify(keys_module.verify), CountingVerify(app_module.verify)]
    keys_module.verify, app_module.verify = counters
    try:
        sim = Simulation(seed=1, nodes=4, clients=clients, requests_per_client=per_client,
                         config=config, conditions=NetworkConditions(min_delay_ms=1, max_delay_ms=1),
                         check_signatures=signatures, persist=False, replica_trace=False,
                         client_retry_ms=10_000)
        started = time.process_time()
        sim.run(10**9, stop=sim.all_clients_done)
        wall = time.process_time() - started
    finally:
        keys_module.verify, app_module.verify = counters[0].real, counters[1].real
    assert sim.all_clients_done()
    committed = clients * per_client
    return committed / wall, sum(c.calls for c in counters), committed  # per CPU-second


def main() -> None:
    """Each figure is the best of ``REPEATS`` runs; the verification cost is re-measured
    next to each signed run (the machine is shared, so we compare like with like)."""
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    print("batch | sigs off req/s | sigs on req/s | verifies/req | verify µs | ceiling req/s | on/ceiling | on/off")
    for batch in BATCHES:
        off = max(run(batch, False)[0] for _ in range(REPEATS))
        best_on, costs = 0.0, []
        for _ in range(REPEATS):
            costs.append(bare_verify_seconds())
            on, verifies, committed = run(batch, True)
            best_on = max(best_on, on)
        cost = min(costs)
        per_request = verifies / committed
        ceiling = 1 / (per_request * cost)
        print(f"{batch:5d} | {off:14,.0f} | {best_on:13,.0f} | {per_request:12.1f} | {cost * 1e6:9.1f} | "
              f"{ceiling:13,.0f} | {best_on / ceiling:10.2f} | {best_on / off:6.2f}")


if __name__ == "__main__":
    main()
