"""Benchmark: the state tree's update, its C walk against the pure-Python reference walk.

A node's blocks at saturation write ~200 state entries each (a record per transaction and
the creators' nonces); every write rewrites its leaf's path up to the root. This times
``SparseMerkleTree.update`` on such blocks over a growing state (CPU time of this thread),
once with each walk in alternation, and splits each block's cost into the walk and the
rest (the rows' SQLite writes, the cache). Both walks must give the same roots.

    python bench/state_tree.py [--blocks 300] [--per-block 85] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import machine  # noqa: E402
from p2pchain.encoding import encode  # noqa: E402
from p2pchain.ledger import smt, state  # noqa: E402,F401  (state: the node's sqlite3 adapters)
from p2pchain.ledger.smt import SparseMerkleTree, key_path, leaf_hash  # noqa: E402

CLIENTS = 400


def run(walk, blocks: int, per_block: int) -> tuple[float, float, bytes]:
    """(CPU ms per block of update, of which the walk, last root) on a fresh tree."""
    spent = [0.0]

    def timed(*args):
        started = time.thread_time()
        try:
            return walk(*args)
        finally:
            spent[0] += time.thread_time() - started

    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(os.path.join(tmp, "tree.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        tree = SparseMerkleTree(conn)
        total, records, root = 0.0, 0, b""
        previous, smt.UPDATE = smt.UPDATE, timed
        try:
            for height in range(blocks):
                changes = []
                for i in range(per_block):
                    nonce = key_path("$nonce", f"load{rng.randrange(CLIENTS):04d}")
                    changes.append((nonce, leaf_hash(nonce, encode(height * per_block + i))))
                    record = key_path("records", f"r{records}")
                    records += 1
                    changes.append((record, leaf_hash(record, encode(records))))
                conn.execute("BEGIN")
                started = time.thread_time()
                root = tree.update(changes)
                total += time.thread_time() - started
                conn.execute("COMMIT")
        finally:
            smt.UPDATE = previous
            conn.close()
    return 1000 * total / blocks, 1000 * spent[0] / blocks, root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=300)
    parser.add_argument("--per-block", type=int, default=85, help="transactions per block (two writes each)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each walk, alternating")
    args = parser.parse_args()
    print(machine(), flush=True)
    if smt.IMPLEMENTATION != "c":
        print("the C walk is not built (pip install -e . builds it): nothing to compare", file=sys.stderr)
        return 1
    walks = {"c": smt.UPDATE, "python": smt._pure_update}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in walks}
    roots = set()
    for round_ in range(args.rounds):
        for name, walk in walks.items():
            update_ms, walk_ms, root = run(walk, args.blocks, args.per_block)
            roots.add(root)
            results[name].append((update_ms, walk_ms))
            print(f"round {round_ + 1}, {name:6} walk: update {update_ms:.2f} ms per block, "
                  f"of which the walk {walk_ms:.2f} ms", flush=True)
    if len(roots) != 1:
        print("the two walks gave different roots", file=sys.stderr)
        return 1
    med = {name: (statistics.median(u for u, _ in r), statistics.median(w for _, w in r)) for name, r in results.items()}
    print(f"{args.blocks} blocks of {args.per_block} transactions ({2 * args.per_block} writes), medians: "
          f"update {med['c'][0]:.2f} against {med['python'][0]:.2f} ms per block "
          f"(ratio {med['c'][0] / med['python'][0]:.2f}); the walk {med['c'][1]:.2f} against "
          f"{med['python'][1]:.2f} ms (ratio {med['c'][1] / med['python'][1]:.2f}); same roots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
