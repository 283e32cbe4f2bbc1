"""The C accelerator (p2pchain/_canonical.c) against the pure-Python reference.

The contract: on any input the C functions either give exactly the pure path's bytes or
value, or raise ``Refused``, after which :func:`encode`/:func:`decode` run the pure path and
so raise its very :class:`EncodingError`. Properties below check that on canonical values,
on values that cannot be encoded, and on arbitrary, mutated, truncated and hostile bytes;
C must accept exactly what the pure path accepts (it only ever refuses more on a str
subclass used as a map key, which the pure path then decides).
"""

import enum
import os
import subprocess
import sys
import tracemalloc

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from p2pchain import encoding
from p2pchain.encoding import INT_MAX, INT_MIN, MAX_DEPTH, MAX_ITEMS, MAX_SIZE, EncodingError

_canonical = pytest.importorskip(
    "p2pchain._canonical", reason="C accelerator not built (pip install -e . builds it)")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---------------------------------------------------------------- helpers


def typed(value):
    """``value`` with every type and every map's key order made visible (True != 1, b"" != "")."""
    if type(value) is dict:
        return ("dict", tuple((typed(key), typed(item)) for key, item in value.items()))
    if type(value) in (list, tuple):
        return (type(value).__name__, tuple(typed(item) for item in value))
    return (type(value).__name__, value)


def outcome(function, *args, **kwargs):
    """What ``function(...)`` does: its typed result, or its exception's type and message."""
    try:
        return ("ok", typed(function(*args, **kwargs)))
    except Exception as exc:  # noqa: BLE001 - the point is to compare whatever happens
        return ("raised", type(exc).__name__, str(exc))


def c_accepts_encode(value):
    try:
        return _canonical.encode(value)
    except _canonical.Refused:
        return None


def c_accepts_decode(data, max_size=MAX_SIZE):
    try:
        return ("ok", typed(_canonical.decode(data, max_size)))
    except _canonical.Refused:
        return None


def pure_decodes(data, max_size=MAX_SIZE):
    try:
        return ("ok", typed(encoding._decode_pure(data, max_size)))
    except EncodingError:
        return None


def assert_encode_agrees(value):
    """C gives the pure bytes or refuses; the public encode then behaves as the pure one."""
    pure = outcome(encoding._encode_pure, value)
    fast = c_accepts_encode(value)
    if fast is not None:
        assert pure == ("ok", typed(fast))
    assert outcome(encoding.encode, value) == pure
    return pure, fast


def assert_decode_agrees(data, max_size=MAX_SIZE):
    """C accepts exactly what the pure path accepts, with the same value; refusals read the same."""
    assert c_accepts_decode(data, max_size) == pure_decodes(data, max_size)
    assert outcome(encoding.decode, data, max_size=max_size) == outcome(encoding._decode_pure, data, max_size)


class IntSub(int):
    pass


class StrSub(str):
    pass


class BytesSub(bytes):
    pass


class ListSub(list):
    pass


class DictSub(dict):
    pass


class TupleSub(tuple):
    pass


class Colour(enum.IntEnum):
    RED = 1


# ---------------------------------------------------------------- strategies

scalars = st.none() | st.booleans() | st.integers(INT_MIN, INT_MAX) | st.text(max_size=40) | st.binary(max_size=40)
canonical_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=40,
)

# What callers might pass by mistake: floats, NaN, sets, huge ints, non-str and mixed keys,
# subclasses of every allowed type, bytearray, arbitrary objects.
odd_scalars = (
    scalars
    | st.floats(allow_nan=True)
    | st.integers()
    | st.frozensets(st.integers(0, 3), max_size=2)
    | st.sampled_from([IntSub(3), StrSub("x"), BytesSub(b"x"), Colour.RED, bytearray(b"x"), object, 1j])
)
odd_values = st.recursive(
    odd_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.tuples(inner, inner)
    | st.builds(ListSub, st.lists(inner, max_size=2))
    | st.builds(TupleSub, st.lists(inner, max_size=2))
    | st.builds(DictSub, st.dictionaries(st.text(max_size=2), inner, max_size=2))
    | st.dictionaries(st.text(max_size=3) | st.integers(0, 3) | st.binary(max_size=2), inner, max_size=4),
    max_leaves=20,
)


def nested(levels, leaf=None):
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


# ---------------------------------------------------------------- encode


@settings(max_examples=300)
@given(canonical_values)
def test_c_encode_gives_the_pure_bytes_for_every_canonical_value(value):
    pure, fast = assert_encode_agrees(value)
    assert fast is not None  # accepted, not merely deferred to the pure path


@settings(max_examples=300)
@given(odd_values)
def test_c_encode_refuses_or_matches_and_refusals_read_as_the_pure_paths(value):
    assert_encode_agrees(value)


@given(st.integers(0, MAX_DEPTH + 3), canonical_values)
def test_c_encode_and_the_pure_path_agree_on_nesting_depth(levels, leaf):
    for wrap in (lambda v: [v], lambda v: (v,), lambda v: {"k": v}):
        value = leaf
        for _ in range(levels):
            value = wrap(value)
        assert_encode_agrees(value)


@pytest.mark.parametrize("number", [
    0, 1, 31, 32, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, INT_MAX,
    INT_MAX + 1, -1, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1, INT_MIN, INT_MIN - 1, 10**30,
])
def test_c_encode_agrees_at_every_integer_form_boundary(number):
    pure, fast = assert_encode_agrees(number)
    assert (fast is not None) == (INT_MIN <= number <= INT_MAX)


@pytest.mark.parametrize("size", [0, 15, 16, 31, 32, 255, 256, 65535, 65536, 70_000])
def test_c_encode_and_decode_agree_at_every_length_form_boundary(size):
    items = min(size, MAX_ITEMS)
    for value in ("x" * size, "é" * size, b"\x01" * size, [None] * items, (None,) * items,
                  {f"k{index:06d}": index for index in range(items)}):
        pure, fast = assert_encode_agrees(value)
        assert fast is not None
        assert_decode_agrees(fast)


def test_c_encode_refuses_containers_over_the_item_limit():
    for value in ([0] * (MAX_ITEMS + 1), {str(index): 0 for index in range(MAX_ITEMS + 1)}):
        pure, fast = assert_encode_agrees(value)
        assert fast is None and pure[0] == "raised"


def test_bool_encodes_as_msgpack_true_and_false_never_as_one_and_zero():
    assert _canonical.encode([True, False, 1, 0]) == b"\x94\xc3\xc2\x01\x00"


@pytest.mark.parametrize("value", [
    IntSub(3), Colour.RED, StrSub("x"), BytesSub(b"x"), ListSub([1]), DictSub(a=1), TupleSub((1,)),
    {"a": [IntSub(1)]}, bytearray(b"x"),
])
def test_subclasses_of_allowed_types_are_refused_by_both_paths_alike(value):
    pure, fast = assert_encode_agrees(value)
    assert fast is None and pure[0] == "raised" and "cannot be encoded" in pure[2]


def test_str_subclass_map_keys_get_the_pure_paths_verdict():
    # The pure path checks only the first key's type (cheap, and every str key sorts the
    # same whatever its class); C refuses every non-str key and defers to it.
    for value in ({StrSub("a"): 1, "b": 2}, {"a": 1, StrSub("b"): 2}):
        pure, fast = assert_encode_agrees(value)
        assert fast is None


def test_c_encode_sorts_non_ascii_keys_by_code_point():
    value = {"é": 1, "z": 2, "\U0001f600": 3, "\uffff": 4, "": 5, "a\x00": 6, "a": 7}
    pure, fast = assert_encode_agrees(value)
    assert list(encoding.decode(fast)) == sorted(value)


def test_lone_surrogates_get_the_pure_paths_verdict():
    for value in ("\ud800", {"\udfff": 1}, ["ok", "\ud83d"]):
        pure, fast = assert_encode_agrees(value)
        assert fast is None and pure[:2] == ("raised", "EncodingError") and "surrogate" in pure[2]


# ---------------------------------------------------------------- decode


@settings(max_examples=300)
@given(canonical_values)
def test_c_decode_gives_the_pure_value_for_every_canonical_encoding(value):
    data = encoding._encode_pure(value)
    assert c_accepts_decode(data) is not None
    assert_decode_agrees(data)


@settings(max_examples=500)
@given(st.binary(max_size=80))
def test_c_decode_accepts_exactly_the_bytes_the_pure_path_accepts(data):
    assert_decode_agrees(data)


@settings(max_examples=300)
@given(canonical_values, st.integers(0, 10_000), st.integers(0, 255), st.sampled_from(["set", "insert", "delete"]))
def test_c_decode_agrees_on_mutated_encodings(value, position, byte, how):
    data = bytearray(encoding._encode_pure(value))
    position %= len(data)
    if how == "set":
        data[position] = byte
    elif how == "insert":
        data.insert(position, byte)
    else:
        del data[position]
    assert_decode_agrees(bytes(data))


@settings(max_examples=200, deadline=None)  # one pure decode per truncation
@given(canonical_values)
def test_c_decode_refuses_every_truncation(value):
    data = encoding._encode_pure(value)
    for end in range(len(data)):
        assert c_accepts_decode(data[:end]) is None
        assert_decode_agrees(data[:end])


loose_values = st.recursive(  # what any msgpack writer may send: floats, maps in any order, bytes keys
    scalars | st.floats(allow_nan=True),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=3) | st.binary(max_size=2) | st.integers(0, 3), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(loose_values)
def test_c_decode_agrees_on_any_msgpack_writers_output(value):
    assert_decode_agrees(msgpack.packb(value, use_bin_type=True))


@given(st.integers(INT_MIN, INT_MAX), st.sampled_from([0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3]))
def test_an_integer_decodes_only_from_its_shortest_form(number, code):
    size = {0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8, 0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8}[code]
    signed = code >= 0xd0
    try:
        data = bytes([code]) + number.to_bytes(size, "big", signed=signed)
    except OverflowError:
        return  # this form cannot hold the number at all
    accepted = c_accepts_decode(data)
    assert (accepted is not None) == (data == encoding._encode_pure(number))
    assert_decode_agrees(data)


@settings(deadline=None)  # up to 70,000 items through the pure path: slow on a shared core
@given(st.integers(0, 70_000), st.sampled_from(["str", "bin", "array", "map"]), st.sampled_from([1, 2, 4]))
def test_a_length_decodes_only_from_its_shortest_header(length, kind, width):
    code = {"str": {1: 0xd9, 2: 0xda, 4: 0xdb}, "bin": {1: 0xc4, 2: 0xc5, 4: 0xc6},
            "array": {1: None, 2: 0xdc, 4: 0xdd}, "map": {1: None, 2: 0xde, 4: 0xdf}}[kind][width]
    if kind == "map":
        length %= 300  # one 9-byte entry per key: keep the input small
    if code is None or length >= 1 << (8 * width):
        return
    body = {"str": b"a" * length, "bin": b"a" * length, "array": b"\xc0" * length,
            "map": b"".join(b"\xa6" + f"{index:06d}".encode() + b"\xc0" for index in range(length))}[kind]
    data = bytes([code]) + length.to_bytes(width, "big") + body
    assert_decode_agrees(data)


@pytest.mark.parametrize("data", [
    b"\xdb\xff\xff\xff\xff" + b"a",  # str32 of 4 GiB declared, one byte present
    b"\xc6\xff\xff\xff\xff",  # bin32 of 4 GiB
    b"\xdd\x00\x01\x00\x00",  # array32 of 65536 items, none present
    b"\xdd\xff\xff\xff\xff" + b"\xc0" * 100,  # array32 far over the item limit
    b"\xdf\x00\x01\x00\x00" + b"\xa1a\xc0",  # map32 of 65536 entries, one present
    b"\xde\xff\xff",  # map16 of 65535 entries, none present
])
def test_huge_declared_lengths_are_refused_before_anything_is_allocated(data):
    tracemalloc.start()
    try:
        assert c_accepts_decode(data) is None
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 4096  # a list of 65536 slots alone would be 512 KiB
    assert_decode_agrees(data)


def test_c_decode_applies_the_callers_size_limit():
    data = encoding._encode_pure(b"x" * 100)
    assert c_accepts_decode(data, max_size=len(data)) is not None
    for max_size in (len(data) - 1, 0, -1):
        assert c_accepts_decode(data, max_size) is None
        assert_decode_agrees(data, max_size)


def test_c_decode_refuses_one_container_deeper_than_the_limit():
    allowed = encoding._encode_pure(nested(MAX_DEPTH))
    assert c_accepts_decode(allowed) is not None
    too_deep = b"\x91" + allowed
    assert c_accepts_decode(too_deep) is None
    assert_decode_agrees(too_deep)
    assert_decode_agrees(b"\x91" * 5000 + b"\xc0")  # far deeper: still a refusal, no crash


def test_c_decode_takes_bytes_bytearray_and_memoryview_and_defers_the_rest():
    data = encoding._encode_pure({"a": [1, b"x"]})
    for form in (data, bytearray(data), memoryview(data), memoryview(b"\x00" + data)[1:]):
        assert c_accepts_decode(form) == ("ok", typed({"a": [1, b"x"]}))
    strided = memoryview(bytes(b for pair in zip(data, data) for b in pair))[::2]
    for form in (BytesSub(data), strided, "text", None, 12):
        assert c_accepts_decode(form) is None  # the pure path decides: copies, or refuses
        assert outcome(encoding.decode, form) == outcome(encoding._decode_pure, form)


# ---------------------------------------------------------------- wiring


def test_the_extensions_limits_are_the_modules():
    assert (_canonical.MAX_DEPTH, _canonical.MAX_ITEMS) == (MAX_DEPTH, MAX_ITEMS)


def implementation_in_a_fresh_interpreter(**environment):
    script = "import p2pchain.encoding as e; print(e.IMPLEMENTATION)"
    env = {key: value for key, value in os.environ.items() if key != "P2PCHAIN_PURE_ENCODING"}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env={**env, **environment},
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_the_built_extension_is_used_unless_the_environment_forces_the_pure_path():
    assert implementation_in_a_fresh_interpreter() == "c"
    assert implementation_in_a_fresh_interpreter(P2PCHAIN_PURE_ENCODING="1") == "python"
    assert implementation_in_a_fresh_interpreter(P2PCHAIN_PURE_ENCODING="0") == "c"
