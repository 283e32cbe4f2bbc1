"""Benchmark: a replica's durable-state write, by the size of its client table.

    python bench/durable_write.py [--clients 100,400,2000] [--writes 3000]

A node writes its replica's durable state (a journal delta) before every PREPARE and
COMMIT it sends: about two writes per block per channel. This takes one replica from a short
simulated run, puts C clients in its client table, and then, for each write, moves the
nonces of 8 clients on (a block's requests) and prepares the write two ways in the same run:

* **whole**: ``Replica.durable_state()`` built whole (the client table sorted into a tuple),
  then the delta told the changes -- what the node did before the fourteenth session;
* **lean**: ``ChannelPersister.prepare_replica`` -- the state leaves out the parts whose
  changes the delta is told (the client table, the replies), so nothing of size C is built.

Both give the same bytes (tests/nodes/test_journal.py). Times are CPU microseconds per write
of this process (``time.process_time``), the median of five runs; nothing is written to
disk (the fsync is the store's writer thread's, off the event loop).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import machine  # noqa: E402
from nodes.durablestore import ChannelPersister, DurableReplicaStore  # noqa: E402
from p2pchain.sim.faults import Schedule  # noqa: E402
from p2pchain.sim.runner import build_simulation, finish  # noqa: E402

CHANGED_PER_WRITE = 8


def replica_after_a_run():
    schedule = Schedule(seed=3)
    sim = build_simulation(schedule)
    if not finish(sim, schedule).ok:
        raise SystemExit("the simulated run failed")
    return sim.hosts["node1"].replica


def per_write_us(replica, persister, clients: list[str], writes: int, lean: bool) -> float:
    table = replica.clients
    start = time.process_time()
    for w in range(writes):
        for k in range(CHANGED_PER_WRITE):
            name = clients[(w * CHANGED_PER_WRITE + k) % len(clients)]
            table[name] = table.get(name, 0) + 1
        if lean:
            persister.prepare_replica(replica)
        else:
            persister.prepare(replica.durable_state(), replica.durable_changes())
    return (time.process_time() - start) / writes * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="100,400,2000", help="client table sizes")
    parser.add_argument("--writes", type=int, default=3000, help="writes per timed run")
    args = parser.parse_args()
    print(f"machine: {machine()}; {CHANGED_PER_WRITE} clients changed per write")
    print(" clients | whole µs/write | lean µs/write | lean/whole")
    with tempfile.TemporaryDirectory() as tmp:
        store = DurableReplicaStore(Path(tmp) / "node.sqlite")
        for size in (int(c) for c in args.clients.split(",")):
            replica = replica_after_a_run()
            names = [f"load{i:05d}" for i in range(size)]
            for name in names:
                replica.clients[name] = 1
            runs = {True: [], False: []}
            for _ in range(5):
                for lean in (False, True):
                    persister = ChannelPersister(store, "transaction", None)
                    persister.prepare_replica(replica)      # the first write is a snapshot
                    runs[lean].append(per_write_us(replica, persister, names, args.writes, lean))
            whole, lean = (sorted(runs[k])[2] for k in (False, True))
            print(f" {size:7,} | {whole:14.1f} | {lean:13.1f} | {lean / whole:10.2f}")
        store.close()


if __name__ == "__main__":
    main()
