"""Benchmark: our encoding, hashing and signature wrappers beside the bare library calls.

    python bench/crypto.py

For a typical 10-field transaction, prints calls/s of p2pchain's ``encode``, ``decode``,
``digest``, ``SigningKey.sign`` and ``verify``, each beside the library call it wraps
(msgpack, hashlib, pynacl) measured in the same run, and the ratio between them.
``encode``, ``decode`` and ``digest(value)`` use the active implementation (the C
accelerator when built, see the header line); the rows marked "pure" time the pure-Python
reference beside the same library call (``P2PCHAIN_PURE_ENCODING=1`` makes every row pure).
"""

from __future__ import annotations

import hashlib
import os
import sys
import timeit

import msgpack
import nacl.signing

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import machine, rate  # noqa: E402
from p2pchain.crypto import SigningKey, verify  # noqa: E402
from p2pchain import encoding  # noqa: E402
from p2pchain.encoding import decode, digest, digest_bytes, encode  # noqa: E402

TRANSACTION = {
    "channel": "transaction",
    "contract": "quotation",
    "function": "submit",
    "args": {"hour": 7, "energy_wh": 3000, "limit_price_milli_per_kwh": 650, "bus": 18},
    "creator": "ev03",
    "nonce": 1042,
    "org": "mgo",
    "timestamp_ms": 1_764_000_000_000,
    "version": 1,
    "signature": bytes(64),
}


def main() -> None:
    encoded = encode(TRANSACTION)
    bare_encoded = msgpack.packb(TRANSACTION, use_bin_type=True)
    key = SigningKey.from_seed(bytes(range(32)))
    nacl_key = nacl.signing.SigningKey(bytes(range(32)))
    nacl_verify_key = nacl_key.verify_key
    signature = key.sign(encoded)
    public_key = key.public_key

    rows = [
        ("encode", lambda: encode(TRANSACTION), "msgpack.packb", lambda: msgpack.packb(TRANSACTION, use_bin_type=True)),
        ("encode (pure)", lambda: encoding._encode_pure(TRANSACTION), "msgpack.packb",
         lambda: msgpack.packb(TRANSACTION, use_bin_type=True)),
        ("decode", lambda: decode(encoded), "msgpack.unpackb", lambda: msgpack.unpackb(bare_encoded, raw=False)),
        ("decode (pure)", lambda: encoding._decode_pure(encoded), "msgpack.unpackb",
         lambda: msgpack.unpackb(bare_encoded, raw=False)),
        ("digest(value)", lambda: digest(TRANSACTION), "blake2b(packb(value))",
         lambda: hashlib.blake2b(msgpack.packb(TRANSACTION, use_bin_type=True), digest_size=32).digest()),
        ("digest_bytes", lambda: digest_bytes(encoded), "hashlib.blake2b",
         lambda: hashlib.blake2b(encoded, digest_size=32).digest()),
        ("sign", lambda: key.sign(encoded), "nacl sign", lambda: nacl_key.sign(encoded).signature),
        ("verify", lambda: verify(public_key, encoded, signature), "nacl verify",
         lambda: nacl_verify_key.verify(encoded, signature)),
    ]
    print(f"machine: {machine()}; transaction: {len(encoded)} bytes, 10 fields; "
          f"encoding implementation: {encoding.IMPLEMENTATION}")
    print(f"{'ours':16} {'calls/s':>12}   {'library':24} {'calls/s':>12}   {'ours/library time':>18}")
    for name, ours, base_name, base in rows:
        ours_rate, base_rate = interleaved_rates(ours, base)
        print(f"{name:16} {ours_rate:12,.0f}   {base_name:24} {base_rate:12,.0f}   {base_rate / ours_rate:17.2f}x")


def interleaved_rates(ours, base, *, rounds: int = 60, seconds: float = 0.01) -> tuple[float, float]:
    """Calls/s of ``ours`` and ``base``, each the best of ``rounds`` short runs taken in turn.

    Alternating the two and keeping each one's quietest run makes the ratio steady when
    other jobs share the cores (a median of back-to-back runs is not: the load changes
    between the two halves).
    """
    number = max(1, int(rate(base, seconds=0.05, repeats=1) * seconds))
    best = [0.0, 0.0]
    for _ in range(rounds):
        for index, fn in enumerate((ours, base)):
            elapsed = timeit.timeit(fn, number=number)
            best[index] = max(best[index], number / elapsed)
    return best[0], best[1]


if __name__ == "__main__":
    main()
