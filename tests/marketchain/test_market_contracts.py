"""The market's stage contracts on their channels, run by the runtime's executor in-process.

Permissions (every refusal with its reason, nothing written), quotation replacement and
freezing, the cross-channel reads at the anchored heights (and their refusals while an input
is not anchored yet), a short day equal to the pure experiment with money
conserved, and determinism across hash seeds and arrival orders.
"""

from __future__ import annotations

import os
import subprocess
import sys

import msgpack
from hypothesis import HealthCheck, given, settings, strategies as st

from market import model
from market.scenario import ScenarioParams
from nodes.marketcore import (compare_hour, expected_day, expected_hour, hour_view, metered_readings, quote_args,
                              scenario, smes_apply_args)
from p2pchain.encoding import decode

from .harness import ROOT, Chain, Market, run_job

PARAMS = ScenarioParams(n_ev=4, n_pv=2)
QUOTE = {"run": 0, "hour": 0, "side": "buy", "energy_wh": 3000, "limit_price_milli_per_kwh": 900, "bus": 12,
         "distance_m": 500, "consumption_wh_per_km": 150}
SELL = {"run": 0, "hour": 0, "side": "sell", "energy_wh": 4000, "limit_price_milli_per_kwh": 400, "bus": 18}


def opened(with_smes: bool = True) -> Market:
    market = Market()
    market.open(0, with_smes)
    return market


def refused(chain: Chain, caller: str, contract: str, function: str, args: dict) -> str:
    before = chain.dump(contract)
    result = chain.call(caller, contract, function, args)
    assert not result.ok and result.writes == () and result.events == ()
    assert chain.dump(contract) == before
    return result.reason


# --- quotation ---------------------------------------------------------------------------

def test_an_ev_cannot_quote_for_another_prosumer():
    reason = refused(opened().tx, "ev01", "quotation", "quote", dict(QUOTE, prosumer="ev02"))
    assert reason == "QuotationRefused: ev01 may not quote for ev02"


def test_an_ev_cannot_close_a_round_or_open_a_day():
    tx = opened().tx
    assert refused(tx, "ev01", "quotation", "close", {"run": 0, "hour": 0}) == \
        "QuotationRefused: ev01 may not close a round; only operator-mgo may"
    assert "ev01 may not open a market day" in refused(tx, "ev01", "quotation", "open_day", {"run": 1, "with_smes": False})


def test_operators_and_the_smes_cannot_quote():
    tx = opened().tx
    assert "operator-dno (kind operator) may not quote" in refused(tx, "operator-dno", "quotation", "quote", QUOTE)
    assert "smes (kind smes) may not quote" in refused(tx, "smes", "quotation", "quote", QUOTE)


def test_a_quotation_after_close_is_refused():
    tx = opened().tx
    assert tx.call("operator-mgo", "quotation", "close", {"run": 0, "hour": 0}).ok
    assert refused(tx, "ev01", "quotation", "quote", QUOTE) == "QuotationRefused: hour 0 of run 0 is closed"


def test_hours_close_once_and_in_order():
    tx = opened().tx
    assert "the next hour of run 0 is 0" in refused(tx, "operator-mgo", "quotation", "close", {"run": 0, "hour": 1})
    assert tx.call("operator-mgo", "quotation", "close", {"run": 0, "hour": 0}).ok
    assert "the next hour of run 0 is 1" in refused(tx, "operator-mgo", "quotation", "close", {"run": 0, "hour": 0})


def test_a_quotation_or_close_for_a_run_that_is_not_open_is_refused():
    market = opened()
    market.tx.value("operator-mgo", "quotation", "open_day", {"run": 1, "with_smes": False})
    # a stopped driver's transactions for run 0, committed after run 1 opened
    assert refused(market.tx, "ev01", "quotation", "quote", QUOTE) == \
        "QuotationRefused: run 0 is not the open one; run 1 is"
    assert refused(market.tx, "operator-mgo", "quotation", "close", {"run": 0, "hour": 0}) == \
        "QuotationRefused: run 0 is not the open one; run 1 is"
    assert market.tx.call("ev01", "quotation", "quote", dict(QUOTE, run=1)).ok
    assert market.tx.get("quotation", "quote/1/00/ev01")["energy_wh"] == QUOTE["energy_wh"]


def test_a_quotation_before_close_replaces_the_earlier_one():
    tx = opened().tx
    assert tx.call("ev01", "quotation", "quote", QUOTE).ok
    assert tx.call("ev01", "quotation", "quote", dict(QUOTE, energy_wh=1234)).ok
    assert tx.get("quotation", "quote/0/00/ev01")["energy_wh"] == 1234
    closed = tx.value("operator-mgo", "quotation", "close", {"run": 0, "hour": 0})
    assert [(q["prosumer"], q["energy_wh"]) for q in closed["quotations"]] == [("ev01", 1234)]


# --- the stages after the close ----------------------------------------------------------

def closed_hour(market: Market) -> tuple[dict, dict]:
    market.tx.block([("ev01", "quotation", "quote", QUOTE), ("pv1", "quotation", "quote", SELL)])
    closed = market.tx.value("operator-mgo", "quotation", "close", {"run": 0, "hour": 0})
    return closed, {"run": 0, "hour": 0}


def used_the_frozen_quotations(record: dict, closed: dict) -> bool:
    """The round's quotations (less the SMES's offer) are the frozen ones, field for field
    (the round's record also spells out the fields a quotation left at their defaults)."""
    used = [q for q in record["quotations"] if q["prosumer"] != "smes"]
    return [q["prosumer"] for q in used] == [q["prosumer"] for q in closed["quotations"]] and all(
        all(u[k] == v for k, v in frozen.items()) for u, frozen in zip(used, closed["quotations"]))


def test_only_the_operator_runs_a_round_and_each_hour_once():
    market = opened()
    closed, args = closed_hour(market)
    assert refused(market.matching, "ev01", "round", "close", args) == \
        "RoundRefused: ev01 may not close a round; only operator-mgo may"
    record = market.matching.value("operator-mgo", "round", "close", args)
    assert used_the_frozen_quotations(record, closed)
    assert record["smes_before"] == {k: market.smes[k] for k in ("stored_wh", "throughput_wh")}
    assert "cannot run; the next is 1" in refused(market.matching, "operator-mgo", "round", "close", args)


def test_a_round_refuses_until_the_close_is_anchored_and_says_the_height():
    market = opened()
    before_close = market.tx.height
    closed_hour(market)
    reason = refused_at(market.matching, "operator-mgo", "round", "close", {"run": 0, "hour": 0},
                        {"transaction": before_close, "electricity": market.electricity.height})
    assert reason == f"RoundRefused: close of hour 0 of run 0 not anchored yet: transaction anchored at height {before_close}"
    assert market.matching.call("operator-mgo", "round", "close", {"run": 0, "hour": 0}).ok


def test_a_round_refuses_until_the_smes_state_before_the_hour_is_anchored():
    market = opened()
    opened_at = market.electricity.height
    closed_hour(market)
    reason = refused_at(market.matching, "operator-mgo", "round", "close", {"run": 0, "hour": 0},
                        {"transaction": market.tx.height, "electricity": opened_at - 1})
    assert reason == ("RoundRefused: SMES state before hour 0 of run 0 not anchored yet: electricity anchored at "
                      f"height {opened_at - 1}")


def test_a_round_cannot_read_a_channel_its_block_does_not_anchor():
    market = opened()
    closed_hour(market)
    result = market.matching.call("operator-mgo", "round", "close", {"run": 0, "hour": 0}, {"electricity": 1})
    assert not result.ok and "'transaction' is not anchored in this block" in result.reason


def test_the_smes_refuses_actions_other_than_those_the_round_recorded():
    market = opened()
    _, args = closed_hour(market)
    record = market.matching.value("operator-mgo", "round", "close", args)
    expected = "SmesRefused: the SMES actions given are not those the round of hour 0 of run 0 recorded"
    forged = dict(smes_apply_args(record), before={"stored_wh": market.smes["stored_wh"] + 5000, "throughput_wh": 0})
    assert refused(market.electricity, "operator-dno", "smes", "apply", forged) == expected
    more = dict(smes_apply_args(record), sold_wh=record["smes_sold_wh"] + 1)
    assert refused(market.electricity, "operator-dno", "smes", "apply", more) == expected
    assert "operator-mgo may not record the SMES's actions" in refused(
        market.electricity, "operator-mgo", "smes", "apply", smes_apply_args(record))


def refused_at(chain: Chain, caller: str, contract: str, function: str, args: dict, anchors: dict) -> str:
    """As :func:`refused`, in a block anchoring ``anchors``."""
    before = chain.dump(contract)
    result = chain.call(caller, contract, function, args, anchors)
    assert not result.ok and result.writes == () and result.events == ()
    assert chain.dump(contract) == before
    return result.reason


def test_only_the_operator_prices_settles_and_tallies_each_hour_once():
    market = opened()
    _, args = closed_hour(market)
    market.matching.value("operator-mgo", "round", "close", args)
    record = market.matching.get("round", "round/0/00")
    market.electricity.value("operator-dno", "smes", "apply", smes_apply_args(record))
    out = {"run": 0, "hour": 0}
    assert refused(market.tx, "ev01", "pricing", "price", out) == \
        "PricingRefused: ev01 may not price a round; only operator-mgo may"
    priced = market.tx.value("operator-mgo", "pricing", "price", out)
    assert "already priced" in refused(market.tx, "operator-mgo", "pricing", "price", out)
    args = dict(out, priced=priced)
    assert "ev01 may not settle" in refused(market.tx, "ev01", "settlement", "settle", args)
    assert "operator-mgo may not record statistics; only operator-reg may" in refused(
        market.tx, "operator-mgo", "statistics", "record", args)
    assert market.tx.call("operator-mgo", "settlement", "settle", args).ok
    assert "already settled" in refused(market.tx, "operator-mgo", "settlement", "settle", args)


def test_pricing_settlement_and_statistics_refuse_until_the_round_is_anchored():
    market = opened(with_smes=False)
    _, args = closed_hour(market)
    before_round = market.matching.height
    market.matching.value("operator-mgo", "round", "close", args)
    old = {"matching": before_round, "electricity": market.electricity.height}
    expected = f"round of hour 0 of run 0 not anchored yet: matching anchored at height {before_round}"
    assert refused_at(market.tx, "operator-mgo", "pricing", "price", args, old) == "PricingRefused: " + expected
    priced = market.tx.value("operator-mgo", "pricing", "price", args)
    settle = dict(args, priced=priced)
    assert refused_at(market.tx, "operator-mgo", "settlement", "settle", settle, old) == "SettlementRefused: " + expected
    assert refused_at(market.tx, "operator-reg", "statistics", "record", settle, old) == "StatisticsRefused: " + expected


def test_settlement_waits_for_the_smes_to_record_the_hours_actions():
    market = opened()
    _, args = closed_hour(market)
    market.matching.value("operator-mgo", "round", "close", args)
    record = market.matching.get("round", "round/0/00")
    priced = market.tx.value("operator-mgo", "pricing", "price", args)
    settle = dict(args, priced=priced)
    reason = refused(market.tx, "operator-mgo", "settlement", "settle", settle)
    assert reason == ("SettlementRefused: SMES actions of hour 0 of run 0 not anchored yet: electricity anchored "
                      f"at height {market.electricity.height}")
    market.electricity.value("operator-dno", "smes", "apply", smes_apply_args(record))
    settled = market.tx.value("operator-mgo", "settlement", "settle", settle)
    assert sum(amount for _, amount in settled["settlement"]) == 0


def _priced_hour_8():
    """A run without the SMES closed and priced up to hour 8 (this small day's first hour that
    delivers a priced trade); the market and hour 8's price record, not yet settled."""
    market = Market()
    market.open(0, False)
    sc = scenario(PARAMS, 3)
    for h in range(9):
        market.tx.block([(q.prosumer, "quotation", "quote", quote_args(q, 0)) for q in sc.hours[h].quotations])
        if h < 8:
            market.close(0, h)
    market.tx.value("operator-mgo", "quotation", "close", {"run": 0, "hour": 8})
    market.matching.value("operator-mgo", "round", "close", {"run": 0, "hour": 8})
    return market, market.tx.value("operator-mgo", "pricing", "price", {"run": 0, "hour": 8})


def test_settlement_and_statistics_refuse_prices_that_leave_out_a_delivered_trade():
    market, priced = _priced_hour_8()
    assert priced["trades"], "the hour must deliver a trade for this test to mean anything"
    args = {"run": 0, "hour": 8, "priced": dict(priced, trades=priced["trades"][1:])}
    reason = "do not price exactly the round's delivered trades"
    assert reason in refused(market.tx, "operator-mgo", "settlement", "settle", args)
    assert reason in refused(market.tx, "operator-reg", "statistics", "record", args)


def test_settlement_and_statistics_refuse_prices_other_than_the_nucleolus_prices():
    """They may not read ``pricing``'s state on their own channel, so they recompute the
    record from the round's (read at the anchors): an operator cannot settle at other prices."""
    market, priced = _priced_hour_8()
    first = dict(priced["trades"][0])
    first["payment_milli"] += 1_000
    first["price_milli_per_kwh"] += 1
    args = {"run": 0, "hour": 8, "priced": dict(priced, trades=[first] + priced["trades"][1:])}
    reason = "the prices given are not the nucleolus prices of hour 8 of run 0"
    assert reason in refused(market.tx, "operator-mgo", "settlement", "settle", args)
    assert reason in refused(market.tx, "operator-reg", "statistics", "record", args)
    settled = market.tx.value("operator-mgo", "settlement", "settle", {"run": 0, "hour": 8, "priced": priced})
    assert sum(amount for _, amount in settled["settlement"]) == 0


def test_only_the_dno_writes_metering_once_per_hour():
    chain = Chain("electricity")
    args = {"run": 0, "hour": 3, "readings": [["ev01", 500], ["pv1", -500]]}
    assert refused(chain, "operator-mgo", "metering", "record", args) == \
        "MeteringRefused: operator-mgo may not write metering; only operator-dno may"
    assert chain.call("operator-dno", "metering", "record", args).ok
    assert "already metered" in refused(chain, "operator-dno", "metering", "record", args)


def test_a_short_day_equals_the_pure_experiment_and_conserves_money():
    sc = scenario(PARAMS, 3)
    hours = 17
    for with_smes in (True, False):
        market = opened(with_smes)
        expected = expected_day(PARAMS, sc, with_smes=with_smes, hours=hours)
        matched = priced = 0
        for h in range(hours):
            market.tx.block([(q.prosumer, "quotation", "quote", quote_args(q, 0)) for q in sc.hours[h].quotations])
            smes_before = market.smes
            out = market.close(0, h)
            # the round read exactly what the close froze and the SMES held (ctx.read at the anchors)
            assert used_the_frozen_quotations(out["round"], out["closed"])
            assert out["round"]["smes_before"] == (None if smes_before is None else
                                                   {k: smes_before[k] for k in ("stored_wh", "throughput_wh")})
            view = hour_view(out["round"], out["priced"], out["settled"], out["stats"])
            assert compare_hour(view, expected_hour(expected, h)) == []
            assert sum(wh for _, wh in metered_readings(view)) == 0 or with_smes
            matched += view["stats"]["matched_trades"]
            priced += len(view["trades"])
            assert sum(share for _, share in view["shares"]) == sum(t["weight_milli"] for t in view["trades"])
        assert matched > 0 and priced > 0      # the window includes trading hours, so the check has teeth
        balances = [decode(v) for k, v in market.tx.dump("settlement") if k.startswith("balance/")]
        assert balances and sum(balances) == 0
        day = market.tx.get("statistics", "run/0")
        success = expected.success_rate()
        assert day["success_rate_ppm"] == (None if success is None else round(success * 1_000_000))
        if with_smes:
            assert market.electricity.get("smes", "state/0")["stored_wh"] == expected.rounds[-1].smes_state_after.stored_wh


# --- any quotation the contract takes, every stage of the hour goes through ----------------

def _edge(low: int, high: int):
    """Integers in low..high, the ends and their neighbours (just outside) drawn often."""
    return st.sampled_from([low - 1, low, high, high + 1]) | st.integers(low - 1, high + 1)


anything = st.fixed_dictionaries(
    {"side": st.sampled_from(["buy", "sell"]), "energy_wh": _edge(1, model.MAX_ENERGY_WH),
     "limit_price_milli_per_kwh": _edge(0, model.MAX_PRICE_MILLI_PER_KWH), "bus": _edge(1, 33)},
    optional={"distance_m": _edge(0, model.MAX_DISTANCE_M),
              "consumption_wh_per_km": _edge(0, model.MAX_CONSUMPTION_WH_PER_KM),
              "depreciation_milli": _edge(0, model.MAX_DEPRECIATION_MILLI),
              "efficiency_ppm": _edge(model.MIN_EFFICIENCY_PPM, model.PPM),
              "max_trades": _edge(1, model.MAX_TRADES),
              "charging_price_milli_per_kwh": _edge(0, model.MAX_PRICE_MILLI_PER_KWH)})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(anything, min_size=1, max_size=3), st.booleans())
def test_no_quotation_the_contract_takes_can_stop_the_hours_round(quotes, with_smes):
    """Before, the contract took any non-negative integers, and one quotation the round
    refused to rebuild (an efficiency above 100 %, a bus off the feeder, an energy past
    int64) failed the hour's round for good, and with it every later hour of the run."""
    market = opened(with_smes)
    calls = [("ev01", "quotation", "quote", QUOTE), ("pv1", "quotation", "quote", SELL)]
    calls += [(f"ev{k + 2:02d}", "quotation", "quote", dict(q, run=0, hour=0)) for k, q in enumerate(quotes)]
    results = market.tx.block(calls).results
    for (_who, _c, _f, args), result in zip(calls, results):
        if not result.ok:
            assert result.reason.startswith("QuotationRefused: "), result.reason
            assert any(word in result.reason for word in ("must be", "exceeds", "not a bus")), result.reason
    stages = market.close(0, 0)          # every stage ok, or an AssertionError with its reason
    taken = {q["prosumer"] for q in stages["closed"]["quotations"]}
    assert taken == {who for (who, *_), result in zip(calls, results) if result.ok}


# --- determinism -------------------------------------------------------------------------

buses = st.integers(2, 33)
buy = st.fixed_dictionaries({"side": st.just("buy"), "energy_wh": st.integers(500, 9000),
                             "limit_price_milli_per_kwh": st.integers(600, 1500), "bus": buses,
                             "distance_m": st.integers(0, 3000), "consumption_wh_per_km": st.integers(130, 180)})
pv = st.fixed_dictionaries({"side": st.just("sell"), "energy_wh": st.integers(500, 9000),
                            "limit_price_milli_per_kwh": st.integers(300, 600), "bus": buses,
                            "max_trades": st.integers(1, 2)})
jobs = st.tuples(st.lists(buy, min_size=1, max_size=4), st.lists(pv, min_size=1, max_size=3),
                 st.integers(0, 23), st.booleans(), st.randoms(use_true_random=False))


def as_job(drawn) -> tuple[dict, dict]:
    buys, sells, hour, with_smes, rnd = drawn
    quotes = [(f"ev{i + 1:02d}", dict(q, hour=hour)) for i, q in enumerate(buys)]
    quotes += [(f"pv{i + 1}", dict(q, hour=hour)) for i, q in enumerate(sells)]
    shuffled = list(quotes)
    rnd.shuffle(shuffled)
    return ({"quotes": quotes, "hour": hour, "with_smes": with_smes},
            {"quotes": shuffled, "hour": hour, "with_smes": with_smes})


def in_subprocess(job: dict, seed: str) -> bytes:
    env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "tests.marketchain.harness"], input=msgpack.packb(job),
                          capture_output=True, env=env, check=True, cwd=ROOT)
    return done.stdout


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs)
def test_a_round_does_not_depend_on_the_order_quotations_arrived_in(drawn):
    ordered, shuffled = as_job(drawn)
    assert run_job(ordered) == run_job(shuffled)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs)
def test_a_round_is_byte_identical_across_hash_seeds_and_arrival_orders(drawn):
    ordered, shuffled = as_job(drawn)
    first = in_subprocess(ordered, "1")
    assert in_subprocess(shuffled, "4242") == first
    assert in_subprocess(ordered, "77") == first
