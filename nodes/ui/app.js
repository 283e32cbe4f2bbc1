// The dashboard's entry point: tabs, and the four views, fed by the node that served the page.
import { getJSON } from "./api.js";
import { LiveView } from "./live.js";
import { SimView } from "./sim.js";
import { Explorer } from "./explorer.js";
import { MarketView } from "./market.js";

function tabs(onShow) {
  const buttons = document.querySelectorAll("#tabs button");
  const show = (name) => {
    for (const b of buttons) b.setAttribute("aria-selected", String(b.dataset.tab === name));
    for (const s of document.querySelectorAll("section.tab")) s.hidden = s.id !== `tab-${name}`;
    onShow(name);
    history.replaceState(null, "", `${location.pathname}${location.search}#${name}`);
  };
  for (const b of buttons) b.addEventListener("click", () => show(b.dataset.tab));
  return show;
}

async function main() {
  const cluster = await getJSON("/v1/dashboard/cluster");
  document.getElementById("served-by").textContent = cluster.self;
  window.dashboard = {
    live: new LiveView(cluster), sim: new SimView(cluster), explorer: new Explorer(cluster), market: new MarketView(),
  };
  const show = tabs((name) => {
    if (name === "explorer") window.dashboard.explorer.refresh();
    if (name === "market") window.dashboard.market.refresh();
  });
  show(location.hash.slice(1) || "cluster");
  window.addEventListener("hashchange", () => show(location.hash.slice(1) || "cluster"));
}

main().catch((err) => {
  document.getElementById("live-narrative").textContent = `the dashboard could not start: ${err.message}`;
  console.error(err);
});
