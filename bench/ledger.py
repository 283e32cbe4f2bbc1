"""Ledger benchmark (issue 3): append, state-root cost, verify.

Appends ``--txs`` small signed transactions (``kv.put`` of a fresh key, so the state grows
to ``--txs`` entries) in blocks of ``--block`` to the ``transaction`` channel of a real
consortium's ledger — each block screened (Ed25519 signature, certificate, policy, nonce),
executed, appended durably and applied — and prints

* blocks/s and tx/s, against two ceilings measured in the same run: Ed25519 verification
  alone (every transaction's signature is checked) and bare SQLite WAL commits of
  ``--block`` rows with ``synchronous=FULL``;
* the process's peak RSS at 10 % and at 100 % of the run, and their difference;
* the state-root update cost per write (sparse Merkle tree) against a naive full-state
  hash (sorted entries, hashed once per block, divided by the block's writes), at 1e4 keys
  and at the run's final state size;
* ``verify`` speed in tx/s against Ed25519 verification alone.

Transaction signing (the clients' work) is timed apart and not counted in the append rate.

Usage: ``python bench/ledger.py --txs 1000000`` (the issue's size; about 10 minutes on 2
cores) or ``--txs 20000`` for a quick run.
"""

from __future__ import annotations

import argparse
import hashlib
import datetime as dt
import random
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from p2pchain.consortium import create_consortium, load_identity_key  # noqa: E402
from p2pchain.crypto import SigningKey, verify  # noqa: E402
from p2pchain.encoding import digest_bytes, encode  # noqa: E402
from p2pchain.ledger.block import SIDE_CHANNELS, Anchor, Anchors, genesis_block  # noqa: E402
from p2pchain.ledger.devchain import Certifier, kv_executor  # noqa: E402
from p2pchain.ledger.state import WorldState  # noqa: E402
from p2pchain.ledger.store import ChannelLedger, connect, ledger_path  # noqa: E402
from p2pchain.ledger.transaction import Transaction  # noqa: E402
from p2pchain.ledger.verify import verify_channel  # noqa: E402
from p2pchain.ordering import Batch  # noqa: E402

CREATED = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
T0_MS = int((CREATED + dt.timedelta(days=1)).timestamp()) * 1000
CLIENTS = [f"ev{i:02d}" for i in range(1, 16)] + [f"pv{i}" for i in range(1, 6)] + ["smes"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def ed25519_verify_rate(count: int = 5000) -> float:
    key = SigningKey.from_seed(bytes(32))
    message = b"x" * 150
    signature = key.sign(message)
    start = time.perf_counter()
    for _ in range(count):
        verify(key.public_key, message, signature)
    return count / (time.perf_counter() - start)


def sqlite_commit_rate(directory: Path, rows_per_commit: int, commits: int = 300) -> float:
    """Bare WAL + synchronous=FULL commits of ``rows_per_commit`` rows of 200 bytes."""
    conn = sqlite3.connect(str(directory / "bare.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB)")
    start = time.perf_counter()
    for c in range(commits):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t VALUES (?, ?)",
                         [(digest_bytes(b"%d-%d" % (c, r)), bytes(200)) for r in range(rows_per_commit)])
        conn.execute("COMMIT")
    rate = commits / (time.perf_counter() - start)
    conn.close()
    return rate


def root_cost_per_write(state: WorldState, height: int, rng: random.Random, blocks: int = 20,
                        writes: int = 100) -> tuple[float, float]:
    """Wall and CPU seconds per write of applying ``blocks`` blocks of ``writes`` fresh keys."""
    start, cpu = time.perf_counter(), time.process_time()
    for b in range(blocks):
        height += 1
        state.apply_block(height, {("bench", f"extra-{rng.randrange(1 << 60)}"): encode(b) for _ in range(writes)})
    return (time.perf_counter() - start) / (blocks * writes), (time.process_time() - cpu) / (blocks * writes)


def naive_full_hash_seconds(conn: sqlite3.Connection) -> float:
    """The naive root: hash every entry in key order, once (what a block would pay)."""
    start = time.perf_counter()
    hasher = hashlib.blake2b(digest_size=32)
    for ns, key, value in conn.execute("SELECT ns, key, value FROM state ORDER BY ns, key"):
        hasher.update(encode([ns, key, value]))
    hasher.digest()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--txs", type=int, default=1_000_000, help="transactions to append (default 1e6)")
    parser.add_argument("--block", type=int, default=100, help="transactions per block (default 100)")
    parser.add_argument("--small-keys", type=int, default=10_000, help="state size of the small root-cost case")
    parser.add_argument("--dir", help="work directory (default: a temporary one, removed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="p2pchain-bench-") as tmp:
        work = Path(args.dir) if args.dir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        run(args, work)
    return 0


def run(args: argparse.Namespace, work: Path) -> None:
    rng = random.Random(7)
    print(f"ledger benchmark: {args.txs:,} transactions in blocks of {args.block}; "
          f"python {sys.version.split()[0]}")
    verify_rate = ed25519_verify_rate()
    bare_commits = sqlite_commit_rate(work, args.block)
    print(f"baselines: Ed25519 verify {verify_rate:,.0f}/s; bare SQLite WAL FULL commit of "
          f"{args.block} rows {bare_commits:,.0f}/s")

    genesis = create_consortium(work / "consortium", nodes=4, now=CREATED)
    certifier = Certifier.from_consortium(work / "consortium", genesis)
    keys = {name: load_identity_key(work / "consortium", name) for name in CLIENTS}
    metadata = Anchors.for_block("transaction", {n: Anchor(0, genesis_block(n, genesis.digest).hash) for n in SIDE_CHANNELS}).to_metadata()
    node_dir = work / "node0"
    ledger = ChannelLedger.open(ledger_path(node_dir, "transaction"), "transaction", genesis)

    blocks = args.txs // args.block
    sign_seconds = append_seconds = append_cpu = 0.0
    rss_at_10 = None
    nonces = dict.fromkeys(CLIENTS, 0)
    for b in range(blocks):
        start = time.perf_counter()
        requests = []
        for i in range(args.block):
            creator = CLIENTS[(b * args.block + i) % len(CLIENTS)]
            nonces[creator] += 1
            requests.append(Transaction.create(
                keys[creator], channel="transaction", contract="kv", function="put",
                args={"key": f"k{b * args.block + i:08d}", "value": i}, creator=creator, nonce=nonces[creator],
            ).to_bytes())
        height = b + 1
        batch = Batch(tuple(requests), "node0", T0_MS + height * 1000, metadata)
        certificate = certifier.certify("transaction", 0, height, batch)
        middle, cpu = time.perf_counter(), time.process_time()
        ledger.commit_batch(batch, 0, certificate, kv_executor)
        end = time.perf_counter()
        append_cpu += time.process_time() - cpu
        sign_seconds += middle - start
        append_seconds += end - middle
        if rss_at_10 is None and height >= blocks // 10:
            rss_at_10 = peak_rss_mb()
            print(f"  10%: {height} blocks, {append_seconds:.1f} s appending, peak RSS {rss_at_10:.1f} MB", flush=True)
    rss_at_100 = peak_rss_mb()
    txs = blocks * args.block
    print(f"append: {blocks:,} blocks, {txs:,} tx in {append_seconds:.1f} s -> "
          f"{blocks / append_seconds:,.1f} blocks/s, {txs / append_seconds:,.0f} tx/s "
          f"({txs / append_seconds / verify_rate:.2f} of Ed25519 verify alone; "
          f"{blocks / append_seconds / bare_commits:.3f} of bare SQLite commits)")
    print(f"  CPU time appending {append_cpu:.1f} s ({txs / append_cpu:,.0f} tx/s of CPU); "
          f"signing by the clients, not counted: {sign_seconds:.1f} s")
    print(f"peak RSS: {rss_at_10:.1f} MB at 10 %, {rss_at_100:.1f} MB at 100 % "
          f"(growth {rss_at_100 - rss_at_10:.1f} MB)")

    ledger.close()

    start, cpu = time.perf_counter(), time.process_time()
    report = verify_channel(ledger_path(node_dir, "transaction"), "transaction", genesis)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert report.ok, report.describe()
    print(f"verify: {report.transactions:,} tx, {report.verified_height:,} blocks in {seconds:.1f} s "
          f"(CPU {cpu:.1f} s) -> {report.transactions / seconds:,.0f} tx/s "
          f"({report.transactions / seconds / verify_rate:.2f} of Ed25519 verify alone)", flush=True)

    # State-root cost per write, the sparse Merkle tree against hashing the full state, at
    # 1e4 keys (a fresh state) and at the run's final size (the ledger's own state, after
    # verification: the extra blocks applied here are not on the chain).
    small_conn = connect(work / "small.db")
    small_conn.execute("PRAGMA synchronous=NORMAL")  # as the ledger applies state (store.py)
    small = WorldState(small_conn)
    for h in range(args.small_keys // 1000):
        small.apply_block(h, {("bench", f"k{h}-{i}"): encode(i) for i in range(1000)})
    big_conn = connect(ledger_path(node_dir, "transaction"))
    big_conn.execute("PRAGMA synchronous=NORMAL")
    big = WorldState(big_conn)
    for state, height in ((small, args.small_keys // 1000 - 1), (big, blocks)):
        keys_count = sum(1 for _ in state._conn.execute("SELECT 1 FROM state"))
        per_write, per_write_cpu = root_cost_per_write(state, height, rng)
        naive = naive_full_hash_seconds(state._conn)
        print(f"state root at {keys_count:,} keys: tree update {per_write * 1e6:,.0f} µs/write "
              f"(CPU {per_write_cpu * 1e6:,.0f}); naive full-state hash {naive:.3f} s per block "
              f"= {naive / args.block * 1e6:,.0f} µs/write for blocks of {args.block} "
              f"(tree {naive / args.block / per_write:,.1f}x cheaper)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
