"""Radial distribution feeder and its AC power flow (backward/forward sweep).

The feeder is the IEEE 33-bus system of Baran & Wu (1989), shipped as
``market/data/ieee33bw.json``.  The power flow is the classic backward/forward
sweep written as two matrix products with the *path matrix* ``B`` (``B[b, k] = 1``
when branch ``b`` lies on the path from the substation to bus ``k``, the
"BIBC" matrix of Teng, 2003):

* backward sweep: branch currents ``I_br = B @ I_load``;
* forward sweep:  bus voltages ``V = V_slack - B.T @ (Z_br * I_br)``;

with ``I_load = conj(S / V)`` (constant-power loads) iterated to a fixed point.
``B`` is built once per feeder; a 33-bus solve is then a handful of 32x32
products per iteration.  Large feeders (many 33-bus copies under one
substation, used by ``market scale``) keep ``B`` as a scipy sparse matrix.

Thermal ratings are not part of the source data.  Each in-service line gets the
smallest overhead conductor of :data:`CONDUCTORS` whose ampacity is at least
twice the line's base-case current: the "hand-in-hand" 10 kV design rule that a
feeder normally runs at no more than 50 % of its rating so that it can pick up
its neighbour's load through a tie switch.  ``rating_scale`` multiplies every
rating (below 1 models a congested feeder).  See ``docs/market.md``.

References
----------
M. E. Baran and F. F. Wu, "Network reconfiguration in distribution systems for
loss reduction and load balancing", IEEE Trans. Power Delivery 4(2), 1989.
J.-H. Teng, "A direct approach for distribution system load flow solutions",
IEEE Trans. Power Delivery 18(3), 2003.
W. H. Kersting, "Distribution System Modeling and Analysis", Appendix A
(conductor ampacities).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = [
    "CONDUCTORS",
    "Conductor",
    "DEFAULT_BUSES",
    "Feeder",
    "FeederError",
    "FeederLine",
    "HOURLY_LOAD_SHAPE",
    "PLANNING_LOADING_RATIO",
    "PowerFlow",
    "PowerFlowDivergence",
    "hourly_load_scale",
    "load_feeder",
    "replicate_feeder",
    "FeederSection",
    "feeder_sections",
    "solve_power_flow",
]


class FeederError(ValueError):
    """The feeder data is not a valid radial network."""


class PowerFlowDivergence(RuntimeError):
    """The sweep did not converge (e.g. the load is beyond voltage collapse)."""


@dataclass(frozen=True, slots=True)
class Conductor:
    """An overhead conductor size and its continuous ampacity."""

    name: str
    ampacity_a: int


# Bare ACSR conductors common on 10-15 kV overhead feeders, ampacities as tabulated
# in Kersting, "Distribution System Modeling and Analysis", Appendix A.  Sorted by
# ampacity: the rating rule picks the first one that is large enough.
CONDUCTORS: tuple[Conductor, ...] = (
    Conductor("ACSR #4 (Swan)", 140),
    Conductor("ACSR #2 (Sparrow)", 180),
    Conductor("ACSR 1/0 (Raven)", 230),
    Conductor("ACSR 2/0 (Quail)", 270),
    Conductor("ACSR 3/0 (Pigeon)", 300),
    Conductor("ACSR 4/0 (Penguin)", 340),
    Conductor("ACSR 336,400 26/7 (Linnet)", 530),
    Conductor("ACSR 556,500 26/7 (Dove)", 730),
)

# Normal-operation loading limit of a 10 kV feeder in a two-feeder ("hand-in-hand")
# loop: each feeder must be able to carry its neighbour's load after a fault, so it
# is planned to run at <= 50 % of its rating (State Grid Q/GDW 1738-2012).
PLANNING_LOADING_RATIO = 0.5

# Hourly load as a fraction of the daily peak, hour h covering [h:00, h+1:00):
# IEEE Reliability Test System (1979), Table 3, summer weekday (weeks 18-30).
HOURLY_LOAD_SHAPE: tuple[float, ...] = (
    0.64, 0.60, 0.58, 0.56, 0.56, 0.58, 0.64, 0.76, 0.87, 0.95, 0.99, 1.00,
    0.99, 1.00, 1.00, 0.97, 0.96, 0.96, 0.93, 0.92, 0.92, 0.93, 0.87, 0.72,
)


def hourly_load_scale(hour: int) -> float:
    """Fraction of the base (peak) load drawn in ``hour`` (0..23), RTS-79 shape."""
    if not 0 <= hour < 24:
        raise ValueError(f"hour must be in 0..23, got {hour}")
    return HOURLY_LOAD_SHAPE[hour]


@dataclass(frozen=True, slots=True)
class FeederLine:
    """One in-service branch, oriented away from the substation."""

    from_bus: int
    to_bus: int
    r_ohm: float
    x_ohm: float
    conductor: str
    rating_a: float


@dataclass(frozen=True, slots=True, eq=False)
class Feeder:
    """A radial feeder with its precomputed sweep matrices.

    Arrays are indexed by bus *position* (``bus_numbers[i]`` is the bus's number)
    and by branch position (branch ``b`` feeds bus ``branch_to[b]``).  Build with
    :func:`load_feeder`; never mutate the arrays.
    """

    name: str
    base_kv: float
    base_mva: float
    slack_vm_pu: float
    bus_numbers: tuple[int, ...]
    lines: tuple[FeederLine, ...]
    load_p_kw: np.ndarray          # base (peak) active load per bus
    load_q_kvar: np.ndarray        # base (peak) reactive load per bus
    rating_a: np.ndarray           # per branch, already multiplied by rating_scale
    rating_scale: float
    # Sweep data.  Branch b feeds the b-th non-slack bus (bus positions in order,
    # slack skipped), so the path matrix is square: rows branches, columns buses.
    path: np.ndarray | sp.csr_matrix   # (n_branch, n_bus - 1) path matrix B
    path_t: np.ndarray | sp.csr_matrix  # B.T, kept to avoid a transpose per solve
    z_pu: np.ndarray               # complex branch impedance, per unit
    parent: np.ndarray             # (n_bus,) position of each bus's parent; -1 at the slack
    slack_index: int
    _index: dict = dataclasses.field(repr=False)

    @property
    def n_bus(self) -> int:
        return len(self.bus_numbers)

    def bus_index(self, bus: int) -> int:
        """Array position of bus number ``bus``; ``KeyError`` if absent."""
        try:
            return self._index[bus]
        except KeyError:
            raise KeyError(f"bus {bus} is not on feeder {self.name!r}") from None

    def with_rating_scale(self, rating_scale: float) -> "Feeder":
        """The same feeder with every rating multiplied by ``rating_scale``."""
        if not rating_scale > 0:
            raise ValueError(f"rating_scale must be > 0, got {rating_scale}")
        base = self.rating_a / self.rating_scale
        return dataclasses.replace(self, rating_a=base * rating_scale, rating_scale=rating_scale)

    def path_buses(self, bus: int) -> tuple[int, ...]:
        """Bus numbers on the path from the substation (excluded) down to ``bus``."""
        out = []
        k = self.bus_index(bus)
        while k != self.slack_index:
            out.append(self.bus_numbers[k])
            k = int(self.parent[k])
        return tuple(reversed(out))


@dataclass(frozen=True, slots=True, eq=False)
class PowerFlow:
    """Result of one solve. Branch quantities are at the sending end."""

    v_pu: np.ndarray             # (n_bus,) complex voltage (warm start for the next solve)
    vm_pu: np.ndarray            # (n_bus,) voltage magnitude
    va_rad: np.ndarray           # (n_bus,) voltage angle
    branch_current_a: np.ndarray  # (n_branch,) current magnitude
    branch_p_kw: np.ndarray      # (n_branch,) active flow into the branch
    branch_q_kvar: np.ndarray    # (n_branch,)
    loss_kw: float
    loss_kvar: float
    iterations: int


# The shipped feeder's text, read once at import: the contract runtime's worker imports
# market/ before it closes its file descriptors (RLIMIT_NOFILE), so a contract's round can
# load the default feeder without opening a file.
_DEFAULT_FEEDER_TEXT = resources.files("market").joinpath("data/ieee33bw.json").read_text()
DEFAULT_BUSES: tuple[int, ...] = tuple(b["bus"] for b in json.loads(_DEFAULT_FEEDER_TEXT)["buses"])
"""The bus numbers of the shipped feeder, without building it (``load_feeder`` runs a power
flow for the ratings: ~10 ms, too much for a check of where a quotation's prosumer sits)."""


def load_feeder(path: str | Path | None = None, *, rating_scale: float = 1.0,
                slack_vm_pu: float | None = None) -> Feeder:
    """Load a radial feeder from JSON (default: the shipped IEEE 33-bus system).

    Ratings follow the rule in the module docstring, computed from the base-case
    power flow, then multiplied by ``rating_scale``.
    """
    if path is None:
        text = _DEFAULT_FEEDER_TEXT
    else:
        text = Path(path).read_text()
    data = json.loads(text)
    buses = [b["bus"] for b in data["buses"]]
    p = np.array([float(b["p_kw"]) for b in data["buses"]])
    q = np.array([float(b["q_kvar"]) for b in data["buses"]])
    raw = [(ln["from"], ln["to"], float(ln["r_ohm"]), float(ln["x_ohm"]))
           for ln in data["lines"] if ln.get("in_service", True)]
    vm0 = float(data.get("slack_vm_pu", 1.0)) if slack_vm_pu is None else slack_vm_pu
    unrated = _build(data.get("name", "feeder"), float(data["base_kv"]),
                     float(data["base_mva"]), vm0, int(data["slack_bus"]), buses, p, q,
                     raw, ratings=None)
    return unrated.with_rating_scale(rating_scale) if rating_scale != 1.0 else unrated


def replicate_feeder(feeder: Feeder, copies: int) -> Feeder:
    """``copies`` copies of ``feeder`` fed from one shared substation bus.

    Copy ``c`` (0-based) renumbers bus ``b`` (non-slack) to ``b + c * (n_bus - 1)``,
    so copy 0 keeps the original numbering.  Ratings are carried over unchanged.
    """
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    slack = feeder.bus_numbers[feeder.slack_index]
    shift = feeder.n_bus - 1

    def renumber(bus: int, c: int) -> int:
        return bus if bus == slack else bus + c * shift

    buses = [slack]
    p = [0.0]
    q = [0.0]
    raw, ratings = [], []
    for c in range(copies):
        for i, b in enumerate(feeder.bus_numbers):
            if i != feeder.slack_index:
                buses.append(renumber(b, c))
                p.append(feeder.load_p_kw[i])
                q.append(feeder.load_q_kvar[i])
        for ln, r in zip(feeder.lines, feeder.rating_a / feeder.rating_scale):
            raw.append((renumber(ln.from_bus, c), renumber(ln.to_bus, c), ln.r_ohm, ln.x_ohm))
            ratings.append((ln.conductor, float(r)))
    out = _build(f"{feeder.name} x{copies}", feeder.base_kv, feeder.base_mva,
                 feeder.slack_vm_pu, slack, buses, np.array(p), np.array(q), raw,
                 ratings=ratings)
    return out.with_rating_scale(feeder.rating_scale) if feeder.rating_scale != 1.0 else out


def solve_power_flow(feeder: Feeder, *, load_scale: float = 1.0,
                     injection_p_kw: np.ndarray | None = None,
                     injection_q_kvar: np.ndarray | None = None,
                     initial_v_pu: np.ndarray | None = None,
                     tol_pu: float = 1e-10, max_iter: int = 100) -> PowerFlow:
    """AC power flow of ``feeder`` by backward/forward sweep.

    Parameters
    ----------
    load_scale : float
        Multiplies the base loads (the hourly shape, :func:`hourly_load_scale`).
    injection_p_kw, injection_q_kvar : array (n_bus,), optional
        Extra injections per bus position (positive = generation into the feeder),
        added on top of the scaled loads.  The slack entry is ignored.
    initial_v_pu : complex array (n_bus,), optional
        Starting voltages (e.g. ``PowerFlow.v_pu`` of a nearby case); a flat start
        at the slack voltage when omitted.  Only the number of sweeps depends on it.
    tol_pu : float
        Stop when no voltage changes by more than this between sweeps.

    Returns
    -------
    PowerFlow

    Raises
    ------
    PowerFlowDivergence
        No convergence within ``max_iter`` sweeps.

    Examples
    --------
    >>> pf = solve_power_flow(load_feeder())
    >>> round(pf.loss_kw, 2), round(float(pf.vm_pu.min()), 4)
    (202.68, 0.9131)
    """
    net_p = feeder.load_p_kw * load_scale
    net_q = feeder.load_q_kvar * load_scale
    if injection_p_kw is not None:
        net_p = net_p - np.asarray(injection_p_kw, dtype=float)
    if injection_q_kvar is not None:
        net_q = net_q - np.asarray(injection_q_kvar, dtype=float)
    keep = np.ones(feeder.n_bus, dtype=bool)
    keep[feeder.slack_index] = False
    s_pu = (net_p[keep] + 1j * net_q[keep]) / (feeder.base_mva * 1000.0)
    v0 = complex(feeder.slack_vm_pu)
    v = (np.full(s_pu.shape, v0, dtype=complex) if initial_v_pu is None
         else np.asarray(initial_v_pu, dtype=complex)[keep].copy())
    zb = feeder.z_pu
    for it in range(1, max_iter + 1):
        i_load = np.conj(s_pu / v)
        i_br = feeder.path @ i_load
        v_new = v0 - feeder.path_t @ (zb * i_br)
        if not np.all(np.isfinite(v_new)) or np.any(np.abs(v_new) < 0.3):
            raise PowerFlowDivergence(f"voltage collapse on {feeder.name!r} at sweep {it}")
        if np.max(np.abs(v_new - v)) < tol_pu:
            v = v_new
            break
        v = v_new
    else:
        raise PowerFlowDivergence(f"no convergence on {feeder.name!r} in {max_iter} sweeps")
    i_load = np.conj(s_pu / v)
    i_br = feeder.path @ i_load
    # Sending-end power of branch b = receiving-end voltage power + branch loss.
    v_recv = v
    s_loss = zb * np.abs(i_br) ** 2
    s_send = v_recv * np.conj(i_br) + s_loss
    base_kva = feeder.base_mva * 1000.0
    i_base_a = feeder.base_mva * 1e6 / (np.sqrt(3.0) * feeder.base_kv * 1e3)
    full = np.empty(feeder.n_bus, dtype=complex)
    full[feeder.slack_index] = v0
    full[keep] = v
    return PowerFlow(
        v_pu=full, vm_pu=np.abs(full), va_rad=np.angle(full),
        branch_current_a=np.abs(i_br) * i_base_a,
        branch_p_kw=s_send.real * base_kva, branch_q_kvar=s_send.imag * base_kva,
        loss_kw=float(s_loss.real.sum() * base_kva),
        loss_kvar=float(s_loss.imag.sum() * base_kva), iterations=it)


# Above this many buses the path matrix is kept sparse: dense is faster for the 33-bus
# feeder, but a dense complex matvec of a few hundred buses is ~30x slower than CSR here.
_DENSE_MAX_BUSES = 64


def _build(name: str, base_kv: float, base_mva: float, slack_vm_pu: float, slack_bus: int,
           buses: list[int], p_kw: np.ndarray, q_kvar: np.ndarray,
           raw_lines: list[tuple[int, int, float, float]],
           ratings: list[tuple[str, float]] | None) -> Feeder:
    """Orient the lines away from the slack, check radiality, build the path matrix."""
    index = {b: i for i, b in enumerate(buses)}
    if len(index) != len(buses):
        raise FeederError(f"{name}: duplicate bus numbers")
    if slack_bus not in index:
        raise FeederError(f"{name}: slack bus {slack_bus} not among the buses")
    n = len(buses)
    if len(raw_lines) != n - 1:
        raise FeederError(f"{name}: a radial feeder of {n} buses needs {n - 1} "
                          f"in-service lines, got {len(raw_lines)}")
    adj: dict[int, list[tuple[int, int]]] = {i: [] for i in range(n)}
    for li, (f, t, _r, _x) in enumerate(raw_lines):
        if f not in index or t not in index:
            raise FeederError(f"{name}: line {f}-{t} names an unknown bus")
        adj[index[f]].append((index[t], li))
        adj[index[t]].append((index[f], li))
    slack = index[slack_bus]
    parent = np.full(n, -1, dtype=np.int64)
    line_of = np.full(n, -1, dtype=np.int64)   # line feeding each bus
    seen = np.zeros(n, dtype=bool)
    seen[slack] = True
    stack = [slack]
    while stack:   # depth-first walk; every bus reached once iff the graph is a tree
        u = stack.pop()
        for w, li in sorted(adj[u]):
            if not seen[w]:
                seen[w], parent[w], line_of[w] = True, u, li
                stack.append(w)
    if not seen.all():
        missing = [buses[i] for i in np.flatnonzero(~seen)]
        raise FeederError(f"{name}: buses {missing} are not connected to the slack")
    non_slack = [i for i in range(n) if i != slack]
    col = {bus_pos: c for c, bus_pos in enumerate(non_slack)}
    rows, cols = [], []
    for c, k in enumerate(non_slack):   # branch feeding bus j is on the path of k
        j = k
        while j != slack:
            rows.append(col[j])
            cols.append(c)
            j = int(parent[j])
    m = n - 1
    path = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(m, m))
    path_t = path.T.tocsr()
    if n <= _DENSE_MAX_BUSES:
        path, path_t = path.toarray(), path_t.toarray()
    z_base = base_kv ** 2 / base_mva
    lines_rx = [raw_lines[int(line_of[k])] for k in non_slack]
    z_pu = np.array([complex(r, x) for _f, _t, r, x in lines_rx]) / z_base
    protos = [(buses[int(parent[k])], buses[k], r, x) for k, (_f, _t, r, x)
              in zip(non_slack, lines_rx)]
    feeder = Feeder(name=name, base_kv=base_kv, base_mva=base_mva, slack_vm_pu=slack_vm_pu,
                    bus_numbers=tuple(buses), lines=(), load_p_kw=p_kw.astype(float),
                    load_q_kvar=q_kvar.astype(float), rating_a=np.full(m, np.inf),
                    rating_scale=1.0, path=path, path_t=path_t, z_pu=z_pu,
                    parent=parent, slack_index=slack, _index=index)
    if ratings is None:
        ratings = _rate_by_planning_rule(feeder)
    lines = tuple(FeederLine(f, t, r, x, cond, float(a))
                  for (f, t, r, x), (cond, a) in zip(protos, ratings))
    return dataclasses.replace(feeder, lines=lines,
                               rating_a=np.array([a for _c, a in ratings], dtype=float))


def _rate_by_planning_rule(feeder: Feeder) -> list[tuple[str, float]]:
    """Smallest conductor with ampacity >= base-case current / PLANNING_LOADING_RATIO."""
    current = solve_power_flow(feeder).branch_current_a
    out = []
    for amps in current:
        need = amps / PLANNING_LOADING_RATIO
        cond = next((c for c in CONDUCTORS if c.ampacity_a >= need), CONDUCTORS[-1])
        out.append((cond.name, float(cond.ampacity_a)))
    return out


@dataclass(frozen=True, slots=True, eq=False)
class FeederSection:
    """The part of a feeder hanging from one child of the slack bus, as its own feeder.

    With the slack voltage fixed, sections are electrically independent: the flow in one
    depends only on the injections in it.  ``bus_pos`` maps the section's buses (slack
    first) to positions in the whole feeder; ``branch_idx`` its branches to branches.
    """

    feeder: Feeder
    bus_pos: np.ndarray
    branch_idx: np.ndarray


def feeder_sections(feeder: Feeder) -> tuple[FeederSection, ...]:
    """Split ``feeder`` at its slack bus (one section per slack child, in bus order).

    Ratings and ``rating_scale`` are carried over; a feeder whose slack has one child
    (the 33-bus system) is one section identical to itself.
    """
    slack = feeder.slack_index
    top = np.full(feeder.n_bus, -1, dtype=np.int64)     # the slack child above each bus
    for k in range(feeder.n_bus):
        j = k
        while j != slack and int(feeder.parent[j]) != slack:
            j = int(feeder.parent[j])
        top[k] = j if k != slack else -1
    out = []
    for child in sorted(set(top[top >= 0].tolist())):
        members = np.flatnonzero(top == child)          # ascending bus positions
        branches = members - (members > slack)           # branch b feeds non-slack bus b
        buses = [feeder.bus_numbers[slack]] + [feeder.bus_numbers[k] for k in members]
        raw = [(feeder.lines[b].from_bus, feeder.lines[b].to_bus, feeder.lines[b].r_ohm,
                feeder.lines[b].x_ohm) for b in branches]
        ratings = [(feeder.lines[b].conductor, float(feeder.rating_a[b])) for b in branches]
        pos = np.concatenate([[slack], members])
        sub = _build(f"{feeder.name} / bus {feeder.bus_numbers[child]}", feeder.base_kv,
                     feeder.base_mva, feeder.slack_vm_pu, buses[0], buses,
                     feeder.load_p_kw[pos], feeder.load_q_kvar[pos], raw, ratings=ratings)
        out.append(FeederSection(dataclasses.replace(sub, rating_scale=feeder.rating_scale),
                                 pos, branches))
    return tuple(out)
