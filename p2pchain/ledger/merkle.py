"""The transactions root: a binary Merkle tree over transaction ids (RFC 6962, Section 2.1).

A block header commits to its transactions through this root. The tree is Certificate
Transparency's: leaves and inner nodes are hashed with different one-byte prefixes, so a
leaf can never be passed off as an inner node (the second-preimage attack on naive Merkle
trees), and an odd node is not duplicated but carried up, so the lists ``[a, b, c]`` and
``[a, b, c, c]`` have different roots (Bitcoin's CVE-2012-2459 does not apply).

References
----------
B. Laurie, A. Langley, E. Kasper, "Certificate Transparency", RFC 6962, 2013, Section 2.1.
"""

from __future__ import annotations

from typing import Sequence

from ..encoding import digest_bytes

__all__ = ["EMPTY_TREE_ROOT", "merkle_root"]

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_TREE_ROOT = digest_bytes(b"")


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 6962: the root over ``leaves`` in their order.

    >>> merkle_root([]) == EMPTY_TREE_ROOT
    True
    >>> merkle_root([b"a", b"b"]) != merkle_root([b"b", b"a"])
    True
    """
    level = [digest_bytes(LEAF_PREFIX + leaf) for leaf in leaves]
    if not level:
        return EMPTY_TREE_ROOT
    # Pairing left to right and carrying an odd last node up gives exactly RFC 6962's
    # split at the largest power of two below n.
    while len(level) > 1:
        paired = [digest_bytes(NODE_PREFIX + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]
