// Simulated mode: the same replica core in the deterministic simulator (a session on the
// serving node, nodes/simsession.py), or the replay of a trace file. Play, pause, single step,
// speed; click a message in flight to drop it (sessions only), click controls to hurt a node.
import { el, getJSON, postJSON, postText } from "./api.js";
import { Topology } from "./topology.js";
import { Story } from "./story.js";

const MODES = ["silent", "equivocate", "double-vote", "replay", "forge"];
const QUIET = new Set(["send", "recv", "timer", "request", "pre-prepared", "prepared", "committed", "execute", "accepted"]);

export class SimView {
  constructor(cluster) {
    this.cluster = cluster;
    this.session = null; this.replay = null;
    this.clock = 0; this.serverNow = 0; this.playing = false; this.busy = false;
    this.flights = new Map(); this.dropped = new Set(); this.hosts = {};
    this.topology = new Topology(document.getElementById("sim-svg"),
      { onMessageClick: (id) => this.drop(id), onNodeClick: (id) => this.focusNode(id) });
    this.$ = (id) => document.getElementById(id);
    for (const s of cluster.scenarios) this.$("sim-scenario").append(el("option", { value: s }, s));
    this.$("sim-new").addEventListener("click", () => this.newRun());
    this.$("sim-play").addEventListener("click", () => this.setPlaying(!this.playing));
    this.$("sim-step").addEventListener("click", () => this.stepOnce());
    this.$("sim-speed").addEventListener("input", () => this.updateSpeed()); this.updateSpeed();
    this.$("sim-file").addEventListener("change", (ev) => this.upload(ev.target.files[0]));
    this.$("sim-run").addEventListener("change", () => this.loadRun(Number(this.$("sim-run").value)));
    if (cluster.trace_file) {
      this.$("sim-server-trace").hidden = false;
      this.$("sim-server-trace").addEventListener("click", () => this.serverTrace());
    }
    let last = performance.now();
    const frame = (now) => { this.tick(Math.min(100, now - last)); last = now; requestAnimationFrame(frame); };
    requestAnimationFrame(frame);
  }

  updateSpeed() {
    // 2 .. 630 simulated ms per real second, on a log scale: slow enough to follow one message
    this.speed = 2 * 10 ** (Number(this.$("sim-speed").value) / 40);
    this.$("sim-speed-label").textContent = `${this.speed < 20 ? this.speed.toFixed(1) : Math.round(this.speed)} sim-ms/s`;
  }

  say(text, cls = "") { const a = this.$("sim-answer"); a.textContent = text; a.className = `answer ${cls}`; }

  reset(names) {
    this.names = names;
    this.story = new Story(names.filter((n) => !n.includes("'")));
    this.story.verbose = true;
    this.flights.clear(); this.dropped.clear(); this.topology.keepOnly(new Set());
    this.topology.setNodes(names);
    this.$("sim-log").replaceChildren();
    this.$("sim-viewchange").replaceChildren(el("li", { class: "muted" }, "no view change yet"));
    delete this.$("sim-viewchange").dataset.count;
    this.$("sim-play").disabled = this.$("sim-step").disabled = false;
    this.setPlaying(false);
  }

  setPlaying(on) { this.playing = on; this.$("sim-play").textContent = on ? "Pause" : "Play"; }

  // -- a live session -----------------------------------------------------------------------
  async newRun() {
    try {
      const view = await postJSON("/v1/sim/sessions", { seed: Number(this.$("sim-seed").value), scenario: this.$("sim-scenario").value });
      this.session = view.id; this.replay = null; this.$("sim-run").hidden = true;
      this.reset(Object.keys(view.hosts));
      this.clock = 0; this.apply(view);
      this.say(`new run: seed ${view.seed}, ${view.label}. Play, or Step one event at a time.`, "done");
    } catch (err) { this.say(`could not start a run: ${err.message}`, "refused"); }
  }

  apply(view) {
    this.serverNow = view.now_ms;
    for (const e of view.events) this.event(e);
    this.flights = new Map(view.in_flight.map((f) => [f.id, { ...f, type: f.msg.type, sent: f.sent_ms, arrive: f.arrive_ms }]));
    this.hosts = view.hosts;
    this.topology.setCut(view.blocked || []);
    if (view.next_ms === null && this.playing) { this.setPlaying(false); this.say("the run is over: nothing left to happen", "done"); }
    this.renderHosts();
  }

  async advance(body) {
    if (this.busy) return null;
    this.busy = true;
    try {
      const view = await postJSON(`/v1/sim/sessions/${this.session}/step`, body);
      this.apply(view);
      return view;
    } catch (err) { this.setPlaying(false); this.say(`step failed: ${err.message}`, "refused"); return null; }
    finally { this.busy = false; }
  }

  async drop(id) {
    if (!this.session) { this.say("messages of a replay cannot be dropped: it already happened", "refused"); return; }
    const f = this.flights.get(id);
    try {
      await postJSON(`/v1/sim/sessions/${this.session}/drop`, { id });
      this.dropped.add(id);
      this.say(`dropped ${f ? `${f.type} ${f.src}→${f.dst}` : `message ${id}`}: it will never arrive`, "done");
    } catch (err) { this.say(`too late: ${err.detail || err.message}`, "refused"); }
  }

  async fault(node, action, mode) {
    if (!this.session) { this.say("start a run first (a replay cannot be changed)", "refused"); return; }
    try {
      this.apply(await postJSON(`/v1/sim/sessions/${this.session}/fault`, { node, action, mode }));
      this.say(`${node}: ${action}${mode ? ` (${mode})` : ""}`, "done");
    } catch (err) { this.say(`${node}: ${action} refused — ${err.message}`, "refused"); }
  }

  // -- replay of a recorded trace ---------------------------------------------------------------
  async upload(file) {
    if (!file) return;
    try { this.openReplay(await postText(`/v1/sim/replays?name=${encodeURIComponent(file.name)}`, await file.text())); }
    catch (err) { this.say(`cannot replay ${file.name}: ${err.message}`, "refused"); }
  }

  async serverTrace() {
    try { this.openReplay(await getJSON("/v1/sim/replays/file")); }
    catch (err) { this.say(err.message, "refused"); }
  }

  openReplay(summary) {
    const select = this.$("sim-run");
    select.replaceChildren(...summary.runs.map((r, i) => el("option", { value: i },
      `${r.schedule === null ? "run" : `schedule ${r.schedule}`} · ${r.lines} lines · ${r.ok === false ? "VIOLATION" : "ok"}`)));
    select.hidden = summary.runs.length < 2;
    this.replayId = summary.id;
    this.loadRun(0);
  }

  async loadRun(index) {
    const run = await getJSON(`/v1/sim/replays/${this.replayId}/runs/${index}`);
    const names = new Set();
    for (const l of run.lines) for (const k of ["node", "src", "dst"]) if (typeof l[k] === "string" && l[k].startsWith("node")) names.add(l[k]);
    this.session = null;
    this.replay = { lines: run.lines, next: 0 };
    this.reset([...names].sort());
    this.hosts = Object.fromEntries([...names].map((n) => [n, { alive: true, view: 0, primary: "node0", active: true, executed: 0, stable: 0, behaviour: null }]));
    this.clock = run.lines.length ? run.lines[0].t : 0;
    this.renderHosts();
    this.say(`replaying ${run.lines.length} trace lines${run.schedule !== null ? ` of schedule ${run.schedule}` : ""}`, "done");
  }

  replayUntil(t, { visible = false } = {}) {
    const r = this.replay;
    while (r.next < r.lines.length && (visible || r.lines[r.next].t <= t)) {
      const line = r.lines[r.next++];
      this.event(line);
      this.replayHost(line);
      if (visible && !QUIET.has(line.ev) || visible && line.ev === "send") { this.clock = line.t; break; }
    }
    for (const [id, f] of this.flights) if (f.arrive < this.clock - 1) this.flights.delete(id);
    if (r.next >= r.lines.length) this.setPlaying(false);
    this.renderHosts();
  }

  replayHost(e) {
    const h = this.hosts[e.node];
    if (e.ev === "send") this.flights.set(e.id ?? `s${e.t}${e.src}${e.dst}`, { src: e.src, dst: e.dst, type: e.msg.type, msg: e.msg, sent: e.t, arrive: e.arrive ?? e.t + 20 });
    if ((e.ev === "recv" || e.ev === "drop") && e.id !== undefined) this.flights.delete(e.id);
    if (!h) return;
    if (e.ev === "crash") h.alive = false;
    if (e.ev === "restart") h.alive = true;
    if (e.ev === "start") { h.view = e.view; h.active = e.active; }
    if (e.ev === "view-change") h.active = false;
    if (e.ev === "new-view") { h.view = e.view; h.primary = e.primary; h.active = true; }
    if (e.ev === "execute") h.executed = e.seq;
    if (e.ev === "checkpoint-stable") h.stable = e.seq;
    if (e.ev === "byzantine") h.behaviour = e.kind;
    if (e.ev === "partition") this.topology.setCut(this.cutOf(e.groups));
    if (e.ev === "heal") this.topology.setCut([]);
  }

  cutOf(groups) {
    const side = new Map(); groups.forEach((g, i) => g.forEach((n) => side.set(n, i)));
    const out = [];
    for (const a of this.names) for (const b of this.names) if (a < b && side.get(a) !== side.get(b)) out.push([a, b]);
    return out;
  }

  // -- the clock ---------------------------------------------------------------------------------
  async stepOnce() {
    this.setPlaying(false);
    if (this.replay) { this.replayUntil(Infinity, { visible: true }); return; }
    if (!this.session) return;
    const view = await this.advance({ events: 1 });
    if (view) this.clock = view.now_ms;
  }

  tick(dt) {
    if (this.playing && !this.busy) {
      this.clock += (dt * this.speed) / 1000;
      if (this.replay) this.replayUntil(this.clock);
      else if (this.session && Math.floor(this.clock) > this.serverNow) this.advance({ until_ms: Math.floor(this.clock) });
    }
    this.$("sim-clock").textContent = `t = ${Math.floor(this.clock)} ms`;
    const live = new Set();
    for (const [id, f] of this.flights) {
      if (this.clock < f.sent) continue;
      live.add(id);
      const span = Math.max(1, f.arrive - f.sent);
      const dropped = this.dropped.has(id);
      this.topology.placeMessage(id, { type: f.type, src: f.src, dst: f.dst,
        label: `${f.type} v${f.msg.view ?? "-"} #${f.msg.seq ?? ""} ${f.src}→${f.dst} (click to drop)` },
        dropped ? 0.5 : (this.clock - f.sent) / span, dropped);
    }
    this.topology.keepOnly(live);
  }

  // -- what the user sees ------------------------------------------------------------------------
  event(e) {
    const line = this.story.feed(e);
    if (line || (!QUIET.has(e.ev))) {
      const list = this.$("sim-log");
      list.prepend(el("li", { class: e.ev }, `${e.t} ms  ${line || `${e.ev} ${e.node || ""}`}`));
      while (list.children.length > 300) list.lastChild.remove();
    }
    const steps = this.$("sim-viewchange");
    if (this.story.stepCount && String(this.story.stepCount) !== steps.dataset.count) {
      steps.dataset.count = String(this.story.stepCount);
      steps.replaceChildren(...this.story.steps.map((s) => el("li", {}, s)));
      steps.scrollTop = steps.scrollHeight; // the latest step in view
    }
  }

  renderHosts() {
    const body = document.querySelector("#sim-nodes tbody");
    body.replaceChildren();
    let primary = null;
    for (const [pid, h] of Object.entries(this.hosts)) {
      const name = pid.replace("'", "");
      const isPrimary = h.alive && h.primary === name;
      if (isPrimary && h.active) primary = pid;
      const health = !h.alive ? "crashed" : h.behaviour ? `byzantine (${h.behaviour})` : !h.active ? "changing view" : "ok";
      body.append(el("tr", {}, el("td", {}, pid),
        el("td", { "data-testid": `sim-role-${pid}` }, isPrimary ? "primary" : "backup"),
        el("td", {}, h.view), el("td", { "data-testid": `sim-executed-${pid}` }, h.executed), el("td", {}, h.stable),
        el("td", { class: h.alive && !h.behaviour ? "health-ok" : "health-bad" }, health)));
      this.topology.updateNode(pid, {
        classes: [isPrimary ? "primary" : "", !h.alive ? "crashed" : "", h.behaviour ? "byzantine" : "", !h.active ? "changing" : ""].filter(Boolean),
        role: isPrimary ? "★ primary" : "backup", line1: `view ${h.view} · executed ${h.executed}`, line2: `stable ${h.stable}`,
      });
    }
    if (this.story) this.$("sim-narrative").textContent = this.story.narrative(this.story.changing === null ? primary : null);
    this.renderControls();
  }

  focusNode(id) { const row = document.querySelector(`#sim-controls [data-node="${id}"]`); if (row) row.scrollIntoView({ block: "nearest" }); }

  renderControls() {
    const box = this.$("sim-controls");
    if (!this.session) { box.replaceChildren(); return; }
    if (box.dataset.session === this.session) return;
    box.dataset.session = this.session;
    box.replaceChildren();
    for (const node of Object.keys(this.hosts)) {
      const mode = el("select", {}, ...MODES.map((m) => el("option", { value: m }, m)));
      const b = (action, m) => el("button", { "data-testid": `sim-${action}-${node}`, onclick: () => this.fault(node, action, m && m()) }, action);
      box.append(el("strong", { "data-node": node }, node), el("div", { class: "row" },
        b("crash"), b("restart"), b("isolate"), b("heal"), mode, b("byzantine", () => mode.value)));
    }
  }
}
