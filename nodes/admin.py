"""The admin token: what lets a browser or a CLI drive fault injection on a node.

``run_cluster.py`` prints a token with the dashboard address, as Jupyter does. It is
derived from the consortium's admin credentials: an org admin signs a statement binding
its name to the genesis digest, and the token carries the statement and the signature. Any
node checks it against that admin's certificate in the genesis — no shared secret, and a
token from another consortium is refused.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

from p2pchain.consortium import load_identity_key
from p2pchain.crypto import BadSignature, SigningKey, verify
from p2pchain.encoding import EncodingError, decode, encode
from p2pchain.genesis import Genesis
from p2pchain.identity import IdentityError

__all__ = ["AdminRefused", "make_token", "token_for", "check_token"]

PURPOSE = "p2pchain-admin-token"


class AdminRefused(Exception):
    """The request carries no admin token, or one that is not valid here."""


def _statement(admin: str, genesis_digest: bytes) -> bytes:
    return encode({"purpose": PURPOSE, "admin": admin, "genesis": genesis_digest})


def make_token(admin: str, key: SigningKey, genesis: Genesis) -> str:
    signature = key.sign(_statement(admin, genesis.digest))
    raw = encode({"admin": admin, "signature": signature})
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def token_for(directory: Path, genesis: Genesis, admin: str = "admin-mgo") -> str:
    return make_token(admin, load_identity_key(directory, admin), genesis)


def check_token(token: str | None, genesis: Genesis, now: dt.datetime) -> str:
    """The admin's name if ``token`` is valid for this consortium; else :class:`AdminRefused`."""
    if not token:
        raise AdminRefused("an admin token is required (run_cluster.py prints one)")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = decode(raw, max_size=1024)
        admin, signature = value["admin"], value["signature"]
        identity = genesis.identity(admin, now=now)
    except (ValueError, EncodingError, KeyError, TypeError):
        raise AdminRefused("malformed admin token") from None
    except IdentityError as exc:
        raise AdminRefused(f"admin token names no valid identity: {exc}") from None
    if identity.role != "admin":
        raise AdminRefused(f"{admin} is not an admin")
    try:
        verify(identity.public_key, _statement(admin, genesis.digest), signature)
    except BadSignature:
        raise AdminRefused("admin token signature does not verify for this consortium") from None
    return admin
