"""SMES unit, energy ledger, eq. (1) revenue and dispatch (market/smes.py)."""

from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from market.grid import load_feeder
from market.matching import Trade
from market.security import HourState, hour_envelope, security_check
from market.smes import (SmesParams, SmesState, charge, deliverable_wh, discharge, dispatch_smes,
                         smes_revenue_milli, standby)

PARAMS = SmesParams()
FEEDER = load_feeder()

ops = st.lists(st.tuples(st.sampled_from(["charge", "discharge", "standby"]),
                         st.integers(1, 80_000)), max_size=40)


def _apply(params, state, op, e):
    if op == "charge":
        return charge(params, state, e) or state
    if op == "discharge":
        return discharge(params, state, e) or state
    return standby(params, state)[0]


@settings(max_examples=60, deadline=None)
@given(ops)
def test_state_of_charge_always_within_bounds(sequence):
    state = SmesState.empty(PARAMS)
    for op, e in sequence:
        state = _apply(PARAMS, state, op, e)
        assert PARAMS.floor_wh <= state.stored_wh <= PARAMS.ceiling_wh
        assert 0 <= state.throughput_wh <= PARAMS.power_rating_w


@settings(max_examples=60, deadline=None)
@given(ops, st.integers(500_000, 1_000_000), st.integers(500_000, 1_000_000))
def test_energy_balance_with_efficiencies_is_exact_in_wh(sequence, eta_c, eta_d):
    params = SmesParams(charge_efficiency_ppm=eta_c, discharge_efficiency_ppm=eta_d)
    state = SmesState.empty(params)
    grid_in = grid_out = conversion_loss = standby_loss = 0
    for op, e in sequence:
        before = state.stored_wh
        if op == "standby":
            state, loss = standby(params, state)
            standby_loss += loss
            assert before - state.stored_wh == loss
            continue
        step = charge if op == "charge" else discharge
        after = step(params, state, e)
        if after is None:
            continue
        if op == "charge":
            gain = after.stored_wh - before
            assert gain == e * eta_c // 1_000_000            # floor: never creates energy
            grid_in += e
            conversion_loss += e - gain
        else:
            draw = before - after.stored_wh
            assert draw * eta_d >= e * 1_000_000 > (draw - 1) * eta_d   # least draw that delivers e
            grid_out += e
            conversion_loss += draw - e
        state = after
    assert grid_in - grid_out == (state.stored_wh - SmesState.empty(params).stored_wh
                                  + conversion_loss + standby_loss)


def test_limits_refuse_charge_and_discharge():
    empty = SmesState.empty(PARAMS)
    assert discharge(PARAMS, empty, 1) is None                          # nothing above the floor
    assert charge(PARAMS, empty, PARAMS.power_rating_w + 1) is None     # power rating
    full = SmesState(PARAMS.ceiling_wh)
    assert charge(PARAMS, full, 1_000) is None                          # state-of-charge ceiling
    assert deliverable_wh(PARAMS, full) == PARAMS.power_rating_w
    assert deliverable_wh(PARAMS, empty) == 0


@given(st.integers(-100_000, 100_000), st.integers(0, 2_000), st.integers(0, 200))
def test_revenue_follows_eq_1(p_sm_wh, price, k_sm):
    exact = Fraction(price * p_sm_wh, 1000) - Fraction(k_sm * abs(p_sm_wh), 1000)
    r = smes_revenue_milli(p_sm_wh, price, k_sm)
    assert abs(r - exact) <= Fraction(1, 2)
    if p_sm_wh < 0:                      # charging costs the price plus O&M
        assert r <= 0


def test_capacity_is_also_stated_in_megajoules():
    assert PARAMS.capacity_mj == pytest.approx(PARAMS.capacity_wh / 1000 * 3.6)
    with pytest.raises(ValueError):
        SmesParams(soc_min_ppm=900_000, soc_max_ppm=100_000)


def _refused_at_peak():
    """A trade into the far end at peak load: refused for deepening the undervoltage."""
    hour = HourState.for_hour(11)
    trade = Trade("ev01", "pv1", buyer_bus=18, seller_bus=30, energy_wh=5_000, weight_milli=100)
    env = hour_envelope(FEEDER, hour)
    result = security_check(FEEDER, hour, [trade], envelope=env)
    assert result.refused and not result.admitted
    return hour, env, result


def test_smes_absorbs_a_refused_sellers_energy_when_its_own_flow_is_secure():
    hour, env, result = _refused_at_peak()
    state = SmesState.empty(PARAMS)
    d = dispatch_smes(FEEDER, hour, env, PARAMS, state, result.admitted, result.refused)
    # Seller at bus 30 -> SMES at bus 6 raises voltages beyond bus 6: secure.
    assert [(leg.action, leg.counterparty) for leg in d.legs] == [("absorb", "pv1")]
    # Serving the buyer as well would re-create the refused trade: not done.
    assert d.unhelped == ()
    assert d.state_after.stored_wh == state.stored_wh + 5_000 * PARAMS.charge_efficiency_ppm // 10**6 \
        - d.standby_loss_wh


def test_smes_never_rescues_its_own_trades():
    hour, env, result = _refused_at_peak()
    own = Trade("ev01", "smes", buyer_bus=18, seller_bus=6, energy_wh=5_000, weight_milli=1)
    refused = security_check(FEEDER, hour, [own], envelope=env).refused
    d = dispatch_smes(FEEDER, hour, env, PARAMS, SmesState(50_000), (), refused)
    assert d.legs == () and len(d.unhelped) == 1


def test_dispatch_respects_the_power_rating():
    hour = HourState.for_hour(11)
    env = hour_envelope(FEEDER, hour)
    trades = [Trade(f"ev{i:02d}", f"pv{i}", 18, 30, 20_000, 100 - i) for i in range(5)]
    result = security_check(FEEDER, hour, trades, envelope=env)
    d = dispatch_smes(FEEDER, hour, env, PARAMS, SmesState.empty(PARAMS), result.admitted,
                      result.refused)
    assert sum(leg.energy_wh for leg in d.legs) <= PARAMS.power_rating_w
