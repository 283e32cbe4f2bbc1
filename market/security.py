"""Grid security check of one hour's matched trades (DESIGN.md, market round step 4).

Each trade of ``energy_wh`` over the one-hour round is a constant active power of
``energy_wh`` W injected at the seller's bus and withdrawn at the buyer's bus (unity
power factor; the substation supplies the extra losses).  Trades are admitted one
by one in a fixed order (weight descending, then buyer, seller, buses and energy
ascending: a total order, so the input order never matters) while the AC power
flow of the hour's background load plus every admitted trade stays within

* each line's thermal rating (:attr:`market.grid.Feeder.rating_a`), and
* the bus voltage band ``[vmin, vmax]`` (default 0.95-1.05 p.u.).

A limit the background load already breaks without any trade (the 33-bus feeder's
far end sits at 0.913 p.u. at peak load) cannot be enforced against trades; for such
a limit a trade is refused only if it makes the breach *worse* (the limit of that
element becomes the background value).  This is the usual "no worsening" rule for
third-party access to a congested network.  A tolerance of 1e-9 p.u. / 1e-6 A
absorbs the sweep's round-off.

At the boundary all quantities are integers: voltages in micro-p.u., currents in
milliamperes, energies in Wh, rounded half to even (Python's ``round``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

import numpy as np

from market.grid import (Feeder, FeederSection, PowerFlow, feeder_sections, hourly_load_scale,
                         solve_power_flow)

__all__ = [
    "HourState",
    "Refusal",
    "SecurityLimits",
    "SecurityResult",
    "Violation",
    "admission_order",
    "first_violation",
    "hour_envelope",
    "injection_kw",
    "security_check",
]

_TOL_PU = 1e-9
_TOL_A = 1e-6


class TradeLike(Protocol):
    """What the check reads from a trade (``market.matching.Trade`` satisfies it)."""

    buyer: str
    seller: str
    buyer_bus: int
    seller_bus: int
    energy_wh: int
    weight_milli: int


@dataclass(frozen=True, slots=True)
class HourState:
    """The feeder's background for one hour: the base loads times ``load_scale_ppm``."""

    hour: int
    load_scale_ppm: int

    def __post_init__(self) -> None:
        if not 0 <= self.hour < 24:
            raise ValueError(f"hour must be in 0..23, got {self.hour}")
        if self.load_scale_ppm < 0:
            raise ValueError(f"load_scale_ppm must be >= 0, got {self.load_scale_ppm}")

    @classmethod
    def for_hour(cls, hour: int) -> "HourState":
        """The documented hourly load shape (:data:`market.grid.HOURLY_LOAD_SHAPE`)."""
        return cls(hour, round(hourly_load_scale(hour) * 1_000_000))

    @property
    def load_scale(self) -> float:
        return self.load_scale_ppm / 1_000_000


@dataclass(frozen=True, slots=True)
class SecurityLimits:
    """Voltage band in micro-p.u.; line limits are the feeder's ratings."""

    vmin_micro_pu: int = 950_000
    vmax_micro_pu: int = 1_050_000

    def __post_init__(self) -> None:
        if not 0 < self.vmin_micro_pu < self.vmax_micro_pu:
            raise ValueError("need 0 < vmin_micro_pu < vmax_micro_pu")


@dataclass(frozen=True, slots=True)
class Violation:
    """A limit broken: ``value`` is past ``limit`` by ``excess`` (all in ``unit``).

    ``kind`` is ``"line_current"`` (element ``"line F-T"``, unit ``"mA"``),
    ``"undervoltage"`` or ``"overvoltage"`` (element ``"bus N"``, unit ``"micro_pu"``).
    """

    kind: str
    element: str
    limit: int
    value: int
    excess: int
    unit: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A trade the check refused and the limit it would break."""

    trade: TradeLike
    violation: Violation


@dataclass(frozen=True, slots=True)
class SecurityResult:
    """Admitted trades (in admission order) and refused ones with their reasons."""

    admitted: tuple
    refused: tuple[Refusal, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Envelope:
    """Effective limits for one hour: the configured ones, relaxed to the background
    value wherever the background already breaks them (the no-worsening rule)."""

    current_limit_a: np.ndarray
    vmin_pu: np.ndarray
    vmax_pu: np.ndarray
    background: PowerFlow
    sections: tuple[FeederSection, ...] = ()
    # Memo of section flows keyed by (section, its injections): a check re-solves only
    # the sections whose injections changed (one or two per trade on a many-feeder grid).
    flows: dict = dataclasses.field(default_factory=dict, repr=False)


def hour_envelope(feeder: Feeder, hour: HourState,
                  limits: SecurityLimits = SecurityLimits()) -> Envelope:
    """Solve the background flow of ``hour`` and derive the effective limits."""
    bg = solve_power_flow(feeder, load_scale=hour.load_scale)
    vmin = limits.vmin_micro_pu / 1e6
    vmax = limits.vmax_micro_pu / 1e6
    return Envelope(current_limit_a=np.maximum(feeder.rating_a, bg.branch_current_a),
                    vmin_pu=np.minimum(vmin, bg.vm_pu), vmax_pu=np.maximum(vmax, bg.vm_pu),
                    background=bg, sections=feeder_sections(feeder))


def injection_kw(feeder: Feeder, trades: Iterable[TradeLike]) -> np.ndarray:
    """Net active injection per bus position of ``trades`` (one-hour trades: Wh -> W)."""
    inj = np.zeros(feeder.n_bus)
    for t in trades:
        inj[feeder.bus_index(t.seller_bus)] += t.energy_wh / 1000.0
        inj[feeder.bus_index(t.buyer_bus)] -= t.energy_wh / 1000.0
    return inj


def first_violation(feeder: Feeder, hour: HourState, envelope: Envelope,
                    inj_kw: np.ndarray) -> Violation | None:
    """The worst limit broken by the flow with extra injections ``inj_kw``, or None.

    "Worst" is the largest excess relative to its limit; ties go to the first line,
    then the first bus, in feeder order.
    """
    current_a, vm_pu = _flow(feeder, hour, envelope, inj_kw)
    over_i = (current_a - envelope.current_limit_a - _TOL_A) / envelope.current_limit_a
    under_v = (envelope.vmin_pu - _TOL_PU - vm_pu) / envelope.vmin_pu
    over_v = (vm_pu - envelope.vmax_pu - _TOL_PU) / envelope.vmax_pu
    rel = np.concatenate([over_i, under_v, over_v])
    k = int(np.argmax(rel))
    if rel[k] <= 0:
        return None
    n_line = len(over_i)
    if k < n_line:
        line = feeder.lines[k]
        limit, value = envelope.current_limit_a[k] * 1000, current_a[k] * 1000
        return _violation("line_current", f"line {line.from_bus}-{line.to_bus}", limit, value,
                          "mA")
    k -= n_line
    kind, bounds = ("undervoltage", envelope.vmin_pu) if k < feeder.n_bus else ("overvoltage", envelope.vmax_pu)
    k %= feeder.n_bus
    return _violation(kind, f"bus {feeder.bus_numbers[k]}", bounds[k] * 1e6,
                      vm_pu[k] * 1e6, "micro_pu")


def _flow(feeder: Feeder, hour: HourState, envelope: Envelope,
          inj_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Branch currents and bus voltages with injections ``inj_kw``, section by section.

    Each section is solved (warm-started from the background, which moves the answer
    only below the 1e-10 p.u. tolerance) unless its injections were seen before.
    """
    current_a = np.empty(len(feeder.lines))
    vm_pu = np.empty(feeder.n_bus)
    vm_pu[feeder.slack_index] = feeder.slack_vm_pu
    for n, sec in enumerate(envelope.sections):
        part = inj_kw[sec.bus_pos]
        key = (n, part.tobytes())
        hit = envelope.flows.get(key)
        if hit is None:
            pf = solve_power_flow(sec.feeder, load_scale=hour.load_scale, injection_p_kw=part,
                                  initial_v_pu=envelope.background.v_pu[sec.bus_pos])
            hit = envelope.flows[key] = (pf.branch_current_a, pf.vm_pu)
        current_a[sec.branch_idx] = hit[0]
        vm_pu[sec.bus_pos[1:]] = hit[1][1:]
    return current_a, vm_pu


def _violation(kind: str, element: str, limit: float, value: float, unit: str) -> Violation:
    """The breach in integer units: the limit rounded, the value rounded but at least one
    unit past it -- a breach smaller than a unit (a tiny trade past a limit, within the
    tolerance's reach) still reads as past its limit, by one."""
    lim, val = round(limit), round(value)
    val = min(val, lim - 1) if kind == "undervoltage" else max(val, lim + 1)
    return Violation(kind, element, lim, val, abs(val - lim), unit)


def admission_order(trades: Iterable[TradeLike]) -> list:
    """Trades sorted by weight descending; ties by buyer, seller, buses, energy."""
    return sorted(trades, key=lambda t: (-t.weight_milli, t.buyer, t.seller, t.buyer_bus,
                                         t.seller_bus, t.energy_wh))


def security_check(feeder: Feeder, hour_state: HourState, trades: Sequence[TradeLike], *,
                   limits: SecurityLimits = SecurityLimits(),
                   envelope: Envelope | None = None,
                   base_injection_kw: np.ndarray | None = None) -> SecurityResult:
    """Admit ``trades`` greedily in :func:`admission_order` while no limit breaks.

    Parameters
    ----------
    feeder, hour_state
        The network and its background load this hour.
    trades
        Matched trades (``market.matching.Trade`` or anything with the same fields).
    envelope
        Precomputed :func:`hour_envelope` (recomputed when omitted).
    base_injection_kw
        Flows already committed this hour, kept when checking each trade.

    Returns
    -------
    SecurityResult
        Refused trades carry the :class:`Violation` they would cause, in the same
        admission order.
    """
    env = envelope if envelope is not None else hour_envelope(feeder, hour_state, limits)
    inj = np.zeros(feeder.n_bus) if base_injection_kw is None else np.array(base_injection_kw, float)
    admitted, refused = [], []
    for trade in admission_order(trades):
        trial = inj + injection_kw(feeder, (trade,))
        violation = first_violation(feeder, hour_state, env, trial)
        if violation is None:
            admitted.append(trade)
            inj = trial
        else:
            refused.append(Refusal(trade, violation))
    return SecurityResult(tuple(admitted), tuple(refused))
