"""Client requests at a replica: checking, de-duplicating, batching, and the rule that a
primary cannot reorder or replay a client's requests (a mixin of
:class:`~.replica.Replica`; docs/consensus.md §3 and §7).

A request is opaque bytes; the injected ``RequestVerifier`` gives its (client, nonce). A
replica keeps each pending request once and the last reply per client (OSDI'99 §4.1). The
log index ``ordered`` maps client -> seq -> (lowest, highest nonce) over the pre-prepares
of the current view, so that a batch can be checked against the client's order in both
directions whatever order pre-prepares arrive in.
"""

from __future__ import annotations

from ..ordering import Batch
from .events import TIMER_BATCH, TIMER_REQUEST, Broadcast, FaultKind, SendReply
from .messages import PrePrepare

__all__ = ["BATCH_MAX_BYTES", "RequestsMixin"]

BATCH_MAX_BYTES = 64 * 1024
"""A batch's requests hold at most this many bytes, unless it is a single request. The
peer links refuse frames above 4 MiB, and a PRE-PREPARE carries its whole batch: with only
``batch_max`` (100) as the bound, 65 transactions of the ledger's largest size (64 KiB)
made a PRE-PREPARE no backup could receive, so the channel stopped at every primary in
turn. With this bound a PRE-PREPARE stays near 64 KiB, and a VIEW-CHANGE, which carries a
prepared batch for each sequence number of the watermark window (40), near 2.6 MB. The
bench's transactions (~400 bytes) still fill ``batch_max``."""


class RequestsMixin:
    def _info(self, request: bytes) -> tuple[str, int] | None:
        info = self.request_info.get(request)
        if info is None:
            try:
                client, nonce = self.verifier.verify_request(request)
            except Exception:  # the verifier's refusal, whatever its type  # noqa: BLE001
                return None
            if type(client) is not str or type(nonce) is not int:
                return None
            info = self.request_info[request] = (client, nonce)
        return info

    def _on_request(self, request: bytes) -> None:
        if type(request) is not bytes:
            self._fault(FaultKind.BAD_REQUEST, "client", "request is not bytes")
            return
        info = self._info(request)
        if info is None:
            self._fault(FaultKind.BAD_REQUEST, "client", "request refused by the verifier")
            return
        client, nonce = info
        if nonce <= self.clients.get(client, 0):
            cached = self.replies.get(client)
            if cached is not None and cached.nonce == nonce:
                self._out.append(SendReply(client, cached))  # the reply was lost: resend it
            return
        if request in self.pending:
            return
        self.pending[request] = info
        self.pending_of.setdefault(client, {})[request] = nonce
        if self.active and TIMER_REQUEST not in self.timers:
            self._set_timer(TIMER_REQUEST, self.view_change_timeout_ms)
        if self.active and self.is_primary() and nonce > self._known_nonce(client):
            self.queue[request] = info
            self._cut_batches(force=False)

    def _known_nonce(self, client: str) -> int:
        ordered = self.ordered.get(client)
        top = max((hi for lo, hi in ordered.values()), default=0) if ordered else 0
        return max(top, self.clients.get(client, 0))

    def _index_batch(self, seq: int, batch: Batch) -> None:
        for request in batch.requests:
            info = self._info(request)
            if info is None:
                continue
            client, nonce = info
            spans = self.ordered.setdefault(client, {})
            lo, hi = spans.get(seq, (nonce, nonce))
            spans[seq] = (min(lo, nonce), max(hi, nonce))

    def _check_request_order(self, seq: int, batch: Batch) -> tuple[FaultKind, str] | None:
        """A batch may not replay a client's nonce nor order it against the client's order
        (the primary cannot reorder a client's requests): every nonce must exceed the client's
        committed one and those ordered at lower seqs, and stay below those at higher seqs."""
        spans: dict[str, tuple[int, int]] = {}
        for request in batch.requests:
            info = self._info(request)
            if info is None:
                return FaultKind.BAD_REQUEST, f"batch at seq {seq} holds a request the verifier refuses"
            client, nonce = info
            if client in spans:
                if nonce <= spans[client][1]:
                    return FaultKind.REQUEST_ORDER, f"{client} nonces not increasing within seq {seq}"
                spans[client] = (spans[client][0], nonce)
            else:
                spans[client] = (nonce, nonce)
        for client, (lo, hi) in spans.items():
            if lo <= self.clients.get(client, 0):
                return FaultKind.REQUEST_ORDER, f"{client} nonce {lo} already committed"
            for other, (olo, ohi) in self.ordered.get(client, {}).items():
                if (other < seq and ohi >= lo) or (other > seq and olo <= hi):
                    return FaultKind.REQUEST_ORDER, f"{client} nonces at seq {seq} out of order with seq {other}"
        return None

    def _cut_batches(self, force: bool) -> None:
        """Primary: propose batches of up to batch_max requests (OSDI'99 §5.1 batching)."""
        if not (self.active and self.is_primary()):
            return
        cfg = self.config
        while self.queue and (force or len(self.queue) >= cfg.batch_max) \
                and self.next_seq <= self.low + cfg.watermark_window:
            force = False
            requests = self._take_requests(cfg.batch_max)
            if not requests:
                break
            batch = Batch(tuple(requests), self.name, self.now_ms, self.propose_metadata())
            pp = self._sign(PrePrepare(self.ctx.channel, self.view, self.next_seq,
                                       self.ctx.batch_digest(batch), batch, self.name))
            self.next_seq += 1
            self._out.append(Broadcast(pp))
            self._accept_pre_prepare(self._slot(pp.seq), pp)
        if self.queue and TIMER_BATCH not in self.timers:
            self._set_timer(TIMER_BATCH, cfg.batch_timeout_ms)
        elif not self.queue:
            self._cancel_timer(TIMER_BATCH)

    def _take_requests(self, limit: int) -> list[bytes]:
        """Up to ``limit`` queued requests in arrival order, each client's in nonce order,
        of at most BATCH_MAX_BYTES together (or the first alone)."""
        chosen: list[str] = []
        by_client: dict[str, list[tuple[int, bytes]]] = {}
        size = 0
        for request, (client, nonce) in list(self.queue.items()):
            if nonce <= self._known_nonce(client):
                del self.queue[request]  # committed or proposed already
                continue
            size += len(request)
            if chosen and size > BATCH_MAX_BYTES:
                break
            by_client.setdefault(client, []).append((nonce, request))
            chosen.append(client)
            if len(chosen) == limit:
                break
        for entries in by_client.values():
            entries.sort(reverse=True)
        requests, last = [], {}
        for client in chosen:
            nonce, request = by_client[client].pop()
            del self.queue[request]
            if nonce > last.get(client, 0):  # a client that reused a nonce: keep the first
                last[client] = nonce
                requests.append(request)
        return requests

