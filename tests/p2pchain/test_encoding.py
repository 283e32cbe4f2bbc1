"""Canonical encoding: one value, exactly one byte string.

Every test here runs twice: through the C accelerator (``p2pchain/_canonical.c``, when it
is built) and through the pure-Python path, by way of the public functions both times.
"""

import hashlib
import json

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from p2pchain import encoding
from p2pchain.encoding import (
    INT_MAX, INT_MIN, MAX_DEPTH, MAX_ITEMS, EncodingError, decode, digest, encode, parse_json,
)


@pytest.fixture(autouse=True, scope="module", params=["c", "python"])
def implementation(request):
    """Point :func:`encode`/:func:`decode` at one implementation for a module's run.

    Module-scoped (hypothesis refuses function-scoped fixtures around ``@given``): the
    module runs once per implementation. The C run imports the extension itself, so it is
    tested even under ``P2PCHAIN_PURE_ENCODING=1``; unbuilt, it is skipped with the reason.
    """
    saved = encoding._c_encode, encoding._c_decode, encoding._CRefused
    if request.param == "c":
        accelerator = pytest.importorskip(
            "p2pchain._canonical", reason="C accelerator not built (pip install -e . builds it)")
        encoding._c_encode, encoding._c_decode = accelerator.encode, accelerator.decode
        encoding._CRefused = accelerator.Refused
    else:
        encoding._c_encode = encoding._c_decode = None
    yield request.param
    encoding._c_encode, encoding._c_decode, encoding._CRefused = saved

scalars = st.none() | st.booleans() | st.integers(INT_MIN, INT_MAX) | st.text(max_size=20) | st.binary(max_size=20)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@given(values)
def test_decode_inverts_encode(value):
    assert decode(encode(value)) == value


@given(st.dictionaries(st.text(max_size=8), scalars, min_size=2, max_size=8), st.randoms())
def test_key_insertion_order_never_changes_the_bytes(mapping, rnd):
    items = list(mapping.items())
    rnd.shuffle(items)
    assert encode(dict(items)) == encode(mapping)


def test_tuples_encode_as_lists():
    assert encode((1, "a", b"b")) == encode([1, "a", b"b"])


def test_digest_is_blake2b_256_of_the_encoding():
    value = {"channel": "transaction", "nonce": 7}
    assert digest(value) == hashlib.blake2b(encode(value), digest_size=32).digest()
    assert len(digest(value)) == 32


@pytest.mark.parametrize(
    "value, where",
    [
        ({"args": {"quotes": [0, 1, 2, {"price": 1.5}]}}, "args.quotes[3].price"),
        ({"x": float("nan")}, "x"),
        ({"s": {1, 2}}, "s"),
        ({"big": 1 << 64}, "big"),
        ({"small": INT_MIN - 1}, "small"),
        ({"k": {1: "a"}}, "k"),
        ([object()], "[0]"),
        (bytearray(b"x"), "<root>"),
        ({"a": {"b": [None, 2.0]}}, "a.b[1]"),
        ({"a": ["ok", "\ud800"]}, "a[1]"),  # a lone surrogate has no UTF-8 form
        ({"a": {"\udfff": 1}}, "a"),
    ],
)
def test_refused_values_name_their_path(value, where):
    with pytest.raises(EncodingError) as info:
        encode(value)
    assert str(info.value).startswith(where + ":")


def test_mixed_key_types_are_refused():
    with pytest.raises(EncodingError, match="not str"):
        encode({"a": 1, 2: 3})


def test_nesting_beyond_the_depth_limit_is_refused():
    value = []
    for _ in range(MAX_DEPTH + 1):
        value = [value]
    with pytest.raises(EncodingError, match="deeper"):
        encode(value)


def test_integers_at_the_64_bit_bounds_round_trip():
    for number in (INT_MIN, -1, 0, 127, 128, 255, 256, 1 << 32, INT_MAX):
        assert decode(encode(number)) == number


@pytest.mark.parametrize(
    "data, reason",
    [
        (msgpack.packb({"b": 1, "a": 2}), "canonical"),  # keys out of order
        (b"\xcd\x00\x05", "canonical"),  # 5 as uint16: not the shortest form
        (msgpack.packb(1.5), "float"),
        (msgpack.packb({1: 2}), "malformed"),  # integer map key
        (encode(1) + b"\x00", "trailing"),
        (b"\x92\x01", "malformed"),  # truncated array
        (b"\xc1", "malformed"),  # never-used byte
        (b"\xd6\xff\x00\x00\x00\x00", "malformed"),  # extension type (timestamp)
        (b"\xa2\xff\xfe", "malformed"),  # invalid UTF-8
        (b"\x82\xa1a\x01\xa1a\x02", "canonical"),  # duplicate key
    ],
)
def test_malformed_or_non_canonical_bytes_are_refused(data, reason):
    with pytest.raises(EncodingError, match=reason):
        decode(data)


def test_oversized_input_is_refused_before_parsing():
    with pytest.raises(EncodingError, match="exceeds the limit"):
        decode(encode(b"x" * 100), max_size=50)


def test_too_many_items_is_refused():
    data = b"\xdd" + (MAX_ITEMS + 1).to_bytes(4, "big") + b"\xc0" * (MAX_ITEMS + 1)
    with pytest.raises(EncodingError):
        decode(data)


def test_deep_input_is_refused():
    with pytest.raises(EncodingError, match="deeper"):
        decode(b"\x91" * (MAX_DEPTH + 5) + b"\xc0")


def test_decode_refuses_non_bytes():
    with pytest.raises(EncodingError, match="expected bytes"):
        decode("text")


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_canonically_or_raise_encoding_error(data):
    try:
        value = decode(data)
    except EncodingError:
        return
    assert encode(value) == data


@settings(max_examples=200)
@given(values, st.integers(0, 10_000), st.integers(0, 255))
def test_mutated_encodings_never_raise_anything_but_encoding_error(value, position, byte):
    data = bytearray(encode(value))
    data[position % len(data)] = byte
    try:
        decoded = decode(bytes(data))
    except EncodingError:
        return
    assert encode(decoded) == bytes(data)


loose_scalars = scalars | st.floats(allow_nan=True)
loose_values = st.recursive(  # what any msgpack writer may send: floats, maps in any key order
    loose_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(loose_values)
def test_decode_accepts_exactly_the_bytes_that_re_encode_to_themselves(value):
    data = msgpack.packb(value, use_bin_type=True)  # insertion order, floats as they are
    try:
        expected = encode(msgpack.unpackb(data, raw=False)) == data
    except EncodingError:
        expected = False
    try:
        decode(data)
        accepted = True
    except EncodingError:
        accepted = False
    assert accepted == expected


@pytest.mark.parametrize("wrap", [lambda v: [v], lambda v: {"k": v}, lambda v: [[v]]])
def test_decode_accepts_the_deepest_allowed_nesting_and_no_deeper(wrap):
    def nested(levels):
        value = None
        for _ in range(levels):
            value = wrap(value)
        return value
    allowed = nested(MAX_DEPTH if wrap(None) != [[None]] else MAX_DEPTH // 2)
    assert decode(encode(allowed)) == allowed
    too_deep = msgpack.packb([allowed], use_bin_type=True)  # one container more
    with pytest.raises(EncodingError):
        decode(too_deep)


def test_the_pure_walk_visits_each_container_of_a_nested_list_once(monkeypatch):
    # A map at the bottom of nested lists is rebuilt on the way up; walking each changed
    # item twice once cost 2**depth visits (2**30 here, a hang).
    visits = []
    walk = encoding._canonical

    def counted_walk(value, depth):
        visits.append(depth)
        assert len(visits) <= MAX_DEPTH, "a container walked more than once"  # fail fast, not hang
        return walk(value, depth)

    monkeypatch.setattr(encoding, "_canonical", counted_walk)
    value = {"a": 1}
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    assert encoding._encode_pure(value) == msgpack.packb(value, use_bin_type=True)
    assert len(visits) <= MAX_DEPTH


# -- JSON from outside ---------------------------------------------------------------------------

@pytest.mark.parametrize("text", [b"[" * 100_000, b'{"a":' * 100_000, "[" * 100_000 + "]" * 100_000])
def test_json_nested_past_the_parser_is_malformed_input_not_an_internal_error(text):
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_json(text)


def test_json_within_the_parsers_depth_parses_as_json_loads_does():
    text = "[" * 500 + "{}" + "]" * 500
    assert parse_json(text) == json.loads(text)


@settings(max_examples=300)
@given(st.text(max_size=40) | st.binary(max_size=40))
def test_any_json_input_parses_or_raises_value_error_only(text):
    try:
        value = parse_json(text)
    except ValueError:
        return
    assert json.dumps(value) == json.dumps(json.loads(text))     # NaN, which is not equal to itself, too
