"""Wire form of consensus messages: round trips, and refusal of anything malformed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchain.consensus.messages import (CheckpointState, CommittedEntry, FetchReply,
                                         FetchRequest, MalformedMessage, NewView,
                                         PreparedCertificate, Reply, ViewChange,
                                         decode_message, encode_message)
from p2pchain.encoding import decode, encode
from p2pchain.ordering import CommitCertificate

from .conftest import CHANNEL


def every_message(cluster):
    pp = cluster.pre_prepare(1)
    prepares = (cluster.prepare(pp, "node1"), cluster.prepare(pp, "node2"))
    state = CheckpointState(2, b"s" * 32, (("alice", 3),))
    ckpt = cluster.checkpoint(state, "node1")
    vc = cluster.sign(ViewChange(CHANNEL, 1, 2, state, (ckpt,), (PreparedCertificate(pp, prepares),), "node2"))
    nv = cluster.sign(NewView(CHANNEL, 1, (vc,), (pp,), "node1"))
    cert = CommitCertificate(CHANNEL, 0, 1, pp.digest, (("node0", b"x" * 64),))
    return [
        pp, prepares[0], cluster.commit(pp, "node3"), ckpt, vc, nv,
        cluster.sign(FetchRequest(CHANNEL, 4, "node3")),
        cluster.sign(FetchReply(CHANNEL, state, (ckpt,), (CommittedEntry(1, pp.batch, cert),), nv, "node0")),
        cluster.sign(FetchReply(CHANNEL, state, (), (), None, "node0")),
        cluster.sign(Reply(CHANNEL, 0, 1, "alice", 1, b"ok", "node1")),
    ]


def test_every_message_type_survives_the_wire_unchanged(cluster):
    for message in every_message(cluster):
        assert decode_message(encode_message(message)) == message


def test_signing_bytes_leave_the_batch_out_and_bind_it_by_digest(cluster):
    pp = cluster.pre_prepare(1)
    assert pp.batch.requests[0] not in pp.signing_bytes()
    assert pp.digest in pp.signing_bytes()


@pytest.mark.parametrize("value, reason", [
    ({"type": "prepare"}, "malformed"),
    ({"type": "nonsense"}, "unknown message type"),
    ([1, 2], "must be a map"),
])
def test_malformed_values_are_refused_with_a_reason(value, reason):
    with pytest.raises(MalformedMessage, match=reason):
        decode_message(encode(value))


def test_wrong_field_type_is_refused(cluster):
    value = decode(encode_message(cluster.prepare(cluster.pre_prepare(1), "node1")))
    value["seq"] = "1"
    with pytest.raises(MalformedMessage, match="field 'seq' must be int"):
        decode_message(encode(value))


def test_extra_fields_are_refused(cluster):
    value = decode(encode_message(cluster.commit(cluster.pre_prepare(1), "node1")))
    value["extra"] = 1
    with pytest.raises(MalformedMessage, match="beyond"):
        decode_message(encode(value))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_either_decode_or_raise_malformed_message(data):
    try:
        decode_message(data)
    except MalformedMessage:
        pass
