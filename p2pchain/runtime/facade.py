"""The numpy/scipy a contract may use: a few vetted pure functions on plain lists.

Contracts never hold a numpy module, array or scipy result object — those carry paths to
files (``load``, ``fromfile``, ``memmap``, ``tofile``, ``scipy.io``), raw memory
(``ctypes``, ``ctypeslib``, ``lib.format``) and foreign code (``f2py``). Each function here
takes lists of numbers, refuses oversized or non-numeric input, runs one numerical routine
with fixed options, and returns lists, floats and ints. Floats that come out must be
rounded with :func:`p2pchain.runtime.units.to_units` before they reach the ledger.

Determinism: numpy is pinned per consortium; BLAS runs single-threaded in the worker
(``OPENBLAS_NUM_THREADS=1``), and HiGHS is deterministic for a fixed version and input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import optimize

__all__ = ["MAX_ELEMENTS", "LPResult", "linear_sum_assignment", "linprog", "solve", "matmul"]

MAX_ELEMENTS = 250_000  # a 500 x 500 matrix


def _matrix(rows: Any, name: str) -> np.ndarray:
    if not isinstance(rows, (list, tuple)) or not all(isinstance(r, (list, tuple)) for r in rows):
        raise TypeError(f"{name} must be a list of lists of numbers")
    if sum(len(r) for r in rows) > MAX_ELEMENTS:
        raise ValueError(f"{name} has more than {MAX_ELEMENTS} elements")
    _numbers([x for r in rows for x in r], name)
    array = np.array(rows, dtype=np.float64)
    if array.ndim != 2 and array.size:
        raise ValueError(f"{name} must be rectangular")
    return array.reshape(len(rows), -1) if array.size else np.zeros((len(rows), 0))


def _numbers(values: Sequence[Any], name: str) -> None:
    for x in values:
        if type(x) not in (int, float) :
            raise TypeError(f"{name} must hold ints and floats, not {type(x).__name__}")


def _vector(values: Any, name: str) -> np.ndarray:
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{name} must be a list of numbers")
    if len(values) > MAX_ELEMENTS:
        raise ValueError(f"{name} has more than {MAX_ELEMENTS} elements")
    _numbers(values, name)
    return np.array(values, dtype=np.float64)


def linear_sum_assignment(cost: Sequence[Sequence[float]], maximize: bool = False) -> tuple[list[int], list[int]]:
    """Optimal assignment of rows to columns (scipy's Jonker–Volgenant solver).

    Returns ``(rows, cols)`` with ``rows`` ascending. Ties between optimal assignments are
    broken by the solver, deterministically for a fixed scipy version.
    """
    rows, cols = optimize.linear_sum_assignment(_matrix(cost, "cost"), maximize=bool(maximize))
    return [int(r) for r in rows], [int(c) for c in cols]


@dataclass(frozen=True, slots=True)
class LPResult:
    status: int  # 0 optimal, 1 iteration limit, 2 infeasible, 3 unbounded, 4 numerical trouble
    success: bool
    x: tuple[float, ...]
    fun: float | None
    message: str


def linprog(
    c: Sequence[float],
    A_ub: Sequence[Sequence[float]] | None = None,
    b_ub: Sequence[float] | None = None,
    A_eq: Sequence[Sequence[float]] | None = None,
    b_eq: Sequence[float] | None = None,
    bounds: Sequence[Sequence[float | None]] | None = None,
) -> LPResult:
    """Minimise ``c @ x`` subject to ``A_ub x <= b_ub``, ``A_eq x == b_eq`` and bounds (HiGHS)."""
    kwargs: dict[str, Any] = {"method": "highs"}
    if A_ub is not None:
        kwargs["A_ub"], kwargs["b_ub"] = _matrix(A_ub, "A_ub"), _vector(b_ub or [], "b_ub")
    if A_eq is not None:
        kwargs["A_eq"], kwargs["b_eq"] = _matrix(A_eq, "A_eq"), _vector(b_eq or [], "b_eq")
    if bounds is not None:
        kwargs["bounds"] = [tuple(None if v is None else float(v) for v in pair) for pair in bounds]
    result = optimize.linprog(_vector(c, "c"), **kwargs)
    x = tuple(float(v) for v in result.x) if result.x is not None else ()
    fun = float(result.fun) if result.fun is not None and result.status == 0 else None
    return LPResult(int(result.status), bool(result.success), x, fun, str(result.message))


def solve(a: Sequence[Sequence[float]], b: Sequence[float]) -> list[float]:
    """The solution ``x`` of the square system ``a x = b`` (LAPACK gesv)."""
    return [float(v) for v in np.linalg.solve(_matrix(a, "a"), _vector(b, "b"))]


def matmul(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> list[list[float]]:
    """The matrix product ``a b``."""
    return np.matmul(_matrix(a, "a"), _matrix(b, "b")).tolist()
