"""Child process of the crash test: append small blocks forever, reporting each commit.

Usage: python crash_child.py CONSORTIUM_DIR NODE_DIR SEED. Prints ``ready`` once the ledger is
open (recovered), then ``committed H`` after ``commit`` of block H has returned.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from p2pchain.consortium import load_identity_key
from p2pchain.genesis import Genesis
from p2pchain.ledger.block import SIDE_CHANNELS, Anchor, Anchors, genesis_block
from p2pchain.ledger.devchain import Certifier, kv_executor
from p2pchain.ledger.store import ChannelLedger, ledger_path
from p2pchain.ledger.transaction import Transaction
from p2pchain.ordering import Batch

T0_MS = 1_767_312_000_000  # 2026-01-02, inside the certificates' validity


def main() -> None:
    consortium, node_dir, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    genesis = Genesis.load(consortium)
    certifier = Certifier.from_consortium(consortium, genesis)
    creators = ["ev01", "ev02", "pv1"]
    keys = {name: load_identity_key(consortium, name) for name in creators}
    metadata = Anchors.for_block("transaction", {n: Anchor(0, genesis_block(n, genesis.digest).hash) for n in SIDE_CHANNELS}).to_metadata()
    ledger = ChannelLedger.open(ledger_path(node_dir, "transaction"), "transaction", genesis)
    print("ready", ledger.height, flush=True)
    while True:
        requests = []
        for creator in rng.sample(creators, rng.randint(1, 3)):
            nonce = (ledger.last_nonce(creator) or 0) + 1
            value = None if rng.random() < 0.2 else rng.randint(0, 1000)
            requests.append(Transaction.create(
                keys[creator], channel="transaction", contract="kv", function="put",
                args={"key": f"k{rng.randint(0, 200)}", "value": value}, creator=creator, nonce=nonce,
            ).to_bytes())
        height = ledger.height + 1
        batch = Batch(tuple(requests), "node0", T0_MS + height, metadata)
        ledger.commit_batch(batch, 0, certifier.certify("transaction", 0, height, batch), kv_executor)
        print("committed", height, flush=True)


if __name__ == "__main__":
    main()
