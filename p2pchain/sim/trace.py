"""The trace: one JSON object per line, the format the dashboard reads (docs/consensus.md
documents every field).

Every line has ``t`` (simulated milliseconds since the start) and ``ev`` (what happened);
the other fields depend on ``ev``. Messages are summarised by :func:`describe` (type, view,
seq, a 16-hex-digit digest prefix, sender), never dumped whole.
"""

from __future__ import annotations

import json
from typing import IO, Any

__all__ = ["TraceWriter", "describe"]

_TYPES = {
    "PrePrepare": "pre-prepare", "Prepare": "prepare", "Commit": "commit",
    "Checkpoint": "checkpoint", "ViewChange": "view-change", "NewView": "new-view",
    "FetchRequest": "fetch-request", "FetchReply": "fetch-reply", "Reply": "reply",
}


def describe(message: Any) -> dict[str, Any]:
    kind = type(message).__name__
    out: dict[str, Any] = {"type": _TYPES.get(kind, kind), "sender": getattr(message, "sender", None)}
    for attr in ("view", "seq", "stable_seq", "have_seq"):
        value = getattr(message, attr, None)
        if value is not None:
            out[attr] = value
    d = getattr(message, "digest", None)
    if isinstance(d, bytes):
        out["digest"] = d.hex()[:16]
    batch = getattr(message, "batch", None)
    if batch is not None:
        out["requests"] = len(batch.requests)
    return out


class TraceWriter:
    """Writes trace lines to a text stream; ``None`` fields are left out."""

    def __init__(self, stream: IO[str], *, schedule: int | None = None) -> None:
        self.stream = stream
        self.schedule = schedule
        self.lines = 0

    def write(self, now_ms: int, ev: str, fields: dict[str, Any]) -> None:
        record = {"t": now_ms, "ev": ev}
        if self.schedule is not None:
            record["schedule"] = self.schedule
        record.update((k, v) for k, v in fields.items() if v is not None)
        self.stream.write(json.dumps(record, sort_keys=False, default=str) + "\n")
        self.lines += 1
