"""Signing and checking consensus messages, each signature verified once.

A :class:`Keyring` holds this replica's signing key and the public keys of the channel's
nodes (from the genesis). Checking is cached by (sender, payload, signature): a VIEW-CHANGE that
arrives alone and again inside a NEW-VIEW, or a PREPARE inside a prepared certificate, costs
one Ed25519 verification, not several (LIMITS.md: 55 µs each).

``check_signatures=False`` signs with empty bytes and checks membership only. It exists for
the benchmark's "signatures off" column and must never run outside it.
"""

from __future__ import annotations

from typing import Mapping

from ..bounded import BoundedDict
from ..crypto import BadSignature, SigningKey, verify

__all__ = ["Keyring"]

CACHE_LIMIT = 8192
"""Signatures remembered (oldest out). A message comes back within one view change (a
PREPARE in a prepared certificate, a VIEW-CHANGE inside a NEW-VIEW): at most 2f+1 view
changes of a watermark window's certificates, a few hundred messages. 200,000 remembered
payloads made a node's memory climb by ~70 MB over twelve minutes of a soak, then drop when
the set was cleared."""


class Keyring:
    def __init__(self, name: str, signing_key: SigningKey | None, node_keys: Mapping[str, bytes],
                 *, check_signatures: bool = True) -> None:
        self.name = name
        self._key = signing_key
        self.node_keys = dict(node_keys)
        self.check_signatures = check_signatures
        self._verified: BoundedDict[tuple[str, bytes, bytes], None] = BoundedDict(CACHE_LIMIT)

    def sign(self, payload: bytes) -> bytes:
        if not self.check_signatures or self._key is None:
            return b""
        return self._key.sign(payload)

    def check(self, sender: str, payload: bytes, signature: bytes) -> str | None:
        """``None`` if ``sender`` is a node and signed ``payload``; else what is wrong."""
        key = self.node_keys.get(sender)
        if key is None:
            return f"{sender!r} is not a node of this channel"
        if not self.check_signatures:
            return None
        token = (sender, payload, signature)  # (the payload names its sender too)
        if token in self._verified:
            return None
        try:
            verify(key, payload, signature)
        except BadSignature as exc:
            return f"signature of {sender} does not verify: {exc}"
        self._verified.put(token, None)
        return None
