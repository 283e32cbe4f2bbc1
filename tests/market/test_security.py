"""Grid security check (market/security.py)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from market.grid import load_feeder, solve_power_flow
from market.matching import Trade
from market.security import (HourState, SecurityLimits, _violation, hour_envelope, injection_kw,
                             security_check)

FEEDER = load_feeder()
TIGHT = FEEDER.with_rating_scale(0.5)      # lines 3-4.. at their limit at peak: congested
PEAK = HourState.for_hour(11)
NIGHT = HourState.for_hour(3)

trades_st = st.lists(
    st.builds(Trade, buyer=st.sampled_from([f"ev{i:02d}" for i in range(8)]),
              seller=st.sampled_from([f"pv{i}" for i in range(4)] + ["ev90", "ev91"]),
              buyer_bus=st.integers(2, 33), seller_bus=st.integers(2, 33),
              energy_wh=st.integers(1, 400_000), weight_milli=st.integers(-5, 5)),
    max_size=8)


def _violations_of(feeder, hour, trades, limits=SecurityLimits()):
    env = hour_envelope(feeder, hour, limits)
    pf = solve_power_flow(feeder, load_scale=hour.load_scale, injection_p_kw=injection_kw(feeder, trades))
    return (np.any(pf.branch_current_a > env.current_limit_a + 1e-6)
            or np.any(pf.vm_pu < env.vmin_pu - 1e-9) or np.any(pf.vm_pu > env.vmax_pu + 1e-9))


@settings(max_examples=40, deadline=None)
@given(trades_st, st.sampled_from([PEAK, NIGHT]), st.sampled_from([0.3, 0.5, 1.0]))
def test_no_admitted_set_ever_violates_a_limit(trades, hour, scale):
    feeder = FEEDER.with_rating_scale(scale)
    result = security_check(feeder, hour, trades)
    assert not _violations_of(feeder, hour, result.admitted)
    assert len(result.admitted) + len(result.refused) == len(trades)


@settings(max_examples=25, deadline=None)
@given(trades_st, st.randoms(use_true_random=False))
def test_order_of_input_trades_does_not_change_the_result(trades, rnd):
    shuffled = list(trades)
    rnd.shuffle(shuffled)
    assert security_check(TIGHT, PEAK, trades) == security_check(TIGHT, PEAK, shuffled)


@settings(max_examples=25, deadline=None)
@given(trades_st)
def test_refusal_reasons_name_a_real_limit(trades):
    result = security_check(TIGHT, NIGHT, trades)
    env = hour_envelope(TIGHT, NIGHT)
    lines = {f"line {ln.from_bus}-{ln.to_bus}": k for k, ln in enumerate(TIGHT.lines)}
    for refusal in result.refused:
        v = refusal.violation
        assert v.excess > 0 and isinstance(v.value, int) and isinstance(v.limit, int)
        if v.kind == "line_current":
            assert v.unit == "mA" and v.value > v.limit
            assert v.limit == round(env.current_limit_a[lines[v.element]] * 1000)
        else:
            bus = int(v.element.split()[1])
            k = TIGHT.bus_index(bus)
            bound = env.vmin_pu[k] if v.kind == "undervoltage" else env.vmax_pu[k]
            assert v.unit == "micro_pu" and v.limit == round(bound * 1e6)
            assert (v.value < v.limit) if v.kind == "undervoltage" else (v.value > v.limit)


@pytest.mark.parametrize("kind, limit, value, reported", [
    ("undervoltage", 950_000.3, 950_000.1, 949_999),      # 0.2 micro-pu below its limit
    ("overvoltage", 1_050_000.0, 1_050_000.4, 1_050_001),
    ("line_current", 200_000.4, 200_000.45, 200_001),     # 0.05 mA over: rounds onto the limit
    ("undervoltage", 950_000.0, 949_990.2, 949_990),      # a breach of whole units stays as it is
])
def test_a_breach_smaller_than_a_unit_is_reported_one_unit_past_its_limit(kind, limit, value, reported):
    v = _violation(kind, "x", limit, value, "unit")
    assert (v.limit, v.value, v.excess) == (round(limit), reported, abs(reported - round(limit)))
    assert (v.value < v.limit) if kind == "undervoltage" else (v.value > v.limit)


def test_trades_are_admitted_by_weight_until_a_line_binds():
    # Each 300 kW trade from bus 2 to bus 6 adds ~14 A on lines 2-3 .. 5-6; line 3-4
    # (2/0 ACSR, 270 A x 0.35) carries ~75 A at night: room for one trade only.
    trades = [Trade(f"b{i}", f"s{i}", 6, 2, 300_000, weight_milli=10 - i) for i in range(4)]
    wide = SecurityLimits(vmin_micro_pu=800_000)
    result = security_check(FEEDER.with_rating_scale(0.35), NIGHT, trades, limits=wide)
    assert [t.buyer for t in result.admitted] == ["b0"]
    assert [r.trade.buyer for r in result.refused] == ["b1", "b2", "b3"]
    assert {r.violation.element for r in result.refused} == {"line 3-4"}
    assert result.refused[0].violation.kind == "line_current"


def test_a_trade_toward_the_feeder_end_is_refused_when_it_deepens_an_existing_undervoltage():
    # At peak the far end is below 0.95 p.u. already; a buyer there worsens it.
    worse = Trade("ev01", "pv1", buyer_bus=18, seller_bus=2, energy_wh=5_000, weight_milli=1)
    better = Trade("ev02", "pv2", buyer_bus=2, seller_bus=18, energy_wh=5_000, weight_milli=1)
    result = security_check(FEEDER, PEAK, [worse, better])
    assert result.admitted == (better,)
    (refusal,) = result.refused
    assert refusal.violation.kind == "undervoltage" and refusal.violation.element == "bus 18"
    assert refusal.violation.limit == round(float(hour_envelope(FEEDER, PEAK).vmin_pu.min()) * 1e6)


def test_configurable_voltage_band():
    wide = SecurityLimits(vmin_micro_pu=900_000, vmax_micro_pu=1_100_000)
    trade = Trade("ev01", "pv1", buyer_bus=18, seller_bus=2, energy_wh=5_000, weight_milli=1)
    assert security_check(FEEDER, PEAK, [trade], limits=wide).admitted == (trade,)
    with pytest.raises(ValueError):
        SecurityLimits(vmin_micro_pu=1_000_000, vmax_micro_pu=950_000)


def test_hour_state_validates_and_follows_the_load_shape():
    assert HourState.for_hour(11).load_scale_ppm == 1_000_000
    with pytest.raises(ValueError):
        HourState(24, 1)


def test_a_feeder_copy_under_the_same_substation_does_not_change_the_check():
    # Sections under a fixed-voltage substation are independent: trades within copy 0 of
    # a three-feeder grid get the same verdicts as on the feeder alone.
    from market.grid import replicate_feeder
    trades = [Trade(f"ev{i:02d}", f"pv{i}", 18 - i, 25 + i, 40_000 * (i + 1), 10 - i)
              for i in range(6)]
    trades += [Trade(f"ev{i:02d}", f"pv{i}", 25 + i, 18 - i, 40_000 * (i + 1), 10 - i)
               for i in range(6, 9)]
    alone = security_check(TIGHT, NIGHT, trades)
    assert alone.admitted and alone.refused
    grid3 = security_check(replicate_feeder(FEEDER, 3).with_rating_scale(0.5), NIGHT, trades)
    assert alone == grid3
