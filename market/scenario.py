"""The paper's simulated setting (Sec. IV.A): 15 EVs, 5 rooftop PV and 1 SMES on a
Chengdu-like district served by the IEEE 33-bus feeder, over 24 hourly rounds.

Every parameter is a field of :class:`ScenarioParams` with its unit in the name
and its source in docs/market.md ("Scenario parameters").  A day is a pure
function of ``(params, feeder, seed, day)``: its random draws come from
``numpy.random.default_rng([seed, day])``, so days are independent, reproducible
samples.

EV schedules are *exogenous*: each EV's state of charge follows its plan as if
every quotation were filled (a buyer left unserved charges from the grid, a
seller left unmatched keeps its plan by feeding the grid).  Market outcomes settle
money and statistics but do not feed back into later quotations, so runs with and
without the SMES see identical EV and PV quotations and differ only by the SMES.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from market.grid import Feeder
from market.model import Kind, MarketParams, Quotation, Side, round_half_up
from market.smes import SmesParams, SmesState, deliverable_wh

__all__ = [
    "DayScenario",
    "EvPlan",
    "HourInputs",
    "ScenarioParams",
    "build_day",
    "clear_sky_ghi_w_m2",
    "pv_output_wh",
    "smes_quotation",
    "street_map",
    "tou_period",
    "tou_price_milli_per_kwh",
]

_PPM = 1_000_000

# Time-of-use periods by hour (0..23) of a three-level tariff: "v"alley, "f"lat, "p"eak.
_TOU_PERIODS = "vvvvvvvfffpppppfffpppffv"


@dataclass(frozen=True, slots=True)
class ScenarioParams:
    """All scenario parameters, with units; sources in docs/market.md."""

    n_ev: int = 15
    n_pv: int = 5
    # Street map: feeder buses laid along a Manhattan street grid.
    bus_spacing_m: int = 500
    # EVs (eq. 2, 3).
    ev_battery_wh: int = 50_000
    ev_charger_w: int = 7_000
    ev_consumption_wh_per_km_min: int = 130
    ev_consumption_wh_per_km_max: int = 180
    ev_efficiency_ppm: int = 920_000
    ev_depreciation_milli_per_kwh: int = 175
    ev_reserve_soc_ppm: int = 200_000
    ev_topup_soc_ppm: int = 800_000
    ev_sell_margin_soc_ppm: int = 100_000
    ev_initial_soc_min_ppm: int = 300_000
    ev_initial_soc_max_ppm: int = 900_000
    ev_depart_hour_mean: float = 7.5
    ev_depart_hour_sd: float = 1.0
    ev_leave_work_hour_mean: float = 18.0
    ev_leave_work_hour_sd: float = 1.5
    ev_errand_km_mean: float = 10.0
    # Rooftop PV (eq. 4).
    pv_kwp_min: float = 5.0
    pv_kwp_max: float = 15.0
    pv_performance_ratio: float = 0.80
    pv_max_trades: int = 2
    latitude_deg: float = 30.67
    longitude_deg: float = 104.07
    utc_offset_hours: int = 8
    first_day_of_year: int = 172
    cloud_beta_a: float = 2.0
    cloud_beta_b: float = 1.0
    cloud_hourly_sd: float = 0.15
    # Tariffs (milli-currency per kWh; currency = CNY).
    tou_valley_milli_per_kwh: int = 350
    tou_flat_milli_per_kwh: int = 700
    tou_peak_milli_per_kwh: int = 1050
    feed_in_milli_per_kwh: int = 401
    pv_om_milli_per_kwh: int = 50
    # SMES (eq. 1).
    smes: SmesParams = field(default_factory=SmesParams)
    smes_max_trades: int = 3
    min_quotation_wh: int = 100


def tou_period(hour: int) -> str:
    """``"valley"``, ``"flat"`` or ``"peak"`` for hour 0..23."""
    return {"v": "valley", "f": "flat", "p": "peak"}[_TOU_PERIODS[hour]]


def tou_price_milli_per_kwh(params: ScenarioParams, hour: int) -> int:
    """The grid charging tariff p0 in ``hour``."""
    return {"valley": params.tou_valley_milli_per_kwh, "flat": params.tou_flat_milli_per_kwh,
            "peak": params.tou_peak_milli_per_kwh}[tou_period(hour)]


def market_params(params: ScenarioParams, hour: int) -> MarketParams:
    return MarketParams(grid_price_milli_per_kwh=tou_price_milli_per_kwh(params, hour),
                        feed_in_price_milli_per_kwh=params.feed_in_milli_per_kwh,
                        pv_om_milli_per_kwh=params.pv_om_milli_per_kwh,
                        smes_om_milli_per_kwh=params.smes.om_milli_per_kwh)


def street_map(feeder: Feeder, spacing_m: int = 500) -> dict[int, tuple[int, int]]:
    """Bus number -> (x, y) in metres on a Manhattan street grid.

    The feeder is drawn along streets: from each bus the child with the largest
    subtree continues straight on, every other child starts a lateral turning 90°,
    alternately left and right; consecutive buses are ``spacing_m`` apart.
    """
    n = feeder.n_bus
    children: list[list[int]] = [[] for _ in range(n)]
    for k in range(n):
        if k != feeder.slack_index:
            children[int(feeder.parent[k])].append(k)
    size = np.ones(n, dtype=int)
    order = sorted(range(n), key=lambda k: -len(feeder.path_buses(feeder.bus_numbers[k])))
    for k in order:                                 # deepest first: subtree sizes
        if k != feeder.slack_index:
            size[int(feeder.parent[k])] += size[k]
    pos = {feeder.slack_index: (0, 0)}
    heading = {feeder.slack_index: (1, 0)}
    turn = 1
    stack = [feeder.slack_index]
    while stack:
        u = stack.pop()
        kids = sorted(children[u], key=lambda k: (-size[k], feeder.bus_numbers[k]))
        for rank, k in enumerate(kids):
            dx, dy = heading[u]
            if rank > 0:                            # a lateral: turn left or right
                dx, dy = (-dy * turn, dx * turn)
                turn = -turn
            pos[k] = (pos[u][0] + dx * spacing_m, pos[u][1] + dy * spacing_m)
            heading[k] = (dx, dy)
            stack.append(k)
    return {feeder.bus_numbers[k]: xy for k, xy in pos.items()}


def clear_sky_ghi_w_m2(latitude_deg: float, longitude_deg: float, utc_offset_hours: int,
                       day_of_year: int, clock_hour: float) -> float:
    """Clear-sky global horizontal irradiance (Haurwitz model) at local clock time.

    Declination by Cooper (1969), equation of time by Spencer's approximation
    (Duffie & Beckman, Solar Engineering of Thermal Processes, ch. 1).
    """
    b = math.radians(360.0 * (day_of_year - 81) / 364.0)
    eot_min = 9.87 * math.sin(2 * b) - 7.53 * math.cos(b) - 1.5 * math.sin(b)
    solar_hour = clock_hour + (4.0 * (longitude_deg - 15.0 * utc_offset_hours) + eot_min) / 60.0
    decl = math.radians(23.45 * math.sin(math.radians(360.0 * (284 + day_of_year) / 365.0)))
    lat = math.radians(latitude_deg)
    omega = math.radians(15.0 * (solar_hour - 12.0))
    cos_z = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(omega)
    if cos_z <= 0.0:
        return 0.0
    return 1098.0 * cos_z * math.exp(-0.057 / cos_z)


def pv_output_wh(params: ScenarioParams, kwp: float, day_of_year: int, hour: int,
                 cloud_cover: float) -> int:
    """Energy of one PV array in ``hour``: kWp x GHI x PR x clear-sky index (floor, Wh).

    The clear-sky index for cloud cover c (oktas/8) is 1 - 0.75 c^3.4 (Kasten &
    Czeplak, Solar Energy 24, 1980); GHI is taken at mid-hour.
    """
    ghi = clear_sky_ghi_w_m2(params.latitude_deg, params.longitude_deg,
                             params.utc_offset_hours, day_of_year, hour + 0.5)
    k = 1.0 - 0.75 * cloud_cover ** 3.4
    return int(math.floor(kwp * ghi * params.pv_performance_ratio * k))


@dataclass(frozen=True, slots=True)
class EvPlan:
    """One EV's day: where it parks, when it drives, its consumption per km."""

    name: str
    home_bus: int
    home_distance_m: int      # to its charging point at home (D of eq. 2, 3)
    work_bus: int
    work_distance_m: int
    depart_hour: int          # drives to work during this hour
    leave_work_hour: int      # drives home (and runs errands) during this hour
    commute_km: float
    errand_km: float
    consumption_wh_per_km: int
    initial_soc_wh: int


@dataclass(frozen=True, slots=True)
class HourInputs:
    """One round's exogenous inputs (the SMES quotation is added by the experiment)."""

    hour: int
    params: MarketParams
    quotations: tuple[Quotation, ...]
    pv_offered_wh: int


@dataclass(frozen=True, slots=True)
class DayScenario:
    day: int
    day_of_year: int
    evs: tuple[EvPlan, ...]
    pv_buses: tuple[int, ...]
    pv_kwp: tuple[float, ...]
    cloud_cover: tuple[float, ...]       # per hour
    hours: tuple[HourInputs, ...]


def _nearest_bus(coords: dict[int, tuple[int, int]], x: int, y: int) -> tuple[int, int]:
    """(bus, Manhattan distance in m) of the nearest bus; ties to the lower number."""
    return min(((abs(bx - x) + abs(by - y), b) for b, (bx, by) in coords.items()))[::-1]


def _place(rng: np.random.Generator, coords, buses: list[int], spacing: int):
    bus = buses[int(rng.integers(len(buses)))]
    half = spacing // 2
    x = coords[bus][0] + int(rng.integers(-half, half + 1)) // 10 * 10
    y = coords[bus][1] + int(rng.integers(-half, half + 1)) // 10 * 10
    return (x, y), _nearest_bus(coords, x, y)


def build_day(params: ScenarioParams, feeder: Feeder, seed: int, day: int) -> DayScenario:
    """Draw day ``day`` of run ``seed``: EV plans, PV output and all EV/PV quotations."""
    rng = np.random.default_rng([seed, day])
    coords = {b: xy for b, xy in street_map(feeder, params.bus_spacing_m).items()
              if b != feeder.bus_numbers[feeder.slack_index]}
    trunk = set(feeder.path_buses(_deepest_bus(feeder)))
    commercial = sorted(trunk)                      # the main street: offices and shops
    residential = sorted(set(coords) - trunk)       # the laterals: housing
    evs = []
    for i in range(params.n_ev):
        home_xy, (home_bus, home_d) = _place(rng, coords, residential, params.bus_spacing_m)
        work_xy, (work_bus, work_d) = _place(rng, coords, commercial, params.bus_spacing_m)
        depart = int(np.clip(round(rng.normal(params.ev_depart_hour_mean, params.ev_depart_hour_sd)), 5, 10))
        leave = int(np.clip(round(rng.normal(params.ev_leave_work_hour_mean,
                                             params.ev_leave_work_hour_sd)), depart + 4, 22))
        commute_km = (abs(home_xy[0] - work_xy[0]) + abs(home_xy[1] - work_xy[1])) / 1000.0
        lam = int(rng.integers(params.ev_consumption_wh_per_km_min,
                               params.ev_consumption_wh_per_km_max + 1))
        soc_ppm = int(rng.integers(params.ev_initial_soc_min_ppm, params.ev_initial_soc_max_ppm + 1))
        evs.append(EvPlan(f"ev{i + 1:02d}", home_bus, home_d, work_bus, work_d, depart, leave,
                          commute_km, float(rng.exponential(params.ev_errand_km_mean)), lam,
                          params.ev_battery_wh * soc_ppm // _PPM))
    pv_buses = tuple(sorted(int(b) for b in rng.choice(sorted(coords), params.n_pv, replace=False)))
    pv_kwp = tuple(float(round(rng.uniform(params.pv_kwp_min, params.pv_kwp_max), 1))
                   for _ in range(params.n_pv))
    day_cloud = float(rng.beta(params.cloud_beta_a, params.cloud_beta_b))
    cloud = tuple(float(np.clip(day_cloud + rng.normal(0.0, params.cloud_hourly_sd), 0.0, 1.0))
                  for _ in range(24))
    doy = (params.first_day_of_year - 1 + day) % 365 + 1
    per_hour: list[list[Quotation]] = [[] for _ in range(24)]
    for ev in evs:
        for q in _ev_quotations(params, ev):
            per_hour[q.hour].append(q)
    offered = [0] * 24
    for h in range(24):
        for j, (bus, kwp) in enumerate(zip(pv_buses, pv_kwp)):
            e = pv_output_wh(params, kwp, doy, h, cloud[h])
            if e >= params.min_quotation_wh:
                offered[h] += e
                per_hour[h].append(Quotation(
                    prosumer=f"pv{j + 1}", kind=Kind.PV, side=Side.SELL, hour=h, energy_wh=e,
                    limit_price_milli_per_kwh=params.feed_in_milli_per_kwh, bus=bus,
                    max_trades=min(params.pv_max_trades, e)))
    hours = tuple(HourInputs(h, market_params(params, h),
                             tuple(sorted(per_hour[h], key=lambda q: q.prosumer)), offered[h])
                  for h in range(24))
    return DayScenario(day, doy, tuple(evs), pv_buses, pv_kwp, cloud, hours)


def _deepest_bus(feeder: Feeder) -> int:
    return max(feeder.bus_numbers, key=lambda b: (len(feeder.path_buses(b)), -b))


def _ev_quotations(params: ScenarioParams, ev: EvPlan) -> list[Quotation]:
    """Walk the EV's planned day hour by hour; quote when parked (docs/market.md)."""
    cap = params.ev_battery_wh
    eta = params.ev_efficiency_ppm
    trip_wh = {ev.depart_hour: ev.commute_km * ev.consumption_wh_per_km,
               ev.leave_work_hour: (ev.commute_km + ev.errand_km) * ev.consumption_wh_per_km}
    soc = float(ev.initial_soc_wh)
    # Energy-weighted mean tariff at which the stored energy was bought (p0 of eq. 3);
    # the day's starting charge was bought overnight at the valley tariff.
    paid_per_kwh = float(params.tou_valley_milli_per_kwh)
    sold_today = False
    out = []
    for h in range(24):
        if h in trip_wh:
            soc = max(0.0, soc - trip_wh[h])
            continue
        at_work = ev.depart_hour < h < ev.leave_work_hour
        bus, dist = (ev.work_bus, ev.work_distance_m) if at_work else (ev.home_bus, ev.home_distance_m)
        need = sum(w for t, w in trip_wh.items() if t > h) + cap * params.ev_reserve_soc_ppm / _PPM
        topup = cap * params.ev_topup_soc_ppm / _PPM
        margin = cap * params.ev_sell_margin_soc_ppm / _PPM
        next_trip = min((t for t in trip_wh if t > h), default=24)
        side, energy, limit, depreciation, charged_at = None, 0, 0, 0, 0
        if soc < need:                       # must charge now: pays up to the tariff
            side, limit = Side.BUY, tou_price_milli_per_kwh(params, h)
            energy = min(params.ev_charger_w, math.ceil((need - soc) * _PPM / eta))
        elif soc < topup and not (sold_today and tou_period(h) == "peak"):
            # May wait: pays up to the cheapest tariff it can still reach before its
            # next trip.  A V2G seller does not buy back in a peak period.
            side = Side.BUY
            limit = min(tou_price_milli_per_kwh(params, t) for t in range(h, next_trip))
            energy = min(params.ev_charger_w, math.ceil((topup - soc) * _PPM / eta))
        elif tou_period(h) == "peak" and soc > need + margin:
            side = Side.SELL
            energy = min(params.ev_charger_w, int((soc - need - margin) * eta / _PPM))
            # Least it accepts per kWh: what the energy cost, grossed up by 1/eta (eq. 3's
            # p0 Q / eta); travel and battery wear B_j enter the weight separately.
            charged_at = int(round(paid_per_kwh))
            limit = round_half_up(Fraction(charged_at * _PPM, eta))
            depreciation = round_half_up(Fraction(params.ev_depreciation_milli_per_kwh * energy, 1000))
        if side is None or energy < params.min_quotation_wh:
            continue
        if side is Side.BUY:
            gain = min(float(cap) - soc, energy * eta / _PPM)
            if soc + gain > 0:
                paid_per_kwh = (paid_per_kwh * soc + tou_price_milli_per_kwh(params, h) * gain) \
                    / (soc + gain)
            soc += gain
        else:
            soc -= energy * _PPM / eta
            sold_today = True
        out.append(Quotation(prosumer=ev.name, kind=Kind.EV, side=side, hour=h, energy_wh=energy,
                             limit_price_milli_per_kwh=limit, bus=bus, distance_m=dist,
                             consumption_wh_per_km=ev.consumption_wh_per_km,
                             depreciation_milli=depreciation, efficiency_ppm=eta,
                             charging_price_milli_per_kwh=charged_at))
    return out


def smes_quotation(params: ScenarioParams, state: SmesState, hour: int) -> Quotation | None:
    """The SMES offers back what it can deliver this hour (paper Sec. II.C).

    Limit price: the feed-in tariff grossed up by its discharge loss, plus k_sm
    (eq. 1): it never sells below what the stored energy is worth to the grid.
    """
    smes = params.smes
    energy = deliverable_wh(smes, state)
    if energy < params.min_quotation_wh:
        return None
    limit = round_half_up(Fraction(params.feed_in_milli_per_kwh * _PPM,
                                   smes.discharge_efficiency_ppm)) + smes.om_milli_per_kwh
    return Quotation(prosumer=smes.name, kind=Kind.SMES, side=Side.SELL, hour=hour,
                     energy_wh=energy, limit_price_milli_per_kwh=limit, bus=smes.bus,
                     max_trades=min(params.smes_max_trades, energy))
