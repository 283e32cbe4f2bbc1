"""Benchmark: a replica's bookkeeping that must cost what arrived, not what it holds.

    python bench/replica_bookkeeping.py [--clients 100,400,2000] [--writes 3000]
                                        [--waiting 300,1200,4800]

**The durable-state write.** A node writes its replica's durable state (a journal delta)
before every PREPARE and COMMIT it sends: about two writes per block per channel. This takes
one replica from a short simulated run, puts C clients in its client table, and then, for
each write, moves the nonces of 8 clients on (a block's requests) and prepares the write two
ways in the same run:

* **whole**: ``Replica.durable_state()`` built whole (the client table sorted into a tuple),
  then the delta told the changes -- what the node did before the fourteenth session;
* **lean**: ``ChannelPersister.prepare_replica`` -- the state leaves out the parts whose
  changes the delta is told (the client table, the replies), so nothing of size C is built.

Both give the same bytes (tests/nodes/test_journal.py). Nothing is written to disk (the
fsync is the store's writer thread's, off the event loop).

**A delivery's pending requests.** With W requests waiting (one per client lane at
saturation) a committed batch of 80 drops its clients' requests, two ways in the same run:
looking at every client that has a request waiting (what the replica did before the
fourteenth session, and still does after a state transfer replaced its client table), or
only at the clients the batch moved (``Replica._forget_committed_requests(advanced)``).

Times are CPU microseconds (``time.process_time``), the median of five runs.
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


def delivery_us(waiting: int, batch: int, every_client: bool) -> float:
    """CPU µs to drop the requests of a delivered batch of ``batch`` clients with ``waiting``
    requests waiting, one per client."""
    replica = build_simulation(Schedule(seed=3)).hosts["node1"].replica
    names = [f"load{i:05d}" for i in range(waiting)]
    for i, name in enumerate(names):
        request = b"request %d" % i
        replica.pending[request] = (name, 1)
        replica.pending_of[name] = {request: 1}
    advanced = dict.fromkeys(names[:batch])
    for name in advanced:
        replica.clients[name] = 1
    start = time.process_time()
    replica._forget_committed_requests(None if every_client else advanced)
    spent = time.process_time() - start
    assert len(replica.pending) == waiting - batch
    return spent * 1e6


def medians_of_five(measure) -> tuple[float, float]:
    """The medians of five runs each of ``measure(False)`` and ``measure(True)``, the two
    interleaved (the old way and the new way in the same minutes)."""
    runs = {False: [], True: []}
    for _ in range(5):
        for new in (False, True):
            runs[new].append(measure(new))
    return sorted(runs[False])[2], sorted(runs[True])[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="100,400,2000", help="client table sizes")
    parser.add_argument("--writes", type=int, default=3000, help="writes per timed run")
    parser.add_argument("--waiting", default="300,1200,4800", help="requests waiting at a delivery")
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

            def write(lean: bool) -> float:
                persister = ChannelPersister(store, "transaction", None)
                persister.prepare_replica(replica)      # the first write is a snapshot
                return per_write_us(replica, persister, names, args.writes, lean)

            whole, lean = medians_of_five(write)
            print(f" {size:7,} | {whole:14.1f} | {lean:13.1f} | {lean / whole:10.2f}")
        store.close()
    print()
    print(" waiting | every client µs | its clients µs | its/every   (a delivered batch of 80)")
    for waiting in (int(w) for w in args.waiting.split(",")):
        every, its = medians_of_five(lambda its_clients: delivery_us(waiting, 80, not its_clients))
        print(f" {waiting:7,} | {every:15.1f} | {its:14.1f} | {its / every:9.2f}")


if __name__ == "__main__":
    main()
