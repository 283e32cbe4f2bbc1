"""Ed25519 signatures and key files."""

import os
import stat

import pytest

from p2pchain.crypto import BadSignature, KeyFileError, SigningKey, load_signing_key, save_signing_key, verify

MESSAGE = b"quotation for hour 7: 3000 Wh at 650 milli/kWh"


@pytest.fixture(scope="module")
def key():
    return SigningKey.from_seed(bytes(range(32)))


def test_a_signature_verifies_under_its_key(key):
    verify(key.public_key, MESSAGE, key.sign(MESSAGE))


@pytest.mark.parametrize("position", [0, 17, len(MESSAGE) - 1])
def test_one_changed_byte_of_the_message_is_refused(key, position):
    signature = key.sign(MESSAGE)
    tampered = bytearray(MESSAGE)
    tampered[position] ^= 0x01
    with pytest.raises(BadSignature, match="does not verify"):
        verify(key.public_key, bytes(tampered), signature)


def test_one_changed_byte_of_the_signature_is_refused(key):
    signature = bytearray(key.sign(MESSAGE))
    signature[5] ^= 0x80
    with pytest.raises(BadSignature):
        verify(key.public_key, MESSAGE, bytes(signature))


def test_a_key_of_another_identity_is_refused(key):
    other = SigningKey.generate()
    with pytest.raises(BadSignature):
        verify(other.public_key, MESSAGE, key.sign(MESSAGE))


@pytest.mark.parametrize("public_key, signature", [
    (b"\x00" * 31, b"\x00" * 64), (b"\x00" * 32, b"\x00" * 63), (b"", b""),
    (b"\x00" * 32, 5), (b"\x00" * 32, "0" * 64), (b"\x00" * 32, [0] * 64), (b"\x00" * 32, None),
])
def test_malformed_keys_and_signatures_are_typed_errors(public_key, signature):
    with pytest.raises(BadSignature, match="bytes"):
        verify(public_key, MESSAGE, signature)


def test_key_files_round_trip_with_owner_only_permissions(tmp_path, key):
    path = tmp_path / "id" / "key.pem"
    save_signing_key(key, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert load_signing_key(path).public_key == key.public_key


def test_an_existing_key_file_is_never_overwritten(tmp_path, key):
    path = tmp_path / "key.pem"
    save_signing_key(key, path)
    with pytest.raises(FileExistsError):
        save_signing_key(SigningKey.generate(), path)
    assert load_signing_key(path).public_key == key.public_key


def test_garbage_key_file_is_a_typed_error(tmp_path):
    path = tmp_path / "key.pem"
    path.write_text("not a key")
    with pytest.raises(KeyFileError):
        load_signing_key(path)
    with pytest.raises(KeyFileError):
        load_signing_key(tmp_path / "missing.pem")


def test_repr_never_shows_the_secret(key):
    assert key.seed.hex() not in repr(key)
