// The market view (issue 10, item 6): one hour of a market day as the stage contracts
// recorded it on the three channels (docs/market-on-chain.md), and the day's rates with and
// without the SMES. Where each part is read from (channel / namespace / key; run r, hour hh):
import { ApiError, el, getJSON } from "./api.js";

export const MARKET = {
  day: ["transaction", "statistics", () => "day"],                  // latest runs with / without the SMES
  closed: ["transaction", "quotation", (k) => `closed/${k}`],       // the frozen quotations
  round: ["matching", "round", (k) => `round/${k}`],                // matching, refusals, SMES legs
  smes: ["electricity", "smes", (k) => `hour/${k}`],                // SMES state of charge and actions
  prices: ["transaction", "pricing", (k) => `price/${k}`],          // nucleolus shares, prices
  settled: ["transaction", "settlement", (k) => `settled/${k}`],    // money moved
  stats: ["transaction", "statistics", (k) => `hour/${k}`],         // the hour's tallies and rates
};
const svg = (tag, attrs, ...kids) => el(tag, { svg: true, ...attrs }, ...kids);
const pct = (ppm) => (ppm === null || ppm === undefined ? null : ppm / 10000);
const fmtPct = (ppm) => (pct(ppm) === null ? "n/a" : `${pct(ppm).toFixed(1)} %`);
const perKwh = (milli) => `${(milli / 1000).toFixed(3)}`;

async function read([channel, namespace, key], k) {
  try { return (await getJSON(`/v1/channels/${channel}/state/${namespace}/${key(k)}`)).value; }
  catch (err) { if (err instanceof ApiError && err.status === 404) return null; throw err; }
}

export class MarketView {
  constructor() {
    this.box = document.getElementById("market");
    this.hour = document.getElementById("mk-hour");
    this.run = document.getElementById("mk-run");
    document.getElementById("mk-refresh").addEventListener("click", () => this.refresh());
    this.hour.addEventListener("change", () => this.refresh());
    this.run.addEventListener("change", () => { this.hour.replaceChildren(); this.refresh(); });
  }

  // The runs the statistics contract names: [{run, label, hours}], the SMES run first.
  runs(day) {
    if (!day) return [];
    return [["", "with the SMES"], ["_without_smes", "without the SMES"]]
      .filter(([suffix]) => day[`run${suffix}`] !== undefined)
      .map(([suffix, label]) => ({ run: day[`run${suffix}`], label, hours: day[`hours${suffix}`] || [] }));
  }

  async refresh() {
    let day, parts = {}, key;
    try {
      day = await read(MARKET.day);
      const runs = this.runs(day);
      if (this.run.options.length !== runs.length) this.run.replaceChildren(...runs.map((r) => el("option", { value: r.run }, `run ${r.run} (${r.label})`)));
      const chosen = runs.find((r) => String(r.run) === this.run.value) || runs[0];
      const hours = chosen ? chosen.hours : [];
      if (this.hour.options.length !== hours.length) this.hour.replaceChildren(...hours.map((h) => el("option", { value: h }, `hour ${h}`)));
      if (chosen && hours.length) {
        key = `${chosen.run}/${String(this.hour.value || hours[0]).padStart(2, "0")}`;
        const names = ["closed", "round", "smes", "prices", "settled", "stats"];
        const values = await Promise.all(names.map((n) => read(MARKET[n], key)));
        names.forEach((n, i) => { parts[n] = values[i]; });
      }
    } catch (err) {
      this.box.replaceChildren(el("p", { class: "bad" }, `cannot read market state: ${err.message}`));
      return;
    }
    if (!day) {
      this.box.replaceChildren(el("div", { class: "market-empty", "data-testid": "market-empty" },
        el("strong", {}, "No market data yet."), el("br"),
        "The market's stage contracts (quotation, round, smes, pricing, settlement, statistics) have not recorded any hour " +
        "on this cluster. Quotations, the matching graph, refused trades, the SMES state of charge, nucleolus prices and " +
        "the day's rates appear here once `python run_cluster.py` runs the market day."));
      return;
    }
    const { closed, round, smes, prices, stats } = parts;
    this.box.replaceChildren(el("div", { class: "market-grid", "data-testid": "market-hour", "data-key": key || "" },
      this.section("Quotations", "mk-quotations", round && this.table(round.quotations.map((q) => ({
        prosumer: q.prosumer, side: q.side, energy_wh: q.energy_wh, "limit /kWh": perKwh(q.limit_price_milli_per_kwh),
        bus: q.bus, frozen: closed && closed.quotations.some((c) => c.prosumer === q.prosumer) ? "✓" : "SMES offer" })),
      ["prosumer", "side", "energy_wh", "limit /kWh", "bus", "frozen"])),
      this.section("Matching (bipartite)", "mk-matching", round && this.bipartite(round)),
      this.section("Refused by the security check", "mk-refused", round && (round.refused.length
        ? this.table(round.refused.map((f) => ({ buyer: f.buyer, seller: f.seller, "limit hit": f.limit, value: `${f.value} ${f.unit}`, limit: `${f.limit_value} ${f.unit}` })),
          ["buyer", "seller", "limit hit", "value", "limit"])
        : el("p", { class: "muted" }, "no matched trade was refused this hour")), true),
      this.section("SMES state of charge", "mk-smes", round && (round.with_smes ? this.soc(smes, round) : el("p", { class: "muted" }, "this run has no SMES"))),
      this.section("Nucleolus shares and prices", "mk-prices", prices && this.pricing(prices), true),
      this.section("This hour", "mk-stats", stats && this.table([{ matched: stats.matched_trades, delivered_sides: stats.delivered_sides,
        success: fmtPct(stats.success_rate_ppm), renewable: fmtPct(stats.renewable_rate_ppm), "mean /kWh": stats.mean_price_milli_per_kwh ? perKwh(stats.mean_price_milli_per_kwh) : "—" }],
      ["matched", "delivered_sides", "success", "renewable", "mean /kWh"])),
      this.section("The day, with and without the SMES", "mk-day", this.bars(day))));
  }

  section(title, testid, body, wide = false) {
    return el("section", { "data-testid": testid, class: wide ? "wide" : null }, el("h3", {}, title),
      body || el("p", { class: "muted" }, "not recorded"));
  }

  table(rows, cols) {
    if (!rows || !rows.length) return el("p", { class: "muted" }, "none");
    return el("table", {}, el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", {}, c)))),
      el("tbody", {}, ...rows.map((r) => el("tr", {}, ...cols.map((c) => el("td", { "data-col": c }, r[c] ?? ""))))));
  }

  // Sellers left, buyers right; an edge per matched pair: admitted directly (solid green),
  // refused by the security check (dashed red), completed by the SMES (blue, to the SMES).
  bipartite(round) {
    const refused = new Set(round.refused.map((t) => `${t.buyer}|${t.seller}`));
    const direct = new Set(round.direct.map((t) => `${t.buyer}|${t.seller}`));
    const sellers = [...new Set(round.matched.map((t) => t.seller))].sort();
    const buyers = [...new Set(round.matched.map((t) => t.buyer))].sort();
    if (!round.matched.length) return el("p", { class: "muted" }, `no pair matched among ${round.quotations.length} quotations`);
    const h = 40 + 24 * Math.max(buyers.length, sellers.length, 1);
    const y = (list, n) => 28 + 24 * list.indexOf(n);
    const colour = (t) => (direct.has(`${t.buyer}|${t.seller}`) ? "#059669" : refused.has(`${t.buyer}|${t.seller}`) ? "#dc2626" : "#6b7280");
    const edges = round.matched.map((t) => svg("line", { class: "edge", x1: 90, y1: y(sellers, t.seller), x2: 250, y2: y(buyers, t.buyer),
      stroke: colour(t), "stroke-width": 2, "stroke-dasharray": direct.has(`${t.buyer}|${t.seller}`) ? null : "4 3" },
    svg("title", {}, `${t.seller} → ${t.buyer}: ${t.energy_wh} Wh, Q = ${t.weight_milli} milli`)));
    const legs = round.smes_legs.map((g) => {
      const yy = g.action === "absorb" ? y(sellers, g.counterparty) : y(buyers, g.counterparty);
      const x = g.action === "absorb" ? 90 : 250;
      return svg("line", { class: "smes-leg", x1: x, y1: yy, x2: 170, y2: h - 8, stroke: "#2563eb", "stroke-width": 1.5 },
        svg("title", {}, `SMES ${g.action}s ${g.energy_wh} Wh ${g.action === "absorb" ? "from" : "to"} ${g.counterparty}`));
    });
    return el("div", {}, svg("svg", { viewBox: `0 0 340 ${h}`, width: "100%" },
      svg("text", { x: 85, y: 12, "text-anchor": "end", "font-size": 10, fill: "#6b7280" }, "sellers"),
      svg("text", { x: 255, y: 12, "font-size": 10, fill: "#6b7280" }, "buyers"),
      ...edges, ...legs,
      ...(legs.length ? [svg("text", { x: 170, y: h - 1, "text-anchor": "middle", "font-size": 10, fill: "#2563eb" }, "SMES")] : []),
      ...sellers.map((s) => svg("text", { x: 85, y: y(sellers, s) + 4, "text-anchor": "end", "font-size": 11 }, s)),
      ...buyers.map((b) => svg("text", { x: 255, y: y(buyers, b) + 4, "font-size": 11 }, b))),
    el("p", { class: "muted" }, `${round.matched.length} matched: ${round.direct.length} admitted (green), ${round.refused.length} refused (red, dashed), ${round.smes_legs.length} SMES legs (blue)`));
  }

  soc(smes, round) {
    const after = smes ? smes.after.stored_wh : round.smes_after.stored_wh;
    const before = smes ? smes.before.stored_wh : round.smes_before.stored_wh;
    const capacity = smes ? smes.capacity_wh : round.smes_capacity_wh;
    const w = (v) => Math.max(0, Math.min(300, (300 * v) / capacity));
    return el("div", {},
      svg("svg", { viewBox: "0 0 320 40", width: "100%" },
        svg("rect", { x: 10, y: 10, width: 300, height: 18, fill: "none", stroke: "#9ca3af" }),
        svg("rect", { x: 10, y: 10, width: w(after), height: 18, fill: "#2563eb" }),
        svg("line", { x1: 10 + w(before), y1: 6, x2: 10 + w(before), y2: 32, stroke: "#111827", "stroke-dasharray": "2 2" })),
      el("p", { "data-testid": "mk-soc" }, `${after} Wh of ${capacity} Wh after the hour (${before} Wh before)`),
      this.table(round.smes_legs.map((g) => ({ action: g.action, counterparty: g.counterparty, energy_wh: g.energy_wh, "for trade": `${g.seller} → ${g.buyer}` })),
        ["action", "counterparty", "energy_wh", "for trade"]));
  }

  pricing(prices) {
    if (!prices.trades.length) return el("p", { class: "muted" }, "no trade delivered: nothing to price");
    return el("div", {},
      el("h4", {}, "per trade (milli-currency; shares of Q)"),
      this.table(prices.trades.map((t) => ({ trade: `${t.seller} → ${t.buyer}`, energy_wh: t.energy_wh, "price /kWh": perKwh(t.price_milli_per_kwh),
        payment_milli: t.payment_milli, "Q milli": t.weight_milli, buyer_share: t.buyer_share_milli, seller_share: t.seller_share_milli })),
      ["trade", "energy_wh", "price /kWh", "payment_milli", "Q milli", "buyer_share", "seller_share"]),
      el("h4", {}, "per player: nucleolus share (milli)"),
      this.table(prices.shares.map(([player, share]) => ({ player, share_milli: share })), ["player", "share_milli"]));
  }

  bars(day) {
    const pairs = [["success", day.success_rate_ppm_without_smes, day.success_rate_ppm],
      ["renewable consumption", day.renewable_rate_ppm_without_smes, day.renewable_rate_ppm]];
    return el("div", {}, svg("svg", { viewBox: "0 0 340 160", width: "100%", "data-testid": "mk-day-chart" }, ...pairs.flatMap(([name, without, withSmes], i) => {
      const x = 40 + i * 150, bar = (v, dx, fill, label) => svg("rect", { x: x + dx, y: 125 - (pct(v) || 0), width: 40, height: pct(v) || 0, fill }, svg("title", {}, `${name} ${label}: ${fmtPct(v)}`));
      return [bar(without, 0, "#9ca3af", "without the SMES"), bar(withSmes, 50, "#059669", "with the SMES"),
        svg("text", { x: x + 45, y: 140, "text-anchor": "middle", "font-size": 11 }, name),
        svg("text", { x: x + 45, y: 154, "text-anchor": "middle", "font-size": 11 }, `${fmtPct(without)} → ${fmtPct(withSmes)}`)];
    })), el("p", { class: "muted", "data-testid": "mk-day-rates" },
      `success ${fmtPct(day.success_rate_ppm_without_smes)} without → ${fmtPct(day.success_rate_ppm)} with the SMES; ` +
      `renewable consumption ${fmtPct(day.renewable_rate_ppm_without_smes)} → ${fmtPct(day.renewable_rate_ppm)} (grey: without, green: with)`));
  }
}
