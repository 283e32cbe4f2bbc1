"""Small helpers shared by the benchmark scripts: timing and machine description."""

from __future__ import annotations

import os
import platform
import sys
import timeit
from typing import Callable


def machine() -> str:
    """The machine, and which canonical encoding this tree runs: a checkout whose C
    extension was never built (``python setup.py build_ext --inplace``, or the install)
    runs the pure-Python one, and a 4-node cluster then commits ~15 % fewer transactions
    at saturation -- an A/B between two trees must say which each ran."""
    from p2pchain.encoding import IMPLEMENTATION
    return (f"{os.cpu_count()} cores, Python {platform.python_version()} on {platform.machine()} "
            f"({sys.platform}); canonical encoding: {IMPLEMENTATION}")


def rate(fn: Callable[[], object], *, seconds: float = 0.4, repeats: int = 5) -> float:
    """Calls per second of ``fn``: the median of ``repeats`` timed runs of about ``seconds`` each."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * seconds / 0.2))
    runs = sorted(number / t for t in timer.repeat(repeat=repeats, number=number))
    return runs[len(runs) // 2]
