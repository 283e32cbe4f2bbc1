"""Superconducting magnetic energy storage (SMES) unit: limits, energy ledger, eq. (1)
revenue, and its dispatch on the trades that fail the security check.

Pipeline (paper, Sec. II.C; DESIGN.md market round step 5): after the security check,
each refused trade "first interacts with the SMES".  In admission order, for each
refused trade not involving the SMES itself, the unit tries

1. to *absorb* the seller's energy (the seller sells to the SMES instead), then
2. to *serve* the buyer from stored energy (the buyer buys from the SMES instead).

Each leg is a flow between the prosumer's bus and the SMES bus and must itself pass
the security check on top of everything already admitted this hour (legs accumulate,
so absorbing and serving the same trade in one hour amounts to the refused trade
itself and is refused again: the SMES shifts energy in time, not in space).  A leg
is all-or-nothing and must also fit the unit's power rating (gross throughput per
hour, charge plus discharge) and state-of-charge bounds.  Stored energy is offered
back to the market in later hours as an SMES quotation (see market/scenario.py).

Energy ledger, in integer Wh (exact; the SMES never creates energy):
charging ``e`` grid-side Wh stores ``floor(e * eta_c)``; delivering ``e`` grid-side Wh
draws ``ceil(e / eta_d)``; the standby loss per hour is ``floor((stored - floor_wh) *
standby_rate)``, taken from the energy above the state-of-charge floor (the floor
is the converter's operating minimum, held by the grid-fed cryogenic system).

References
----------
Z. Li, S. Chen, B. Zhou, "Electric vehicle peer-to-peer energy trading model based on
SMES and blockchain", IEEE Trans. Appl. Supercond. 31(8), 2021, eq. (1).
M. H. Ali, B. Wu, R. A. Dougal, "An overview of SMES applications in power and energy
systems", IEEE Trans. Sustain. Energy 1(1), 2010 (efficiency, built units).
H. Chen et al., "Progress in electrical energy storage system: a critical review",
Progress in Natural Science 19(3), 2009 (self-discharge 10-15 %/day).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Sequence

import numpy as np

from market.grid import Feeder
from market.security import (Envelope, HourState, Refusal, TradeLike, first_violation,
                             injection_kw)

__all__ = [
    "SmesLeg",
    "SmesParams",
    "SmesState",
    "SmesDispatch",
    "charge",
    "deliverable_wh",
    "discharge",
    "dispatch_smes",
    "smes_revenue_milli",
    "standby",
]

_PPM = 1_000_000


@dataclass(frozen=True, slots=True)
class SmesParams:
    """One SMES unit.  Defaults are documented in docs/market.md ("SMES").

    The default 100 kWh (360 MJ) is a modelling assumption: it is about ten times
    the largest SMES units built so far (tens of MJ); 50 kW covers several 7 kW
    EV trades per hour.
    """

    name: str = "smes"
    bus: int = 6
    capacity_wh: int = 100_000
    power_rating_w: int = 50_000
    soc_min_ppm: int = 50_000
    soc_max_ppm: int = 950_000
    charge_efficiency_ppm: int = 975_000
    discharge_efficiency_ppm: int = 975_000
    standby_loss_ppm_per_hour: int = 5_000
    om_milli_per_kwh: int = 20          # k_sm of eq. (1)

    def __post_init__(self) -> None:
        if self.capacity_wh <= 0 or self.power_rating_w <= 0:
            raise ValueError("SMES capacity and power rating must be > 0")
        if not 0 <= self.soc_min_ppm < self.soc_max_ppm <= _PPM:
            raise ValueError("need 0 <= soc_min_ppm < soc_max_ppm <= 1e6")
        for eta in (self.charge_efficiency_ppm, self.discharge_efficiency_ppm):
            if not 0 < eta <= _PPM:
                raise ValueError(f"efficiency must be in (0, 1e6] ppm, got {eta}")
        if not 0 <= self.standby_loss_ppm_per_hour < _PPM:
            raise ValueError("standby loss must be in [0, 1e6) ppm per hour")

    @property
    def capacity_mj(self) -> float:
        """Capacity in MJ (1 kWh = 3.6 MJ), the unit SMES sizes are usually quoted in."""
        return self.capacity_wh * 3600 / 1e6

    @property
    def floor_wh(self) -> int:
        return self.capacity_wh * self.soc_min_ppm // _PPM

    @property
    def ceiling_wh(self) -> int:
        return self.capacity_wh * self.soc_max_ppm // _PPM


@dataclass(frozen=True, slots=True)
class SmesState:
    """Energy in the coil (Wh) and grid-side throughput used in the current hour."""

    stored_wh: int
    throughput_wh: int = 0

    @classmethod
    def empty(cls, params: SmesParams) -> "SmesState":
        return cls(params.floor_wh)


def charge(params: SmesParams, state: SmesState, energy_wh: int) -> SmesState | None:
    """State after absorbing ``energy_wh`` from the grid, or None if a limit forbids it."""
    gain = energy_wh * params.charge_efficiency_ppm // _PPM
    if (energy_wh <= 0 or state.throughput_wh + energy_wh > params.power_rating_w
            or state.stored_wh + gain > params.ceiling_wh):
        return None
    return SmesState(state.stored_wh + gain, state.throughput_wh + energy_wh)


def discharge(params: SmesParams, state: SmesState, energy_wh: int) -> SmesState | None:
    """State after delivering ``energy_wh`` to the grid, or None if a limit forbids it."""
    draw = -(-energy_wh * _PPM // params.discharge_efficiency_ppm)      # ceil
    if (energy_wh <= 0 or state.throughput_wh + energy_wh > params.power_rating_w
            or state.stored_wh - draw < params.floor_wh):
        return None
    return SmesState(state.stored_wh - draw, state.throughput_wh + energy_wh)


def deliverable_wh(params: SmesParams, state: SmesState) -> int:
    """Most grid-side energy the unit can deliver this hour."""
    above = state.stored_wh - params.floor_wh
    by_energy = above * params.discharge_efficiency_ppm // _PPM
    return max(0, min(by_energy, params.power_rating_w - state.throughput_wh))


def standby(params: SmesParams, state: SmesState) -> tuple[SmesState, int]:
    """End of the hour: apply the standby loss, reset throughput; returns (state, loss_wh)."""
    loss = (state.stored_wh - params.floor_wh) * params.standby_loss_ppm_per_hour // _PPM
    return SmesState(state.stored_wh - loss, 0), loss


def smes_revenue_milli(p_sm_wh: int, price_milli_per_kwh: int, om_milli_per_kwh: int) -> int:
    """Eq. (1): R_sm = C_ep P_sm dt - k_sm |P_sm| dt, in milli-currency.

    ``p_sm_wh`` is P_sm dt over the one-hour round, positive when discharging.
    Rounded half to even (one rounding of the exact rational value).
    """
    return round(Fraction(price_milli_per_kwh * p_sm_wh - om_milli_per_kwh * abs(p_sm_wh), 1000))


@dataclass(frozen=True, slots=True)
class SmesLeg:
    """One side of a refused trade completed by the SMES.

    ``action`` is ``"absorb"`` (the seller ``counterparty`` sells ``energy_wh`` to the
    SMES) or ``"serve"`` (the SMES sells ``energy_wh`` to the buyer ``counterparty``).
    """

    trade: TradeLike
    action: str
    counterparty: str
    counterparty_bus: int
    energy_wh: int


@dataclass(frozen=True, slots=True)
class SmesDispatch:
    """The SMES's hour: legs completed, refused trades it could not help, new state."""

    legs: tuple[SmesLeg, ...]
    unhelped: tuple[Refusal, ...]
    market_discharge_wh: int      # energy the SMES sold in the market and delivered
    standby_loss_wh: int
    state_after: SmesState
    # All admitted flows incl. SMES legs per bus position (floats: not part of equality).
    injection_kw: np.ndarray = field(compare=False, repr=False)


def dispatch_smes(feeder: Feeder, hour: HourState, envelope: Envelope, params: SmesParams,
                  state: SmesState, admitted: Sequence[TradeLike],
                  refused: Sequence[Refusal]) -> SmesDispatch:
    """Run the SMES for one hour after the security check (see module docstring).

    ``admitted`` may contain the SMES's own market sales (seller ``params.name``),
    which are delivered from storage first.  ``refused`` is in admission order.

    Raises
    ------
    ValueError
        The admitted SMES sales exceed what the unit can deliver (the quotation
        must not offer more than :func:`deliverable_wh`).
    """
    sold = sum(t.energy_wh for t in admitted if t.seller == params.name)
    if sold:
        after = discharge(params, state, sold)
        if after is None:
            raise ValueError(f"SMES sold {sold} Wh but can deliver {deliverable_wh(params, state)}")
        state = after
    inj = injection_kw(feeder, admitted)
    smes_pos = feeder.bus_index(params.bus)
    legs, unhelped = [], []
    for refusal in refused:
        t = refusal.trade
        if params.name in (t.buyer, t.seller):
            unhelped.append(refusal)
            continue
        helped = False
        for action, who, bus, step in (("absorb", t.seller, t.seller_bus, charge),
                                       ("serve", t.buyer, t.buyer_bus, discharge)):
            new_state = step(params, state, t.energy_wh)
            if new_state is None:
                continue
            sign = 1.0 if action == "absorb" else -1.0       # absorb: seller -> SMES bus
            trial = inj.copy()
            trial[feeder.bus_index(bus)] += sign * t.energy_wh / 1000.0
            trial[smes_pos] -= sign * t.energy_wh / 1000.0
            if first_violation(feeder, hour, envelope, trial) is None:
                inj, state, helped = trial, new_state, True
                legs.append(SmesLeg(t, action, who, bus, t.energy_wh))
        if not helped:
            unhelped.append(refusal)
    state, loss = standby(params, state)
    return SmesDispatch(tuple(legs), tuple(unhelped), sold, loss, state, inj)
