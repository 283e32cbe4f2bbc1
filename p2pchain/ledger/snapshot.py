"""State snapshots for state transfer: export a channel's state as digested chunks, import
and verify it.

A snapshot of the state at height *h* is a :class:`SnapshotManifest` — channel, height, the
state root after block *h*, and the digest of every chunk — and the chunks themselves: each
the canonical encoding of up to ``chunk_entries`` entries ``[namespace, key, value]`` in
(namespace, key) order. The snapshot's digest is the manifest's digest.

Import checks each chunk against the manifest as it arrives, writes the entries into an
empty world state, and finally checks that the root re-computed from them is the
manifest's root. A receiver that trusts a root (from a certified block header, the next
header's ``state_root``, or a stable PBFT checkpoint) or a manifest digest passes it in, and
a snapshot that does not match is refused: a faulty peer can waste the receiver's time but
cannot make it install a wrong state.

Export reads inside one SQLite read transaction on its own connection, so blocks committed
while a snapshot streams do not change it. Any applied height can be exported: the current
one from the state table, an older one from the state history (:class:`.state.HistoricalView`),
its root from the next block's header — e.g. a stable PBFT checkpoint while the head has
moved on.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..encoding import EncodingError, decode, digest, digest_bytes, encode
from .block import Header
from .state import HistoricalView, StateError, WorldState

__all__ = ["SnapshotError", "SnapshotManifest", "SnapshotExport", "export_snapshot", "import_snapshot"]

CHUNK_ENTRIES = 1024


class SnapshotError(Exception):
    """A snapshot that cannot be made at that height, or that does not verify."""


@dataclass(frozen=True, slots=True)
class SnapshotManifest:
    channel: str
    height: int
    state_root: bytes
    chunk_digests: tuple[bytes, ...]

    def to_value(self) -> dict[str, Any]:
        return {"channel": self.channel, "height": self.height, "state_root": self.state_root,
                "chunks": list(self.chunk_digests)}

    @classmethod
    def from_value(cls, value: Any) -> SnapshotManifest:
        try:
            return cls(value["channel"], value["height"], value["state_root"], tuple(value["chunks"]))
        except (KeyError, TypeError) as exc:
            raise SnapshotError(f"malformed manifest: {exc!r}") from None

    @property
    def digest(self) -> bytes:
        return digest(self.to_value())


class SnapshotExport:
    """A consistent view of one channel's state at a height; iterate :meth:`chunks` to stream it."""

    def __init__(self, path: Path, channel: str, height: int, chunk_entries: int = CHUNK_ENTRIES) -> None:
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("BEGIN")  # a read transaction pins one WAL snapshot until close
        self._height = height
        self._chunk_entries = chunk_entries
        try:
            rows = dict(self._conn.execute("SELECT name, value FROM meta").fetchall())
            applied = decode(rows["applied_height"]) if "applied_height" in rows else -1
            if not 0 <= height <= applied:
                raise SnapshotError(f"{channel}: the state is at height {applied}; no snapshot at {height}")
            if height == applied:
                root = rows["state_root"]
            else:  # the root after block `height` is in the next header
                header = self._conn.execute("SELECT header FROM blocks WHERE height = ?", (height + 1,)).fetchone()
                root = Header.from_bytes(header[0]).state_root
            self._current = height == applied
            digests = tuple(digest_bytes(chunk) for chunk in self.chunks())
        except BaseException:
            self.close()
            raise
        self.manifest = SnapshotManifest(channel, height, root, digests)

    def _entries(self) -> Iterator[tuple[str, str, bytes]]:
        if self._current:
            yield from self._conn.execute("SELECT ns, key, value FROM state ORDER BY ns, key")
        else:
            yield from HistoricalView(self._conn, self._height).entries()

    def chunks(self) -> Iterator[bytes]:
        """The chunks, each the encoding of up to ``chunk_entries`` entries in (ns, key) order."""
        chunk: list[list] = []
        for row in self._entries():
            chunk.append(list(row))
            if len(chunk) == self._chunk_entries:
                yield encode(chunk)
                chunk = []
        if chunk:
            yield encode(chunk)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SnapshotExport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def export_snapshot(path: Path, channel: str, height: int, *, chunk_entries: int = CHUNK_ENTRIES) -> SnapshotExport:
    """Begin exporting the state of the channel database at ``path`` as of ``height``."""
    return SnapshotExport(path, channel, height, chunk_entries)


def import_snapshot(
    state: WorldState,
    manifest: SnapshotManifest,
    chunks: Iterable[bytes],
    *,
    expected_digest: bytes | None = None,
    expected_root: bytes | None = None,
) -> bytes:
    """Install a snapshot into the empty ``state``; return its root or raise SnapshotError.

    The entries of all chunks are written in one transaction, so a refused snapshot leaves
    ``state`` empty.
    """
    if expected_digest is not None and manifest.digest != expected_digest:
        raise SnapshotError("the manifest's digest is not the expected one")
    if expected_root is not None and manifest.state_root != expected_root:
        raise SnapshotError("the manifest's state root is not the expected one")
    if state.applied_height != -1:
        raise SnapshotError(f"a snapshot is imported into an empty state, not one at height {state.applied_height}")
    count = 0

    def checked() -> Iterator[list[tuple[str, str, bytes]]]:
        nonlocal count
        for chunk in chunks:
            if count >= len(manifest.chunk_digests) or digest_bytes(chunk) != manifest.chunk_digests[count]:
                raise SnapshotError(f"chunk {count} does not match the manifest")
            count += 1
            try:
                rows = decode(chunk)
                yield [(ns, key, value) for ns, key, value in rows]
            except (EncodingError, TypeError, ValueError) as exc:
                raise SnapshotError(f"chunk {count - 1} is malformed: {exc}") from None
        if count != len(manifest.chunk_digests):
            raise SnapshotError(f"{count} chunks received, the manifest lists {len(manifest.chunk_digests)}")

    try:
        return state.install(manifest.height, checked(), manifest.state_root)
    except StateError as exc:
        raise SnapshotError(f"snapshot refused: {exc}") from None
