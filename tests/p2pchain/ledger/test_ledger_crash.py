"""Crash safety with real processes (issue 3): SIGKILL a writer at random moments."""

from __future__ import annotations

import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from p2pchain.encoding import decode
from p2pchain.ledger.store import ChannelLedger, ledger_path
from p2pchain.ledger.verify import verify_node

CHILD = Path(__file__).with_name("crash_child.py")
KILLS = 50


def run_until_killed(chain, node_dir: Path, rng: random.Random) -> int:
    """Start the writer, SIGKILL it at a random moment; return the last height it reported."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd())] + sys.path)}
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(chain.directory), str(node_dir), str(rng.randrange(1 << 30))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    output = b""
    if rng.random() < 0.2:
        time.sleep(rng.uniform(0.0, 0.5))  # may land while the child is still recovering
    else:
        deadline = time.monotonic() + 20
        while b"ready" not in output and time.monotonic() < deadline:
            if select.select([child.stdout], [], [], 0.5)[0]:
                output += os.read(child.stdout.fileno(), 65536)
            if child.poll() is not None:
                break
        time.sleep(rng.uniform(0.0, 0.12))
    child.send_signal(signal.SIGKILL)
    rest, errors = child.communicate()
    output += rest
    assert child.returncode == -signal.SIGKILL, errors.decode()
    # Only whole lines count: the kill can cut the child's last report in half.
    lines = output.decode().split("\n")[:-1]
    heights = [int(line.split()[1]) for line in lines if line.startswith("committed ")]
    return max(heights, default=-1)


def state_lags(path: Path) -> bool:
    """Whether the kill fell between a block's append and its apply (before recovery runs)."""
    conn = sqlite3.connect(path)
    try:
        head = conn.execute("SELECT MAX(height) FROM blocks").fetchone()[0]
        row = conn.execute("SELECT value FROM meta WHERE name = 'applied_height'").fetchone()
    except sqlite3.OperationalError:  # killed before the tables were created
        return False
    finally:
        conn.close()
    return head is not None and (row is None or decode(row[0]) < head)


def test_sigkilled_writer_never_loses_a_committed_block(chain, tmp_path):
    seed = random.randrange(1 << 30)
    print(f"crash test seed {seed}")
    rng = random.Random(seed)
    node_dir = tmp_path / "node"
    reported, lagging = -1, 0
    for kill in range(KILLS):
        reported = max(reported, run_until_killed(chain, node_dir, rng))
        if not ledger_path(node_dir, "transaction").exists():
            continue
        lagging += state_lags(ledger_path(node_dir, "transaction"))
        with ChannelLedger.open(ledger_path(node_dir, "transaction"), "transaction", chain.genesis) as ledger:
            assert ledger.height >= reported, f"kill {kill}: height {ledger.height} < reported {reported} (seed {seed})"
            assert ledger.state.applied_height == ledger.height
        if kill % 10 == 9:
            report = verify_node(node_dir, chain.genesis, ("transaction",))[0]
            assert report.ok, f"kill {kill}: {report.describe()} (seed {seed})"
    print(f"{KILLS} kills, final height {reported}, state lagging the blocks after {lagging} of them")
    report = verify_node(node_dir, chain.genesis, ("transaction",))[0]
    assert report.ok and report.verified_height >= reported > 0, report.describe()
