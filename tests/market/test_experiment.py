"""The round pipeline and the paper experiment (market/experiment.py, report.py, cli.py)."""

import dataclasses
import json

import pytest

from market.cli import main
from market.experiment import (delivered_trades, mean_ci95, paired_effect, run_day,
                               run_experiment, run_round, stage_price)
from market.grid import load_feeder
from market.model import Kind
from market.report import write_csv, write_json, write_plots
from market.scenario import ScenarioParams, build_day
from market.smes import SmesState

FEEDER = load_feeder()
# A smaller population than the paper's keeps the nucleolus fast; the properties tested
# here do not depend on the population's size.
PARAMS = ScenarioParams(n_ev=6, n_pv=3)
SCENARIO = build_day(PARAMS, FEEDER, seed=3, day=0)


@pytest.fixture(scope="module")
def paired():
    memo = {}
    return (run_day(FEEDER, SCENARIO, PARAMS, with_smes=False, memo=memo),
            run_day(FEEDER, SCENARIO, PARAMS, with_smes=True, memo=memo))


def _smes_acted(r):
    return any(q.kind is Kind.SMES for q in r.quotations) or bool(r.smes and r.smes.legs)


def test_without_and_with_smes_differ_only_where_the_smes_acted(paired):
    without, with_ = paired
    assert any(_smes_acted(r) for r in with_.rounds)      # the comparison is not vacuous
    for a, b in zip(without.rounds, with_.rounds):
        assert tuple(q for q in b.quotations if q.kind is not Kind.SMES) == a.quotations
        if not any(q.kind is Kind.SMES for q in b.quotations):
            assert (a.matching, a.trades, a.security) == (b.matching, b.trades, b.security)
        if not _smes_acted(b):
            assert a.prices == b.prices and a.settlement == b.settlement
            assert a.stats.delivered_sides == b.stats.delivered_sides
            assert a.stats.pv_consumed_wh == b.stats.pv_consumed_wh


def test_money_is_conserved_and_every_delivered_trade_is_priced(paired):
    for day in paired:
        for r in day.rounds:
            assert sum(v for _k, v in r.settlement.balances_milli) == 0
            delivered = delivered_trades(r.security, r.smes)
            assert set(r.prices) == {(t.buyer, t.seller) for t in delivered}


def test_memoised_round_equals_the_stage_by_stage_round(paired):
    _, with_ = paired
    busy = max(with_.rounds, key=lambda r: len(r.trades))
    state = SmesState.empty(PARAMS.smes) if busy.hour == 0 else with_.rounds[busy.hour - 1].smes_state_after
    plain = run_round(FEEDER, SCENARIO.hours[busy.hour], PARAMS, state)
    assert (plain.prices, plain.settlement, plain.stats) == (busy.prices, busy.settlement, busy.stats)
    direct = stage_price(plain.market, plain.matching, delivered_trades(plain.security, plain.smes))
    assert direct == plain.prices


def test_skipping_pricing_changes_no_delivery_statistic(paired):
    _, with_ = paired
    unpriced = run_day(FEEDER, SCENARIO, PARAMS, with_smes=True, with_pricing=False)
    for a, b in zip(with_.rounds, unpriced.rounds):
        assert (a.security, a.smes) == (b.security, b.smes)
        assert dataclasses.replace(a.stats, mean_price_milli_per_kwh=0) == b.stats
        assert b.prices == {} and b.settlement.balances_milli == ()


def test_rates_are_fractions_of_what_was_matched_and_offered(paired):
    for day in paired:
        sr, rc = day.success_rate(), day.renewable_consumption_rate()
        assert sr is None or 0.0 <= sr <= 1.0
        assert rc is None or 0.0 <= rc <= 1.0
        for r in day.rounds:
            assert r.stats.delivered_sides <= 2 * r.stats.matched_trades
            assert r.stats.pv_consumed_wh <= r.stats.pv_offered_wh


def test_smes_effect_is_the_paired_daily_difference(paired):
    without, with_ = paired
    effect = paired_effect([without, without], [with_, with_], "success_rate")
    assert effect.mean == pytest.approx(with_.success_rate() - without.success_rate())
    assert effect.days == 2 and effect.ci_low == pytest.approx(effect.mean)   # no spread


def test_mean_ci95_is_the_student_t_interval():
    s = mean_ci95([0.5, 0.7, None, 0.6])
    assert s.mean == pytest.approx(0.6) and s.days == 3
    half = 4.302652730 * 0.1 / 3 ** 0.5                      # t(0.975, 2) * sd / sqrt(n)
    assert (s.ci_low, s.ci_high) == (pytest.approx(0.6 - half), pytest.approx(0.6 + half))
    assert mean_ci95([0.1, 0.9]).ci_low == 0.0                # clipped to the rate's range
    assert mean_ci95([0.4]).ci_low is None and mean_ci95([]).mean is None


def test_same_seed_gives_byte_identical_csv_and_json(tmp_path):
    outs = []
    for k in range(2):
        result = run_experiment(FEEDER, PARAMS, days=1, seed=5, rating_scales=(1.0,))
        out = tmp_path / str(k)
        out.mkdir()
        files = write_csv(result, out) + [write_json(result, PARAMS, out)]
        outs.append({f.name: f.read_bytes() for f in files})
    assert outs[0] == outs[1]
    pngs = write_plots(result, out)          # one scale: Fig. 4 and the hourly profiles
    assert [p.name for p in pngs] == ["fig4.png", "hourly.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
    summary = json.loads(outs[0]["summary.json"])
    assert {r["smes"] for r in summary["results"]} == {False, True}


def test_cli_paper_writes_files_and_reports_rates(tmp_path, capsys):
    assert main(["market", "paper", "--days", "1", "--seed", "2", "--no-smes", "--evs", "4",
                 "--pvs", "2", "--rating-scale", "1.0", "--out", str(tmp_path), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "paper: success 54.5 % -> 74.5 %" in out
    assert {p.name for p in tmp_path.iterdir()} == {"rounds.csv", "trades.csv", "summary.json"}
    header = (tmp_path / "trades.csv").read_text().splitlines()[0]
    assert header.startswith("rating_scale,smes,day,hour,buyer,seller")


def test_cli_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        main(["market", "paper", "--days", "x"])
    assert main(["market", "paper", "--days", "0", "--no-plots"]) == 2


def test_cli_refuses_an_unwritable_out_before_running_and_a_count_below_one(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["market", "paper", "--days", "1", "--out", str(tmp_path / "file" / "out")]) == 2
    assert "cannot write to --out" in capsys.readouterr().err
    assert main(["market", "scale", "--prosumers", "5", "0"]) == 2
    assert "--prosumers takes counts >= 1" in capsys.readouterr().err
