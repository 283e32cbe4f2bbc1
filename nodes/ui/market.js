// The market view's frame. The market contracts (the market-on-chain issue) will write the
// day and its hours to state; this view reads whatever is there and draws it, and says so
// plainly when there is nothing yet. Where it looks (one place, to change with the contracts):
import { ApiError, el, getJSON } from "./api.js";

export const MARKET = {
  channel: "transaction", namespace: "market",
  dayKey: "day",                       // {hours: [h...], success_rate, success_rate_without_smes,
                                       //  renewable_rate, renewable_rate_without_smes} (per mille or %)
  hourKey: (h) => `hour/${h}`,         // {quotations: [{id, role, energy_wh, price_milli_per_kwh}],
                                       //  trades: [{buyer, seller, energy_wh, price_milli_per_kwh}],
                                       //  refused: [{buyer, seller, limit}], smes: {soc_wh, capacity_wh},
                                       //  nucleolus: {player: share_milli}}
};
const svg = (tag, attrs, ...kids) => el(tag, { svg: true, ...attrs }, ...kids);

async function read(key) {
  try { return (await getJSON(`/v1/channels/${MARKET.channel}/state/${MARKET.namespace}/${key}`)).value; }
  catch (err) { if (err instanceof ApiError && err.status === 404) return null; throw err; }
}

export class MarketView {
  constructor() {
    this.box = document.getElementById("market");
    this.hour = document.getElementById("mk-hour");
    document.getElementById("mk-refresh").addEventListener("click", () => this.refresh());
    this.hour.addEventListener("change", () => this.refresh());
  }

  async refresh() {
    let day, hour;
    try {
      day = await read(MARKET.dayKey);
      const hours = (day && day.hours) || [];
      if (this.hour.options.length !== hours.length) this.hour.replaceChildren(...hours.map((h) => el("option", { value: h }, `hour ${h}`)));
      hour = hours.length ? await read(MARKET.hourKey(this.hour.value || hours[0])) : null;
    } catch (err) {
      this.box.replaceChildren(el("p", { class: "bad" }, `cannot read market state: ${err.message}`));
      return;
    }
    if (!day && !hour) {
      this.box.replaceChildren(el("div", { class: "market-empty", "data-testid": "market-empty" },
        el("strong", {}, "No market data yet."), el("br"),
        `The market contracts have not written any state under “${MARKET.namespace}” on the ${MARKET.channel} channel of this cluster. ` +
        "Quotations, the matching graph, refused trades, the SMES state of charge, nucleolus prices and the day's rates appear here once they run."));
      return;
    }
    this.box.replaceChildren(el("div", { class: "market-grid" },
      this.section("Quotations", hour && this.table(hour.quotations, ["id", "role", "energy_wh", "price_milli_per_kwh"])),
      this.section("Matching (bipartite)", hour && this.bipartite(hour.trades || [], hour.refused || [])),
      this.section("Refused by the security check", hour && this.table(hour.refused, ["buyer", "seller", "limit"])),
      this.section("SMES state of charge", hour && hour.smes && el("p", {}, `${hour.smes.soc_wh} Wh of ${hour.smes.capacity_wh} Wh`)),
      this.section("Nucleolus prices", hour && hour.nucleolus && this.table(Object.entries(hour.nucleolus).map(([p, s]) => ({ player: p, share_milli: s })), ["player", "share_milli"])),
      this.section("The day, with and without the SMES", day && this.bars(day))));
  }

  section(title, body) { return el("section", {}, el("h3", {}, title), body || el("p", { class: "muted" }, "not recorded")); }

  table(rows, cols) {
    if (!rows || !rows.length) return null;
    return el("table", {}, el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", {}, c)))),
      el("tbody", {}, ...rows.map((r) => el("tr", {}, ...cols.map((c) => el("td", {}, r[c] ?? ""))))));
  }

  bipartite(trades, refused) {
    const buyers = [...new Set([...trades, ...refused].map((t) => t.buyer))].sort();
    const sellers = [...new Set([...trades, ...refused].map((t) => t.seller))].sort();
    const h = 30 + 24 * Math.max(buyers.length, sellers.length, 1);
    const y = (list, n) => 20 + 24 * list.indexOf(n);
    const edge = (t, cls) => svg("line", { x1: 90, y1: y(sellers, t.seller), x2: 250, y2: y(buyers, t.buyer), stroke: cls === "ok" ? "#059669" : "#dc2626", "stroke-dasharray": cls === "ok" ? null : "4 3" });
    return svg("svg", { viewBox: `0 0 340 ${h}`, width: "100%" }, ...trades.map((t) => edge(t, "ok")), ...refused.map((t) => edge(t, "refused")),
      ...sellers.map((s) => svg("text", { x: 85, y: y(sellers, s) + 4, "text-anchor": "end", "font-size": 11 }, s)),
      ...buyers.map((b) => svg("text", { x: 255, y: y(buyers, b) + 4, "font-size": 11 }, b)));
  }

  bars(day) {
    const pairs = [["success", day.success_rate_without_smes, day.success_rate], ["renewable", day.renewable_rate_without_smes, day.renewable_rate]];
    return svg("svg", { viewBox: "0 0 340 150", width: "100%" }, ...pairs.flatMap(([name, without, withSmes], i) => {
      const x = 40 + i * 150, bar = (v, dx, fill) => svg("rect", { x: x + dx, y: 120 - (v || 0), width: 40, height: v || 0, fill });
      return [bar(without, 0, "#9ca3af"), bar(withSmes, 50, "#059669"),
        svg("text", { x: x + 45, y: 138, "text-anchor": "middle", "font-size": 11 }, `${name}: ${without ?? "?"} → ${withSmes ?? "?"}`)];
    }));
  }
}
