"""Files of an experiment: CSV of every round and trade, a JSON summary, PNG plots.

Output is a pure function of the :class:`~market.experiment.ExperimentResult`, so
the same seed gives byte-identical CSV and JSON (no timestamps, fixed column
order, sorted keys).  Plots need matplotlib (the ``plot`` extra); without it
:func:`write_plots` returns an empty list.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np

from market.experiment import (PAPER, DayResult, ExperimentResult, RoundResult, RoundStats,
                               paired_effect)
from market.scenario import ScenarioParams

__all__ = ["main_scale", "summary_dict", "trade_rows", "write_csv", "write_json", "write_plots"]

_STATS_FIELDS = [f.name for f in dataclasses.fields(RoundStats)]
ROUND_COLUMNS = ["rating_scale", "smes", "day", "hour", *_STATS_FIELDS, "delivered_sides",
                 "smes_revenue_milli"]
TRADE_COLUMNS = ["rating_scale", "smes", "day", "hour", "buyer", "seller", "buyer_bus",
                 "seller_bus", "energy_wh", "weight_milli", "outcome", "violation_kind",
                 "violation_element", "violation_limit", "violation_value", "violation_excess",
                 "violation_unit", "price_milli_per_kwh", "payment_milli"]


def main_scale(result: ExperimentResult) -> float:
    """The rating scale of the Fig. 4 comparison: 1.0 if run, else the first one."""
    return 1.0 if 1.0 in result.rating_scales else result.rating_scales[0]


def trade_rows(day: DayResult, r: RoundResult) -> list[list]:
    """One row per matched trade with its fate: direct, SMES legs, or failed (and why)."""
    legs: dict = {}
    for leg in (r.smes.legs if r.smes else ()):
        legs.setdefault((leg.trade.buyer, leg.trade.seller), []).append(leg.action)
    refused = {(x.trade.buyer, x.trade.seller): x.violation for x in r.security.refused}
    admitted = {(t.buyer, t.seller) for t in r.security.admitted}
    rows = []
    for t in sorted(r.trades, key=lambda t: (t.buyer, t.seller)):
        key = (t.buyer, t.seller)
        if key in admitted:
            outcome = "direct"
        elif key in legs:
            outcome = "smes_" + "+".join(legs[key])
        else:
            outcome = "failed"
        v = refused.get(key)
        p = r.prices.get(key)
        rows.append([day.rating_scale, int(day.with_smes), day.day, r.hour, t.buyer, t.seller,
                     t.buyer_bus, t.seller_bus, t.energy_wh, t.weight_milli, outcome,
                     *((v.kind, v.element, v.limit, v.value, v.excess, v.unit) if v else [""] * 6),
                     *((p.price_milli_per_kwh, p.payment_milli) if p else ["", ""])])
    return rows


def _csv_text(columns: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows(rows)
    return buf.getvalue()


def write_csv(result: ExperimentResult, out: Path) -> list[Path]:
    """``rounds.csv`` (one row per round) and ``trades.csv`` (one row per matched trade)."""
    rounds, trades = [], []
    for day in result.runs:
        for r in day.rounds:
            s = r.stats
            rounds.append([day.rating_scale, int(day.with_smes), day.day, r.hour,
                           *(getattr(s, f) for f in _STATS_FIELDS), s.delivered_sides,
                           r.settlement.smes_revenue_milli])
            trades.extend(trade_rows(day, r))
    paths = [out / "rounds.csv", out / "trades.csv"]
    paths[0].write_text(_csv_text(ROUND_COLUMNS, rounds))
    paths[1].write_text(_csv_text(TRADE_COLUMNS, trades))
    return paths


def _rate(s) -> dict:
    return {"mean": s.mean, "ci95_low": s.ci_low, "ci95_high": s.ci_high, "days": s.days}


def summary_dict(result: ExperimentResult, params: ScenarioParams) -> dict:
    return {
        "seed": result.seed,
        "days": result.days,
        "rating_scales": list(result.rating_scales),
        "main_rating_scale": main_scale(result),
        "scenario": dataclasses.asdict(params),
        "paper": {k: {"without_smes": a, "with_smes": b} for k, (a, b) in PAPER.items()},
        "results": [{"rating_scale": scale, "smes": mode, "success_rate": _rate(sr),
                     "renewable_consumption_rate": _rate(rc)}
                    for scale, mode, sr, rc in result.summary],
        "smes_effect": smes_effects(result),
        "definitions": {
            "success_rate": "delivered trade sides / (2 x matched trades), summed over a day; "
                            "a direct trade delivers both sides, each SMES leg one side",
            "renewable_consumption_rate": "PV energy delivered to buyers or absorbed by the "
                                          "SMES / PV energy offered, summed over a day",
            "ci": "Student-t 95 % interval of the mean of the daily rates",
            "smes_effect": "mean and Student-t 95 % interval of the per-day difference "
                           "(with - without SMES), days paired on identical quotations"},
    }


def smes_effects(result: ExperimentResult) -> list[dict]:
    """Per rating scale: paired per-day difference (with - without SMES) of both rates."""
    out = []
    for scale in result.rating_scales:
        runs = {m: [d for d in result.runs if d.rating_scale == scale and d.with_smes == m]
                for m in (False, True)}
        if runs[False] and runs[True]:
            out.append({"rating_scale": scale,
                        "success_rate": _rate(paired_effect(runs[False], runs[True], "success_rate")),
                        "renewable_consumption_rate": _rate(paired_effect(
                            runs[False], runs[True], "renewable_consumption_rate"))})
    return out


def write_json(result: ExperimentResult, params: ScenarioParams, out: Path) -> Path:
    path = out / "summary.json"
    path.write_text(json.dumps(summary_dict(result, params), indent=2, sort_keys=True) + "\n")
    return path


def write_plots(result: ExperimentResult, out: Path) -> list[Path]:
    """fig4.png, hourly.png and (with several rating scales) sweep.png."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    scale = main_scale(result)
    rows = {(s, m): (sr, rc) for s, m, sr, rc in result.summary}
    paths = []
    # Fig. 4 style: both rates without / with SMES, model (95 % CI) beside the paper.
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = ["success rate", "renewable consumption rate"]
    for k, key in enumerate(("success_rate", "renewable_consumption_rate")):
        for m, mode in enumerate((False, True)):
            if (scale, mode) not in rows or rows[(scale, mode)][k].mean is None:
                continue
            s = rows[(scale, mode)][k]
            x = k * 3 + m
            err = None if s.ci_low is None else [[s.mean - s.ci_low], [s.ci_high - s.mean]]
            ax.bar(x - 0.2, s.mean, 0.4, yerr=err, capsize=4,
                   color="tab:blue" if mode else "tab:gray",
                   label=("model, " + ("with" if mode else "without") + " SMES") if k == 0 else None)
            ax.bar(x + 0.2, PAPER[key][m], 0.4, color="none", hatch="//",
                   edgecolor="tab:blue" if mode else "tab:gray",
                   label=("paper, " + ("with" if mode else "without") + " SMES") if k == 0 else None)
    ax.set_xticks([0.5, 3.5], labels)
    ax.set_ylim(0, 1)
    ax.set_ylabel("rate")
    ax.set_title(f"SMES effect (rating scale {scale}, {result.days} days, 95 % CI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "fig4.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    paths.append(_hourly_plot(plt, result, scale, out))
    if len(result.rating_scales) > 1:
        paths.append(_sweep_plot(plt, result, rows, out))
    return paths


def _hourly_mean(result: ExperimentResult, scale: float, mode: bool, field: str) -> np.ndarray:
    days = [d for d in result.runs if d.rating_scale == scale and d.with_smes == mode]
    if not days:
        return np.zeros(24)
    return np.mean([[getattr(r.stats, field) for r in d.rounds] for d in days], axis=0)


def _hourly_price(result: ExperimentResult, scale: float, mode: bool) -> np.ndarray:
    """Mean delivered-trade price per hour over the days that had trades then; NaN if none."""
    days = [d for d in result.runs if d.rating_scale == scale and d.with_smes == mode]
    out = np.full(24, np.nan)
    for h in range(24):
        prices = [d.rounds[h].stats.mean_price_milli_per_kwh for d in days
                  if d.rounds[h].stats.mean_price_milli_per_kwh > 0]
        if prices:
            out[h] = float(np.mean(prices))
    return out


def _hourly_plot(plt, result: ExperimentResult, scale: float, out: Path) -> Path:
    hours = np.arange(24)
    mode = True if True in result.smes_modes else result.smes_modes[0]
    fig, axes = plt.subplots(4, 1, figsize=(8, 10), sharex=True)
    axes[0].plot(hours, _hourly_mean(result, scale, mode, "demand_wh") / 1000, label="demand (bids)")
    axes[0].plot(hours, _hourly_mean(result, scale, mode, "supply_wh") / 1000, label="supply (asks)")
    axes[0].plot(hours, _hourly_mean(result, scale, mode, "pv_offered_wh") / 1000, label="PV offered")
    axes[0].set_ylabel("kWh")
    for m in result.smes_modes:
        tag = "with" if m else "without"
        axes[1].plot(hours, _hourly_mean(result, scale, m, "matched_wh") / 1000, "--",
                     label=f"matched, {tag} SMES")
        axes[1].plot(hours, _hourly_mean(result, scale, m, "direct_wh") / 1000,
                     label=f"delivered directly, {tag} SMES")
    axes[1].set_ylabel("kWh")
    axes[2].plot(hours, _hourly_mean(result, scale, True, "smes_stored_wh") / 1000
                 if True in result.smes_modes else np.zeros(24), label="SMES stored (end of hour)")
    axes[2].set_ylabel("kWh")
    axes[3].step(hours, _hourly_mean(result, scale, mode, "grid_price_milli_per_kwh") / 1000,
                 where="post", label="grid tariff p0")
    axes[3].plot(hours, _hourly_price(result, scale, mode) / 1000, "o-",
                 label="mean P2P price (over days with trades that hour)")
    axes[3].set_ylabel("CNY/kWh")
    axes[3].set_xlabel("hour")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_title(f"Hourly profiles, mean over {result.days} days (rating scale {scale})")
    fig.tight_layout()
    path = out / "hourly.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _sweep_plot(plt, result: ExperimentResult, rows: dict, out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    scales = list(result.rating_scales)
    for k, title in enumerate(("success rate", "renewable consumption rate")):
        for mode in result.smes_modes:
            s = [rows[(x, mode)][k] for x in scales]
            mean = np.array([np.nan if v.mean is None else v.mean for v in s])
            lo = np.array([np.nan if v.ci_low is None else v.ci_low for v in s])
            hi = np.array([np.nan if v.ci_high is None else v.ci_high for v in s])
            axes[k].plot(scales, mean, "o-", label=("with" if mode else "without") + " SMES")
            axes[k].fill_between(scales, lo, hi, alpha=0.2)
        axes[k].set_xlabel("rating scale (line ratings x)")
        axes[k].set_title(title)
        axes[k].set_ylim(0, 1)
        axes[k].grid(alpha=0.3)
        axes[k].legend(fontsize=8)
    fig.tight_layout()
    path = out / "sweep.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
