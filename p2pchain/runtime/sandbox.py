"""Restricted builtins, vetted module proxies and the run-time checks behind the hooks.

A contract module is executed with a fresh globals dict whose ``__builtins__`` is the dict
:func:`contract_globals` builds: only the names in :mod:`.policy`, several of them wrapped
so that aliasing cannot bypass a static rule (``g = getattr`` is refused by the validator;
``getattr`` itself still refuses ``_`` names at run time). Imports go through
:func:`_import`, which hands out a fresh read-only-in-spirit proxy per import, holding only
vetted names: a contract never holds a real module, so ``math.sys`` or ``market.x.np`` do
not exist for it.

Sizes that a single operation can blow up are checked before the operation (see
``MAX_INT_BITS``, ``MAX_SEQUENCE``), so the failure is the same on every node. What no
check catches in time (an allocation deep inside C code) hits the worker's address-space
limit; the worker then reports a breach and the node halts the channel rather than record
a result that another node might not reproduce.
"""

from __future__ import annotations

import builtins
import copy
import importlib
import itertools
import math
import operator
import re
import types
from typing import Any, Callable

from .meter import ContractFault, Meter
from .policy import CONTRACT_MODULE, RUNTIME_MODULES, STDLIB_MODULES, TRUSTED_PACKAGES
from .validator import check_attribute_name, check_format_spec

__all__ = [
    "MAX_INT_BITS", "MAX_SEQUENCE", "ModuleProxy", "contract_globals", "shows_address",
    "scrub_addresses",
]

MAX_INT_BITS = 1 << 16  # 65,536 bits, ~19,700 decimal digits
MAX_SEQUENCE = 1 << 20  # items of a list or tuple, characters of a str, bytes of bytes
_SIZED = (str, bytes, list, tuple)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def shows_address(text: str) -> bool:
    """Whether ``text`` holds a default ``repr`` (``<X object at 0x7f...>``): ids differ per node."""
    return _ADDRESS.search(text) is not None


def scrub_addresses(text: str) -> str:
    return _ADDRESS.sub(" at 0x?", text)


# -- checked operators ------------------------------------------------------------------------

def _too_big_int(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise ContractFault(f"integer result of about {bits} bits exceeds {MAX_INT_BITS}")


def _too_long(length: int) -> None:
    if length > MAX_SEQUENCE:
        raise ContractFault(f"sequence of {length} items exceeds {MAX_SEQUENCE}")


def _check_mul(a: Any, b: Any) -> None:
    if isinstance(a, int) and isinstance(b, int):
        _too_big_int(a.bit_length() + b.bit_length())
    elif isinstance(b, int) and type(a) in _SIZED:
        _too_long(len(a) * b)
    elif isinstance(a, int) and type(b) in _SIZED:
        _too_long(len(b) * a)


def _check_pow(a: Any, b: Any) -> None:
    if isinstance(a, int) and isinstance(b, int) and b > 0 and a not in (0, 1, -1):
        _too_big_int(a.bit_length() * b)


def _check_lshift(a: Any, b: Any) -> None:
    if isinstance(a, int) and isinstance(b, int) and a:
        _too_big_int(a.bit_length() + b)


def _add(a: Any, b: Any) -> Any:
    result = a + b
    if type(result) in _SIZED:
        _too_long(len(result))
    return result


def _mul(a: Any, b: Any) -> Any:
    kind_a, kind_b = type(a), type(b)
    if kind_a is float or kind_b is float:  # the common numeric case first: nothing to check
        return a * b
    if kind_a is int and kind_b is int:
        _too_big_int(a.bit_length() + b.bit_length())
        return a * b
    _check_mul(a, b)
    return a * b


def _pow(a: Any, b: Any, mod: Any = None) -> Any:
    if mod is None:
        _check_pow(a, b)
        return a ** b
    return builtins.pow(a, b, mod)


def _lshift(a: Any, b: Any) -> Any:
    _check_lshift(a, b)
    return a << b


def _iadd(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:  # ints are immutable: in-place is plain addition
        return a + b
    result = operator.iadd(a, b)
    if type(result) in _SIZED:
        _too_long(len(result))
    return result


def _no_set(result: Any) -> Any:
    if type(result) in (set, frozenset):
        raise ContractFault("this operation made a set (dict views combine into sets), which "
                            "iterates in hash order; build a dict or a sorted list instead")
    return result


def _setless(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda a, b: _no_set(op(a, b))


def _checked_inplace(check: Callable[[Any, Any], None], op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def inplace(a: Any, b: Any) -> Any:
        check(a, b)
        return op(a, b)
    return inplace


_INPLACE = {
    "Add": _iadd, "Sub": _setless(operator.isub), "Mult": _checked_inplace(_check_mul, operator.imul),
    "MatMult": operator.imatmul, "Div": operator.itruediv, "Mod": operator.imod,
    "Pow": _checked_inplace(_check_pow, operator.ipow),
    "LShift": _checked_inplace(_check_lshift, operator.ilshift), "RShift": operator.irshift,
    "BitOr": _setless(operator.ior), "BitXor": _setless(operator.ixor),
    "BitAnd": _setless(operator.iand),
    "FloorDiv": operator.ifloordiv,
}


# -- attribute access --------------------------------------------------------------------------

class ModuleProxy(types.SimpleNamespace):
    """What ``import`` gives a contract: only vetted names, fresh for every import."""


def _owned(obj: Any) -> bool:
    """Whether a contract may set attributes on ``obj``: only on what it created itself."""
    if isinstance(obj, (types.ModuleType, ModuleProxy, types.BuiltinFunctionType, types.MethodType)):
        return False
    if isinstance(obj, (type, types.FunctionType)):
        return getattr(obj, "__module__", None) == CONTRACT_MODULE
    return True


def _kind(obj: Any) -> str:
    if isinstance(obj, type):
        return f"class {obj.__name__}"
    if isinstance(obj, (types.ModuleType, ModuleProxy)):
        return "module"
    return type(obj).__name__


def _name_check(name: Any) -> str:
    if type(name) is not str:
        raise ContractFault("attribute names must be str")
    problem = check_attribute_name(name)
    if problem:
        raise ContractFault(problem)
    return name


def _setattr(obj: Any, name: str, value: Any) -> None:
    _name_check(name)
    if not _owned(obj):
        raise ContractFault(f"cannot set attribute {name!r} on a shared {_kind(obj)}")
    builtins.setattr(obj, name, value)


def _delattr(obj: Any, name: str) -> None:
    _name_check(name)
    if not _owned(obj):
        raise ContractFault(f"cannot delete attribute {name!r} of a shared {_kind(obj)}")
    builtins.delattr(obj, name)


def _getattr(obj: Any, name: str, *default: Any) -> Any:
    return builtins.getattr(obj, _name_check(name), *default)


def _hasattr(obj: Any, name: str) -> bool:
    return builtins.hasattr(obj, _name_check(name))


def _type(obj: Any) -> type:
    kind = builtins.type(obj)
    if issubclass(kind, type):
        raise ContractFault("the type of a class (its metaclass) is not available")
    return kind


def _iter(obj: Any) -> Any:
    return builtins.iter(obj)


def _text(text: str) -> str:
    if shows_address(text):
        raise ContractFault("text shows a memory address, which differs between nodes (give the class a __repr__)")
    return text


def _repr(obj: Any) -> str:
    return _text(builtins.repr(obj))


def _ascii(obj: Any) -> str:
    return _text(builtins.ascii(obj))


def _format(value: Any, spec: str = "") -> str:
    problem = check_format_spec(spec)
    if problem:
        raise ContractFault(problem)
    return _text(builtins.format(value, spec))


def _owned_class(decorator: Callable[..., Any], what: str) -> Callable[..., Any]:
    """Wrap a class decorator that mutates its argument: only the contract's own classes."""
    def wrapped(cls: Any = None, /, **options: Any) -> Any:
        def apply(target: Any) -> Any:
            if not (isinstance(target, type) and _owned(target)):
                raise ContractFault(f"{what} may only decorate classes the contract defines")
            return decorator(target, **options)
        return apply if cls is None else apply(cls)
    return wrapped


# -- metered builtins and modules ------------------------------------------------------------

def _metered_range(meter: Meter) -> Callable[..., range]:
    charge, steps, available = meter.charge, meter.steps_iterator, meter.limit + 1

    def range_(*args: int) -> range:
        r = builtins.range(*args)
        used = available - steps.__length_hint__() + len(r)
        if used >= available:
            charge(len(r))  # raises OutOfSteps, the same way Meter.charge always does
        steps.__setstate__(used)
        return r
    return range_


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
            result = _mul(result, item)
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
        "range": _metered_range(meter), "count": count, "cycle": cycle, "repeat": repeat,
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
        entries["dataclass"] = _owned_class(real.dataclass, "dataclass")
    if module == "functools":
        entries["total_ordering"] = _owned_class(lambda cls: real.total_ordering(cls), "total_ordering")
    return entries


def _runtime_entries(module: str) -> dict[str, Any]:
    real = importlib.import_module(module)
    return {name: getattr(real, name) for name in real.__all__}


def _trusted_entries(module: str, names: tuple[str, ...]) -> dict[str, Any]:
    """Names from reviewed project code: its own functions and classes, or copies of data."""
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
        else:
            entries[name] = copy.deepcopy(obj)  # a contract must not mutate shared data
    return entries


def _importer(meter: Meter) -> Callable[..., ModuleProxy]:
    built: dict[str, Any] = {}

    def metered() -> dict[str, Any]:
        if not built:  # only transactions that import math or itertools pay for these
            built.update(_metered(meter))
        return built

    def import_(name: str, globals_: Any = None, locals_: Any = None, fromlist: Any = (), level: int = 0) -> ModuleProxy:
        if level:
            raise ContractFault("relative imports are not allowed")
        names = tuple(fromlist or ())
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
        return ModuleProxy(**entries)
    return import_


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
    "__add_checked__": _add,
    "__mul_checked__": _mul,
    "__pow_checked__": _pow,
    "__lshift_checked__": _lshift,
    **{f"__inplace_{op}__": hook for op, hook in _INPLACE.items()},
}


def contract_globals(meter: Meter) -> dict[str, Any]:
    """A fresh globals dict for one execution of a contract module, hooks bound to ``meter``."""
    restricted = dict(_STATIC_BUILTINS)
    restricted["range"] = metered_range = _metered_range(meter)
    restricted["__import__"] = _importer(meter)
    namespace = dict(_STATIC_HOOKS)
    namespace["__builtins__"] = restricted
    namespace["__range__"] = metered_range
    namespace["__step__"] = meter.step
    namespace["__enter__"] = meter.enter
    namespace["__leave__"] = meter.leave
    namespace["__fatal__"] = meter.check
    return namespace
