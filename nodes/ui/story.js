// What is happening, in plain words: one channel's consensus, rebuilt from trace events.
// Events are normalised to the simulator's trace vocabulary (docs/consensus.md §12):
// {ev, node, view, seq, ...}. The live cluster's /v1/events traces map onto it one to one.

const KEEP_BATCHES = 64;

export class Story {
  constructor(names) {
    this.names = names;           // node names in genesis order: primary of view v is names[v % n]
    this.n = names.length;
    this.f = Math.floor((this.n - 1) / 3);
    this.batches = new Map();      // seq -> {view, pp, prepared, committed, executed: Set}
    this.views = new Map();        // node -> view it is in
    this.votes = new Map();        // view -> Set of nodes that sent VIEW-CHANGE for it
    this.steps = [];               // the latest view change, step by step
    this.changing = null;          // the view being changed to, until a quorum entered it
    this.lastSeq = 0;
    this.verbose = false;          // also narrate routine commits (simulated mode)
  }

  primaryOf(view) { return this.names[view % this.n]; }

  currentView() {
    const counts = new Map();
    for (const v of this.views.values()) counts.set(v, (counts.get(v) || 0) + 1);
    let best = 0, bestCount = -1;
    for (const [v, c] of counts) if (c > bestCount || (c === bestCount && v > best)) { best = v; bestCount = c; }
    return best;
  }

  batch(seq, view) {
    let b = this.batches.get(seq);
    if (!b) {
      b = { view, pp: new Set(), prepared: new Set(), committed: new Set(), executed: new Set() };
      this.batches.set(seq, b);
      if (this.batches.size > KEEP_BATCHES) this.batches.delete(Math.min(...this.batches.keys()));
    }
    if (view !== undefined) b.view = view;
    return b;
  }

  step(text) {
    this.stepCount = (this.stepCount || 0) + 1; // views redraw the list when this changes
    this.steps.push(text);
    if (this.steps.length > 40) this.steps.shift();
  }

  // Feed one event; returns a log line for it, or null for routine ones.
  feed(e) {
    const q = 2 * this.f + 1;
    switch (e.ev) {
      case "start":
        this.views.set(e.node, e.view);
        return `${e.node} (re)started in view ${e.view}, last committed ${e.last_committed}`;
      case "pre-prepared":
        this.views.set(e.node, e.view);
        this.batch(e.seq, e.view).pp.add(e.node);
        this.lastSeq = Math.max(this.lastSeq, e.seq);
        return null;
      case "prepared":
        this.batch(e.seq, e.view).prepared.add(e.node);
        return null;
      case "committed": {
        const b = this.batch(e.seq, e.view);
        b.committed.add(e.node);
        // routine in a live cluster (several a second), the point of a step-by-step run
        return this.verbose && b.committed.size === q ? `batch ${e.seq} committed by ${q} nodes (2f+1): it is final` : null;
      }
      case "execute":
        this.batch(e.seq, e.view).executed.add(e.node);
        return null;
      case "request-timeout": {
        const p = this.primaryOf(e.view);
        this.step(`${e.node} waited too long for a request to commit: it suspects ${p}, primary of view ${e.view}`);
        return `${e.node}: request timed out in view ${e.view} (suspects ${p})`;
      }
      case "view-change": {
        let voters = this.votes.get(e.view);
        if (!voters) { voters = new Set(); this.votes.set(e.view, voters); }
        voters.add(e.node);
        if (this.changing === null || e.view > this.changing) {
          this.changing = e.view;
          this.step(`— view change to view ${e.view} begins —`);
        }
        this.step(`${e.node} sent VIEW-CHANGE for view ${e.view} (${voters.size} of ${q} needed; ` +
          `${this.primaryOf(e.view)} will be the new primary)`);
        return `${e.node}: VIEW-CHANGE → view ${e.view}`;
      }
      case "new-view": {
        const before = this.views.get(e.node);
        this.views.set(e.node, e.view);
        if (e.node === e.primary) {
          const redo = e.max_seq > e.min_seq ? `it re-proposes sequence numbers ${e.min_seq + 1}..${e.max_seq}`
            : `nothing to re-propose above the stable checkpoint ${e.min_seq}`;
          this.step(`${e.primary}, primary of view ${e.view}, sent NEW-VIEW with ${q} VIEW-CHANGEs; ${redo}`);
        }
        this.step(`${e.node} entered view ${e.view}: ${e.primary} is the primary`);
        const entered = [...this.views.values()].filter((v) => v >= e.view).length;
        if (this.changing !== null && e.view >= this.changing && entered >= q) this.changing = null;
        return `${e.node}: entered view ${e.view} (was ${before ?? "?"}), primary ${e.primary}`;
      }
      case "checkpoint-stable":
        return `${e.node}: checkpoint at ${e.seq} stable (log below it discarded)`;
      case "state-transfer":
        this.step(`${e.node} is behind: it fetches the certified state at ${e.seq} from a peer`);
        return `${e.node}: state transfer to ${e.seq}`;
      case "state-transferred":
        this.step(`${e.node} installed the state at ${e.seq}: caught up`);
        return `${e.node}: caught up to ${e.seq} by state transfer`;
      case "crash": return `${e.node} crashed`;
      case "restart": return `${e.node} restarted${e.amnesia ? " with amnesia" : ""}`;
      case "partition": return `network partitioned: ${(e.groups || []).map((g) => g.join(",")).join(" | ")}`;
      case "heal": return "network healed";
      case "byzantine": return `${e.node} turns Byzantine: ${e.kind}`;
      case "drop": return e.reason === "user" ? `you dropped ${e.msg.type} ${e.src}→${e.dst}` :
        (e.reason === "partition" ? null : `lost ${e.msg.type} ${e.src}→${e.dst}`);
      case "fault": return `${e.node} refused input from ${e.peer}: ${e.kind} (${e.detail})`;
      case "verdict": {
        const bad = [...(e.safety || []), ...(e.validity || []), ...(e.liveness || [])];
        return bad.length ? `checker: ${bad.join("; ")}` : "checker: safe, valid and live";
      }
      default: return null;
    }
  }

  // The narrative line: who leads, and how far the latest batch has got.
  narrative(primaryHint) {
    const q = 2 * this.f + 1;
    if (this.changing !== null) {
      const voters = [...(this.votes.get(this.changing) || [])].sort();
      return `View change to view ${this.changing} in progress: ${voters.join(", ") || "nobody"} sent VIEW-CHANGE ` +
        `(${voters.length} of ${q} needed); ${this.primaryOf(this.changing)} must send NEW-VIEW.`;
    }
    const view = this.currentView();
    const primary = primaryHint || this.primaryOf(view); // the hint: what the nodes report for this view
    const b = this.batches.get(this.lastSeq);
    if (!b) return `${primary} is primary of view ${view}; waiting for requests.`;
    let text = `${primary} is primary of view ${view}; batch ${this.lastSeq} pre-prepared by ${b.pp.size} of ${this.n}, ` +
      `prepared by ${b.prepared.size} of ${this.n}`;
    if (b.committed.size >= q) text += `; committed (${b.committed.size} of ${this.n})`;
    else if (b.committed.size) text += `; committed by ${b.committed.size} so far`;
    return text + ".";
  }
}

// A live /v1/events trace event in the simulator's vocabulary.
export function fromLive(event) {
  if (event.kind === "send") return { ...event, ev: "send", src: event.node, dst: event.to };
  return { ...event, ev: event.kind };
}
