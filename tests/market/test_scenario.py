"""The paper's scenario (market/scenario.py)."""

import numpy as np

from market.grid import load_feeder
from market.model import Kind, Side
from market.scenario import (ScenarioParams, build_day, clear_sky_ghi_w_m2, pv_output_wh,
                             smes_quotation, street_map, tou_period, tou_price_milli_per_kwh)
from market.smes import SmesState, deliverable_wh

FEEDER = load_feeder()
PARAMS = ScenarioParams()
DAY = build_day(PARAMS, FEEDER, seed=7, day=0)


def test_population_is_the_papers_15_evs_5_pv_over_24_hours():
    assert len(DAY.evs) == 15 and len(DAY.pv_buses) == 5 and len(DAY.hours) == 24
    names = {q.prosumer for h in DAY.hours for q in h.quotations}
    assert names <= {f"ev{i:02d}" for i in range(1, 16)} | {f"pv{j}" for j in range(1, 6)}
    assert all(h.hour == k and all(q.hour == k for q in h.quotations) for k, h in enumerate(DAY.hours))


def test_same_seed_and_day_give_the_same_scenario_and_others_differ():
    assert build_day(PARAMS, FEEDER, seed=7, day=0) == DAY
    assert build_day(PARAMS, FEEDER, seed=7, day=1) != DAY
    assert build_day(PARAMS, FEEDER, seed=8, day=0) != DAY


def test_ev_quotations_respect_charger_tariff_and_trip_plan():
    by_name = {ev.name: ev for ev in DAY.evs}
    coords = street_map(FEEDER, PARAMS.bus_spacing_m)
    for h in DAY.hours:
        for q in h.quotations:
            if q.kind is not Kind.EV:
                continue
            ev = by_name[q.prosumer]
            assert q.energy_wh <= PARAMS.ev_charger_w
            assert h.hour not in (ev.depart_hour, ev.leave_work_hour)        # driving then
            at_work = ev.depart_hour < h.hour < ev.leave_work_hour
            assert (q.bus, q.distance_m) == ((ev.work_bus, ev.work_distance_m) if at_work
                                             else (ev.home_bus, ev.home_distance_m))
            assert q.bus in coords and q.distance_m <= PARAMS.bus_spacing_m
            if q.side is Side.BUY:
                assert q.limit_price_milli_per_kwh <= tou_price_milli_per_kwh(PARAMS, h.hour)
            else:
                assert tou_period(h.hour) == "peak" and q.depreciation_milli > 0
                # p0 of eq. (3): what its stored energy cost, between valley and peak tariffs
                assert (PARAMS.tou_valley_milli_per_kwh <= q.charging_price_milli_per_kwh
                        <= PARAMS.tou_peak_milli_per_kwh)
                assert q.limit_price_milli_per_kwh == round(
                    q.charging_price_milli_per_kwh * 1e6 / q.efficiency_ppm)


def test_pv_offers_follow_the_sun_and_are_counted():
    for h in DAY.hours:
        pv = [q for q in h.quotations if q.kind is Kind.PV]
        assert sum(q.energy_wh for q in pv) == h.pv_offered_wh
        assert all(q.side is Side.SELL and q.bus in DAY.pv_buses for q in pv)
    assert DAY.hours[0].pv_offered_wh == 0 and DAY.hours[23].pv_offered_wh == 0


def test_clear_sky_noon_is_after_13_00_clock_time_in_chengdu():
    # China Standard Time is set for 120 deg E; Chengdu lies at 104 deg E: solar noon ~13:05.
    ghi = [clear_sky_ghi_w_m2(30.67, 104.07, 8, 172, h + 0.5) for h in range(24)]
    assert int(np.argmax(ghi)) == 13
    assert ghi[12] > 900 > ghi[16] > 0 and ghi[3] == 0 == ghi[21]
    assert pv_output_wh(PARAMS, 10.0, 172, 13, 1.0) < pv_output_wh(PARAMS, 10.0, 172, 13, 0.0)


def test_tariff_is_valley_flat_peak():
    prices = {tou_period(h): tou_price_milli_per_kwh(PARAMS, h) for h in range(24)}
    assert prices["valley"] < prices["flat"] < prices["peak"]
    assert tou_period(3) == "valley" and tou_period(11) == "peak"


def test_street_map_places_neighbouring_buses_one_spacing_apart():
    coords = street_map(FEEDER, 500)
    assert len(set(coords.values())) == FEEDER.n_bus
    for line in FEEDER.lines:
        (x1, y1), (x2, y2) = coords[line.from_bus], coords[line.to_bus]
        assert abs(x1 - x2) + abs(y1 - y2) == 500


def test_smes_quotation_offers_what_it_can_deliver():
    assert smes_quotation(PARAMS, SmesState.empty(PARAMS.smes), 20) is None
    state = SmesState(60_000)
    q = smes_quotation(PARAMS, state, 20)
    assert q.kind is Kind.SMES and q.side is Side.SELL and q.bus == PARAMS.smes.bus
    assert q.energy_wh == deliverable_wh(PARAMS.smes, state)
    assert q.limit_price_milli_per_kwh > PARAMS.feed_in_milli_per_kwh
