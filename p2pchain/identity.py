"""Consortium identities, in the manner of a Hyperledger Fabric MSP (DESIGN.md, decision 3).

Each organisation runs a certificate authority: a self-signed X.509 certificate over an
Ed25519 key. The CA issues certificates for its members, whose subject carries

* ``O``  — the organisation (``mgo``, ``dno``, ``reg``),
* ``CN`` — the identity's name, unique in the consortium (``node0``, ``ev03``, ``admin-dno``),
* ``OU`` — the role (``peer``, ``client`` or ``admin``), and for clients a second ``OU``
  with the kind (``ev``, ``pv``, ``smes`` or ``operator``), as Fabric's NodeOUs do.

:func:`validate_certificate` checks a certificate against the genesis trust anchors and
returns an immutable :class:`Identity`, the only form in which the rest of the code sees an
identity. Each refusal is an :class:`IdentityError` whose message says why. Time is an
argument: nothing here reads the clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Mapping

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from .crypto import SigningKey

__all__ = [
    "ROLES",
    "CLIENT_KINDS",
    "Identity",
    "IdentityError",
    "make_ca",
    "issue_certificate",
    "load_certificate",
    "certificate_pem",
    "validate_certificate",
    "serial_hex",
]

ROLES = ("peer", "client", "admin")
CLIENT_KINDS = ("ev", "pv", "smes", "operator", "load")  # load: benchmark clients (init --load-clients)


class IdentityError(Exception):
    """A certificate that does not make a valid identity; the message says why."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A validated member of the consortium."""

    org: str
    name: str
    role: str
    kind: str | None
    public_key: bytes

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}")
        if (self.role == "client") != (self.kind is not None):
            raise ValueError("clients, and only clients, have a kind")
        if self.kind is not None and self.kind not in CLIENT_KINDS:
            raise ValueError(f"unknown client kind {self.kind!r}")
        if len(self.public_key) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")


def _x509_private_key(key: SigningKey) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(key.seed)


def _x509_public_key(public_key: bytes) -> ed25519.Ed25519PublicKey:
    return ed25519.Ed25519PublicKey.from_public_bytes(public_key)


def make_ca(
    org: str, key: SigningKey, not_before: dt.datetime, not_after: dt.datetime, serial: int
) -> x509.Certificate:
    """A self-signed CA certificate for organisation ``org``."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, f"ca.{org}"),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_x509_public_key(key.public_key))
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(_x509_private_key(key), algorithm=None)
    )


def issue_certificate(
    ca_cert: x509.Certificate,
    ca_key: SigningKey,
    *,
    name: str,
    role: str,
    kind: str | None,
    public_key: bytes,
    not_before: dt.datetime,
    not_after: dt.datetime,
    serial: int,
) -> x509.Certificate:
    """A member certificate issued by ``ca_cert``; the role and kind go into ``OU``s."""
    Identity(org=_org_of(ca_cert), name=name, role=role, kind=kind, public_key=public_key)
    attributes = [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, _org_of(ca_cert)),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
    ]
    if kind is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, name))
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca_cert.subject)
        .public_key(_x509_public_key(public_key))
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(_x509_private_key(ca_key), algorithm=None)
    )


def certificate_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_certificate(pem: str | bytes) -> x509.Certificate:
    """Parse a PEM certificate; a malformed one is an :class:`IdentityError`."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise IdentityError(f"malformed certificate: {exc}") from None


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def _org_of(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if len(values) != 1:
        raise IdentityError("certificate subject must name exactly one organisation (O)")
    return str(values[0].value)


def validate_certificate(
    cert: x509.Certificate,
    cas: Mapping[str, x509.Certificate],
    *,
    now: dt.datetime,
    roles: Iterable[str] = ROLES,
    revoked: Iterable[tuple[str, str]] = (),
) -> Identity:
    """Check ``cert`` against the organisations' CAs and return its :class:`Identity`.

    Parameters
    ----------
    cert : the member certificate.
    cas : organisation name -> that organisation's CA certificate (from the genesis).
    now : the time at which the certificate must be valid (timezone-aware).
    roles : the roles acceptable to the caller (e.g. only ``peer`` for a consensus message).
    revoked : (org, serial in hex) pairs on the genesis revocation list.

    Raises
    ------
    IdentityError
        with the reason: unknown organisation, not issued by that organisation's CA,
        outside its validity period, revoked, malformed subject, or a role not accepted.
    """
    org = _org_of(cert)
    ca = cas.get(org)
    if ca is None:
        raise IdentityError(f"organisation {org!r} is not a member of the consortium")
    if cert.issuer != ca.subject:
        raise IdentityError(f"certificate is not issued by the CA of {org!r}")
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        raise IdentityError(f"certificate signature does not verify against the CA of {org!r}") from None
    if now < cert.not_valid_before_utc:
        raise IdentityError(f"certificate is not valid before {cert.not_valid_before_utc.isoformat()}")
    if now > cert.not_valid_after_utc:
        raise IdentityError(f"certificate expired at {cert.not_valid_after_utc.isoformat()}")
    if (org, serial_hex(cert)) in set(revoked):
        raise IdentityError(f"certificate {serial_hex(cert)} of {org!r} is revoked")
    units = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not units or len(names) != 1:
        raise IdentityError("certificate subject must carry a role (OU) and one name (CN)")
    role, kind = units[0], (units[1] if len(units) > 1 else None)
    if role not in ROLES:
        raise IdentityError(f"unknown role {role!r}")
    allowed = tuple(roles)
    if role not in allowed:
        raise IdentityError(f"role {role!r} is not accepted here (expected {' or '.join(allowed)})")
    public = cert.public_key()
    if not isinstance(public, ed25519.Ed25519PublicKey):
        raise IdentityError("certificate key is not Ed25519")
    try:
        return Identity(
            org=org,
            name=str(names[0].value),
            role=role,
            kind=kind,
            public_key=public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        )
    except ValueError as exc:
        raise IdentityError(f"certificate does not describe a valid identity: {exc}") from None
