"""Bootstrap a consortium directory: CAs, keys, certificates and the genesis.

Layout of a consortium directory::

    DIR/genesis.json                     public: the genesis document and its digest
    DIR/orgs/<org>/ca.pem                public: the organisation's CA certificate
    DIR/orgs/<org>/ca-key.pem            secret (0600): the CA's private key
    DIR/identities/<name>/cert.pem       public: the identity's certificate
    DIR/identities/<name>/key.pem        secret (0600): the identity's private key
    DIR/nodes/<node>/                    a node's data (ledgers, logs), made by the node

The three organisations follow the paper (Section II.B): a microgrid operator, the
distribution network operator and a regulator. The paper's market has 15 EVs, 5 rooftop PV
and 1 SMES (Section IV); they are clients of the microgrid operator.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .crypto import SigningKey, load_signing_key, save_signing_key
from .encoding import digest
from .genesis import CHANNELS, FORMAT, Genesis
from .identity import certificate_pem, issue_certificate, make_ca

__all__ = [
    "ORGS",
    "ConsortiumError",
    "IdentitySpec",
    "identity_specs",
    "node_orgs",
    "create_consortium",
    "load_identity_key",
    "summary",
]

ORGS = {
    "mgo": "Microgrid operator",
    "dno": "Distribution network operator",
    "reg": "Regulator",
}
# Nodes are dealt to organisations in this order: n = 4 gives mgo two nodes, dno and reg one.
NODE_ORG_CYCLE = ("mgo", "dno", "reg", "mgo")
EV_COUNT, PV_COUNT = 15, 5
CERT_VALIDITY = dt.timedelta(days=3650)
CLOCK_SKEW = dt.timedelta(hours=1)  # certificates are valid from an hour before creation


class ConsortiumError(Exception):
    """A consortium that cannot be created as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class IdentitySpec:
    name: str
    org: str
    role: str
    kind: str | None


def node_orgs(count: int) -> list[str]:
    return [NODE_ORG_CYCLE[i % len(NODE_ORG_CYCLE)] for i in range(count)]


def identity_specs(nodes: int, load_clients: int = 0) -> list[IdentitySpec]:
    """Every identity the bootstrap issues, in a fixed order."""
    specs = [IdentitySpec(f"node{i}", org, "peer", None) for i, org in enumerate(node_orgs(nodes))]
    specs += [IdentitySpec(f"ev{i:02d}", "mgo", "client", "ev") for i in range(1, EV_COUNT + 1)]
    specs += [IdentitySpec(f"pv{i}", "mgo", "client", "pv") for i in range(1, PV_COUNT + 1)]
    specs.append(IdentitySpec("smes", "mgo", "client", "smes"))
    specs += [IdentitySpec(f"operator-{org}", org, "client", "operator") for org in ORGS]
    specs += [IdentitySpec(f"admin-{org}", org, "admin", None) for org in ORGS]
    # PBFT clients have one request outstanding at a time (OSDI'99 §4.1): a load generator
    # needs many identities to offer a high rate.
    specs += [IdentitySpec(f"load{i:04d}", "mgo", "client", "load") for i in range(load_clients)]
    return specs


def _serial(public_key: bytes) -> int:
    """A certificate serial derived from the key: unique, positive, at most 128 bits."""
    return int.from_bytes(digest(public_key)[:16], "big") >> 1 or 1


CONSENSUS_DEFAULTS = {"batch_max": 100, "batch_timeout_ms": 5, "checkpoint_interval": 10,
                      "watermark_window": 40, "view_change_timeout_ms": 2000}
"""The consensus settings a new consortium's genesis gets (besides n and f)."""


def create_consortium(
    directory: Path,
    *,
    nodes: int = 4,
    host: str | list[str] = "127.0.0.1",
    base_port: int = 7050,
    now: dt.datetime,
    force: bool = False,
    load_clients: int = 0,
    new_key: Callable[[], SigningKey] = SigningKey.generate,
) -> Genesis:
    """Create the CAs, identities and genesis of a consortium in ``directory``."""
    if nodes < 4 or (nodes - 1) % 3 != 0:
        f = max((nodes - 1) // 3, 0)
        tolerate = (f"{nodes} nodes tolerate no Byzantine fault" if f == 0 else
                    f"{nodes} nodes tolerate only f = {f} Byzantine fault{'s' if f > 1 else ''}, as {3 * f + 1} would")
        raise ConsortiumError(f"PBFT needs n = 3f + 1 nodes with f >= 1 (4, 7, 10, ...); {tolerate}")
    if not 1 <= base_port <= 65536 - nodes:
        raise ConsortiumError(f"node i listens on base port + i: the {nodes} ports from {base_port} must lie in "
                              f"1..65535 (a base port from 1 to {65536 - nodes})")
    hosts = [host] * nodes if isinstance(host, str) else list(host)
    if len(hosts) != nodes:
        raise ConsortiumError(f"{len(hosts)} hosts given for {nodes} nodes; give one host per node")
    directory = Path(directory)
    if (directory / "genesis.json").exists() or (directory / "orgs").exists():
        if not force:
            raise ConsortiumError(f"{directory} already holds a consortium; use --force to replace it")
        for part in ("genesis.json", "orgs", "identities", "nodes", "logs"):
            target = directory / part
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConsortiumError(f"cannot create the consortium directory {directory}: {exc.strerror}") from None
    not_before, not_after = now - CLOCK_SKEW, now + CERT_VALIDITY

    ca_keys, ca_certs = {}, {}
    for org in ORGS:
        key = new_key()
        ca_keys[org] = key
        ca_certs[org] = make_ca(org, key, not_before, not_after, _serial(key.public_key))
        save_signing_key(key, directory / "orgs" / org / "ca-key.pem")
        (directory / "orgs" / org / "ca.pem").write_text(certificate_pem(ca_certs[org]))

    identities, node_entries = [], []
    for spec in identity_specs(nodes, load_clients):
        key = new_key()
        cert = issue_certificate(
            ca_certs[spec.org], ca_keys[spec.org], name=spec.name, role=spec.role,
            kind=spec.kind, public_key=key.public_key, not_before=not_before,
            not_after=not_after, serial=_serial(key.public_key),
        )
        folder = directory / "identities" / spec.name
        save_signing_key(key, folder / "key.pem")
        (folder / "cert.pem").write_text(certificate_pem(cert))
        identities.append({
            "name": spec.name, "org": spec.org, "role": spec.role, "kind": spec.kind,
            "certificate": certificate_pem(cert),
        })
        if spec.role == "peer":
            node_entries.append({
                "name": spec.name, "org": spec.org, "host": hosts[len(node_entries)],
                "port": base_port + len(node_entries), "public_key": key.public_key.hex(),
            })

    member_orgs = sorted(ORGS)
    document = {
        "format": FORMAT,
        "consortium": "p2pchain EV peer-to-peer energy market",
        "created": now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "orgs": [{"name": org, "title": title, "ca": certificate_pem(ca_certs[org])} for org, title in ORGS.items()],
        "nodes": node_entries,
        "identities": identities,
        "channels": [
            {
                "name": channel,
                "members": member_orgs,
                "policies": {
                    "writers": {"roles": ["client", "admin"]},
                    "lifecycle": {"rule": "majority"},
                },
            }
            for channel in CHANNELS
        ],
        "revoked": [],
        "consensus": {"n": nodes, "f": (nodes - 1) // 3, **CONSENSUS_DEFAULTS},
    }
    genesis = Genesis.from_document(document)
    genesis.save(directory / "genesis.json")
    return genesis


def load_identity_key(directory: Path, name: str) -> SigningKey:
    """The private key of identity ``name`` in consortium ``directory``."""
    return load_signing_key(Path(directory) / "identities" / name / "key.pem")


def summary(genesis: Genesis, directory: Path | None = None) -> str:
    """A readable account of a consortium: orgs, nodes, channels, identities, digest."""
    doc = genesis.document
    lines = [f"consortium: {doc['consortium']}  (created {doc['created']})"]
    if directory is not None:
        lines.append(f"directory:  {Path(directory).resolve()}")
    lines.append(f"genesis digest (blake2b-256): {genesis.digest.hex()}")
    c = genesis.consensus
    lines.append(f"consensus: PBFT, n={c.n}, f={c.f}, batch<={c.batch_max}, checkpoint every {c.checkpoint_interval}")
    lines.append("organisations:")
    for org in doc["orgs"]:
        members = [i for i in doc["identities"] if i["org"] == org["name"]]
        lines.append(f"  {org['name']:4} {org['title']:32} {len(members)} identities")
    lines.append("nodes:")
    for node in genesis.nodes:
        lines.append(f"  {node.name:7} org={node.org:4} http://{node.host}:{node.port}  key={node.public_key.hex()[:16]}…")
    lines.append("channels:")
    for ch in genesis.channels.values():
        lines.append(f"  {ch.name:12} members={','.join(ch.members)}  writers={','.join(ch.writer_roles)}  lifecycle={ch.lifecycle_rule} ({ch.lifecycle_threshold()} of {len(ch.members)} orgs)")
    lines.append("identities by kind:")
    groups: dict[str, list[str]] = {}
    for ident in doc["identities"]:
        label = ident["kind"] or ident["role"]
        groups.setdefault(label, []).append(ident["name"])
    for label, names in groups.items():
        shown = ", ".join(names) if len(names) <= 6 else f"{names[0]} … {names[-1]}"
        lines.append(f"  {label:8} {len(names):2}  {shown}")
    lines.append(f"revoked certificates: {len(genesis.revoked)}")
    return "\n".join(lines)
