"""Identities like a Fabric MSP: each refusal with its reason."""

import datetime as dt

import pytest

from p2pchain.consortium import create_consortium, load_identity_key
from p2pchain.crypto import SigningKey
from p2pchain.genesis import Genesis, GenesisError
from p2pchain.identity import Identity, IdentityError, issue_certificate, load_certificate, serial_hex, validate_certificate

from ..conftest import NOW


@pytest.fixture(scope="module")
def foreign_genesis(tmp_path_factory):
    """A second consortium with the same organisation names but its own CAs."""
    return create_consortium(tmp_path_factory.mktemp("foreign"), now=NOW)


def test_a_client_certificate_makes_an_identity(genesis, consortium_dir):
    identity = genesis.identity("ev03", now=NOW)
    assert identity == Identity(
        org="mgo", name="ev03", role="client", kind="ev",
        public_key=load_identity_key(consortium_dir, "ev03").public_key,
    )


def test_nodes_are_peers_and_admins_are_admins(genesis):
    assert genesis.identity("node2", now=NOW).role == "peer"
    assert genesis.identity("node2", now=NOW).org == "reg"
    admin = genesis.identity("admin-dno", now=NOW)
    assert (admin.org, admin.role, admin.kind) == ("dno", "admin", None)


def test_a_certificate_from_a_foreign_ca_is_refused(genesis, foreign_genesis):
    cert = foreign_genesis.certificate("ev01")
    with pytest.raises(IdentityError, match="does not verify against the CA of 'mgo'"):
        validate_certificate(cert, genesis.cas, now=NOW)


def test_a_certificate_of_an_unknown_org_is_refused(genesis, consortium_dir):
    ca_key = SigningKey.generate()
    from p2pchain.identity import make_ca

    ca = make_ca("intruder", ca_key, NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=1), 7)
    cert = issue_certificate(
        ca, ca_key, name="mallory", role="client", kind="ev", public_key=SigningKey.generate().public_key,
        not_before=NOW - dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=1), serial=8,
    )
    with pytest.raises(IdentityError, match="not a member of the consortium"):
        validate_certificate(cert, genesis.cas, now=NOW)


def test_an_expired_certificate_is_refused(genesis):
    later = NOW + dt.timedelta(days=3651)
    with pytest.raises(IdentityError, match="expired"):
        validate_certificate(genesis.certificate("pv1"), genesis.cas, now=later)
    with pytest.raises(IdentityError, match="expired"):
        genesis.identity("pv1", now=later)


def test_a_certificate_before_its_validity_is_refused(genesis):
    earlier = NOW - dt.timedelta(days=2)
    with pytest.raises(IdentityError, match="not valid before"):
        validate_certificate(genesis.certificate("pv1"), genesis.cas, now=earlier)


def test_the_wrong_role_is_refused(genesis):
    with pytest.raises(IdentityError, match="role 'client' is not accepted here"):
        validate_certificate(genesis.certificate("ev01"), genesis.cas, now=NOW, roles=("peer",))


def test_a_revoked_certificate_is_refused(genesis):
    cert = genesis.certificate("ev05")
    with pytest.raises(IdentityError, match="revoked"):
        validate_certificate(cert, genesis.cas, now=NOW, revoked=[("mgo", serial_hex(cert))])


def test_the_genesis_revocation_list_is_enforced(genesis):
    document = dict(genesis.document)
    document["revoked"] = [{"org": "mgo", "serial": serial_hex(genesis.certificate("ev07"))}]
    revoking = Genesis.from_document(document)
    with pytest.raises(IdentityError, match="revoked"):
        revoking.identity("ev07", now=NOW)
    assert revoking.identity("ev08", now=NOW).name == "ev08"
    assert revoking.digest != genesis.digest


def test_an_unknown_identity_name_is_refused(genesis):
    with pytest.raises(IdentityError, match="unknown identity"):
        genesis.identity("ev99", now=NOW)


def test_a_malformed_certificate_is_a_typed_error():
    with pytest.raises(IdentityError, match="malformed"):
        load_certificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_a_tampered_genesis_file_is_refused(consortium_dir, tmp_path):
    text = (consortium_dir / "genesis.json").read_text().replace('"port": 7051', '"port": 9999')
    (tmp_path / "genesis.json").write_text(text)
    with pytest.raises(GenesisError, match="digest does not match"):
        Genesis.load(tmp_path)


@pytest.mark.parametrize("text", ["{oops", "[" * 100_000, "[1]"])
def test_a_genesis_file_that_is_not_a_genesis_is_refused_with_the_reason(tmp_path, text):
    (tmp_path / "genesis.json").write_text(text)
    with pytest.raises(GenesisError, match="cannot read|expected an object"):
        Genesis.load(tmp_path)


def test_channel_write_policy(genesis):
    client = genesis.identity("ev01", now=NOW)
    peer = genesis.identity("node0", now=NOW)
    assert genesis.may_write(client, "transaction") is None
    assert "may not submit" in genesis.may_write(peer, "matching")
    assert "unknown channel" in genesis.may_write(client, "gossip")
