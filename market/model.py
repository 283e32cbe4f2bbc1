"""Quotations, the paper's benefit functions and one hour's bipartite market.

The paper (Section III-A) gives the revenue of each prosumer kind: eq. (1) SMES,
eq. (2) charging EV, eq. (3) discharging EV, eq. (4) rooftop PV.  The matching
weight is ``Q[i, j] = R_i + R_j`` (Section III-B).  We read ``R`` as *relative*
income: a prosumer's gain over its alternative of trading with the grid.  Then the
transfer ``p_v2v * E`` appears with opposite signs in ``R_i`` and ``R_j`` and
cancels, so the pair's joint surplus does not depend on the P2P price: matching
runs before pricing and the nucleolus divides the surplus (docs/market.md).

All ledger-facing quantities are Python ints in fixed units: energy in Wh,
prices in milli-currency per kWh, money in milli-currency.  Every money amount
is computed exactly with integers and rounded *once* by :func:`round_half_up`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterable

import numpy as np

__all__ = [
    "Side", "Kind", "Quotation", "MarketParams", "Market", "PairTerms",
    "build_market", "pair_terms", "round_half_up", "lot_energy_wh",
    "smes_benefit_milli", "charging_ev_benefit_milli",
    "discharging_ev_benefit_milli", "pv_benefit_milli",
    "buyer_value_per_kwh", "seller_cost_per_kwh", "ev_charging_price",
]

WH_PER_KWH = 1000
PPM = 1_000_000

# The range a quotation's quantities may take: far beyond any EV, rooftop PV or SMES in a
# microgrid's hour, and small enough that every pair's weight stays well below the 2**40
# milli within which the matching's LP arithmetic is exact (market.matching). At the
# bounds a buyer's value is at most 1e6 milli/kWh x 1e4 kWh = 1e10 milli; a seller's cost
# at most ten times that (the least efficiency), plus an EV's travel at its charging price
# (1e10) and its depreciation (1e9); the buyer's travel at the tariff is less: |weight|
# <= ~1.3e11 milli, against 2**40 ~ 1.1e12.
MAX_ENERGY_WH = 10_000_000                  # 10 MWh in one hour
MAX_PRICE_MILLI_PER_KWH = 1_000_000         # 1,000 currency units per kWh
MAX_DISTANCE_M = 1_000_000                  # 1,000 km
MAX_CONSUMPTION_WH_PER_KM = 10_000
MAX_DEPRECIATION_MILLI = 1_000_000_000
MIN_EFFICIENCY_PPM = 100_000
MAX_TRADES = 64


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


class Kind(enum.Enum):
    EV = "ev"
    PV = "pv"
    SMES = "smes"


def round_half_up(value: Fraction | int) -> int:
    """The one rounding rule of the market: to the nearest integer, halves up.

    ``floor(x + 1/2)`` on an exact rational, so it never depends on float
    representation.  Used for every money and price quantity in this package.
    """
    value = Fraction(value)
    return int((value + Fraction(1, 2)).__floor__())


@dataclass(frozen=True, slots=True)
class Quotation:
    """One prosumer's signed offer (BUY) or ask (SELL) for one trading hour.

    Parameters are those of eq. (1)-(4); see docs/market.md for units and meaning.
    ``max_trades`` is the prosumer's capacity in the b-matching (eq. 7, 8): its
    energy is split into ``max_trades`` equal lots (:func:`lot_energy_wh`).
    """

    prosumer: str
    kind: Kind
    side: Side
    hour: int
    energy_wh: int
    limit_price_milli_per_kwh: int
    bus: int
    distance_m: int = 0
    consumption_wh_per_km: int = 0
    depreciation_milli: int = 0
    efficiency_ppm: int = 1_000_000
    max_trades: int = 1
    charging_price_milli_per_kwh: int = 0   # EV seller: p0 of eq. (3); 0 = the hour's tariff

    def __post_init__(self) -> None:
        if not isinstance(self.prosumer, str) or not self.prosumer:
            raise ValueError("prosumer must be a non-empty string")
        if not isinstance(self.kind, Kind) or not isinstance(self.side, Side):
            raise ValueError(f"{self.prosumer}: kind and side must be Kind and Side members")
        ints = ("hour", "energy_wh", "limit_price_milli_per_kwh", "bus", "distance_m",
                "consumption_wh_per_km", "depreciation_milli", "efficiency_ppm", "max_trades",
                "charging_price_milli_per_kwh")
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{self.prosumer}: {name} must be an int, got {value!r}")
        if not 0 <= self.hour <= 23:
            raise ValueError(f"{self.prosumer}: hour must be in 0..23, got {self.hour}")
        if self.energy_wh <= 0:
            raise ValueError(f"{self.prosumer}: energy_wh must be > 0, got {self.energy_wh}")
        if self.bus < 1:
            raise ValueError(f"{self.prosumer}: bus must be >= 1 (1-based numbering)")
        for name, most in (("energy_wh", MAX_ENERGY_WH), ("limit_price_milli_per_kwh", MAX_PRICE_MILLI_PER_KWH),
                           ("distance_m", MAX_DISTANCE_M), ("consumption_wh_per_km", MAX_CONSUMPTION_WH_PER_KM),
                           ("depreciation_milli", MAX_DEPRECIATION_MILLI),
                           ("charging_price_milli_per_kwh", MAX_PRICE_MILLI_PER_KWH)):
            if not 0 <= getattr(self, name) <= most:
                raise ValueError(f"{self.prosumer}: {name} must be in 0..{most:_}, got {getattr(self, name)}")
        if not MIN_EFFICIENCY_PPM <= self.efficiency_ppm <= PPM:
            raise ValueError(f"{self.prosumer}: efficiency_ppm must be in {MIN_EFFICIENCY_PPM:_}..{PPM:_}, "
                             f"got {self.efficiency_ppm}")
        if not 1 <= self.max_trades <= MAX_TRADES:
            raise ValueError(f"{self.prosumer}: max_trades must be in 1..{MAX_TRADES}, got {self.max_trades}")
        if self.kind is Kind.PV and self.side is Side.BUY:
            raise ValueError(f"{self.prosumer}: a PV array only sells")
        if self.max_trades > self.energy_wh:
            raise ValueError(f"{self.prosumer}: max_trades exceeds energy_wh (empty lots)")


@dataclass(frozen=True, slots=True)
class MarketParams:
    """Tariffs and O&M coefficients of one hour (from the scenario)."""

    grid_price_milli_per_kwh: int
    feed_in_price_milli_per_kwh: int
    pv_om_milli_per_kwh: int
    smes_om_milli_per_kwh: int

    def __post_init__(self) -> None:
        for name in ("grid_price_milli_per_kwh", "feed_in_price_milli_per_kwh",
                     "pv_om_milli_per_kwh", "smes_om_milli_per_kwh"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")


# --- the paper's benefit functions, exact (milli-currency as Fraction) ---------------

def _money(price_milli_per_kwh: int | Fraction, energy_wh: int | Fraction) -> Fraction:
    return Fraction(price_milli_per_kwh) * Fraction(energy_wh) / WH_PER_KWH


def _travel_wh(q: Quotation) -> Fraction:
    """lambda * D of eq. (2)/(3): Wh/km times metres / 1000."""
    return Fraction(q.consumption_wh_per_km * q.distance_m, 1000)


def smes_benefit_milli(price_milli_per_kwh: int, energy_wh: int, om_milli_per_kwh: int) -> Fraction:
    """Eq. (1): R_sm = C_ep P_sm dt - k_sm |P_sm| dt; energy_wh > 0 discharges."""
    return _money(price_milli_per_kwh, energy_wh) - _money(om_milli_per_kwh, abs(energy_wh))


def charging_ev_benefit_milli(p_v2v_milli_per_kwh: int, energy_wh: int,
                              consumption_wh_per_km: int, distance_m: int) -> Fraction:
    """Eq. (2): R_cv = -(p_v2v Q_ij + p_v2v lambda_i D_ip), exactly as printed."""
    travel_wh = Fraction(consumption_wh_per_km * distance_m, 1000)
    return -(_money(p_v2v_milli_per_kwh, energy_wh) + _money(p_v2v_milli_per_kwh, travel_wh))


def discharging_ev_benefit_milli(p_v2v_milli_per_kwh: int, grid_price_milli_per_kwh: int,
                                 energy_wh: int, efficiency_ppm: int, consumption_wh_per_km: int,
                                 distance_m: int, depreciation_milli: int) -> Fraction:
    """Eq. (3): R_dv = p_v2v Q - p0 Q / eta - p0 lambda_j D_jp - B_j."""
    travel_wh = Fraction(consumption_wh_per_km * distance_m, 1000)
    return (_money(p_v2v_milli_per_kwh, energy_wh)
            - _money(grid_price_milli_per_kwh, Fraction(energy_wh * PPM, efficiency_ppm))
            - _money(grid_price_milli_per_kwh, travel_wh) - depreciation_milli)


def pv_benefit_milli(price_milli_per_kwh: int, energy_wh: int, om_milli_per_kwh: int) -> Fraction:
    """Eq. (4): R_pv = C_ep P_pv dt - k_pv P_pv dt."""
    return _money(price_milli_per_kwh, energy_wh) - _money(om_milli_per_kwh, energy_wh)


# --- relative incomes: reservation prices against the grid alternative --------------

def buyer_value_per_kwh(q: Quotation, params: MarketParams) -> int:
    """Most a buyer gains per kWh bought P2P: min(limit, p0).

    Above p0 it buys from the grid instead; above its limit it does not buy.
    Its relative income at price p is (value - p) * E - travel cost (docs/market.md).
    """
    return min(q.limit_price_milli_per_kwh, params.grid_price_milli_per_kwh)


def seller_cost_per_kwh(q: Quotation, params: MarketParams) -> Fraction:
    """Least a seller accepts per kWh, its alternative included.

    EV (eq. 3): the energy was charged at p0 and loses 1/eta on the way, so p0/eta,
    with p0 the EV's declared charging price (else the hour's tariff, see
    :func:`ev_charging_price`).
    PV (eq. 4) and SMES (eq. 1): O&M k, or the feed-in tariff if that pays more.
    Never below the seller's own limit price.
    """
    if q.kind is Kind.EV:
        own = Fraction(ev_charging_price(q, params) * PPM, q.efficiency_ppm)
    elif q.kind is Kind.PV:
        own = Fraction(max(params.pv_om_milli_per_kwh, params.feed_in_price_milli_per_kwh))
    else:
        own = Fraction(max(params.smes_om_milli_per_kwh, params.feed_in_price_milli_per_kwh))
    return max(Fraction(q.limit_price_milli_per_kwh), own)


def ev_charging_price(q: Quotation, params: MarketParams) -> int:
    """p0 of eq. (3) for a discharging EV: what it paid for the stored energy.

    The paper calls p0 "the charging price of the electric vehicle"; an EV that
    charged off-peak declares that price, otherwise the hour's tariff is used (then
    an EV seller, losing 1/eta, can never undercut the grid for an EV buyer).
    """
    return q.charging_price_milli_per_kwh or params.grid_price_milli_per_kwh


def lot_energy_wh(q: Quotation) -> int:
    """Energy of one of the quotation's ``max_trades`` equal lots (floor)."""
    return q.energy_wh // q.max_trades


@dataclass(frozen=True, slots=True)
class PairTerms:
    """Integer money terms of one buyer-seller trade; Q = value - buyer_travel - seller_cost.

    A payment P with seller_cost <= P <= value - buyer_travel is individually
    rational for both sides; buyer's relative income = value - buyer_travel - P,
    seller's = P - seller_cost.
    """

    energy_wh: int
    buyer_value_milli: int
    buyer_travel_milli: int
    seller_cost_milli: int

    @property
    def weight_milli(self) -> int:
        return self.buyer_value_milli - self.buyer_travel_milli - self.seller_cost_milli


def pair_terms(buyer: Quotation, seller: Quotation, params: MarketParams) -> PairTerms:
    """The pair's trade energy and money terms (each term rounded once, half up).

    Energy: one lot each side, ``min(lot_b, lot_s)``, so a prosumer's trades never
    exceed its quoted energy.  The buyer's travel energy (eq. 2) is priced at p0,
    not p_v2v (docs/market.md): it is energy the buyer must replace at the tariff,
    and pricing it at p_v2v would make Q depend on the price it determines.
    """
    energy_wh = min(lot_energy_wh(buyer), lot_energy_wh(seller))
    p0 = params.grid_price_milli_per_kwh
    value = round_half_up(_money(buyer_value_per_kwh(buyer, params), energy_wh))
    travel = round_half_up(_money(p0, _travel_wh(buyer)))
    cost = _money(seller_cost_per_kwh(seller, params), energy_wh)
    if seller.kind is Kind.EV:
        cost += _money(ev_charging_price(seller, params), _travel_wh(seller))
        cost += seller.depreciation_milli
    return PairTerms(energy_wh, value, travel, round_half_up(cost))


@dataclass(frozen=True, slots=True, eq=False)
class Market:
    """One hour's bipartite market in canonical order (sorted by prosumer name).

    ``weights_milli[i, j]`` is the joint surplus Q of buyer i and seller j in
    milli-currency (int64, read-only); a value <= 0 means no edge.
    """

    buyers: tuple[Quotation, ...]
    sellers: tuple[Quotation, ...]
    weights_milli: np.ndarray
    buyer_caps: tuple[int, ...]
    seller_caps: tuple[int, ...]
    params: MarketParams | None = field(default=None)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Market):
            return NotImplemented
        return (self.buyers == other.buyers and self.sellers == other.sellers
                and self.buyer_caps == other.buyer_caps and self.seller_caps == other.seller_caps
                and self.params == other.params
                and np.array_equal(self.weights_milli, other.weights_milli))

    __hash__ = None  # type: ignore[assignment]  # holds an array


def build_market(quotations: Iterable[Quotation], params: MarketParams) -> Market:
    """Build the hour's market: canonical order, Q matrix, capacities.

    Raises ValueError on duplicate prosumer names or mixed hours.  The result is
    the same whatever the order of ``quotations``.
    """
    quotes = list(quotations)
    names = [q.prosumer for q in quotes]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate quotations from {dup}")
    if len({q.hour for q in quotes}) > 1:
        raise ValueError("quotations of one market must share the same hour")
    buyers = tuple(sorted((q for q in quotes if q.side is Side.BUY), key=lambda q: q.prosumer))
    sellers = tuple(sorted((q for q in quotes if q.side is Side.SELL), key=lambda q: q.prosumer))
    weights = _weights(buyers, sellers, params)
    weights.flags.writeable = False
    return Market(buyers, sellers, weights, tuple(q.max_trades for q in buyers),
                  tuple(q.max_trades for q in sellers), params)


_INT_ROOM = 1 << 61     # products below this cannot overflow int64 (sums of two stay < 2**63)


def _weights(buyers, sellers, params: MarketParams) -> np.ndarray:
    """Q[i, j] = pair_terms(b_i, s_j).weight_milli for all pairs, vectorised and exact.

    Each term of :func:`pair_terms` is a rational with a per-buyer or per-seller
    denominator, rounded half up as floor((2a + d) / (2d)) in int64.  A seller
    whose numerators could leave int64 gets its column by :func:`pair_terms`.
    """
    m, n = len(buyers), len(sellers)
    weights = np.zeros((m, n), dtype=np.int64)
    if m == 0 or n == 0:
        return weights
    p0 = params.grid_price_milli_per_kwh
    lot_b = np.array([lot_energy_wh(b) for b in buyers], dtype=np.int64)
    rate_b = np.array([buyer_value_per_kwh(b, params) for b in buyers], dtype=np.int64)
    travel_b = np.array([round_half_up(_money(p0, _travel_wh(b))) for b in buyers], dtype=np.int64)
    if int(rate_b.max()) * int(lot_b.max()) >= _INT_ROOM:
        return _weights_by_pairs(buyers, sellers, params)
    for j, s in enumerate(sellers):
        energy = np.minimum(lot_b, lot_energy_wh(s))
        value = (2 * rate_b * energy + WH_PER_KWH) // (2 * WH_PER_KWH)
        rate = seller_cost_per_kwh(s, params)
        extra = Fraction(0)
        if s.kind is Kind.EV:
            extra = _money(ev_charging_price(s, params), _travel_wh(s)) + s.depreciation_milli
        # cost = rate * E / 1000 + extra = (rn * E * xd + xn * rd * 1000) / (rd * 1000 * xd)
        rn, rd, xn, xd = rate.numerator, rate.denominator, extra.numerator, extra.denominator
        den = rd * WH_PER_KWH * xd
        if max(abs(rn) * int(energy.max()) * xd, abs(xn) * rd * WH_PER_KWH, den) >= _INT_ROOM // 4:
            weights[:, j] = [pair_terms(b, s, params).weight_milli for b in buyers]
            continue
        num = rn * xd * energy + xn * rd * WH_PER_KWH
        cost = (2 * num + den) // (2 * den)
        weights[:, j] = value - travel_b - cost
    return weights


def _weights_by_pairs(buyers, sellers, params: MarketParams) -> np.ndarray:
    """The reference: one :func:`pair_terms` per pair (Fraction arithmetic)."""
    weights = np.zeros((len(buyers), len(sellers)), dtype=np.int64)
    for i, b in enumerate(buyers):
        for j, s in enumerate(sellers):
            weights[i, j] = pair_terms(b, s, params).weight_milli
    return weights
