"""The genesis: the consortium's root of trust (DESIGN.md, decision 3).

The genesis document is a plain value (maps, lists, strings, integers) so that it has one
canonical encoding and one digest, which block 0 of every channel carries. It names

* the organisations and their CA certificates,
* the nodes, with organisation, address and public key,
* the identities issued at bootstrap (certificates only — private keys never enter it),
* the channels, their member organisations and policies,
* the revocation list, and the consensus parameters.

:class:`Genesis` parses the document once, checks it hangs together, and answers the
questions the rest of the chain asks: who is this, is this node a member, may this identity
write to this channel. On disk it is ``genesis.json``: ``{"document": ..., "digest": hex}``;
loading refuses a file whose digest does not match its document.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from cryptography import x509

from .encoding import EncodingError, digest, parse_json
from .identity import Identity, IdentityError, load_certificate, validate_certificate

__all__ = [
    "CHANNELS",
    "GenesisError",
    "NodeInfo",
    "ChannelConfig",
    "ConsensusConfig",
    "Genesis",
    "majority",
]

CHANNELS = ("transaction", "matching", "electricity")
FORMAT = 1


class GenesisError(Exception):
    """A genesis document or file that is malformed, inconsistent or tampered with."""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    org: str
    host: str
    port: int
    public_key: bytes


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    name: str
    members: tuple[str, ...]  # organisations
    writer_roles: tuple[str, ...]  # roles allowed to submit transactions
    lifecycle_rule: str  # "majority": more than half of the member organisations

    def lifecycle_threshold(self) -> int:
        return majority(len(self.members))


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    n: int
    f: int
    batch_max: int
    batch_timeout_ms: int
    checkpoint_interval: int
    watermark_window: int
    view_change_timeout_ms: int


def majority(count: int) -> int:
    """The smallest number that is more than half of ``count``."""
    return count // 2 + 1


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise GenesisError(message)


@dataclass(frozen=True)
class Genesis:
    """A parsed, checked genesis document."""

    document: Mapping[str, Any]
    digest: bytes
    cas: Mapping[str, x509.Certificate]
    nodes: tuple[NodeInfo, ...]
    channels: Mapping[str, ChannelConfig]
    consensus: ConsensusConfig
    revoked: frozenset[tuple[str, str]]
    _certificates: Mapping[str, x509.Certificate] = field(repr=False)
    # name -> (identity, not valid before, not valid after, revocation key): the chain checked once
    _validated: dict[str, tuple[Identity, dt.datetime, dt.datetime, tuple[str, str]]] = field(
        default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Genesis:
        try:
            genesis_digest = digest(document)
        except EncodingError as exc:
            raise GenesisError(f"genesis document is not canonical: {exc}") from None
        try:
            return cls._parse(document, genesis_digest)
        except (KeyError, TypeError, ValueError, IdentityError) as exc:
            raise GenesisError(f"malformed genesis document: {exc!r}") from None

    @classmethod
    def _parse(cls, doc: Mapping[str, Any], genesis_digest: bytes) -> Genesis:
        _require(doc["format"] == FORMAT, f"unsupported genesis format {doc['format']!r}")
        cas = {org["name"]: load_certificate(org["ca"]) for org in doc["orgs"]}
        nodes = tuple(
            NodeInfo(n["name"], n["org"], n["host"], int(n["port"]), bytes.fromhex(n["public_key"]))
            for n in doc["nodes"]
        )
        for node in nodes:
            _require(node.org in cas, f"node {node.name} belongs to unknown org {node.org!r}")
        certificates = {i["name"]: load_certificate(i["certificate"]) for i in doc["identities"]}
        _require(len(certificates) == len(doc["identities"]), "identity names must be unique")
        channels = {}
        for ch in doc["channels"]:
            policies = ch["policies"]
            channels[ch["name"]] = ChannelConfig(
                name=ch["name"],
                members=tuple(ch["members"]),
                writer_roles=tuple(policies["writers"]["roles"]),
                lifecycle_rule=policies["lifecycle"]["rule"],
            )
            _require(set(ch["members"]) <= set(cas), f"channel {ch['name']} names an unknown org")
            _require(policies["lifecycle"]["rule"] == "majority", "only the majority lifecycle rule exists")
        _require(tuple(channels) == CHANNELS, f"channels must be {CHANNELS}")
        c = doc["consensus"]
        consensus = ConsensusConfig(
            n=c["n"], f=c["f"], batch_max=c["batch_max"], batch_timeout_ms=c["batch_timeout_ms"],
            checkpoint_interval=c["checkpoint_interval"], watermark_window=c["watermark_window"],
            view_change_timeout_ms=c["view_change_timeout_ms"],
        )
        _require(consensus.n == len(nodes), "consensus.n must equal the number of nodes")
        _require(consensus.n == 3 * consensus.f + 1, "PBFT needs n = 3f + 1 nodes")
        revoked = frozenset((r["org"], r["serial"]) for r in doc["revoked"])
        return cls(
            document=doc, digest=genesis_digest, cas=cas, nodes=nodes, channels=channels,
            consensus=consensus, revoked=revoked, _certificates=certificates,
        )

    # -- files -------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> Genesis:
        """Read ``genesis.json`` (or a consortium directory holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / "genesis.json"
        try:
            wrapper = parse_json(path.read_text())
        except (OSError, ValueError) as exc:
            raise GenesisError(f"cannot read {path}: {exc}") from None
        if not isinstance(wrapper, dict) or set(wrapper) != {"document", "digest"}:
            raise GenesisError(f"{path}: expected an object with 'document' and 'digest'")
        genesis = cls.from_document(wrapper["document"])
        if genesis.digest.hex() != wrapper["digest"]:
            raise GenesisError(f"{path}: digest does not match the document (tampered?)")
        return genesis

    def save(self, path: Path) -> None:
        text = json.dumps({"document": self.document, "digest": self.digest.hex()}, indent=1)
        Path(path).write_text(text + "\n")

    # -- questions ---------------------------------------------------------------------

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(node.name for node in self.nodes)

    def node(self, name: str) -> NodeInfo:
        for node in self.nodes:
            if node.name == name:
                return node
        raise GenesisError(f"no node named {name!r} in the genesis")

    def has_identity(self, name: str) -> bool:
        """Is ``name`` an identity of the genesis (a dict lookup: every transaction asks)?"""
        return name in self._certificates

    def certificate(self, name: str) -> x509.Certificate:
        try:
            return self._certificates[name]
        except KeyError:
            raise IdentityError(f"unknown identity {name!r}") from None

    def identity(self, name: str, *, now: dt.datetime) -> Identity:
        """The validated identity called ``name`` as of ``now``.

        The signature chain is checked once and remembered; the validity period and the
        revocation list are checked on every call.
        """
        known = self._validated.get(name)
        if known is None:
            cert = self.certificate(name)
            not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        else:
            found, not_before, not_after, revocation = known
        if now < not_before:
            raise IdentityError(f"certificate of {name!r} is not valid before {not_before.isoformat()}")
        if now > not_after:
            raise IdentityError(f"certificate of {name!r} expired at {not_after.isoformat()}")
        if known is None:
            found = validate_certificate(cert, self.cas, now=now, revoked=self.revoked)
            if found.name != name:
                raise IdentityError(f"certificate registered as {name!r} names {found.name!r}")
            revocation = (found.org, format(cert.serial_number, "x"))
            self._validated[name] = (found, not_before, not_after, revocation)
        if revocation in self.revoked:
            raise IdentityError(f"certificate of {name!r} is revoked")
        return found

    def may_write(self, identity: Identity, channel: str) -> str | None:
        """``None`` if ``identity`` may submit to ``channel``, else the reason it may not."""
        config = self.channels.get(channel)
        if config is None:
            return f"unknown channel {channel!r}"
        if identity.org not in config.members:
            return f"organisation {identity.org!r} is not a member of channel {channel!r}"
        if identity.role not in config.writer_roles:
            return f"role {identity.role!r} may not submit to channel {channel!r}"
        return None
