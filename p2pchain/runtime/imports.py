"""What ``import`` gives a contract: fresh proxies holding vetted, metered names.

A contract never holds a real module, so ``math.sys`` or ``market.x.np`` do not exist for
it. Each import builds a new :class:`ModuleProxy`, so a contract that assigns to a proxy
changes nothing for the next transaction. Members that iterate in C are metered: ``range``
and the combinatoric iterators are charged their item count up front, ``count``, ``cycle``
and ``repeat`` per item; ``math.factorial``, ``comb``, ``perm`` and ``prod`` are size-checked.
"""

from __future__ import annotations

import builtins
import copy
import importlib
import itertools
import math
import types
from fractions import Fraction
from typing import Any, Callable

from .checks import MAX_INT_BITS, ModuleProxy, checked_add, checked_mul, owned_class
from .meter import ContractFault, Meter
from .policy import RUNTIME_MODULES, STDLIB_MODULES, TRUSTED_PACKAGES

__all__ = ["metered_range", "metered_sum", "importer"]

_ABSENT = object()  # an argument not given (None is a wrong argument, as for the builtin)
range_type = builtins.range


def metered_range(meter: Meter) -> Callable[..., range_type]:
    """``range`` that charges its length when it is made (loops over it then charge nothing).

    The hottest hook of numeric contracts: it names its arguments (no ``*args`` tuple) and
    holds the meter's iterator methods bound, so a call is one small Python frame.
    """
    steps = meter.steps_iterator
    remaining, advance, charge, available = steps.__length_hint__, steps.__setstate__, meter.charge, meter.limit + 1
    real = builtins.range

    def range(start: int, stop: Any = _ABSENT, step: Any = _ABSENT, /) -> range_type:  # noqa: A001
        if stop is _ABSENT:
            r = real(start)
        elif step is _ABSENT:
            r = real(start, stop)
        else:
            r = real(start, stop, step)
        used = available - remaining() + len(r)
        if used >= available:
            charge(len(r))  # raises OutOfSteps, the same way Meter.charge always does
        advance(used)
        return r
    return range


def metered_sum(meter: Meter) -> Callable[..., Any]:
    """``sum`` that adds sequences (``sum(lists, [])``, quadratic in C) one metered step at a time."""
    step = meter.step

    def sum_(iterable: Any, /, start: Any = 0) -> Any:
        if type(start) in (int, float, bool) or isinstance(start, Fraction):
            return builtins.sum(iterable, start)
        result = start
        for item in iterable:
            step()
            result = checked_add(result, item)
        return result
    return sum_


def _metered(meter: Meter) -> dict[str, Any]:
    """Builtins and itertools members that iterate in C: charged in bulk, or per item."""

    def count(start: int = 0, step: int = 1):
        value = start
        while True:
            meter.step()
            yield value
            value += step

    def cycle(iterable: Any):
        saved = list(iterable)
        meter.charge(len(saved))
        while saved:
            for item in saved:
                meter.step()
                yield item

    def repeat(obj: Any, times: int | None = None):
        if times is not None:
            meter.charge(times)
            return itertools.repeat(obj, times)
        return (obj for _ in count())

    def combinatoric(name: str, size: Callable[..., int]) -> Callable[..., Any]:
        real = getattr(itertools, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            pools = [tuple(a) if not isinstance(a, int) else a for a in args]
            meter.charge(size(*pools, **kwargs))
            return real(*pools, **kwargs)
        return wrapped

    def product_size(*pools: tuple, repeat: int = 1) -> int:
        return math.prod(len(p) for p in pools) ** repeat if pools else 1

    def perm_size(pool: tuple, r: int | None = None) -> int:
        return math.perm(len(pool), len(pool) if r is None else r)

    def comb_size(pool: tuple, r: int) -> int:
        return math.comb(len(pool), r)

    def comb_rep_size(pool: tuple, r: int) -> int:
        return math.comb(len(pool) + r - 1, r) if pool else 0

    def prod(iterable: Any, *, start: Any = 1) -> Any:
        result = start
        for item in iterable:
            meter.step()
            result = checked_mul(result, item)
        return result

    def factorial(n: int) -> int:
        if n > 5000:
            raise ContractFault("factorial argument above 5000")
        return math.factorial(n)

    def comb(n: int, k: int) -> int:
        if n > MAX_INT_BITS:
            raise ContractFault(f"comb argument above {MAX_INT_BITS}")
        return math.comb(n, k)

    def perm(n: int, k: int | None = None) -> int:
        if n > 5000:
            raise ContractFault("perm argument above 5000")
        return math.perm(n, k)

    return {
        "range": metered_range(meter), "count": count, "cycle": cycle, "repeat": repeat,
        "product": combinatoric("product", product_size),
        "permutations": combinatoric("permutations", perm_size),
        "combinations": combinatoric("combinations", comb_size),
        "combinations_with_replacement": combinatoric("combinations_with_replacement", comb_rep_size),
        "prod": prod, "factorial": factorial, "comb": comb, "perm": perm,
    }


_STDLIB_NAMES = {
    "math": [n for n in dir(math) if not n.startswith("_")],
    "fractions": ["Fraction"],
    "itertools": ["accumulate", "chain", "combinations", "combinations_with_replacement",
                  "compress", "count", "cycle", "dropwhile", "filterfalse", "groupby", "islice",
                  "pairwise", "permutations", "product", "repeat", "starmap", "takewhile", "tee",
                  "zip_longest"],
    "functools": ["reduce", "partial", "cmp_to_key", "lru_cache", "cache", "total_ordering"],
    "bisect": ["bisect", "bisect_left", "bisect_right", "insort", "insort_left", "insort_right"],
    "heapq": ["heappush", "heappop", "heapify", "heapreplace", "heappushpop", "nlargest",
              "nsmallest", "merge"],
    "dataclasses": ["dataclass", "field", "fields", "asdict", "astuple", "replace",
                    "is_dataclass", "FrozenInstanceError", "KW_ONLY", "InitVar"],
    "typing": ["Any", "Optional", "Union", "List", "Dict", "Tuple", "Sequence", "Mapping",
               "Iterable", "Iterator", "Callable", "Final", "Literal"],
    "enum": ["Enum", "IntEnum", "auto", "unique"],
}
assert tuple(_STDLIB_NAMES) == STDLIB_MODULES


def _stdlib_entries(module: str, metered: dict[str, Any]) -> dict[str, Any]:
    real = importlib.import_module(module)
    entries = {name: getattr(real, name) for name in _STDLIB_NAMES[module]}
    if module in ("math", "itertools"):
        entries.update({k: v for k, v in metered.items() if k in entries})
    if module == "dataclasses":
        entries["dataclass"] = owned_class(real.dataclass, "dataclass")
    if module == "functools":
        entries["total_ordering"] = owned_class(lambda cls: real.total_ordering(cls), "total_ordering")
    return entries


def _runtime_entries(module: str) -> dict[str, Any]:
    real = importlib.import_module(module)
    return {name: getattr(real, name) for name in real.__all__}


def _trusted_entries(module: str, names: tuple[str, ...]) -> dict[str, Any]:
    """Names from reviewed project code: its own functions and classes, and data (which
    :func:`importer` hands out shared only if immutable, else as each import's own copy)."""
    try:
        real = importlib.import_module(module)
    except ImportError as exc:
        raise ContractFault(f"cannot import {module!r}: {exc}") from None
    entries = {}
    for name in names:
        if name.startswith("_") or not hasattr(real, name):
            raise ContractFault(f"{module!r} has no public name {name!r}")
        obj = getattr(real, name)
        if isinstance(obj, types.ModuleType):
            raise ContractFault(f"{module}.{name} is a module; import functions or classes from it")
        if callable(obj):
            origin = getattr(obj, "__module__", "") or ""
            if not any(origin == p or origin.startswith(p + ".") for p in TRUSTED_PACKAGES):
                raise ContractFault(f"{module}.{name} comes from {origin!r}, not from a trusted package")
        entries[name] = obj
    return entries


_IMMUTABLE_SCALARS = (str, int, float, bool, bytes, type(None), Fraction)


def _immutable(obj: Any) -> bool:
    """Whether ``obj`` is data no contract can change (so it may be handed out shared)."""
    if isinstance(obj, (tuple, frozenset)):
        return all(_immutable(item) for item in obj)
    return type(obj) in _IMMUTABLE_SCALARS


def _fresh(value: Any) -> Callable[[], Any]:
    """How each import gets its own ``value``: a new proxy of a proxy's names, a copy of data."""
    if isinstance(value, ModuleProxy):
        names = dict(vars(value))
        return lambda: ModuleProxy(**names)
    return lambda: copy.deepcopy(value)


def _entries(name: str, names: tuple[str, ...], metered: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """What ``from name import names`` (or ``import name``) offers, checked; ContractFault if refused."""
    if name in STDLIB_MODULES:
        entries = _stdlib_entries(name, metered() if name in ("math", "itertools") else {})
    elif name in RUNTIME_MODULES:
        entries = _runtime_entries(name)
    elif name == "p2pchain.runtime" and names and all(n in ("facade", "units") for n in names):
        entries = {n: ModuleProxy(**_runtime_entries(f"p2pchain.runtime.{n}")) for n in names}
    elif names and any(name.startswith(p + ".") for p in TRUSTED_PACKAGES):
        entries = _trusted_entries(name, names)
    else:
        raise ContractFault(f"import of {name!r} is not allowed")
    for wanted in names:
        if wanted not in entries:
            raise ContractFault(f"{name!r} offers no {wanted!r} to contracts")
    return entries


def importer(meter: Meter) -> Callable[..., ModuleProxy]:
    """The ``__import__`` of one executor's contracts (its metered members bound to ``meter``).

    What an import offers is resolved and checked once per executor and kept: the names are
    the same for every transaction (reviewed code, fixed for the process), and resolving them
    was a tenth of a market contract's time. What a transaction receives is still its own: a
    new proxy per import, and its own deep copy of any mutable data; functions, classes and
    immutable data are shared, and a contract can set attributes only on what it defined.
    """
    built: dict[str, Any] = {}
    # (module, imported names) -> (shared entries, (name, maker of a fresh value) per import)
    resolved: dict[tuple[str, tuple[str, ...]], tuple[dict[str, Any], tuple[tuple[str, Callable[[], Any]], ...]]] = {}

    def metered() -> dict[str, Any]:
        if not built:  # only transactions that import math or itertools pay for these
            built.update(_metered(meter))
        return built

    def import_(name: str, globals_: Any = None, locals_: Any = None, fromlist: Any = (), level: int = 0) -> ModuleProxy:
        if level:
            raise ContractFault("relative imports are not allowed")
        key = (name, tuple(fromlist or ()))
        plan = resolved.get(key)
        if plan is None:
            entries = _entries(name, key[1], metered)
            shared = {n: v for n, v in entries.items()
                      if not isinstance(v, ModuleProxy) and (callable(v) or _immutable(v))}
            plan = resolved[key] = (shared, tuple((n, _fresh(v)) for n, v in entries.items() if n not in shared))
        shared, fresh = plan
        if not fresh:
            return ModuleProxy(**shared)
        return ModuleProxy(**shared, **{n: make() for n, make in fresh})
    return import_
