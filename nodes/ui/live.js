// The live cluster: status of every node (polled through the serving node), the message flow
// and milestones of every node (/v1/events of each node, straight from the browser), the
// narrative line, the view change step by step, and the fault controls (admin token only).
import { ApiError, el, getJSON, postJSON, token } from "./api.js";
import { Topology } from "./topology.js";
import { Story, fromLive } from "./story.js";

const POLL_MS = 1000;
const MAX_WAVES = 9;          // three batches of three phases; beyond that we skip ahead
const LOG_LINES = 200;

export class LiveView {
  constructor(cluster) {
    this.cluster = cluster;
    this.names = cluster.nodes.map((n) => n.name);
    this.channel = "transaction";
    this.stories = Object.fromEntries(cluster.channels.map((c) => [c, new Story(this.names)]));
    this.status = {};
    this.admin = false;
    this.phaseMs = 700;
    this.waves = []; this.wave = null; this.skipped = 0; this.msgId = 0;
    this.topology = new Topology(document.getElementById("live-svg"));
    this.topology.setNodes(this.names);
    this.setupToolbar();
    this.renderControls();
    this.probeAdmin();
    this.pollLoop();
    for (const node of cluster.nodes) this.listen(node);
    requestAnimationFrame((t) => this.frame(t));
  }

  setupToolbar() {
    const select = document.getElementById("live-channel");
    for (const c of this.cluster.channels) select.append(el("option", { value: c }, c));
    select.addEventListener("change", () => { this.channel = select.value; this.waves = []; this.endWave(); this.render(); });
    const slow = document.getElementById("live-slow"), label = document.getElementById("live-slow-label");
    const update = () => { this.phaseMs = Number(slow.value); label.textContent = `${(this.phaseMs / 1000).toFixed(2)} s/phase`; };
    slow.addEventListener("input", update); update();
  }

  // The browser reaches each node's event stream directly (the API allows any origin for it).
  eventsUrl(node) {
    const url = new URL(node.url);
    if (["127.0.0.1", "0.0.0.0", "localhost"].includes(url.hostname)) url.hostname = location.hostname;
    return `${url.origin}/v1/events`;
  }

  listen(node) {
    const source = new EventSource(this.eventsUrl(node));
    const on = (type, fn) => source.addEventListener(type, (m) => fn(JSON.parse(m.data)));
    on("trace", (e) => this.onTrace(e));
    on("block", (e) => this.onEvent(e.channel, { ev: "execute", node: e.node, seq: e.height, view: e.view }));
    on("fault", (e) => this.log(`${e.channel}: ${e.node} refused input from ${e.peer}: ${e.kind} (${e.detail})`, "fault"));
    on("halted", (e) => this.log(`${e.channel} HALTED on ${e.node}: ${e.reason}`, "halted"));
    on("fault-injected", (e) => this.log(`${e.by} injected “${e.action}” on ${e.node}` +
      (e.byzantine ? ` (byzantine ${e.byzantine})` : "") + (e.slow_ms ? ` (slow ${e.slow_ms} ms)` : ""), "fault-injected"));
  }

  onTrace(e) {
    const event = fromLive(e);
    if (event.ev === "send") { if (e.channel === this.channel) this.enqueue(event); return; }
    this.onEvent(e.channel, event);
  }

  onEvent(channel, event) {
    const story = this.stories[channel];
    if (!story) return;
    const line = story.feed(event);
    if (line && channel === this.channel) this.log(`${channel}: ${line}`);
    if (channel === this.channel) this.renderStory();
  }

  // -- the message flow: waves of one message type for one batch, in slow motion --------------
  enqueue(e) {
    const m = e.msg, seq = m.seq ?? m.stable_seq ?? m.have_seq ?? "";
    const key = `${m.type}|${m.view ?? ""}|${seq}`;
    const targets = e.dst === "*" ? this.names.filter((n) => n !== e.src) : [e.dst];
    const items = targets.map((dst) => ({ id: `l${++this.msgId}`, src: e.src, dst, type: m.type,
      label: `${m.type} v${m.view ?? "-"} #${seq} ${e.src}→${dst}`, start: null }));
    const wave = (this.wave && this.wave.key === key) ? this.wave : this.waves.find((w) => w.key === key);
    if (wave) { for (const i of items) { i.start = wave === this.wave ? performance.now() : null; wave.items.push(i); } return; }
    this.waves.push({ key, seq, items });
    if (this.waves.length > MAX_WAVES) {
      const dropped = this.waves.splice(0, this.waves.length - 3);
      this.skipped += new Set(dropped.map((w) => w.seq)).size;
      document.getElementById("live-skip").textContent = `skipped ${this.skipped} batches to keep up (the cluster is faster than slow motion)`;
    }
  }

  endWave() {
    if (this.wave) for (const i of this.wave.items) this.topology.removeMessage(i.id);
    this.wave = null;
  }

  frame(now) {
    if (this.wave && this.wave.items.every((i) => now - i.start >= this.phaseMs)) this.endWave();
    if (!this.wave && this.waves.length) {
      this.wave = this.waves.shift();
      for (const i of this.wave.items) i.start = now;
    }
    if (this.wave) for (const i of this.wave.items) {
      const lost = this.linkCut(i.src, i.dst); // drawn grey, stopping half-way
      this.topology.placeMessage(i.id, i, Math.min(1, (now - i.start) / this.phaseMs) * (lost ? 0.5 : 1), lost);
    }
    requestAnimationFrame((t) => this.frame(t));
  }

  // -- status -----------------------------------------------------------------------------------
  // One poll at a time: a browser has six connections per node, and a slow cluster must not
  // pile status requests up in front of everything else the page asks for.
  async pollLoop() {
    await this.poll();
    setTimeout(() => this.pollLoop(), POLL_MS);
  }

  async poll() {
    try {
      this.status = (await getJSON("/v1/dashboard/status")).nodes;
      this.render();
    } catch (err) {
      document.getElementById("live-narrative").textContent = `cannot reach the node serving this page: ${err.message}`;
    }
  }

  health(s) {
    if (!s || s.unreachable) return ["unreachable", "bad", "unreachable"];
    if (s.crashed) return ["crashed", "bad", "crashed"];
    const ch = (s.channels || {})[this.channel];
    if (ch && ch.halted) return [`halted: ${ch.halted}`, "bad", "crashed"];
    if (s.faults.byzantine) return [`byzantine (${s.faults.byzantine})`, "bad", s.faults.byzantine === "silent" ? "silent" : "byzantine"];
    const isolated = s.faults.isolated;
    if (isolated.length >= this.names.length - 1) return ["isolated", "warn", "isolated"];
    if (isolated.length) return [`isolated from ${isolated.join(", ")}`, "warn", ""];
    if (s.faults.slow_ms) return [`slow (${s.faults.slow_ms} ms)`, "warn", ""];
    return ["ok", "ok", ""];
  }

  render() {
    const body = document.querySelector("#live-nodes tbody");
    body.replaceChildren();
    for (const node of this.cluster.nodes) {
      const s = this.status[node.name] || {};
      const ch = (s.channels || {})[this.channel];
      const [health, tone, cls] = this.health(s);
      const role = ch ? (ch.primary === node.name ? "primary" : "backup") : "—";
      const roles = Object.entries(s.channels || {}).map(([c, v]) => `${c}: ${v.primary === node.name ? "primary" : "backup"}`).join("\n");
      body.append(el("tr", { "data-node": node.name },
        el("td", {}, node.name), el("td", {}, node.org),
        el("td", { "data-testid": `role-${node.name}`, title: roles }, role),
        el("td", { "data-testid": `view-${node.name}` }, ch ? ch.view : "—"),
        el("td", { "data-testid": `height-${node.name}` }, ch ? ch.height : "—"),
        el("td", {}, ch ? ch.stable_checkpoint : "—"),
        el("td", { class: `health-${tone}`, "data-testid": `health-${node.name}` }, health)));
      const story = this.stories[this.channel];
      // views only move forward: a status a second old must not undo a NEW-VIEW just seen
      if (story && ch && ch.view > (story.views.get(node.name) ?? -1)) story.views.set(node.name, ch.view);
      this.topology.updateNode(node.name, {
        classes: [role === "primary" ? "primary" : "", cls].filter(Boolean),
        role: role === "primary" ? "★ primary" : role,
        line1: ch ? `view ${ch.view} · seq ${ch.height}` : health,
        line2: ch ? `stable ${ch.stable_checkpoint} · ${node.org}` : node.org,
      });
    }
    const cut = [];
    for (const name of this.names) {
      for (const other of this.names) if (other !== name && this.linkCut(name, other)) cut.push([name, other]);
    }
    this.topology.setCut(cut);
    this.renderStory();
  }

  // A node that neither sends nor hears anything: crashed or Byzantine-silent.
  cutOff(name) {
    const s = this.status[name];
    return Boolean(s && (s.crashed || (s.faults && s.faults.byzantine === "silent")));
  }

  // No frame passes between a and b: either is cut off, or one is isolated from the other.
  linkCut(a, b) {
    const from = (x, y) => Boolean(this.status[x] && this.status[x].faults && this.status[x].faults.isolated.includes(y));
    return this.cutOff(a) || this.cutOff(b) || from(a, b) || from(b, a);
  }

  primaryNow() {
    const views = Object.values(this.status).map((s) => (s.channels || {})[this.channel]).filter(Boolean);
    if (!views.length) return null;
    views.sort((a, b) => b.view - a.view);
    return views[Math.floor(views.length / 2)]; // the middle view: a lagging or a rushing node does not decide
  }

  renderStory() {
    const story = this.stories[this.channel];
    const now = this.primaryNow();
    document.getElementById("live-narrative").textContent =
      story.narrative(now && now.view === story.currentView() ? now.primary : null);
    const list = document.getElementById("live-viewchange");
    if (story.stepCount && String(story.stepCount) !== list.dataset.count) {
      list.dataset.count = String(story.stepCount);
      list.replaceChildren(...story.steps.map((s) => el("li", {}, s)));
      list.scrollTop = list.scrollHeight; // the latest step in view
    }
  }

  log(text, cls = "") {
    const list = document.getElementById("live-log");
    const first = list.firstElementChild;
    if (first && first.dataset.text === text) { // a flood of one refusal is one line with a count
      first.dataset.count = String(Number(first.dataset.count) + 1);
      first.textContent = `${new Date().toLocaleTimeString()} ${text} (×${first.dataset.count})`;
      return;
    }
    list.prepend(el("li", { class: cls, "data-text": text, "data-count": "1" }, `${new Date().toLocaleTimeString()} ${text}`));
    while (list.children.length > LOG_LINES) list.lastChild.remove();
  }

  // -- controls -------------------------------------------------------------------------------
  async probeAdmin() {
    const badge = document.getElementById("access");
    try {
      await postJSON(`/v1/dashboard/fault/${this.cluster.self}`, { action: "probe" }, { admin: true });
    } catch (err) {
      this.admin = err instanceof ApiError && err.code === "bad_parameter"; // the token passed; "probe" is no action
      badge.textContent = this.admin ? "admin: fault controls enabled" : `read-only: ${err.detail || err.message}`;
      badge.className = `badge ${this.admin ? "admin" : "readonly"}`;
      badge.title = this.admin ? "this page holds a valid admin token" : "open the address run_cluster.py prints (…/ui?token=…) to control faults";
    }
    this.renderControls();
  }

  renderControls() {
    const box = document.getElementById("live-controls");
    box.replaceChildren();
    const disabled = !this.admin;
    // a button sending `order()` to each of `nodes`; the answer says `label` done or refused
    const control = (testid, text, title, nodes, order, label) => el("button", { "data-testid": testid, disabled,
      title: disabled ? "read-only: this page has no admin token" : title,
      onclick: () => this.control(nodes, order(), label) }, text);
    for (const node of this.names) {
      const mode = el("select", { "data-testid": `mode-${node}`, disabled },
        ...this.cluster.byzantine_modes.map((m) => el("option", { value: m }, m)));
      const button = (action, extra = () => ({})) =>
        control(`${action}-${node}`, action, `${action} ${node}`, [node], () => ({ action, ...extra() }), `${node}: ${action}`);
      box.append(el("strong", {}, node), el("div", { class: "row" },
        button("crash"), button("restart"), button("isolate"), button("heal"),
        button("slow", () => ({ delay_ms: 300 })), mode, button("byzantine", () => ({ mode: mode.value }))));
    }
    // a partition: the first half of the nodes isolated from the second half (2|2 of four: no
    // side has a quorum, nothing commits, and no node starts a view change it could not finish)
    const half = Math.floor(this.names.length / 2);
    const [left, right] = [this.names.slice(0, half), this.names.slice(half)];
    const split = `split ${left.join(",")} | ${right.join(",")}`;
    box.append(el("strong", {}, "all"), el("div", { class: "row" },
      control("split", split, "isolate the two halves of the cluster from each other", left,
        () => ({ action: "isolate", from: right }), split),
      control("heal-all", "heal all", "heal every node", this.names, () => ({ action: "heal" }), "heal all")));
  }

  // Send `order` to each of `nodes` in turn (through the serving node); say how it went.
  async control(nodes, order, label) {
    const out = document.getElementById("live-control-answer");
    try {
      let answer = {};
      for (const node of nodes) answer = await postJSON(`/v1/dashboard/fault/${node}`, order, { admin: true });
      out.className = "answer done";
      out.textContent = `${label} done` + (nodes.length === 1 && answer.crashed ? " (crashed)" : "");
    } catch (err) {
      out.className = "answer refused";
      out.textContent = `${label} refused — ${err.message}`;
    }
  }
}

export function hasToken() { return Boolean(token); }
