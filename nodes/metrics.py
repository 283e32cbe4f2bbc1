"""A node's Prometheus metrics (``GET /metrics``), one registry per node.

Names follow Prometheus conventions (``_total`` for counters, base units in the name).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["NodeMetrics", "ChannelMetrics", "STAGES", "CONTENT_TYPE_LATEST"]

# Commit latency buckets, seconds: from a single fast batch to a view change.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)

# The stages of p2pchain_latency_stage_seconds, in the order a transaction passes them.
STAGES = ("propose", "agree", "wait", "execute")


class NodeMetrics:
    def __init__(self, node: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.height = Gauge("p2pchain_height", "Height of the last committed block", ["channel"], registry=r)
        self.view = Gauge("p2pchain_view", "Current PBFT view", ["channel"], registry=r)
        self.view_changes = Counter("p2pchain_view_changes_total", "Views this node moved to", ["channel"], registry=r)
        self.messages_in = Counter("p2pchain_messages_in_total", "Consensus messages received", ["channel", "type"], registry=r)
        self.messages_out = Counter("p2pchain_messages_out_total", "Consensus messages sent", ["channel", "type"], registry=r)
        self.refused = Counter("p2pchain_refused_total", "Inputs refused, by edge and reason", ["edge", "reason"], registry=r)
        self.faults = Counter("p2pchain_peer_faults_total", "Faulty consensus input, by kind and peer", ["channel", "kind", "peer"], registry=r)
        self.transactions = Counter("p2pchain_transactions_total", "Committed transactions, by outcome", ["channel", "outcome"], registry=r)
        self.commit_latency = Histogram("p2pchain_commit_latency_seconds", "From a transaction's arrival at this node to its commit",
                                        ["channel"], buckets=LATENCY_BUCKETS, registry=r)
        self.latency_stages = Histogram(
            "p2pchain_latency_stage_seconds",
            "Where the commit latency of a transaction that arrived at this node goes: propose (arrival to "
            "the PRE-PREPARE of its batch sent or accepted here: relay, queue, batching, anchors), agree "
            "(PRE-PREPARE to committed: PREPARE and COMMIT rounds with their durable writes), wait (committed "
            "to executing: earlier blocks, anchored heights), execute (contracts, checks, the block's append)",
            ["channel", "stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.persist_seconds = Histogram("p2pchain_persist_seconds", "Writing the replica's durable state (encode + fsync)",
                                         ["channel"], buckets=LATENCY_BUCKETS, registry=r)
        self.persist_bytes = Gauge("p2pchain_persist_bytes", "Size of the last write of the replica's durable state (journal delta or snapshot)", ["channel"], registry=r)
        self.halted = Gauge("p2pchain_channel_halted", "1 if the channel halted on a state-root mismatch", ["channel"], registry=r)
        self.links = Gauge("p2pchain_peer_link_frames", "Peer-link counters: frames sent, received, dropped "
                           "(queue full) per peer, and links refused per reason", ["kind", "label"], registry=r)
        self.info = Gauge("p2pchain_node_info", "This node", ["node"], registry=r)
        self.info.labels(node=node).set(1)

    def observe_links(self, peers) -> None:
        """Copy the peer links' own counters (kept in the transport layer) into the registry."""
        for kind, counter in (("sent", peers.sent), ("received", peers.received), ("dropped", peers.dropped),
                              ("refused", peers.refused)):
            for label, value in counter.items():
                self.links.labels(kind, label).set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def for_channel(self, channel: str) -> ChannelMetrics:
        return ChannelMetrics(self, channel)


class _Children(dict):
    """The children of a labelled metric whose first labels are fixed, by the last label,
    each looked up by ``labels()`` once (it costs ~6 µs a call, and the hot path would call
    it per consensus message and per committed transaction)."""

    def __init__(self, family, *fixed: str) -> None:
        super().__init__()
        self.family, self.fixed = family, fixed

    def __missing__(self, label: str):
        child = self[label] = self.family.labels(*self.fixed, label)
        return child


class ChannelMetrics:
    """One channel's view of a node's metrics: the children labelled with the channel,
    bound once (``messages_in["PREPARE"].inc()``, ``stages["agree"].observe(s)``)."""

    def __init__(self, metrics: NodeMetrics, channel: str) -> None:
        self.height = metrics.height.labels(channel)
        self.view = metrics.view.labels(channel)
        self.view_changes = metrics.view_changes.labels(channel)
        self.commit_latency = metrics.commit_latency.labels(channel)
        self.persist_seconds = metrics.persist_seconds.labels(channel)
        self.persist_bytes = metrics.persist_bytes.labels(channel)
        self.halted = metrics.halted.labels(channel)
        self.stages = {stage: metrics.latency_stages.labels(channel, stage) for stage in STAGES}
        self.messages_in = _Children(metrics.messages_in, channel)
        self.messages_out = _Children(metrics.messages_out, channel)
        self.transactions = _Children(metrics.transactions, channel)
