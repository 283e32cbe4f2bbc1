// The stage: nodes on a circle, the links between them, and messages as dots that travel
// along the links. The caller decides where a message is (progress 0..1); the stage only draws.
import { el } from "./api.js";

const KNOWN = new Set(["pre-prepare", "prepare", "commit", "checkpoint", "view-change", "new-view"]);
const ABBREV = { "pre-prepare": "PP", prepare: "P", commit: "C", checkpoint: "CP", "view-change": "VC",
  "new-view": "NV", "fetch-request": "F", "fetch-reply": "F", reply: "R" };

export class Topology {
  constructor(svg, { onMessageClick = null, onNodeClick = null } = {}) {
    this.svg = svg;
    this.onMessageClick = onMessageClick;
    this.onNodeClick = onNodeClick;
    this.pos = new Map();
    this.nodes = new Map();
    this.linkLayer = el("g", { svg: true });
    this.nodeLayer = el("g", { svg: true });
    this.msgLayer = el("g", { svg: true });
    this.msgs = new Map(); // id -> {g, src, dst}
    svg.append(this.linkLayer, this.nodeLayer, this.msgLayer);
  }

  setNodes(ids) {
    const key = ids.join(",");
    if (key === this._key) return;
    this._key = key;
    this.linkLayer.replaceChildren(); this.nodeLayer.replaceChildren(); this.nodes.clear(); this.pos.clear();
    const cx = 300, cy = 220, r = ids.length > 4 ? 170 : 160;
    ids.forEach((id, i) => {
      const a = -Math.PI / 2 + (2 * Math.PI * i) / ids.length - (ids.length === 4 ? Math.PI / 4 : 0);
      this.pos.set(id, { x: cx + r * Math.cos(a), y: cy + r * Math.sin(a) });
    });
    this.links = new Map();
    for (let i = 0; i < ids.length; i++) for (let j = i + 1; j < ids.length; j++) {
      const a = this.pos.get(ids[i]), b = this.pos.get(ids[j]);
      const line = el("line", { svg: true, class: "link", x1: a.x, y1: a.y, x2: b.x, y2: b.y });
      this.links.set(`${ids[i]}|${ids[j]}`, line); this.links.set(`${ids[j]}|${ids[i]}`, line);
      this.linkLayer.append(line);
    }
    for (const id of ids) {
      const p = this.pos.get(id);
      const g = el("g", { svg: true, class: "node", transform: `translate(${p.x},${p.y})`, "data-node": id,
        onclick: () => this.onNodeClick && this.onNodeClick(id) });
      const name = el("text", { svg: true, class: "name", y: -14 }, id);
      const role = el("text", { svg: true, y: 4 });
      const l1 = el("text", { svg: true, class: "small", y: 20 });
      const l2 = el("text", { svg: true, class: "small", y: 34 });
      g.append(el("circle", { svg: true, r: 48 }), name, role, l1, l2);
      this.nodeLayer.append(g);
      this.nodes.set(id, { g, role, l1, l2 });
    }
  }

  // state: {classes: [...], role: "primary", line1, line2}
  updateNode(id, state) {
    const n = this.nodes.get(id);
    if (!n) return;
    n.g.setAttribute("class", ["node", ...(state.classes || [])].join(" "));
    n.role.textContent = state.role || "";
    n.l1.textContent = state.line1 || "";
    n.l2.textContent = state.line2 || "";
    n.g.dataset.role = state.role || "";
  }

  setCut(pairs) {
    const cut = new Set(pairs.map(([a, b]) => `${a}|${b}`));
    for (const [k, line] of this.links) line.setAttribute("class", cut.has(k) ? "link cut" : "link");
  }

  // Place message `id` (type, src, dst) at progress t in [0, 1]; created on first call.
  placeMessage(id, { type, src, dst, label }, t, dropped = false) {
    const a = this.pos.get(src), b = this.pos.get(dst);
    if (!a || !b) return;
    let m = this.msgs.get(id);
    if (!m) {
      const kind = KNOWN.has(type) ? type : "other";
      const g = el("g", { svg: true, class: "msg", "data-msg": id, "data-type": type,
        onclick: (ev) => { ev.stopPropagation(); this.onMessageClick && this.onMessageClick(id); } });
      g.append(el("title", { svg: true }, label || type), el("circle", { svg: true, r: 9, class: `t-${kind}` }),
        el("text", { svg: true, y: 3 }, ABBREV[type] || "·"));
      this.msgLayer.append(g);
      m = { g };
      this.msgs.set(id, m);
    }
    // stop short of the circles so a dot reads as "between" the nodes
    const u = 0.17 + 0.66 * Math.max(0, Math.min(1, t));
    m.g.setAttribute("transform", `translate(${a.x + (b.x - a.x) * u},${a.y + (b.y - a.y) * u})`);
    m.g.classList.toggle("dropped", dropped);
  }

  removeMessage(id) {
    const m = this.msgs.get(id);
    if (m) { m.g.remove(); this.msgs.delete(id); }
  }

  keepOnly(ids) {
    for (const id of [...this.msgs.keys()]) if (!ids.has(id)) this.removeMessage(id);
  }
}
