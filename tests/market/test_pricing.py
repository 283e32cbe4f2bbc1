"""Prices: individually rational, money conserved exactly, deterministic."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from market.matching import Trade, match, trades_from_matching
from market.model import build_market, pair_terms, seller_cost_per_kwh, buyer_value_per_kwh
from market.nucleolus import market_nucleolus
from market.pricing import PricingError, price_trades, quantise_share, trade_shares
from tests.market.conftest import PARAMS, random_quotations


def _round(seed, nb, ns, cap):
    market = build_market(random_quotations(seed, nb, ns, max_cap=cap), PARAMS)
    matching = match(market.weights_milli, market.buyer_caps, market.seller_caps)
    return market, matching, trades_from_matching(market, matching)


def _index(market):
    return ({q.prosumer: q for q in market.buyers}, {q.prosumer: q for q in market.sellers})


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 5), st.integers(1, 5), st.sampled_from([1, 1, 2]))
def test_every_payment_is_individually_rational(seed, nb, ns, cap):
    market, matching, trades = _round(seed, nb, ns, cap)
    buyers, sellers = _index(market)
    for pt in price_trades(market, matching, trades):
        b, s = buyers[pt.trade.buyer], sellers[pt.trade.seller]
        terms = pair_terms(b, s, PARAMS)
        assert terms.seller_cost_milli <= pt.payment_milli
        assert pt.payment_milli <= terms.buyer_value_milli - terms.buyer_travel_milli
        # the unit price lies between the seller's and the buyer's reservation prices
        assert seller_cost_per_kwh(s, PARAMS) - 1 <= pt.price_milli_per_kwh
        assert pt.price_milli_per_kwh <= buyer_value_per_kwh(b, PARAMS) + 1


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 5), st.integers(1, 5), st.sampled_from([1, 2]))
def test_money_is_conserved_exactly_and_surplus_fully_divided(seed, nb, ns, cap):
    market, matching, trades = _round(seed, nb, ns, cap)
    buyers, sellers = _index(market)
    total_income = 0
    for pt in price_trades(market, matching, trades):
        assert isinstance(pt.payment_milli, int) and isinstance(pt.price_milli_per_kwh, int)
        terms = pair_terms(buyers[pt.trade.buyer], sellers[pt.trade.seller], PARAMS)
        buyer_income = terms.buyer_value_milli - terms.buyer_travel_milli - pt.payment_milli
        seller_income = pt.payment_milli - terms.seller_cost_milli
        total_income += buyer_income + seller_income
    assert total_income == matching.total_weight


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31), st.integers(2, 6), st.integers(2, 6), st.data())
def test_pricing_a_subset_keeps_each_trades_price(seed, nb, ns, data):
    market, matching, trades = _round(seed, nb, ns, 1)
    full = {pt.trade: pt for pt in price_trades(market, matching, trades)}
    keep = data.draw(st.lists(st.sampled_from(trades), unique=True)) if trades else []
    for pt in price_trades(market, matching, keep):
        assert full[pt.trade] == pt


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**31), st.randoms(use_true_random=False))
def test_prices_do_not_depend_on_quotation_order(seed, rnd):
    quotes = random_quotations(seed, 3, 4, max_cap=2)
    shuffled = list(quotes)
    rnd.shuffle(shuffled)
    out = []
    for qs in (quotes, shuffled):
        market = build_market(qs, PARAMS)
        matching = match(market.weights_milli, market.buyer_caps, market.seller_caps)
        out.append(price_trades(market, matching, trades_from_matching(market, matching)))
    assert out[0] == out[1]


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 4), st.integers(1, 4))
def test_capacitated_shares_split_over_trades_within_each_pair(seed, nb, ns):
    market, matching, _ = _round(seed, nb, ns, 3)
    w = market.weights_milli
    xb, xs = market_nucleolus(w, market.buyer_caps, market.seller_caps)
    shares = trade_shares(w, matching.pairs, xb, xs)
    for (i, j), a in shares.items():
        assert -1e-6 <= a <= w[i, j] + 1e-6
    for i in range(len(xb)):
        assert abs(sum(a for (b, _), a in shares.items() if b == i) - xb[i]) < 1e-5
    for j in range(len(xs)):
        got = sum(w[i, s] - a for (i, s), a in shares.items() if s == j)
        assert abs(got - xs[j]) < 1e-5


def test_single_pair_splits_surplus_in_half():
    # a two-player market: the nucleolus halves Q, so the payment sits mid-way
    from tests.market.test_model import EV_BUYER, EV_SELLER
    market = build_market([EV_BUYER, EV_SELLER], PARAMS)
    matching = match(market.weights_milli, market.buyer_caps, market.seller_caps)
    (pt,) = price_trades(market, matching, trades_from_matching(market, matching))
    terms = pair_terms(EV_BUYER, EV_SELLER, PARAMS)
    assert terms.weight_milli > 0
    # the buyer's share 1749.5 rounds half up, so the odd milli goes to the buyer
    assert pt.payment_milli - terms.seller_cost_milli == terms.weight_milli // 2


def test_quantise_share_rounds_half_up_and_clamps():
    assert quantise_share(2.5, 10) == 3
    assert quantise_share(2.4999999999, 10) == 3  # snapped to 1e-6 first
    assert quantise_share(-0.2, 10) == 0
    assert quantise_share(10.4, 10) == 10


def test_trade_outside_the_matching_is_rejected():
    market, matching, trades = _round(5, 3, 3, 1)
    stranger = Trade("nobody", market.sellers[0].prosumer, 2, 3, 1_000, 10)
    with pytest.raises(PricingError):
        price_trades(market, matching, [stranger])
