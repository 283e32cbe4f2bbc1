"""Power flow on the IEEE 33-bus feeder (market/grid.py)."""

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from market.grid import (CONDUCTORS, DEFAULT_BUSES, FeederError, HOURLY_LOAD_SHAPE, PLANNING_LOADING_RATIO,
                         feeder_sections,
                         hourly_load_scale, load_feeder, replicate_feeder, solve_power_flow)

FEEDER = load_feeder()
BASE = solve_power_flow(FEEDER)


def test_base_case_reproduces_published_losses_and_minimum_voltage():
    data = json.loads(open("market/data/ieee33bw.json").read())["published_results"]
    assert BASE.loss_kw == pytest.approx(data["active_losses_kw"], abs=0.1)
    assert float(BASE.vm_pu.min()) == pytest.approx(data["min_voltage_pu"], abs=0.0005)
    assert FEEDER.bus_numbers[int(np.argmin(BASE.vm_pu))] == data["min_voltage_bus"]
    assert BASE.loss_kvar == pytest.approx(data["reactive_losses_kvar"], abs=0.1)


def test_zero_extra_injection_leaves_the_base_case_unchanged():
    zero = np.zeros(FEEDER.n_bus)
    pf = solve_power_flow(FEEDER, injection_p_kw=zero, injection_q_kvar=zero)
    np.testing.assert_array_equal(pf.vm_pu, BASE.vm_pu)
    np.testing.assert_array_equal(pf.branch_current_a, BASE.branch_current_a)
    assert pf.loss_kw == BASE.loss_kw


def test_substation_supplies_exactly_load_plus_losses():
    slack_p = sum(p for ln, p in zip(FEEDER.lines, BASE.branch_p_kw) if ln.from_bus == 1)
    assert slack_p == pytest.approx(FEEDER.load_p_kw.sum() + BASE.loss_kw, rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 1.3), st.floats(0.0, 1.3))
def test_losses_never_decrease_when_load_grows(a, b):
    low, high = sorted((a, b))
    assert (solve_power_flow(FEEDER, load_scale=high).loss_kw
            >= solve_power_flow(FEEDER, load_scale=low).loss_kw - 1e-9)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 33), st.floats(1.0, 500.0))
def test_injection_raises_voltage_increasingly_along_its_path(bus, p_kw):
    inj = np.zeros(FEEDER.n_bus)
    inj[FEEDER.bus_index(bus)] = p_kw
    pf = solve_power_flow(FEEDER, injection_p_kw=inj)
    rise = pf.vm_pu - BASE.vm_pu
    assert np.all(rise > -1e-12)                      # no bus drops when power is injected
    along = [rise[FEEDER.bus_index(b)] for b in FEEDER.path_buses(bus)]
    assert along[-1] > 0
    assert all(x <= y + 1e-12 for x, y in zip(along, along[1:]))
    # A withdrawal of the same power does the opposite.
    down = solve_power_flow(FEEDER, injection_p_kw=-inj).vm_pu - BASE.vm_pu
    assert down[FEEDER.bus_index(bus)] < 0


def test_ratings_follow_the_planning_rule_and_scale():
    for line, amps in zip(FEEDER.lines, BASE.branch_current_a):
        fitting = [c.ampacity_a for c in CONDUCTORS if c.ampacity_a >= amps / PLANNING_LOADING_RATIO]
        assert line.rating_a == min(fitting)
    tight = FEEDER.with_rating_scale(0.5)
    np.testing.assert_allclose(tight.rating_a, FEEDER.rating_a * 0.5)
    np.testing.assert_allclose(tight.with_rating_scale(2.0).rating_a, FEEDER.rating_a * 2.0)
    assert np.all(load_feeder(rating_scale=0.7).rating_a == FEEDER.rating_a * 0.7)


def test_hourly_shape_peaks_at_one_and_rejects_bad_hours():
    assert max(HOURLY_LOAD_SHAPE) == 1.0 and len(HOURLY_LOAD_SHAPE) == 24
    assert hourly_load_scale(11) == 1.0
    with pytest.raises(ValueError):
        hourly_load_scale(24)


def test_replicated_feeders_each_behave_like_the_original():
    big = replicate_feeder(FEEDER, 10)               # large enough for the sparse path matrix
    assert big.n_bus == 1 + 10 * 32
    pf = solve_power_flow(big)
    assert pf.loss_kw == pytest.approx(10 * BASE.loss_kw, rel=1e-9)
    assert float(pf.vm_pu.min()) == pytest.approx(float(BASE.vm_pu.min()), abs=1e-12)
    assert big.path_buses(18 + 64) == tuple(b + 64 for b in FEEDER.path_buses(18))


def test_a_meshed_network_is_refused(tmp_path):
    data = json.loads(open("market/data/ieee33bw.json").read())
    data["lines"][-1]["in_service"] = True          # close a tie switch: a loop
    path = tmp_path / "meshed.json"
    path.write_text(json.dumps(data))
    with pytest.raises(FeederError, match="radial"):
        load_feeder(path)


def test_unknown_bus_is_a_clear_error():
    with pytest.raises(KeyError, match="bus 99"):
        FEEDER.bus_index(99)


def test_sections_are_independent_feeders_that_reassemble_the_whole():
    big = replicate_feeder(FEEDER, 3).with_rating_scale(0.8)
    sections = feeder_sections(big)
    assert len(sections) == 3
    inj = np.zeros(big.n_bus)
    inj[big.bus_index(18 + 32)] = 150.0                 # in the second copy only
    whole = solve_power_flow(big, load_scale=0.9, injection_p_kw=inj)
    for sec in sections:
        part = solve_power_flow(sec.feeder, load_scale=0.9, injection_p_kw=inj[sec.bus_pos])
        np.testing.assert_allclose(part.vm_pu, whole.vm_pu[sec.bus_pos], atol=1e-12)
        np.testing.assert_allclose(part.branch_current_a, whole.branch_current_a[sec.branch_idx],
                                   rtol=1e-10)
        np.testing.assert_array_equal(sec.feeder.rating_a, big.rating_a[sec.branch_idx])
    (only,) = feeder_sections(FEEDER)                    # the 33-bus slack has one child
    assert only.feeder.bus_numbers == FEEDER.bus_numbers


def test_the_default_buses_are_the_shipped_feeders():
    assert DEFAULT_BUSES == load_feeder().bus_numbers and len(DEFAULT_BUSES) == 33
