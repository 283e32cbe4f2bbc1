"""The globals a contract module runs with: restricted builtins and the hooks.

A contract module is executed with a fresh globals dict whose ``__builtins__`` is the dict
:func:`contract_globals` builds: only the names in :mod:`.policy`, several wrapped so that
aliasing cannot bypass a static rule (see :mod:`.checks`), ``range`` metered and
``__import__`` handing out proxies (see :mod:`.imports`), plus the hooks the instrumented
code calls (see :mod:`.instrument`), bound to the transaction's meter.
"""

from __future__ import annotations

import builtins
from typing import Any, Callable

from .checks import (
    INPLACE, _ascii, _delattr, _format, _getattr, _hasattr, _iter, _lshift, _pow, _repr,
    _setattr, _type, check_sized, checked_add, checked_mul,
)
from .imports import importer, metered_range, metered_sum
from .meter import Meter
from .policy import CONTRACT_MODULE

__all__ = ["contract_globals", "globals_factory"]

_EXCEPTIONS = (
    "Exception", "ArithmeticError", "AssertionError", "AttributeError", "IndexError", "KeyError",
    "LookupError", "NotImplementedError", "OverflowError", "RuntimeError", "StopIteration",
    "TypeError", "ValueError", "ZeroDivisionError",
)
_PLAIN_BUILTINS = (
    "abs", "all", "any", "bin", "bool", "bytes", "callable", "chr", "dict", "divmod", "enumerate",
    "filter", "float", "hex", "int", "isinstance", "issubclass", "len", "list", "map", "max", "min",
    "next", "oct", "ord", "reversed", "round", "slice", "sorted", "str", "sum", "tuple", "zip",
    "object", "super", "property", "staticmethod", "classmethod", "NotImplemented", "Ellipsis",
    "__build_class__",
) + _EXCEPTIONS

_STATIC_BUILTINS = {name: getattr(builtins, name) for name in _PLAIN_BUILTINS}
_STATIC_BUILTINS.update({
    "pow": _pow, "iter": _iter, "type": _type, "repr": _repr, "ascii": _ascii, "format": _format,
    "getattr": _getattr, "setattr": _setattr, "delattr": _delattr, "hasattr": _hasattr,
})


_STATIC_HOOKS: dict[str, Any] = {
    "__name__": CONTRACT_MODULE,
    "__setattr_checked__": _setattr,
    "__delattr_checked__": _delattr,
    "__base_exception__": BaseException,
    "__add_checked__": checked_add,
    "__mul_checked__": checked_mul,
    "__pow_checked__": _pow,
    "__lshift_checked__": _lshift,
    "__type__": builtins.type,  # the real type, int and the number types, for the inline checks
    "__int__": int,
    "__float_type__": float,
    "__range_type__": builtins.range,  # the real range and len, for the inline charge of range loops
    "__length__": builtins.len,
    "__sized__": check_sized,
    **{f"__inplace_{op}__": hook for op, hook in INPLACE.items()},
}


def globals_factory(meter: Meter) -> Callable[[], dict[str, Any]]:
    """A function that makes a fresh globals dict for each execution of a contract module,
    its hooks bound to ``meter`` (which the caller resets between transactions).

    What is the same for every transaction on this meter is built once, the importer too
    (its metered members are functions bound to the meter, which a contract can call but
    not change: it may set attributes only on what it defined itself, and each import
    hands out a new module proxy). Each call copies two dicts, so no mutable object a
    contract can reach is shared with the next transaction.
    """
    range_ = metered_range(meter)
    steps = meter.steps_iterator
    builtins_template = dict(_STATIC_BUILTINS)
    builtins_template["range"] = range_
    builtins_template["sum"] = metered_sum(meter)
    builtins_template["__import__"] = importer(meter)
    template = dict(_STATIC_HOOKS)
    template.update({
        "__range__": range_,
        "__steps_available__": meter.limit + 1,
        "__steps_remaining__": steps.__length_hint__,
        "__steps_advance__": steps.__setstate__,
        "__charge__": meter.charge,
        "__steps__": steps,
        "__step__": next,  # ``__step__(__steps__)``: the cheapest charge of one step
        "__enter__": meter.enter,
        "__leave__": meter.leave,
        "__fatal__": meter.check,
    })

    def fresh() -> dict[str, Any]:
        namespace = template.copy()
        namespace["__builtins__"] = builtins_template.copy()
        return namespace
    return fresh


def contract_globals(meter: Meter) -> dict[str, Any]:
    """A fresh globals dict for one execution of a contract module, hooks bound to ``meter``."""
    return globals_factory(meter)()
