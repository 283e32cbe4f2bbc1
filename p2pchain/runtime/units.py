"""The one rounding rule between a float computed inside a contract and the ledger.

Ledger quantities are integers in fixed units (Wh, W, milli-currency; DESIGN.md decision 6).
A contract may compute with floats — an LP's optimum, a power flow — but before a result is
written, emitted or returned it goes through :func:`to_units`, which rounds the *exact*
binary value of the float, divided by the unit, to the nearest integer, ties to even
(IEEE 754 roundTiesToEven, the rule Python's ``round`` also uses). Exact rational arithmetic
(:class:`fractions.Fraction`) makes the division itself exact, so the rule depends on
nothing but the input's bits.
"""

from __future__ import annotations

import math
from fractions import Fraction

__all__ = ["round_half_even", "to_units"]


def round_half_even(value: int | float | Fraction) -> int:
    """The integer nearest ``value``; a tie goes to the even neighbour.

    >>> [round_half_even(x) for x in (0.5, 1.5, 2.5, -0.5, 2.4999, 7)]
    [0, 2, 2, 0, 2, 7]
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"cannot round {value!r} to an integer")
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
        raise TypeError(f"cannot round a {type(value).__name__}")
    return round(Fraction(value))


def to_units(value: int | float | Fraction, unit: int | float | Fraction = 1) -> int:
    """How many whole ``unit`` make ``value``, rounded half to even.

    ``to_units(energy_kwh, Fraction(1, 1000))`` gives Wh; ``to_units(price, 0.001)`` gives
    milli-currency (0.001 is first taken at its exact binary value, so prefer a Fraction).

    >>> to_units(1.2345, Fraction(1, 1000)), to_units(2.5), to_units(0.0125, Fraction(1, 100))
    (1234, 2, 1)
    """
    if isinstance(unit, float) and not math.isfinite(unit):
        raise ValueError(f"unit {unit!r} is not finite")
    if unit == 0:
        raise ValueError("unit must not be zero")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"cannot convert {value!r} to units")
    return round_half_even(Fraction(value) / Fraction(unit))
