"""Run-time checks behind the instrumentation hooks and the wrapped builtins.

The validator's static rules can be dodged by aliasing (``g = getattr``) or by values it
cannot see (a ``str`` that is a format template, an ``int`` that is ``10 ** 9``). The
helpers here repeat those rules at run time and refuse, with a :class:`ContractFault`,
what a single operation could otherwise blow up: sizes are checked *before* the
operation (``MAX_INT_BITS``, ``MAX_SEQUENCE``), so the failure is the same on every node.
What no check catches in time (an allocation deep inside C code) hits the worker's
address-space limit; the worker then reports a breach and the node halts the channel
rather than record a result that another node might not reproduce.
"""

from __future__ import annotations

import builtins
import operator
import re
import types
from fractions import Fraction
from typing import Any, Callable

from .meter import ContractFault
from .policy import CONTRACT_MODULE
from .validator import check_attribute_name, check_format_spec

__all__ = [
    "MAX_INT_BITS", "MAX_SEQUENCE", "ModuleProxy", "shows_address", "scrub_addresses",
    "owned_class", "INPLACE", "checked_add", "checked_mul", "check_sized",
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


def _bits(x: Any) -> int | None:
    """Size of an exact number (int or Fraction) in bits; ``None`` for anything else."""
    if isinstance(x, int):
        return x.bit_length()
    if isinstance(x, Fraction):
        return x.numerator.bit_length() + x.denominator.bit_length()
    return None


def _check_mul(a: Any, b: Any) -> None:
    bits_a, bits_b = _bits(a), _bits(b)
    if bits_a is not None and bits_b is not None:
        _too_big_int(bits_a + bits_b)
    elif isinstance(b, int) and type(a) in _SIZED:
        _too_long(len(a) * b)
    elif isinstance(a, int) and type(b) in _SIZED:
        _too_long(len(b) * a)


def _check_pow(a: Any, b: Any) -> None:
    bits = _bits(a)
    if bits is not None and isinstance(b, int) and a not in (0, 1, -1):
        # an int to a negative power is a float; a Fraction's is exact, and as large
        _too_big_int(bits * (abs(b) if isinstance(a, Fraction) else max(b, 0)))


def _check_lshift(a: Any, b: Any) -> None:
    if isinstance(a, int) and isinstance(b, int) and a:
        _too_big_int(a.bit_length() + b)


def check_sized(result: Any) -> None:
    """The check after an in-place ``+=`` whose result is not an int (see :mod:`.instrument`)."""
    if type(result) in _SIZED:
        _too_long(len(result))


def checked_add(a: Any, b: Any) -> Any:
    result = a + b
    if type(result) in _SIZED:
        _too_long(len(result))
    return result


def checked_mul(a: Any, b: Any) -> Any:
    kind_a, kind_b = type(a), type(b)
    if kind_a is float or kind_b is float:  # the common numeric case first: nothing to check
        return a * b
    if kind_a is int and kind_b is int:
        _too_big_int(a.bit_length() + b.bit_length())
        return a * b
    if kind_b is int and kind_a in _SIZED:  # [0] * n, the usual way to make a table
        if len(a) * b > MAX_SEQUENCE:
            _too_long(len(a) * b)
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


INPLACE = {
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


def owned_class(decorator: Callable[..., Any], what: str) -> Callable[..., Any]:
    """Wrap a class decorator that mutates its argument: only the contract's own classes."""
    def wrapped(cls: Any = None, /, **options: Any) -> Any:
        def apply(target: Any) -> Any:
            if not (isinstance(target, type) and _owned(target)):
                raise ContractFault(f"{what} may only decorate classes the contract defines")
            return decorator(target, **options)
        return apply if cls is None else apply(cls)
    return wrapped
