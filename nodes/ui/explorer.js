// The explorer: blocks of a channel (header, anchors, commit certificate signers),
// transactions (creator, signature validity, result, events) and state by namespace and key.
import { el, getJSON, short } from "./api.js";

const json = (v) => el("pre", {}, JSON.stringify(v, null, 1));

export class Explorer {
  constructor(cluster) {
    this.$ = (id) => document.getElementById(id);
    this.channel = "transaction";
    const select = this.$("ex-channel");
    for (const c of cluster.channels) select.append(el("option", { value: c }, c));
    select.addEventListener("change", () => { this.channel = select.value; this.refresh(); });
    this.$("ex-refresh").addEventListener("click", () => this.refresh());
    this.$("ex-state").addEventListener("submit", (ev) => { ev.preventDefault(); this.lookup(); });
    this.$("ex-tx").addEventListener("submit", (ev) => { ev.preventDefault(); this.showTx(this.$("ex-txid").value.trim()); });
  }

  detail(...children) { this.$("ex-detail").replaceChildren(...children); }
  failed(what, err) { this.detail(el("p", { class: "bad" }, `${what}: ${err.message}`)); }

  async refresh() {
    const body = this.$("ex-blocks").querySelector("tbody");
    try {
      const page = await getJSON(`/v1/channels/${this.channel}/blocks`);
      body.replaceChildren(...page.blocks.slice().reverse().slice(0, 40).map((b) => el("tr", {
        class: "click", "data-height": b.height, onclick: () => this.showBlock(b.height) },
        el("td", {}, b.height), el("td", { class: "hash" }, short(b.hash)), el("td", {}, b.certificate?.view ?? ""),  // the header holds no view (same block in any view)
        el("td", {}, b.header.proposer ?? ""), el("td", {}, b.transactions.length))));
    } catch (err) { body.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "bad" }, err.message))); }
  }

  async showBlock(height) {
    try {
      const b = await getJSON(`/v1/dashboard/channels/${this.channel}/blocks/${height}`);
      const header = el("dl", {}, ...Object.entries(b.header).flatMap(([k, v]) =>
        [el("dt", {}, k), el("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v))]));
      const anchors = b.anchors ? el("dl", {}, ...Object.entries(b.anchors).flatMap(([ch, a]) =>
        [el("dt", {}, ch), el("dd", {}, `height ${a.height} · ${short(a.hash, 16)}`)])) : el("p", { class: "muted" }, "no anchors (block 0 or a null batch)");
      const cert = b.certificate ? el("dl", { "data-testid": "certificate" },
        el("dt", {}, "view / seq"), el("dd", {}, `${b.certificate.view} / ${b.certificate.seq}`),
        el("dt", {}, "batch digest"), el("dd", {}, b.certificate.digest),
        el("dt", {}, "signers"), el("dd", { "data-testid": "signers" }, b.certificate.signers.join(", ")))
        : el("p", { class: "muted" }, "no commit certificate (block 0)");
      const txs = el("table", { "data-testid": "block-txs" }, el("thead", {}, el("tr", {},
        ...["tx", "creator", "call", "signature", "result", "events"].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...b.transactions.map((t) => el("tr", { class: "click", onclick: () => t.tx_id && this.showTx(t.tx_id) },
          el("td", { class: "hash" }, short(t.tx_id || "", 10)), el("td", {}, t.creator || t.malformed || ""),
          el("td", {}, t.contract ? `${t.contract}.${t.function}` : ""),
          el("td", { class: t.signature_valid ? "ok" : "bad" }, t.signature_valid === true ? "valid ✓" : t.signature_valid === false ? "INVALID ✗" : "no certificate"),
          el("td", { class: t.result && t.result.status === "ok" ? "ok" : "bad" }, t.result ? `${t.result.status}${t.result.reason ? `: ${t.result.reason}` : ""}` : ""),
          el("td", { class: "hash", title: t.result ? JSON.stringify(t.result.events) : "" },
            t.result ? t.result.events.map((e) => JSON.stringify(e)).join("; ").slice(0, 120) : "")))));
      this.detail(el("h3", { "data-testid": "block-title" }, `${b.channel} block ${b.height}`),
        el("p", { class: "hash" }, b.hash), header, el("h3", {}, "anchors"), anchors,
        el("h3", {}, "commit certificate"), cert, el("h3", {}, `transactions (${b.transactions.length})`), txs);
    } catch (err) { this.failed(`block ${height}`, err); }
  }

  async showTx(id) {
    if (!id) return;
    try {
      const t = await getJSON(`/v1/channels/${this.channel}/transactions/${id}`);
      this.detail(el("h3", {}, `transaction on ${t.channel}`), el("dl", {},
        el("dt", {}, "id"), el("dd", {}, t.tx_id), el("dt", {}, "block"), el("dd", {}, `${t.height} (position ${t.position})`),
        el("dt", {}, "creator"), el("dd", {}, t.creator), el("dt", {}, "call"), el("dd", {}, `${t.contract}.${t.function}`),
        el("dt", {}, "nonce"), el("dd", {}, t.nonce), el("dt", {}, "signature"), el("dd", {}, t.signature)),
        el("h3", {}, "arguments"), json(t.args), el("h3", {}, "result"), json(t.result || null),
        el("button", { onclick: () => this.showBlock(t.height) }, `open block ${t.height}`));
    } catch (err) { this.failed(`transaction ${short(id)}`, err); }
  }

  async lookup() {
    const ns = this.$("ex-ns").value.trim(), key = this.$("ex-key").value.trim();
    try {
      const s = await getJSON(`/v1/channels/${this.channel}/state/${encodeURIComponent(ns)}/${key.split("/").map(encodeURIComponent).join("/")}`);
      this.detail(el("h3", {}, `${s.channel} state ${s.namespace} / ${s.key} (at height ${s.height})`), json(s.value));
    } catch (err) { this.failed(`state ${ns}/${key}`, err); }
  }
}
