"""The replica's durable state as a snapshot plus an append-only journal of its changes.

Why: writing the whole :class:`~.durable.DurableState` on every ``Persist`` costs what the
replica *holds* (the log of the watermark window with its batches, a reply per client, the
client table of every own checkpoint), not what *arrived*; under load that re-encoding
was the largest single cost of a node. Like CometBFT's WAL, the shell therefore appends,
for each group commit, only what changed since the previous write (a *delta*), and
rewrites the whole state (a *snapshot*, which empties the journal) only now and then. A
restart reads the snapshot and applies the deltas in order (:func:`replay`); the result is
exactly the state the replica last asked to persist, so recovery semantics are unchanged
(see :mod:`.durable` for what is kept and why).

A delta names, per part of the state:

* the scalars (view, active, last committed/executed, next sequence number, ...) — always;
* a whole object (stable checkpoint and proof, own VIEW-CHANGE, NEW-VIEW) — when it changed;
* for a keyed part (prepared certificates, committed entries, client table, client
  snapshots, own checkpoint states, replies, recent VIEW-CHANGEs): the entries put and the
  keys deleted;
* for the log: a slot that is new or changed otherwise than by gaining votes is put whole;
  a slot that only gained prepares or commits (the common case) carries the new votes only
  (votes are kept in arrival order, so the old ones are a prefix of the new).

The two parts that grow with the number of clients (the client table and a reply per
client) are not compared whole on every write: the replica keeps them in
:class:`ChangeTrackingDict` objects, and :meth:`DurableJournal.delta` takes what changed in them
since the last write (:meth:`Replica.durable_changes`), so a delta costs what arrived, not
what is held. A part the replica replaced wholesale (a restore, a state transfer) is
compared whole, as every other part is; the bytes are the same either way.

Deltas are pure data (no I/O here): the shell decides where they go and must write them
in order, each durably, before the sends that depend on them (write-ahead).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import msgpack

from ..encoding import EncodingError, encode
from . import messages as m
from .durable import DurableSlot, DurableState, decode_durable_state, encode_durable_state

__all__ = ["ChangeTrackingDict", "DurableJournal", "replay", "TRACKED_PARTS"]

FORMAT = 1
_SCALARS = ("view", "active", "last_committed", "last_executed", "new_view_sent", "next_seq",
            "view_change_timeout_ms")


TRACKED_PARTS: dict[str, Callable[[Any, Any], Any]] = {
    "clients": lambda client, nonce: (client, nonce),
    "replies": lambda client, reply: reply,
}
"""The keyed parts of the durable state the replica keeps in a :class:`ChangeTrackingDict`
(they grow with the number of clients; the others are bounded by the watermark window):
name -> the part's item for a (key, value) of that dict, as ``Replica.durable_state``
builds it."""

_GONE = object()


class ChangeTrackingDict(dict):
    """A dict that remembers which keys were set or deleted since :meth:`take_changes`.

    Every way of changing a dict in place goes through one of the methods below, so the
    record cannot miss a change; replacing the dict itself is seen by the reader (a new
    object), which then compares the part whole.
    """

    __slots__ = ("_changed",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._changed: set = set()

    def __setitem__(self, key, value) -> None:
        self._changed.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:
        self._changed.add(key)
        super().__delitem__(key)

    def pop(self, key, *default):
        self._changed.add(key)
        return super().pop(key, *default)

    def popitem(self):
        key, value = super().popitem()
        self._changed.add(key)
        return key, value

    def setdefault(self, key, default=None):
        self._changed.add(key)
        return super().setdefault(key, default)

    def update(self, *args, **kwargs) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other):
        self.update(other)
        return self

    def clear(self) -> None:
        self._changed.update(self)
        super().clear()

    def take_changes(self) -> dict:
        """The keys changed since the last call, each with its value now (or ``_GONE``)."""
        changed, self._changed = self._changed, set()
        return {key: self.get(key, _GONE) for key in changed}


def _typed(value: Any):
    return m.decode_message(encode(value))


def _optional(encode_item: Callable, decode_item: Callable):
    return (lambda x: None if x is None else encode_item(x)), (lambda v: None if v is None else decode_item(v))


_to_value = lambda x: x.to_value()  # noqa: E731
_pairs_out = lambda table: [[c, n] for c, n in table]  # noqa: E731
_pairs_in = lambda items: tuple((c, n) for c, n in items)  # noqa: E731

# whole objects: name -> (encode, decode)
_OBJECTS: dict[str, tuple[Callable, Callable]] = {
    "stable_state": (_to_value, m._state),
    "stable_proof": (lambda proof: [c.to_value() for c in proof], lambda v: tuple(_typed(c) for c in v)),
    "my_view_change": _optional(_to_value, _typed),
    "new_view": _optional(_to_value, _typed),
}

# keyed parts: name -> (key of an item, encode item, decode item). The tuple in
# DurableState is sorted by this key (as Replica.durable_state builds it).
_KEYED: dict[str, tuple[Callable, Callable, Callable]] = {
    "prepared": (lambda c: c.pre_prepare.seq, _to_value, m._certificate),
    "committed": (lambda e: e.seq, _to_value, m._entry),
    "clients": (lambda pair: pair[0], list, tuple),
    "client_snapshots": (lambda pair: pair[0], lambda pair: [pair[0], _pairs_out(pair[1])],
                         lambda v: (v[0], _pairs_in(v[1]))),
    "own_states": (lambda s: s.seq, _to_value, m._state),
    "replies": (lambda r: r.client, _to_value, _typed),
    "recent_view_changes": (lambda vc: vc.view, _to_value, _typed),
}


def _slot_value(s: DurableSlot) -> dict[str, Any]:
    return {"view": s.view, "seq": s.seq,
            "pre_prepare": None if s.pre_prepare is None else s.pre_prepare.to_value(),
            "prepares": [p.to_value() for p in s.prepares], "commits": [c.to_value() for c in s.commits],
            "sent_commit": s.sent_commit, "committed": s.committed}


def _slot_from(v: dict[str, Any]) -> DurableSlot:
    return DurableSlot(v["view"], v["seq"], None if v["pre_prepare"] is None else _typed(v["pre_prepare"]),
                       tuple(_typed(p) for p in v["prepares"]), tuple(_typed(c) for c in v["commits"]),
                       v["sent_commit"], v["committed"])


def _by_key(name: str, part) -> dict:
    """The keyed part ``name`` (a tuple of items) by each item's key."""
    key = _KEYED[name][0]
    return {key(item): item for item in part}


def _slots_by_seq(state: DurableState) -> dict[int, DurableSlot]:
    return {s.seq: s for s in state.slots}


def _index(state: DurableState) -> dict[str, dict]:
    """Each keyed part of ``state`` by key, and its slots by sequence number."""
    index = {name: _by_key(name, getattr(state, name)) for name in _KEYED}
    index["slots"] = _slots_by_seq(state)
    return index


def _same(a: Any, b: Any) -> bool:
    return a is b or a == b


class DurableJournal:
    """Turns successive durable states into deltas against the last one written.

    ``delta(state)`` returns the bytes to append, ``snapshot(state)`` the bytes of a whole
    state (after which the journal restarts from it). Neither writes anything; both take
    ``state`` as what will be on disk once the shell has written the returned bytes.
    """

    def __init__(self, base: DurableState | None = None) -> None:
        self._prev = base
        self._index = None if base is None else _index(base)

    @property
    def has_base(self) -> bool:
        return self._prev is not None

    def snapshot(self, state: DurableState) -> bytes:
        self._prev, self._index = state, _index(state)
        return encode_durable_state(state)

    def delta(self, state: DurableState, changes: dict[str, dict | None] | None = None) -> bytes:
        """The change from the last written state to ``state`` (requires a base).

        ``changes`` (:meth:`Replica.durable_changes`, taken with ``state``) names, for a
        tracked part, every key that may differ from the last written state, with its
        value in ``state``; a part it gives as ``None`` or leaves out is compared whole.
        A tracked part whose changes are given may be left out of ``state`` (``None``:
        ``Replica.durable_state(leave_out=...)``), so that a write costs what arrived,
        not what is held: the journal keeps its own index of every part.
        """
        prev, index = self._prev, self._index
        if prev is None or index is None:
            raise ValueError("a delta needs a base: write a snapshot first")
        known = {name: change for name, change in (changes or {}).items() if change is not None}
        for name in _KEYED:
            if getattr(state, name) is None and name not in known:
                raise ValueError(f"the durable state leaves out {name!r} without its changes")
        record: dict[str, Any] = {"format": FORMAT, "scalars": {n: getattr(state, n) for n in _SCALARS}}
        objects = {}
        for name, (encode_item, _) in _OBJECTS.items():
            value = getattr(state, name)
            if not _same(value, getattr(prev, name)):
                objects[name] = encode_item(value)
        record["objects"] = objects
        keyed = {}
        for name, (_, encode_item, _) in _KEYED.items():
            before, part, change = index[name], getattr(state, name), known.get(name)
            put, gone = [], []
            if change is not None:  # only these keys may differ: what arrived, not what is held
                item_of = TRACKED_PARTS[name]
                for k in sorted(change):
                    value = change[k]
                    if value is _GONE:
                        if k in before:
                            gone.append(k)
                            del before[k]
                    else:
                        item = item_of(k, value)
                        if k not in before or not _same(before[k], item):
                            put.append([k, encode_item(item)])
                            before[k] = item
            elif part != getattr(prev, name):  # tuple equality runs in C, stops at identical items
                after = index[name] = _by_key(name, part)
                put = [[k, encode_item(item)] for k, item in after.items()
                       if k not in before or not _same(before[k], item)]
                gone = sorted(k for k in before if k not in after)
            if put or gone:
                keyed[name] = {"put": put, "del": gone}
        record["keyed"] = keyed
        put, add = [], []
        before, slots = index["slots"], _slots_by_seq(state)
        for seq, s in slots.items():
            p = before.get(seq)
            if p is s:
                continue
            np_, nc = len(p.prepares) if p is not None else 0, len(p.commits) if p is not None else 0
            if (p is None or p.view != s.view or not _same(p.pre_prepare, s.pre_prepare)
                    or s.prepares[:np_] != p.prepares or s.commits[:nc] != p.commits):
                put.append(_slot_value(s))
            elif (len(s.prepares) != np_ or len(s.commits) != nc
                  or s.sent_commit != p.sent_commit or s.committed != p.committed):
                add.append([seq, [x.to_value() for x in s.prepares[np_:]],
                            [x.to_value() for x in s.commits[nc:]], s.sent_commit, s.committed])
        record["slots"] = {"put": put, "add": add, "del": [seq for seq in before if seq not in slots]}
        index["slots"] = slots
        self._prev = state
        # Plain msgpack, not the canonical encoding: a delta is never hashed or signed, only
        # read back by replay(), and the canonical form's checks cost more than the write.
        return msgpack.packb(record, use_bin_type=True)


def replay(snapshot: bytes, deltas: Iterable[bytes]) -> DurableState:
    """The state a snapshot and the deltas written after it, in order, describe.

    Raises ``MalformedMessage`` if any of them is corrupt.
    """
    state = decode_durable_state(snapshot)
    fields = {name: getattr(state, name) for name in DurableState.__slots__}
    index = _index(state)
    try:
        for data in deltas:
            record = msgpack.unpackb(data, raw=False, strict_map_key=False)
            if type(record) is not dict or record.get("format") != FORMAT:
                raise m.MalformedMessage(f"unknown journal format {record.get('format')!r}")
            fields.update(record["scalars"])
            for name, value in record["objects"].items():
                fields[name] = _OBJECTS[name][1](value)
            for name, change in record["keyed"].items():
                part = index[name]
                for key in change["del"]:
                    part.pop(key, None)
                for key, value in change["put"]:
                    part[key] = _KEYED[name][2](value)
            slots = index["slots"]
            for seq in record["slots"]["del"]:
                slots.pop(seq, None)
            for value in record["slots"]["put"]:
                slots[value["seq"]] = _slot_from(value)
            for seq, prepares, commits, sent_commit, committed in record["slots"]["add"]:
                s = slots[seq]
                slots[seq] = DurableSlot(s.view, s.seq, s.pre_prepare,
                                         s.prepares + tuple(_typed(p) for p in prepares),
                                         s.commits + tuple(_typed(c) for c in commits), sent_commit, committed)
    except m.MalformedMessage:
        raise
    except (EncodingError, KeyError, TypeError, ValueError, AttributeError, IndexError,
            msgpack.UnpackException) as exc:
        raise m.MalformedMessage(f"corrupt durable journal: {exc!r}") from None
    for name in _KEYED:
        fields[name] = tuple(item for _, item in sorted(index[name].items()))
    fields["slots"] = tuple(s for _, s in sorted(index["slots"].items()))
    return DurableState(**fields)
