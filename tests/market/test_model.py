"""Model: quotation validation, the paper's benefit functions, the canonical market."""
from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from market import model
from market.matching import match, trades_from_matching
from market.model import (Kind, MarketParams, Quotation, Side, build_market,
                          charging_ev_benefit_milli, discharging_ev_benefit_milli, pair_terms,
                          pv_benefit_milli, round_half_up, smes_benefit_milli)
from tests.market.conftest import PARAMS, random_quotations

EV_BUYER = Quotation("ev01", Kind.EV, Side.BUY, 9, 10_000, 1_500, 5, distance_m=2_000,
                     consumption_wh_per_km=150)
EV_SELLER = Quotation("ev02", Kind.EV, Side.SELL, 9, 8_000, 0, 7, distance_m=1_000,
                      consumption_wh_per_km=180, depreciation_milli=300, efficiency_ppm=900_000,
                     charging_price_milli_per_kwh=600)


@pytest.mark.parametrize("value, expected", [
    (Fraction(1, 2), 1), (Fraction(-1, 2), 0), (Fraction(3, 2), 2), (Fraction(5, 2), 3),
    (Fraction(-3, 2), -1), (Fraction(7, 3), 2), (4, 4)])
def test_round_half_up_is_floor_of_value_plus_half(value, expected):
    assert round_half_up(value) == expected


@pytest.mark.parametrize("change", [
    {"energy_wh": 0}, {"bus": 0}, {"hour": 24}, {"efficiency_ppm": 0},
    {"efficiency_ppm": 1_000_001}, {"max_trades": 0}, {"distance_m": -1},
    {"energy_wh": 1.5}, {"kind": Kind.PV}, {"prosumer": ""}, {"limit_price_milli_per_kwh": -1},
    {"charging_price_milli_per_kwh": -5}, {"energy_wh": model.MAX_ENERGY_WH + 1},
    {"limit_price_milli_per_kwh": model.MAX_PRICE_MILLI_PER_KWH + 1}, {"distance_m": model.MAX_DISTANCE_M + 1},
    {"consumption_wh_per_km": model.MAX_CONSUMPTION_WH_PER_KM + 1},
    {"depreciation_milli": model.MAX_DEPRECIATION_MILLI + 1}, {"efficiency_ppm": model.MIN_EFFICIENCY_PPM - 1},
    {"max_trades": model.MAX_TRADES + 1}, {"charging_price_milli_per_kwh": model.MAX_PRICE_MILLI_PER_KWH + 1}])
def test_quotation_rejects_invalid_fields(change):
    with pytest.raises(ValueError):
        dataclasses.replace(EV_BUYER, **change)


def _extreme(draw_side, draw_kind, name, pick):
    """A quotation whose every quantity sits at an end of its range."""
    return Quotation(name, draw_kind, draw_side, 9, pick(1_000, model.MAX_ENERGY_WH),
                     pick(0, model.MAX_PRICE_MILLI_PER_KWH), 5, distance_m=pick(0, model.MAX_DISTANCE_M),
                     consumption_wh_per_km=pick(0, model.MAX_CONSUMPTION_WH_PER_KM),
                     depreciation_milli=pick(0, model.MAX_DEPRECIATION_MILLI),
                     efficiency_ppm=pick(model.MIN_EFFICIENCY_PPM, model.PPM), max_trades=pick(1, model.MAX_TRADES),
                     charging_price_milli_per_kwh=pick(0, model.MAX_PRICE_MILLI_PER_KWH))


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(1, 3), st.integers(1, 3))
def test_quotations_at_the_ends_of_their_ranges_keep_weights_where_the_matching_is_exact(rnd, nb, ns):
    """The ranges' reason: every weight below 2**40 milli, so the matching takes the market."""
    pick = lambda low, high: rnd.choice((low, high))       # noqa: E731
    buyers = [_extreme(Side.BUY, Kind.EV, f"b{k}", pick) for k in range(nb)]
    sellers = [_extreme(Side.SELL, rnd.choice((Kind.EV, Kind.PV, Kind.SMES)), f"s{k}", pick) for k in range(ns)]
    market = build_market(buyers + sellers, PARAMS)
    assert np.abs(market.weights_milli).max() < 2**40
    match(market.weights_milli, market.buyer_caps, market.seller_caps)


def test_market_params_reject_negative_tariff():
    with pytest.raises(ValueError):
        MarketParams(-1, 0, 0, 0)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31), st.integers(1_000, 2_000))
def test_pair_surplus_does_not_depend_on_the_p2p_price(seed, price):
    # Q = R_buyer(p) + R_seller(p): the transfer p * E cancels (docs/market.md)
    p0 = PARAMS.grid_price_milli_per_kwh
    terms = pair_terms(EV_BUYER, EV_SELLER, PARAMS)
    e = terms.energy_wh
    travel_b = Fraction(EV_BUYER.consumption_wh_per_km * EV_BUYER.distance_m, 1000)
    # buyer: saving against buying E at p0, eq. (2) with its travel energy at p0
    buyer = (Fraction(p0 * e, 1000) + charging_ev_benefit_milli(price, e, 0, 0)
             - Fraction(p0) * travel_b / 1000)
    seller = discharging_ev_benefit_milli(price, 600, e, EV_SELLER.efficiency_ppm,
                                          EV_SELLER.consumption_wh_per_km, EV_SELLER.distance_m,
                                          EV_SELLER.depreciation_milli)
    assert abs(buyer + seller - terms.weight_milli) <= Fraction(3, 2)  # three roundings


def test_charging_ev_benefit_is_eq_2():
    # -(p Q + p lambda D): 1.2/kWh * 10 kWh and 0.15 kWh/km * 2 km at 1.2/kWh
    assert charging_ev_benefit_milli(1_200, 10_000, 150, 2_000) == -(12_000 + 360)


def test_pv_relative_income_is_price_minus_feed_in():
    gain = pv_benefit_milli(900, 5_000, 100) - pv_benefit_milli(400, 5_000, 100)
    assert gain == Fraction(500 * 5_000, 1000)


def test_smes_benefit_charges_om_on_both_directions():
    assert smes_benefit_milli(1_000, 2_000, 50) == 2_000 - 100
    assert smes_benefit_milli(1_000, -2_000, 50) == -2_000 - 100


def test_ev_seller_charged_at_the_hours_tariff_cannot_undercut_the_grid():
    # p0 / eta > p0: without a cheaper declared charging price there is no edge
    tariff_charged = dataclasses.replace(EV_SELLER, charging_price_milli_per_kwh=0)
    assert build_market([EV_BUYER, tariff_charged], PARAMS).weights_milli[0, 0] < 0
    assert build_market([EV_BUYER, EV_SELLER], PARAMS).weights_milli[0, 0] > 0


def test_seller_limit_above_buyer_value_gives_no_edge():
    greedy = dataclasses.replace(EV_SELLER, limit_price_milli_per_kwh=5_000)
    market = build_market([EV_BUYER, greedy], PARAMS)
    assert market.weights_milli[0, 0] <= 0
    assert match(market.weights_milli, market.buyer_caps, market.seller_caps).pairs == ()


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31), st.randoms(use_true_random=False))
def test_build_market_is_independent_of_input_order(seed, rnd):
    quotes = random_quotations(seed, 4, 5, max_cap=3)
    shuffled = list(quotes)
    rnd.shuffle(shuffled)
    a, b = build_market(quotes, PARAMS), build_market(shuffled, PARAMS)
    assert a == b
    assert [q.prosumer for q in a.buyers] == sorted(q.prosumer for q in a.buyers)


def test_market_weights_are_read_only_int64():
    market = build_market(random_quotations(1, 3, 3), PARAMS)
    assert market.weights_milli.dtype == np.int64
    with pytest.raises(ValueError):
        market.weights_milli[0, 0] = 1


def test_duplicate_prosumer_is_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        build_market([EV_BUYER, EV_BUYER], PARAMS)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 7), st.integers(1, 7))
def test_no_prosumer_trades_more_energy_than_quoted(seed, nb, ns):
    market = build_market(random_quotations(seed, nb, ns, max_cap=3), PARAMS)
    trades = trades_from_matching(
        market, match(market.weights_milli, market.buyer_caps, market.seller_caps))
    quoted = {q.prosumer: q.energy_wh for q in market.buyers + market.sellers}
    traded: dict[str, int] = {}
    for t in trades:
        assert t.energy_wh > 0 and t.weight_milli > 0
        traded[t.buyer] = traded.get(t.buyer, 0) + t.energy_wh
        traded[t.seller] = traded.get(t.seller, 0) + t.energy_wh
    assert all(traded[name] <= quoted[name] for name in traded)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 9), st.integers(1, 9), st.integers(1, 3))
def test_vectorised_weights_equal_pair_terms_of_every_pair(seed, nb, ns, cap):
    from market.model import pair_terms
    market = build_market(random_quotations(seed, nb, ns, max_cap=cap), PARAMS)
    expected = [[pair_terms(b, s, PARAMS).weight_milli for s in market.sellers] for b in market.buyers]
    assert market.weights_milli.tolist() == expected
