"""What the engine does with a replica's ``Fault``: counted and published always; logged as
a warning when it is evidence against the sender, at debug level when it is the ordinary
lateness of an asynchronous network (a node catching up gets hundreds of those)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from nodes.engine import ChannelEngine
from p2pchain.consensus import FaultKind
from p2pchain.consensus.events import Fault


class Counts:
    def __init__(self) -> None:
        self.seen: list = []

    def labels(self, *labels):
        return SimpleNamespace(inc=lambda: self.seen.append(labels))


def test_ordinary_faults_are_counted_but_logged_only_at_debug_level(caplog):
    engine = object.__new__(ChannelEngine)
    engine.channel, engine.node = "transaction", "node3"
    engine.metrics = SimpleNamespace(faults=Counts())
    published = []
    engine.hooks = SimpleNamespace(publish=published.append)
    faults = [Fault(FaultKind.OUTSIDE_WATERMARKS, "node2", "seq 620 outside (0, 40]"),
              Fault(FaultKind.STALE, "node1", "Prepare for old view 0"),
              Fault(FaultKind.BAD_SIGNATURE, "node0", "prepare 7")]
    with caplog.at_level(logging.DEBUG, logger="p2pchain.node"):
        engine._perform(faults)
    assert [(r.levelno, r.getMessage().split(": ")[2]) for r in caplog.records] == [
        (logging.DEBUG, "outside_watermarks"), (logging.DEBUG, "stale"), (logging.WARNING, "bad_signature")]
    assert engine.metrics.faults.seen == [("transaction", "outside_watermarks", "node2"),
                                          ("transaction", "stale", "node1"), ("transaction", "bad_signature", "node0")]
    assert [event["kind"] for event in published] == ["outside_watermarks", "stale", "bad_signature"]
