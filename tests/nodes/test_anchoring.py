"""nodes/anchoring.py without a cluster: the intake gate holds, releases and refuses
PRE-PREPAREs by their anchors; execution waits for anchored heights; the reader reads as of them."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.anchoring import AnchorGate, ExecutionQueue, LedgerReader, anchors_reached
from p2pchain.consensus.messages import Prepare, PrePrepare
from p2pchain.ledger.block import Anchor, Anchors
from p2pchain.ledger.state import WorldState
from p2pchain.ordering import Batch


def h(channel: str, height: int) -> bytes:
    """The hash 'committed' at ``height`` of ``channel`` in these tests."""
    return (channel[:1] * 16 + f"{height:016d}").encode()


@dataclass
class Chains:
    """Committed heights per channel, with the hash each stores; the last block's anchors."""

    heads: dict = field(default_factory=lambda: {"transaction": 5, "matching": 3, "electricity": 2})
    floors: dict = field(default_factory=dict)

    def gate(self, window: int = 4) -> AnchorGate:
        return AnchorGate(lambda c: self.heads[c], h, lambda c: self.floors.get(c), window)


def anchors(channel: str, heights: dict, forged: str | None = None) -> Anchors:
    return Anchors.for_block(channel, {name: Anchor(height, bytes(32) if name == forged else h(name, height))
                                       for name, height in heights.items()})


def pre_prepare(channel: str, metadata: bytes, seq: int = 1, requests=(b"r",)) -> PrePrepare:
    batch = Batch(tuple(requests), "node0", 1, metadata)
    return PrePrepare(channel, 0, seq, batch.digest(), batch, "node0")


def test_anchors_to_committed_blocks_are_delivered():
    gate = Chains().gate()
    message = pre_prepare("matching", anchors("matching", {"transaction": 5, "electricity": 2}).to_metadata())
    assert gate.admit("matching", message).action == "deliver"
    assert gate.held == {}


def test_other_messages_pass_untouched():
    gate = Chains().gate()
    assert gate.admit("transaction", Prepare("transaction", 0, 1, bytes(32), "node1")).action == "deliver"


@pytest.mark.parametrize("metadata, detail", [
    (b"\x81\xa1x\x01", "must name exactly"),
    (b"\xc1", "malformed"),
    (b"", "must anchor the other channels"),
])
def test_malformed_anchors_are_refused_with_a_reason(metadata, detail):
    verdict = Chains().gate().admit("transaction", pre_prepare("transaction", metadata))
    assert (verdict.action, verdict.reason) == ("refuse", "malformed_anchors")
    assert detail in verdict.detail


def test_a_null_batch_without_anchors_is_delivered():
    assert Chains().gate().admit("transaction", pre_prepare("transaction", b"", requests=())).action == "deliver"


def test_side_chain_anchors_in_the_transaction_channel_shape_are_refused():
    metadata = anchors("transaction", {"matching": 3, "electricity": 2}).to_metadata()
    verdict = Chains().gate().admit("matching", pre_prepare("matching", metadata))
    assert verdict.reason == "malformed_anchors"


def test_an_anchor_to_a_committed_height_with_another_hash_is_refused():
    metadata = anchors("transaction", {"matching": 3, "electricity": 2}, forged="matching").to_metadata()
    verdict = Chains().gate().admit("transaction", pre_prepare("transaction", metadata))
    assert (verdict.action, verdict.reason) == ("refuse", "forged_anchor")
    assert "matching block 3" in verdict.detail


def test_an_anchor_below_the_last_committed_blocks_anchor_is_refused():
    chains = Chains()
    chains.floors["transaction"] = anchors("transaction", {"matching": 3, "electricity": 2})
    metadata = anchors("transaction", {"matching": 2, "electricity": 2}).to_metadata()
    verdict = chains.gate().admit("transaction", pre_prepare("transaction", metadata))
    assert (verdict.action, verdict.reason) == ("refuse", "anchor_goes_back")


def test_an_anchor_to_an_uncommitted_height_is_held_and_released_when_reached():
    chains = Chains()
    gate = chains.gate()
    message = pre_prepare("transaction", anchors("transaction", {"matching": 5, "electricity": 2}).to_metadata())
    verdict = gate.admit("transaction", message)
    assert (verdict.action, verdict.detail) == ("hold", "waits for matching 5")
    chains.heads["matching"] = 4
    assert gate.release() == ([], [])
    chains.heads["matching"] = 5
    deliver, refused = gate.release()
    assert deliver == [("transaction", message)] and refused == []
    assert gate.held["transaction"] == []


def test_a_held_anchor_that_turns_out_forged_is_dropped_on_release():
    chains = Chains()
    gate = chains.gate()
    message = pre_prepare("electricity",
                          anchors("electricity", {"transaction": 9, "matching": 3}, forged="transaction").to_metadata())
    assert gate.admit("electricity", message).action == "hold"
    chains.heads["transaction"] = 9
    deliver, refused = gate.release()
    assert deliver == [] and [(c, m, v.reason) for c, m, v in refused] == [("electricity", message, "forged_anchor")]


def test_a_held_pre_prepare_is_judged_again_only_once_its_heights_are_committed():
    chains = Chains()
    gate = chains.gate()
    message = pre_prepare("transaction", anchors("transaction", {"matching": 6, "electricity": 2}).to_metadata())
    assert gate.admit("transaction", message).action == "hold"
    judged = []
    judge = gate.judge
    gate.judge = lambda channel, msg: judged.append(msg) or judge(channel, msg)
    # meanwhile the channel committed a block anchoring matching 7: the held one now goes back
    chains.floors["transaction"] = anchors("transaction", {"matching": 7, "electricity": 2})
    chains.heads["matching"] = 5
    assert gate.release() == ([], []) and judged == []  # still short of matching 6: not judged
    chains.heads["matching"] = 7
    deliver, refused = gate.release()
    assert judged == [message] and deliver == []
    assert [(c, m, v.reason) for c, m, v in refused] == [("transaction", message, "anchor_goes_back")]
    assert gate.held["transaction"] == []


def test_the_hold_is_bounded_per_channel():
    gate = Chains().gate(window=2)
    metadata = anchors("transaction", {"matching": 7, "electricity": 2}).to_metadata()
    verdicts = [gate.admit("transaction", pre_prepare("transaction", metadata, seq=s)).action for s in (1, 2, 3)]
    assert verdicts == ["hold", "hold", "refuse"]
    assert gate.admit("transaction", pre_prepare("transaction", metadata, seq=4)).reason == "anchor_hold_full"
    # another channel has its own bound
    side = anchors("matching", {"transaction": 8, "electricity": 2}).to_metadata()
    assert gate.admit("matching", pre_prepare("matching", side)).action == "hold"


def test_held_pre_prepares_are_released_in_arrival_order():
    chains = Chains()
    gate = chains.gate()
    first = pre_prepare("transaction", anchors("transaction", {"matching": 6, "electricity": 2}).to_metadata(), seq=1)
    second = pre_prepare("transaction", anchors("transaction", {"matching": 4, "electricity": 2}).to_metadata(), seq=2)
    gate.admit("transaction", first)
    gate.admit("transaction", second)
    chains.heads["matching"] = 6
    assert [m.seq for _, m in gate.release()[0]] == [1, 2]


def test_a_primary_never_proposes_below_an_anchor_it_has_seen():
    chains = Chains()
    gate = chains.gate()
    seen = pre_prepare("transaction", anchors("transaction", {"matching": 3, "electricity": 2}).to_metadata())
    assert gate.admit("transaction", seen).action == "deliver"
    own = {"matching": Anchor(1, h("matching", 1)), "electricity": Anchor(2, h("electricity", 2))}
    proposed = gate.propose("transaction", own)
    assert proposed.heights() == {"matching": 3, "electricity": 2}
    assert proposed["matching"].block_hash == h("matching", 3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["matching", "electricity"]), st.integers(0, 3)), max_size=12))
def test_proposals_never_decrease_whatever_the_primary_sees(observations):
    """Property: successive proposals of a channel are monotone in every anchored channel."""
    gate = Chains().gate()
    own = {"matching": Anchor(1, h("matching", 1)), "electricity": Anchor(1, h("electricity", 1))}
    last = None
    for name, height in observations:
        heights = {"matching": 1, "electricity": 1, name: height}
        gate.admit("transaction", pre_prepare("transaction", anchors("transaction", heights).to_metadata()))
        proposed = gate.propose("transaction", own).heights()
        if last is not None:
            assert all(proposed[c] >= last[c] for c in proposed)
        last = proposed


@dataclass
class Action:
    seq: int
    batch: Batch


def test_execution_waits_for_anchors_and_later_blocks_queue_behind():
    heads = {"transaction": 0, "matching": 2, "electricity": 2}
    executed = []
    queue = ExecutionQueue(executed.append, lambda metadata: anchors_reached("transaction", metadata, heads.get))
    waiting = Action(1, Batch((b"r",), "node0", 1, anchors("transaction", {"matching": 4, "electricity": 2}).to_metadata()))
    ready = Action(2, Batch((b"r",), "node0", 2, anchors("transaction", {"matching": 1, "electricity": 1}).to_metadata()))
    queue.submit(waiting)
    queue.submit(ready)
    assert executed == [] and len(queue) == 2
    heads["matching"] = 4
    queue.pump()
    assert [a.seq for a in executed] == [1, 2] and len(queue) == 0


def test_a_batch_without_anchors_executes_at_once():
    executed = []
    queue = ExecutionQueue(executed.append, lambda metadata: anchors_reached("matching", metadata, lambda c: 0))
    queue.submit(Action(1, Batch((), "node0", 1, b"")))
    assert [a.seq for a in executed] == [1]


def test_an_execution_that_submits_the_next_block_keeps_the_order():
    executed = []
    queue = None

    def execute(action):
        executed.append(action.seq)
        if action.seq == 1:
            queue.submit(Action(2, Batch((), "node0", 2, b"")))  # the replica delivers the next one meanwhile

    queue = ExecutionQueue(execute, lambda metadata: True)
    queue.submit(Action(1, Batch((), "node0", 1, b"")))
    assert executed == [1, 2]


def test_the_reader_reads_another_channel_as_of_the_anchored_height(tmp_path):
    import sqlite3

    from p2pchain.encoding import encode

    state = WorldState(sqlite3.connect(tmp_path / "m.db", isolation_level=None))
    for height, value in enumerate([1, 2, 3]):
        state.apply_block(height, {("round", "r"): encode(value)})

    class Ledger:
        pass

    ledger = Ledger()
    ledger.state = state
    assert LedgerReader({"matching": ledger}, {"matching": 1}).read("matching", "round", "r") == encode(2)
    assert LedgerReader({"matching": ledger}, {"matching": 2}).read("matching", "round", "r") == encode(3)
    assert LedgerReader({"matching": ledger}, {"matching": 0}).read("matching", "round", "other") is None


class FakeLedger:
    def __init__(self, channel: str, height: int) -> None:
        self.channel, self.height = channel, height

    def block_hash(self, height: int) -> bytes:
        return h(self.channel, height)

    def anchor(self) -> Anchor:
        return Anchor(self.height, h(self.channel, self.height))

    def header(self, height: int):
        raise AssertionError("only asked for the floor at height > 0")


class FakeEngine:
    def __init__(self, channel: str, committed: int = 0) -> None:
        self.channel, self.halted, self.received = channel, None, []
        self.replica = type("Replica", (), {"last_committed": committed})()
        self.execution = ExecutionQueue(lambda action: None, lambda metadata: True)

    def receive(self, message) -> None:
        self.received.append(message)


class Counter:
    def __init__(self) -> None:
        self.counts: dict = {}

    def labels(self, *labels):
        counts = self.counts

        class One:
            def inc(self) -> None:
                counts[labels] = counts.get(labels, 0) + 1
        return One()


def test_the_node_counts_refusals_and_hands_held_pre_prepares_over_once_committed():
    import asyncio

    from nodes.anchoring import NodeAnchoring

    ledgers = {c: FakeLedger(c, 0) for c in ("transaction", "matching", "electricity")}
    engines = {c: FakeEngine(c) for c in ledgers}
    metrics = type("Metrics", (), {"refused": Counter()})()
    anchoring = NodeAnchoring(ledgers, engines, metrics, window=8)
    forged = pre_prepare("transaction", anchors("transaction", {"matching": 0, "electricity": 0},
                                                forged="matching").to_metadata())
    waiting = pre_prepare("transaction", anchors("transaction", {"matching": 1, "electricity": 0}).to_metadata(), seq=2)

    async def scenario():
        assert anchoring.receive(engines["transaction"], forged) == "forged_anchor"
        assert anchoring.receive(engines["transaction"], waiting) is None
        assert engines["transaction"].received == []
        ledgers["matching"].height = 1        # the matching channel commits block 1
        anchoring.committed()
        await asyncio.sleep(0)
        return engines["transaction"].received

    assert asyncio.run(scenario()) == [waiting]
    assert metrics.refused.counts == {("anchors", "forged_anchor"): 1}
    proposed = Anchors.from_metadata(anchoring.propose("matching"), "matching")
    assert proposed.heights() == {"transaction": 0, "electricity": 0}


def test_a_pre_prepare_held_for_heights_committed_but_not_applied_here_is_waiting_on_this_node():
    from nodes.anchoring import NodeAnchoring

    ledgers = {c: FakeLedger(c, 0) for c in ("transaction", "matching", "electricity")}
    engines = {c: FakeEngine(c) for c in ledgers}
    metrics = type("Metrics", (), {"refused": Counter()})()
    anchoring = NodeAnchoring(ledgers, engines, metrics, window=8)
    assert not anchoring.held_for_execution("matching")  # nothing held
    held = pre_prepare("matching", anchors("matching", {"transaction": 3, "electricity": 0}).to_metadata())
    assert anchoring.receive(engines["matching"], held) is None and engines["matching"].received == []
    # transaction block 3 is not even committed here: maybe a faulty primary's invention
    engines["transaction"].replica.last_committed = 2
    assert not anchoring.held_for_execution("matching")
    # committed here (2f+1 nodes ordered it), only not applied yet: the wait is ours
    engines["transaction"].replica.last_committed = 3
    assert anchoring.held_for_execution("matching")
    assert not anchoring.held_for_execution("electricity")


def test_messages_for_a_halted_channel_or_waiting_on_one_are_dropped_without_closing_the_link():
    # A full disk halted matching here: its own messages, and transaction PRE-PREPAREs that
    # wait for a matching height, would fill the hold and close a healthy peer's link.
    from nodes.anchoring import NodeAnchoring

    ledgers = {c: FakeLedger(c, 0) for c in ("transaction", "matching", "electricity")}
    engines = {c: FakeEngine(c) for c in ledgers}
    metrics = type("Metrics", (), {"refused": Counter()})()
    anchoring = NodeAnchoring(ledgers, engines, metrics, window=2)
    engines["matching"].halted = "cannot write the replica's durable state: database or disk is full"
    waits = [pre_prepare("transaction", anchors("transaction", {"matching": 1, "electricity": 0}).to_metadata(), seq=s)
             for s in range(1, 6)]
    for message in waits:
        assert anchoring.receive(engines["transaction"], message) is None   # never a refusal: the link stays
    own = pre_prepare("matching", anchors("matching", {"transaction": 0, "electricity": 0}).to_metadata())
    assert anchoring.receive(engines["matching"], own) is None
    assert anchoring.gate.held == {} and engines["matching"].received == engines["transaction"].received == []
    assert metrics.refused.counts == {("peer", "channel_halted"): 6}
    # what does not wait on the halted channel goes on as before
    ready = pre_prepare("transaction", anchors("transaction", {"matching": 0, "electricity": 0}).to_metadata(), seq=6)
    assert anchoring.receive(engines["transaction"], ready) is None and engines["transaction"].received == [ready]
