"""Whatever a peer sends, ``handle`` reports it and never raises (the issue's rule)."""

from __future__ import annotations

from dataclasses import fields, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchain.consensus import Received, RequestReceived

from .test_messages import every_message

junk = st.one_of(st.integers(-5, 2**64 - 1), st.binary(max_size=40), st.text(max_size=8),
                 st.none(), st.just(()), st.just(("node0", b"")))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(index=st.integers(0, 9), field_index=st.integers(0, 8), value=junk, resign=st.booleans(),
       receiver=st.sampled_from(["node0", "node1", "node3"]))
def test_a_mutated_message_never_makes_handle_raise(cluster, index, field_index, value, resign, receiver):
    message = every_message(cluster)[index]
    names = [f.name for f in fields(message)]
    name = names[field_index % len(names)]
    mutated = replace(message, **{name: value})
    if resign and isinstance(getattr(mutated, "sender", None), str) and mutated.sender in ("node0", "node1", "node2", "node3"):
        try:
            mutated = cluster.sign(mutated)
        except Exception:  # the mutation made it unencodable: send it unsigned
            pass
    replica = cluster.replica(receiver)
    replica.handle(Received(1, mutated))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(request=st.one_of(st.binary(max_size=200), junk))
def test_any_client_request_never_makes_handle_raise(cluster, request):
    cluster.replica("node0").handle(RequestReceived(1, request))
