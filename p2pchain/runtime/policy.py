"""What a contract may name: the single list the validator, the sandbox and the docs share.

Everything here is data. :mod:`.validator` refuses source that names anything outside it;
:mod:`.sandbox` builds the restricted builtins and module proxies from it, so a name the
validator lets through is exactly a name the sandbox provides.
"""

from __future__ import annotations

__all__ = [
    "CONTRACT_MODULE",
    "STDLIB_MODULES",
    "RUNTIME_MODULES",
    "TRUSTED_PACKAGES",
    "FORBIDDEN_NAMES",
    "FORBIDDEN_ATTRIBUTES",
    "ALLOWED_DUNDER_METHODS",
    "REFLECTIVE_BUILTINS",
    "MAX_FORMAT_WIDTH",
    "CODECS",
    "CODEC_ERRORS",
]

#: ``__name__`` of every contract module; classes a contract defines carry it.
CONTRACT_MODULE = "contract"

#: Standard-library modules a contract may import (through read-only proxies).
STDLIB_MODULES = (
    "math", "fractions", "itertools", "functools", "bisect", "heapq", "dataclasses", "typing", "enum",
)

#: The runtime's own contract-facing modules (``from p2pchain.runtime.facade import ...``).
RUNTIME_MODULES = ("p2pchain.runtime.facade", "p2pchain.runtime.units")

#: Packages of reviewed, pure project code a contract may import functions from.
TRUSTED_PACKAGES = ("market",)

#: Builtins a contract must never name, with the reason given in the refusal.
FORBIDDEN_NAMES = {
    "exec": "runs code that the validator never saw",
    "eval": "runs code that the validator never saw",
    "compile": "makes code that the validator never saw",
    "open": "touches files",
    "input": "reads the node's terminal",
    "print": "writes to the node's terminal (use ctx.emit)",
    "breakpoint": "starts a debugger",
    "globals": "exposes the module namespace",
    "locals": "exposes frame internals",
    "vars": "exposes object internals",
    "dir": "exposes object internals",
    "help": "reads files and the terminal",
    "memoryview": "exposes raw memory",
    "bytearray": "mutable raw buffers are not needed (use bytes)",
    "id": "object ids differ from node to node",
    "hash": "str and bytes hashes differ with PYTHONHASHSEED",
    "set": "sets of str iterate in hash order, which differs between nodes (use dict.fromkeys or sorted lists)",
    "frozenset": "sets of str iterate in hash order, which differs between nodes (use a tuple or dict keys)",
    "exit": "stops the process",
    "quit": "stops the process",
    "copyright": "reads files",
    "credits": "reads files",
    "license": "reads files",
    "complex": "complex numbers are not needed and not canonical",
    "BaseException": "catching it would swallow the meter's out-of-steps signal",
}

#: getattr/setattr/delattr/hasattr: allowed only as direct calls with a literal name.
REFLECTIVE_BUILTINS = ("getattr", "setattr", "delattr", "hasattr")

#: Attributes that reach frames, code, tracebacks, files, raw memory or other modules.
#: Any attribute starting with ``_`` is refused as well.
FORBIDDEN_ATTRIBUTES = {
    # generator, coroutine and async-generator frames
    "gi_frame", "gi_code", "gi_yieldfrom", "gi_running", "gi_suspended",
    "cr_frame", "cr_code", "cr_await", "cr_origin", "cr_running", "cr_suspended",
    "ag_frame", "ag_code", "ag_await", "ag_running",
    # frames, tracebacks and code objects
    "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "f_lasti", "f_lineno", "f_trace",
    "tb_frame", "tb_next", "tb_lasti", "tb_lineno", "with_traceback",
    "co_code", "co_consts", "co_names", "co_varnames", "co_filename",
    "func_globals", "func_code", "im_func", "im_self", "mro",
    # numpy / scipy paths to files, raw memory and foreign code
    "tofile", "fromfile", "dump", "dumps", "load", "loads", "save", "savez", "savez_compressed",
    "savetxt", "loadtxt", "genfromtxt", "fromregex", "memmap", "ctypes", "ctypeslib",
    "data_as", "f2py", "lib", "io", "DataSource", "distutils", "testing", "os", "sys",
    "builtins", "system", "popen", "getfield", "setfield",
}

#: Special methods a contract's classes may define; others (``__del__``, ``__getattribute__``,
#: ``__exit__``, ``__init_subclass__``, ``__set_name__``, ``__reduce__``...) change how the
#: interpreter itself behaves: finalisers run at GC time, exits swallow exceptions.
ALLOWED_DUNDER_METHODS = frozenset({
    "__init__", "__post_init__", "__repr__", "__str__", "__eq__", "__ne__", "__lt__", "__le__",
    "__gt__", "__ge__", "__hash__", "__len__", "__iter__", "__next__", "__contains__",
    "__getitem__", "__setitem__", "__delitem__", "__bool__", "__call__",
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
    "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__neg__",
    "__pos__", "__abs__",
})

#: Widest field a format string may ask for (a width is a memory allocation).
MAX_FORMAT_WIDTH = 1000

#: Text codecs a contract may name: built into the interpreter, so using one never imports a
#: module (a first use of "cp037" would read a file, and only on nodes that had not yet).
CODECS = frozenset({"utf-8", "utf8", "ascii", "latin-1", "latin1"})  # utf-16/32 use native byte order
CODEC_ERRORS = frozenset({"strict", "ignore", "replace", "backslashreplace", "surrogateescape"})
