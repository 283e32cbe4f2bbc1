"""Canonical encoding: one value, exactly one byte string (DESIGN.md, decision 2).

Everything that is hashed or signed in p2pchain goes through :func:`encode`, and every byte
string that arrives from outside goes through :func:`decode`. The form is msgpack with

* map keys that are ``str`` only, sorted by code point (the same order as their UTF-8 bytes),
* integers only, in the 64-bit range ``-2**63 .. 2**64 - 1``, each in msgpack's shortest form,
* ``str`` for text and ``bytes`` for binary (never the other way round),
* lists for sequences (a tuple encodes as a list and decodes as one).

Floats, NaN, sets, extension types and everything else are refused with an
:class:`EncodingError` that names where the offending value sits (``args.quotes[3].price``).
:func:`decode` refuses input that is too large, too deep, has a container with too many
items, carries trailing bytes, or is valid msgpack but not the canonical form: re-encoding
what was decoded must give back the very same bytes.

The hash is BLAKE2b with a 32-byte digest ("blake2b-256"): as fast as SHA-256 here
(LIMITS.md) and without length-extension concerns.

Two implementations give the same bytes and values. The pure-Python one below is the
reference. ``p2pchain/_canonical.c``, a small C extension built on install when a compiler
is at hand, is the fast path: it accepts exactly the canonical values and bytes and signals
anything else, whereupon the pure path runs and raises its usual :class:`EncodingError`
with the offending path. :data:`IMPLEMENTATION` says which is active (``"c"`` or
``"python"``); ``P2PCHAIN_PURE_ENCODING=1`` in the environment forces the pure path.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import msgpack

__all__ = [
    "EncodingError",
    "HASH_NAME",
    "IMPLEMENTATION",
    "DIGEST_SIZE",
    "MAX_DEPTH",
    "MAX_ITEMS",
    "MAX_SIZE",
    "encode",
    "decode",
    "digest",
    "digest_bytes",
    "parse_json",
]

HASH_NAME = "blake2b-256"
DIGEST_SIZE = 32
MAX_DEPTH = 32  # nesting of lists and maps; a ledger value never needs more
MAX_ITEMS = 65_536  # entries in one list or map
MAX_SIZE = 4 * 1024 * 1024  # bytes accepted by decode unless the caller says otherwise

_Packer = msgpack.Packer

INT_MIN = -(1 << 63)
INT_MAX = (1 << 64) - 1


class EncodingError(ValueError):
    """A value that has no canonical encoding, or bytes that are not one."""


class _Refused(Exception):
    """Raised by the fast walk; :func:`_explain` then finds the path and the reason."""


_PASS = frozenset({str, bytes, bool, int, type(None)})  # int range: msgpack raises past 64 bits


def _canonical(value: Any, depth: int) -> Any:
    """Return ``value`` with maps sorted, or raise :class:`_Refused` (fast path, no paths).

    Scalars are checked inline, not by a call each: this walk is the whole cost of
    :func:`encode` beyond msgpack itself. A list or tuple of scalars only is returned as it
    is, not copied (msgpack packs a tuple as the same array); only maps are rebuilt, in key
    order, and the containers that hold them.
    """
    kind = type(value)
    if kind in _PASS:
        return value
    if depth >= MAX_DEPTH:
        raise _Refused
    if kind is dict:
        keys = sorted(value)  # TypeError for keys of mixed types
        if keys and type(keys[0]) is not str or len(keys) > MAX_ITEMS:
            raise _Refused
        out = {}
        for key in keys:
            item = value[key]
            out[key] = item if type(item) in _PASS else _canonical(item, depth + 1)
        return out
    if kind is list or kind is tuple:
        if len(value) > MAX_ITEMS:
            raise _Refused
        for item in value:
            if type(item) not in _PASS:
                return _canonical_items(value, depth + 1)
        return value
    raise _Refused


def _canonical_items(value: list | tuple, depth: int) -> list | tuple:
    """The items of a list that holds containers, at ``depth``; ``value`` itself if unchanged.

    A nested list of scalars (a row of a table, a pair) is checked here, inline, rather
    than by a call each: it is the commonest container inside a container. Only when an
    item changes (a map to sort) is a new list built, from the items already walked and the
    changed one as computed: walking that item again would double the work at every level
    of a nested list, 2**depth walks for a map at the bottom of 30 lists.
    """
    for index, item in enumerate(value):
        kind = type(item)
        if kind in _PASS:
            continue
        if (kind is list or kind is tuple) and depth < MAX_DEPTH and len(item) <= MAX_ITEMS:
            for inner in item:
                if type(inner) not in _PASS:
                    break
            else:
                continue
        canonical = _canonical(item, depth)
        if canonical is not item:
            rest = value[index + 1:]
            return [*value[:index], canonical, *(x if type(x) in _PASS else _canonical(x, depth) for x in rest)]
    return value


def _verify(value: Any, depth: int) -> None:
    """Raise :class:`_Refused` unless a *decoded* value is already in canonical order.

    What :func:`decode` gets from msgpack holds only lists and maps, so nothing needs
    rebuilding: maps must merely have their keys in order already. Cheaper than
    :func:`_canonical`, which sorts every map into a new one; any doubt falls back to it.
    """
    kind = type(value)
    if kind in _PASS:
        return
    if depth >= MAX_DEPTH:
        raise _Refused
    if kind is dict:
        keys = list(value)
        if keys != sorted(keys) or (keys and type(keys[0]) is not str):  # sorted: all str, or TypeError
            raise _Refused
        for item in value.values():
            if type(item) not in _PASS:
                _verify(item, depth + 1)
        return
    if kind is list:
        for item in value:
            if type(item) not in _PASS:
                if type(item) is list and depth + 1 < MAX_DEPTH:  # a row or a pair, inline
                    for inner in item:
                        if type(inner) not in _PASS:
                            _verify(inner, depth + 2)
                else:
                    _verify(item, depth + 1)
        return
    raise _Refused


def _is_utf8(text: str) -> bool:
    """Whether ``text`` has a UTF-8 form: not if it holds a lone surrogate ("\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _explain(value: Any, path: str = "", depth: int = 0) -> str | None:
    """Walk ``value`` again, slowly, and describe the first thing that cannot be encoded."""
    where = path or "<root>"
    kind = type(value)
    if kind is str:
        return None if _is_utf8(value) else f"{where}: str {value!r} holds a lone surrogate (not UTF-8 text)"
    if kind is bytes or kind is bool or value is None:
        return None
    if kind is int:
        if INT_MIN <= value <= INT_MAX:
            return None
        return f"{where}: integer {value} outside the 64-bit range"
    if kind is float:
        return f"{where}: float {value!r} refused (use integers in fixed units)"
    if kind in (dict, list, tuple) and depth >= MAX_DEPTH:
        return f"{where}: nesting deeper than {MAX_DEPTH}"
    if kind is dict:
        if len(value) > MAX_ITEMS:
            return f"{where}: map of {len(value)} entries exceeds {MAX_ITEMS}"
        for key in value:
            if type(key) is not str:
                return f"{where}: map key {key!r} is {type(key).__name__}, not str"
            if not _is_utf8(key):
                return f"{where}: map key {key!r} holds a lone surrogate (not UTF-8 text)"
        for key in sorted(value):
            problem = _explain(value[key], f"{path}.{key}" if path else key, depth + 1)
            if problem:
                return problem
        return None
    if kind is list or kind is tuple:
        if len(value) > MAX_ITEMS:
            return f"{where}: list of {len(value)} items exceeds {MAX_ITEMS}"
        for index, item in enumerate(value):
            problem = _explain(item, f"{path}[{index}]", depth + 1)
            if problem:
                return problem
        return None
    return f"{where}: values of type {kind.__name__} cannot be encoded"


def _encode_pure(value: Any) -> bytes:
    """:func:`encode` in pure Python: the reference, and the path that explains refusals."""
    try:
        canonical = _canonical(value, 0)
        # A Packer made here, not msgpack.packb: the same C packer without packb's keyword
        # wrapper (a third of the library's time for a small value); one per call, so
        # threads never share its buffer.
        return _Packer(use_bin_type=True).pack(canonical)
    except (_Refused, TypeError, RecursionError, OverflowError, UnicodeEncodeError):
        raise EncodingError(_explain(value) or "value cannot be encoded") from None


def _decode_pure(data: bytes | bytearray | memoryview, max_size: int = MAX_SIZE) -> Any:
    """:func:`decode` in pure Python: the reference, and the path that explains refusals."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EncodingError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_size:
        raise EncodingError(f"input of {len(data)} bytes exceeds the limit of {max_size}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=max_size,
            max_bin_len=max_size,
            max_array_len=MAX_ITEMS,
            max_map_len=MAX_ITEMS,
            max_ext_len=0,
        )
    except msgpack.ExtraData:
        raise EncodingError("trailing bytes after the value") from None
    except Exception as exc:  # msgpack raises ValueError, TypeError and its own kinds
        raise EncodingError(f"malformed input: {exc}") from None
    # Fast proof: the value is in canonical order as decoded, and packing it gives the input
    # back. Anything else takes the full re-encoding below, which says exactly what is wrong.
    try:
        _verify(value, 0)
        if _Packer(use_bin_type=True).pack(value) == data:
            return value
    except (_Refused, TypeError, RecursionError, OverflowError):
        pass
    try:
        again = _encode_pure(value)
    except EncodingError as exc:
        raise EncodingError(f"refused: {exc}") from None
    if again != data:
        raise EncodingError("not in canonical form (re-encoding gives other bytes)")
    return value


def _load_accelerator():
    """The C extension's module, or None: not built, switched off, or built for other limits."""
    if os.environ.get("P2PCHAIN_PURE_ENCODING", "") not in ("", "0"):
        return None
    try:
        from . import _canonical
    except ImportError:
        return None
    if (_canonical.MAX_DEPTH, _canonical.MAX_ITEMS) != (MAX_DEPTH, MAX_ITEMS):
        return None  # a stale build of an older _canonical.c: its limits are not ours
    return _canonical


_accelerator = _load_accelerator()
# Module globals, read at each call, so a test can switch to the pure path by setting them
# to None (tests/p2pchain/test_encoding.py runs every test both ways).
_c_encode = _accelerator.encode if _accelerator else None
_c_decode = _accelerator.decode if _accelerator else None
_CRefused = _accelerator.Refused if _accelerator else _Refused
IMPLEMENTATION = "c" if _accelerator else "python"


def encode(value: Any) -> bytes:
    """Encode ``value`` in the canonical form.

    >>> encode({"b": 1, "a": [True, None, b"\\x00"]}) == encode({"a": [True, None, b"\\x00"], "b": 1})
    True
    """
    if _c_encode is not None:
        try:
            return _c_encode(value)
        except _CRefused:
            pass  # not canonical as it stands: the pure path refuses it with the path, or encodes it
    return _encode_pure(value)


def decode(data: bytes | bytearray | memoryview, *, max_size: int = MAX_SIZE) -> Any:
    """Decode canonical bytes; refuse anything else with :class:`EncodingError`."""
    if _c_decode is not None:
        try:
            return _c_decode(data, max_size)
        except _CRefused:
            pass  # the pure path names the problem (or, for a bytes subclass, copies and decodes)
    return _decode_pure(data, max_size)


def digest_bytes(data: bytes) -> bytes:
    """The 32-byte BLAKE2b hash of raw bytes (for bytes that are already canonical)."""
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest()


def digest(value: Any) -> bytes:
    """The 32-byte BLAKE2b hash of ``value``'s canonical encoding."""
    return hashlib.blake2b(encode(value), digest_size=DIGEST_SIZE).digest()


def parse_json(text: str | bytes | bytearray) -> Any:
    """JSON that arrives from outside (a request body, a peer's answer, an uploaded trace).

    ``json.loads``, except that input nested deeper than the parser can follow raises a
    ``ValueError`` like any other malformed JSON, not the parser's ``RecursionError``: a
    body of 100,000 ``[`` is malformed input to refuse, not an internal error.
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply to parse") from None
