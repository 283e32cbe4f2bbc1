"""Every message PBFT replicas exchange, as frozen records with their canonical encodings.

All message types of the protocol live in this one module (as in 500 Lines' cluster): a
reader sees the whole vocabulary at once. Each message names its ``sender`` and carries an
Ed25519 ``signature`` over :meth:`signing_bytes`. The algorithm of Castro & Liskov's
OSDI'99 paper (Section 4) signs every message; their implementation replaces signatures by
MACs in the normal case (Section 5) and the TOCS 2002 paper removes them altogether. We keep
signatures throughout (the BFT-PK variant of TOCS 2002, Section 4), because view changes,
checkpoints and commit certificates must be checkable by third parties (a new-view's
backups, a replica catching up, a ledger auditor holding only the genesis), and because
LIMITS.md shows the client-request verifications, not the votes, bound our throughput.

What is signed is a *header*: batches are bound by their digest *d* (``Batch.digest()``),
never re-encoded for a signature, and a nested message contributes its own header and
signature. COMMIT is signed over :func:`p2pchain.ordering.commit_payload` so that 2f+1 of
them form a :class:`~p2pchain.ordering.CommitCertificate` as they are.

:func:`encode_message` / :func:`decode_message` give the wire form (canonical msgpack with
a ``type`` tag, batches included); decoding checks every field's type and raises
:class:`MalformedMessage`, never anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Union

from ..encoding import EncodingError, decode, digest, encode
from ..ordering import Batch, CommitCertificate, commit_payload

__all__ = [
    "MalformedMessage",
    "PrePrepare",
    "Prepare",
    "Commit",
    "Checkpoint",
    "CheckpointState",
    "PreparedCertificate",
    "ViewChange",
    "NewView",
    "CommittedEntry",
    "FetchRequest",
    "FetchReply",
    "Reply",
    "Message",
    "encode_message",
    "decode_message",
    "null_batch",
]


class MalformedMessage(ValueError):
    """Bytes from a peer that are not a well-formed message (the peer is at fault)."""


def null_batch(proposer: str) -> Batch:
    """PBFT's null request: fills a sequence-number gap in a NEW-VIEW (OSDI'99 §4.4).

    Every field is fixed so that every backup recomputes the same digest; the timestamp is
    0 because no clock may enter the recomputation.
    """
    return Batch(requests=(), proposer=proposer, timestamp_ms=0, metadata=b"")


@dataclass(frozen=True, slots=True)
class PrePrepare:
    """<PRE-PREPARE, v, n, d>_p with the batch m piggybacked (OSDI'99 §4.2).

    ``batch`` is ``None`` only in the prepared certificates of the view changes a NEW-VIEW
    carries: there the digest binds the batch, and O carries the batches the new view
    needs (see :class:`NewView`).
    """

    channel: str
    view: int
    seq: int
    digest: bytes
    batch: Batch | None
    sender: str
    signature: bytes = b""

    def header(self) -> dict[str, Any]:
        return {"type": "pre-prepare", "channel": self.channel, "view": self.view,
                "seq": self.seq, "digest": self.digest, "sender": self.sender}

    def signing_bytes(self) -> bytes:
        return encode(self.header())

    def signed_header(self) -> dict[str, Any]:
        return {**self.header(), "signature": self.signature}

    def to_value(self) -> dict[str, Any]:
        if self.batch is None:
            return self.signed_header()
        return {**self.signed_header(), "batch": self.batch.to_value()}

    def without_batch(self) -> PrePrepare:
        return replace(self, batch=None)


@dataclass(frozen=True, slots=True)
class Prepare:
    """<PREPARE, v, n, d, i>_i from a backup (OSDI'99 §4.2)."""

    channel: str
    view: int
    seq: int
    digest: bytes
    sender: str
    signature: bytes = b""

    def header(self) -> dict[str, Any]:
        return {"type": "prepare", "channel": self.channel, "view": self.view,
                "seq": self.seq, "digest": self.digest, "sender": self.sender}

    def signing_bytes(self) -> bytes:
        return encode(self.header())

    def signed_header(self) -> dict[str, Any]:
        return {**self.header(), "signature": self.signature}

    to_value = signed_header


@dataclass(frozen=True, slots=True)
class Commit:
    """<COMMIT, v, n, d, i>_i, signed over ``ordering.commit_payload`` (OSDI'99 §4.2)."""

    channel: str
    view: int
    seq: int
    digest: bytes
    sender: str
    signature: bytes = b""

    def header(self) -> dict[str, Any]:
        return {"type": "commit", "channel": self.channel, "view": self.view,
                "seq": self.seq, "digest": self.digest, "sender": self.sender}

    def signing_bytes(self) -> bytes:
        return commit_payload(self.channel, self.view, self.seq, self.digest, self.sender)

    def signed_header(self) -> dict[str, Any]:
        return {**self.header(), "signature": self.signature}

    to_value = signed_header


@dataclass(frozen=True, slots=True)
class CheckpointState:
    """What a checkpoint certifies at sequence number ``seq``.

    ``app_digest`` is the application's state digest after executing ``seq`` (the ledger's
    state root); ``clients`` is the replica's per-client table of the highest executed
    nonce, which de-duplication needs after a state transfer (OSDI'99 §4.3 includes the
    reply cache in the checkpointed state for the same reason).
    """

    seq: int
    app_digest: bytes
    clients: tuple[tuple[str, int], ...]

    def to_value(self) -> dict[str, Any]:
        return {"seq": self.seq, "app_digest": self.app_digest,
                "clients": [[c, n] for c, n in self.clients]}

    def digest(self) -> bytes:
        return digest(self.to_value())


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """<CHECKPOINT, n, d, i>_i (OSDI'99 §4.3); d is a :class:`CheckpointState` digest."""

    channel: str
    seq: int
    digest: bytes
    sender: str
    signature: bytes = b""

    def header(self) -> dict[str, Any]:
        return {"type": "checkpoint", "channel": self.channel, "seq": self.seq,
                "digest": self.digest, "sender": self.sender}

    def signing_bytes(self) -> bytes:
        return encode(self.header())

    def signed_header(self) -> dict[str, Any]:
        return {**self.header(), "signature": self.signature}

    to_value = signed_header


@dataclass(frozen=True, slots=True)
class PreparedCertificate:
    """A pre-prepare and 2f matching prepares from distinct backups: the set P_m (§4.4)."""

    pre_prepare: PrePrepare
    prepares: tuple[Prepare, ...]

    @property
    def view(self) -> int:
        return self.pre_prepare.view

    @property
    def seq(self) -> int:
        return self.pre_prepare.seq

    def signed_header(self) -> dict[str, Any]:
        return {"pre_prepare": self.pre_prepare.signed_header(),
                "prepares": [p.signed_header() for p in self.prepares]}

    def to_value(self) -> dict[str, Any]:
        return {"pre_prepare": self.pre_prepare.to_value(),
                "prepares": [p.to_value() for p in self.prepares]}


@dataclass(frozen=True, slots=True)
class ViewChange:
    """<VIEW-CHANGE, v+1, n, C, P, i>_i (OSDI'99 §4.4).

    ``stable_seq`` is n, the replica's last stable checkpoint, ``stable_state`` what it
    certifies, ``checkpoint_proof`` the 2f+1 CHECKPOINT messages C (empty for seq 0, the
    genesis), ``prepared`` the set P: for each seq above n, the prepared certificate of the
    highest view the replica prepared it in.
    """

    channel: str
    view: int
    stable_seq: int
    stable_state: CheckpointState
    checkpoint_proof: tuple[Checkpoint, ...]
    prepared: tuple[PreparedCertificate, ...]
    sender: str
    signature: bytes = b""

    def header(self) -> dict[str, Any]:
        return {"type": "view-change", "channel": self.channel, "view": self.view,
                "stable_seq": self.stable_seq, "stable_state": self.stable_state.to_value(),
                "checkpoint_proof": [c.signed_header() for c in self.checkpoint_proof],
                "prepared": [p.signed_header() for p in self.prepared], "sender": self.sender}

    def signing_bytes(self) -> bytes:
        return encode(self.header())

    def signed_header(self) -> dict[str, Any]:
        return {**self.header(), "signature": self.signature}

    def to_value(self) -> dict[str, Any]:
        return {**self.signed_header(), "prepared": [p.to_value() for p in self.prepared]}

    def without_batches(self) -> ViewChange:
        """The same signed view change, its certificates' batches left out (their digests
        stay, and the signatures cover only those)."""
        prepared = tuple(PreparedCertificate(c.pre_prepare.without_batch(), c.prepares)
                         for c in self.prepared)
        return replace(self, prepared=prepared)


@dataclass(frozen=True, slots=True)
class NewView:
    """<NEW-VIEW, v+1, V, O>_p (OSDI'99 §4.4): 2f+1 view-changes and the re-issued pre-prepares.

    The view changes in V travel without their certificates' batches
    (:meth:`ViewChange.without_batches`), as in the paper, where V holds digests only: a
    backup checks V's certificates by their signed digests and O's batches against the
    digests V implies. With the batches, 2f+1 view changes of a full window each would
    outgrow a peer frame (3 x 40 batches of up to 64 KiB); without them a NEW-VIEW is about
    one window of batches. (A NEW-VIEW that does carry them still decodes.)
    """

    channel: str
    view: int
    view_changes: tuple[ViewChange, ...]
    pre_prepares: tuple[PrePrepare, ...]
    sender: str
    signature: bytes = b""

    def header(self) -> dict[str, Any]:
        return {"type": "new-view", "channel": self.channel, "view": self.view,
                "view_changes": [vc.signed_header() for vc in self.view_changes],
                "pre_prepares": [pp.signed_header() for pp in self.pre_prepares],
                "sender": self.sender}

    def signing_bytes(self) -> bytes:
        return encode(self.header())

    def signed_header(self) -> dict[str, Any]:
        return {**self.header(), "signature": self.signature}

    def to_value(self) -> dict[str, Any]:
        return {**self.signed_header(),
                "view_changes": [vc.to_value() for vc in self.view_changes],
                "pre_prepares": [pp.to_value() for pp in self.pre_prepares]}


@dataclass(frozen=True, slots=True)
class CommittedEntry:
    """A committed batch with its commit certificate, as served during state transfer."""

    seq: int
    batch: Batch
    certificate: CommitCertificate

    def header(self) -> dict[str, Any]:
        return {"seq": self.seq, "certificate": self.certificate.to_value()}

    def to_value(self) -> dict[str, Any]:
        return {**self.header(), "batch": self.batch.to_value()}


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """State transfer, step 1: "I have executed up to ``have_seq``; what do you have?"."""

    channel: str
    have_seq: int
    sender: str
    signature: bytes = b""

    def header(self) -> dict[str, Any]:
        return {"type": "fetch-request", "channel": self.channel, "have_seq": self.have_seq,
                "sender": self.sender}

    def signing_bytes(self) -> bytes:
        return encode(self.header())

    def to_value(self) -> dict[str, Any]:
        return {**self.header(), "signature": self.signature}


@dataclass(frozen=True, slots=True)
class FetchReply:
    """State transfer, step 2: a stable checkpoint with its proof, the certified batches
    after it, and the sender's latest NEW-VIEW so that a restarted replica learns the view.

    Everything in it is self-certifying (checkpoint proof, commit certificates, NEW-VIEW),
    so one reply from any peer is enough and a lying peer is caught.
    """

    channel: str
    stable_state: CheckpointState
    checkpoint_proof: tuple[Checkpoint, ...]
    entries: tuple[CommittedEntry, ...]
    new_view: NewView | None
    sender: str
    signature: bytes = b""

    def header(self) -> dict[str, Any]:
        return {"type": "fetch-reply", "channel": self.channel,
                "stable_state": self.stable_state.to_value(),
                "checkpoint_proof": [c.signed_header() for c in self.checkpoint_proof],
                "entries": [e.header() for e in self.entries],
                "new_view": None if self.new_view is None else self.new_view.signed_header(),
                "sender": self.sender}

    def signing_bytes(self) -> bytes:
        return encode(self.header())

    def to_value(self) -> dict[str, Any]:
        return {**self.header(), "signature": self.signature,
                "entries": [e.to_value() for e in self.entries],
                "new_view": None if self.new_view is None else self.new_view.to_value()}


@dataclass(frozen=True, slots=True)
class Reply:
    """<REPLY, v, t, c, i, r>_i (OSDI'99 §4.1); the client waits for f+1 matching results."""

    channel: str
    view: int
    seq: int
    client: str
    nonce: int
    result: bytes
    sender: str
    signature: bytes = b""

    def header(self) -> dict[str, Any]:
        return {"type": "reply", "channel": self.channel, "view": self.view, "seq": self.seq,
                "client": self.client, "nonce": self.nonce, "result": self.result,
                "sender": self.sender}

    def signing_bytes(self) -> bytes:
        return encode(self.header())

    def to_value(self) -> dict[str, Any]:
        return {**self.header(), "signature": self.signature}


Message = Union[PrePrepare, Prepare, Commit, Checkpoint, ViewChange, NewView,
                FetchRequest, FetchReply, Reply]


# -- wire form ---------------------------------------------------------------------------

def _get(value: Mapping[str, Any], key: str, kind: type) -> Any:
    item = value[key]
    if type(item) is not kind:
        raise MalformedMessage(f"field {key!r} must be {kind.__name__}, got {type(item).__name__}")
    return item


def _batch(value: Any) -> Batch:
    requests = _get(value, "requests", list)
    if any(type(r) is not bytes for r in requests):
        raise MalformedMessage("batch requests must be bytes")
    return Batch(tuple(requests), _get(value, "proposer", str), _get(value, "timestamp_ms", int),
                 _get(value, "metadata", bytes))


def _state(value: Any) -> CheckpointState:
    clients = _get(value, "clients", list)
    pairs = []
    for pair in clients:
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str or type(pair[1]) is not int:
            raise MalformedMessage("checkpoint clients must be [name, nonce] pairs")
        pairs.append((pair[0], pair[1]))
    return CheckpointState(_get(value, "seq", int), _get(value, "app_digest", bytes), tuple(pairs))


def _vote(cls: type) -> Callable[[Mapping[str, Any]], Any]:
    def build(v: Mapping[str, Any]) -> Any:
        return cls(_get(v, "channel", str), _get(v, "view", int), _get(v, "seq", int),
                   _get(v, "digest", bytes), _get(v, "sender", str), _get(v, "signature", bytes))
    return build


def _pre_prepare(v: Mapping[str, Any], *, batch_optional: bool = False) -> PrePrepare:
    batch = None if batch_optional and "batch" not in v else _batch(_get(v, "batch", dict))
    return PrePrepare(_get(v, "channel", str), _get(v, "view", int), _get(v, "seq", int),
                      _get(v, "digest", bytes), batch, _get(v, "sender", str),
                      _get(v, "signature", bytes))


def _checkpoint(v: Mapping[str, Any]) -> Checkpoint:
    return Checkpoint(_get(v, "channel", str), _get(v, "seq", int), _get(v, "digest", bytes),
                      _get(v, "sender", str), _get(v, "signature", bytes))


def _certificate(v: Mapping[str, Any], batch_optional: bool = False) -> PreparedCertificate:
    return PreparedCertificate(_pre_prepare(_get(v, "pre_prepare", dict), batch_optional=batch_optional),
                               tuple(_vote(Prepare)(p) for p in _get(v, "prepares", list)))


def _view_change(v: Mapping[str, Any], *, in_new_view: bool = False) -> ViewChange:
    """A VIEW-CHANGE on its own carries its certificates' batches (the next primary
    re-issues them); inside a NEW-VIEW they may be left out."""
    return ViewChange(
        _get(v, "channel", str), _get(v, "view", int), _get(v, "stable_seq", int),
        _state(_get(v, "stable_state", dict)),
        tuple(_checkpoint(c) for c in _get(v, "checkpoint_proof", list)),
        tuple(_certificate(p, in_new_view) for p in _get(v, "prepared", list)),
        _get(v, "sender", str), _get(v, "signature", bytes))


def _new_view(v: Mapping[str, Any]) -> NewView:
    return NewView(_get(v, "channel", str), _get(v, "view", int),
                   tuple(_view_change(x, in_new_view=True) for x in _get(v, "view_changes", list)),
                   tuple(_pre_prepare(x) for x in _get(v, "pre_prepares", list)),
                   _get(v, "sender", str), _get(v, "signature", bytes))


def _entry(v: Mapping[str, Any]) -> CommittedEntry:
    return CommittedEntry(_get(v, "seq", int), _batch(_get(v, "batch", dict)),
                          CommitCertificate.from_value(_get(v, "certificate", dict)))


def _fetch_reply(v: Mapping[str, Any]) -> FetchReply:
    nv = v["new_view"]
    return FetchReply(_get(v, "channel", str), _state(_get(v, "stable_state", dict)),
                      tuple(_checkpoint(c) for c in _get(v, "checkpoint_proof", list)),
                      tuple(_entry(e) for e in _get(v, "entries", list)),
                      None if nv is None else _new_view(nv),
                      _get(v, "sender", str), _get(v, "signature", bytes))


_DECODERS: dict[str, Callable[[Mapping[str, Any]], Message]] = {
    "pre-prepare": _pre_prepare,
    "prepare": _vote(Prepare),
    "commit": _vote(Commit),
    "checkpoint": _checkpoint,
    "view-change": _view_change,
    "new-view": _new_view,
    "fetch-request": lambda v: FetchRequest(_get(v, "channel", str), _get(v, "have_seq", int),
                                            _get(v, "sender", str), _get(v, "signature", bytes)),
    "fetch-reply": _fetch_reply,
    "reply": lambda v: Reply(_get(v, "channel", str), _get(v, "view", int), _get(v, "seq", int),
                             _get(v, "client", str), _get(v, "nonce", int),
                             _get(v, "result", bytes), _get(v, "sender", str),
                             _get(v, "signature", bytes)),
}


def encode_message(message: Message) -> bytes:
    """The canonical wire bytes of ``message`` (batches included)."""
    return encode(message.to_value())


def decode_message(data: bytes) -> Message:
    """Parse wire bytes; raise :class:`MalformedMessage` for anything that is not a message."""
    try:
        value = decode(data)
        if type(value) is not dict:
            raise MalformedMessage("a message must be a map")
        decoder = _DECODERS.get(value.get("type"))
        if decoder is None:
            raise MalformedMessage(f"unknown message type {value.get('type')!r}")
        message = decoder(value)
    except MalformedMessage:
        raise
    except (EncodingError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedMessage(f"malformed message: {exc!r}") from None
    if encode_message(message) != bytes(data):
        raise MalformedMessage("message has fields beyond its type's")
    return message
