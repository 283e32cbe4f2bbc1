"""The ledger: signed transactions, blocks, durable per-channel stores, world state.

Modules, bottom up:

* :mod:`.merkle` — the transactions root of a block (RFC 6962 Merkle tree).
* :mod:`.transaction` — the signed envelope, its validation and the screening of a batch.
* :mod:`.block` — headers, blocks, per-transaction results, anchors, the genesis block.
* :mod:`.smt` — the sparse Merkle tree behind the state root.
* :mod:`.state` — the world state of one channel (get, scan, apply_block, root, prove).
* :mod:`.store` — :class:`ChannelLedger`, one SQLite database per channel per node.
* :mod:`.snapshot` — state export/import for state transfer.
* :mod:`.verify` — offline verification of a node's ledgers; :mod:`.commands` wires it.
* :mod:`.devchain` — stand-ins for consensus and the runtime (tests, benchmarks).
"""
