"""Transaction envelopes: ids, encoding, and each refusal with its reason (issue 3, Tests)."""

from __future__ import annotations

import datetime as dt

import msgpack
import pytest

from p2pchain.encoding import encode
from p2pchain.ledger.transaction import (
    MAX_TX_BYTES, NONCE_NAMESPACE, Transaction, TransactionRefused, screen_requests,
    timestamp_to_datetime, validate_transaction,
)

from conftest import T0_MS

NOW = timestamp_to_datetime(T0_MS)


def no_nonces(creator):
    return None


def refusal(chain, tx_bytes, nonce_lookup=no_nonces, **kwargs) -> TransactionRefused:
    with pytest.raises(TransactionRefused) as caught:
        validate_transaction(tx_bytes, chain.genesis, NOW, nonce_lookup, **kwargs)
    return caught.value


def test_valid_transaction_round_trips_and_is_accepted(chain):
    raw = chain.tx("ev01", 7, key="q", value={"energy_wh": 1500})
    tx = validate_transaction(raw, chain.genesis, NOW, no_nonces, channel="transaction")
    assert tx.to_bytes() == raw
    assert Transaction.from_bytes(raw) == tx
    assert (tx.creator, tx.nonce, tx.args) == ("ev01", 7, {"key": "q", "value": {"energy_wh": 1500}})


def test_tx_id_is_the_digest_of_the_unsigned_envelope_and_ignores_the_signature(chain):
    tx = Transaction.from_bytes(chain.tx("ev01", 1))
    resigned = Transaction(tx.channel, tx.contract, tx.function, tx.args, tx.creator, tx.nonce, bytes(64))
    assert tx.tx_id == resigned.tx_id
    other = Transaction.from_bytes(chain.tx("ev01", 2))
    assert tx.tx_id != other.tx_id


def test_forged_signature_is_refused(chain):
    # ev02 signs an envelope that claims to come from ev01.
    assert refusal(chain, chain.tx("ev01", 1, signer="ev02")).code == "bad_signature"


def test_altered_argument_breaks_the_signature(chain):
    tx = Transaction.from_bytes(chain.tx("ev01", 1, value=10))
    altered = Transaction(tx.channel, tx.contract, tx.function, {"key": "k", "value": 11}, tx.creator,
                          tx.nonce, tx.signature)
    assert refusal(chain, altered.to_bytes()).code == "bad_signature"


def test_unknown_creator_is_refused(chain):
    raw = Transaction.create(chain.key("ev01"), channel="transaction", contract="kv", function="put",
                             args={}, creator="mallory", nonce=1).to_bytes()
    found = refusal(chain, raw)
    assert found.code == "unknown_creator" and "mallory" in found.detail


def test_creator_not_permitted_on_the_channel_is_refused(chain):
    # Peers (nodes) are not among the writer roles of any channel.
    found = refusal(chain, chain.tx("node1", 1))
    assert found.code == "not_permitted" and "peer" in found.detail


def test_expired_certificate_is_refused(chain):
    raw = chain.tx("ev01", 1)
    with pytest.raises(TransactionRefused) as caught:
        validate_transaction(raw, chain.genesis, NOW + dt.timedelta(days=20 * 365), no_nonces)
    assert caught.value.code == "invalid_creator"


@pytest.mark.parametrize("last", [5, 6])
def test_replayed_or_older_nonce_is_refused(chain, last):
    found = refusal(chain, chain.tx("ev01", 5), lambda creator: last)
    assert found.code == "replayed_nonce"


def test_next_nonce_is_accepted(chain):
    assert validate_transaction(chain.tx("ev01", 6), chain.genesis, NOW, lambda c: 5).nonce == 6


def test_oversized_transaction_is_refused(chain):
    raw = chain.tx("ev01", 1, value="x" * MAX_TX_BYTES)
    assert len(raw) > MAX_TX_BYTES
    assert refusal(chain, raw).code == "oversized"


def test_non_canonical_args_are_refused(chain):
    tx = Transaction.from_bytes(chain.tx("ev01", 1))
    envelope = {**tx.unsigned_value(), "signature": tx.signature, "args": {"price": 1.5}}
    assert refusal(chain, msgpack.packb(envelope, use_bin_type=True)).code == "non_canonical"


def test_unsorted_map_keys_are_non_canonical(chain):
    raw = chain.tx("ev01", 1)
    value = msgpack.unpackb(raw)
    reordered = msgpack.packb(dict(reversed(list(value.items()))), use_bin_type=True)
    assert reordered != raw
    assert refusal(chain, reordered).code == "non_canonical"


def test_garbage_is_malformed(chain):
    assert refusal(chain, b"\xc1\x00garbage").code == "malformed"
    assert refusal(chain, encode({"type": "tx"})).code == "malformed"


def test_transaction_for_another_channel_is_refused(chain):
    found = refusal(chain, chain.tx("ev01", 1, channel="matching"), channel="transaction")
    assert found.code == "wrong_channel"


def test_screening_refuses_a_nonce_reused_within_one_batch(chain):
    requests = [chain.tx("ev01", 3), chain.tx("ev01", 3, key="other"), chain.tx("ev01", 4)]
    screened = screen_requests(requests, channel="transaction", genesis=chain.genesis, now=NOW,
                               nonce_lookup=lambda c: 2)
    assert isinstance(screened[0], Transaction) and isinstance(screened[2], Transaction)
    assert screened[1].code == "replayed_nonce"


def test_screening_skips_only_the_signature_of_bytes_the_node_verified_and_decides_the_same(chain, monkeypatch):
    import p2pchain.ledger.transaction as transaction

    good, forged = chain.tx("ev01", 3), chain.tx("ev01", 4, signer="ev02")
    revoked_later = chain.tx("ev01", 5)
    verified: list[bytes] = []
    real_verify = transaction.verify
    monkeypatch.setattr(transaction, "verify", lambda key, message, signature: (verified.append(message),
                                                                                 real_verify(key, message, signature)))
    known = {good}  # what this node's API or relay verified
    kwargs = dict(channel="transaction", genesis=chain.genesis, now=NOW, nonce_lookup=lambda c: 2)
    with_cache = screen_requests([good, forged, revoked_later], signature_known=known.__contains__, **kwargs)
    checked_with_cache = len(verified)
    without = screen_requests([good, forged, revoked_later], **kwargs)
    assert [getattr(x, "code", x) for x in with_cache] == [getattr(x, "code", x) for x in without]
    assert isinstance(with_cache[0], Transaction) and with_cache[1].code == "bad_signature"
    assert (checked_with_cache, len(verified) - checked_with_cache) == (2, 3)  # the known one is not re-checked
    # the certificate is still judged as of the block's time, cache or not
    late = timestamp_to_datetime(T0_MS + 10 * 365 * 86_400_000)
    assert screen_requests([good], channel="transaction", genesis=chain.genesis, now=late,
                           nonce_lookup=lambda c: 2, signature_known=known.__contains__)[0].code == "invalid_creator"


@pytest.mark.parametrize("case", ["forged", "unknown", "not_permitted", "replayed", "oversized", "non_canonical"])
def test_refused_transaction_writes_nothing(chain, open_ledger, case):
    ledger = open_ledger()
    chain.commit(ledger, [chain.tx("ev01", 1, key="before")])
    root, nonce = ledger.state.root, ledger.last_nonce("ev01")
    tx = Transaction.from_bytes(chain.tx("ev01", 2, key="bad"))
    raw = {
        "forged": chain.tx("ev01", 2, key="bad", signer="ev03"),
        "unknown": Transaction.create(chain.key("ev01"), channel="transaction", contract="kv", function="put",
                                      args={"key": "bad", "value": 1}, creator="eve", nonce=2).to_bytes(),
        "not_permitted": chain.tx("node2", 2, key="bad"),
        "replayed": chain.tx("ev01", 1, key="bad"),
        "oversized": chain.tx("ev01", 2, key="bad", value="x" * MAX_TX_BYTES),
        "non_canonical": msgpack.packb({**tx.unsigned_value(), "signature": tx.signature, "args": 0.5}),
    }[case]
    block = chain.commit(ledger, [raw])
    assert block.outputs.results[0].status == "refused"
    assert block.outputs.writes == ()
    assert ledger.state.get("kv", "bad") is None
    assert ledger.state.root == root and ledger.last_nonce("ev01") == nonce
    assert ledger.state.get(NONCE_NAMESPACE, "eve") is None
