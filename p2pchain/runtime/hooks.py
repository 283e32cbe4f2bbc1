"""The names the instrumentation puts in contract code, and what it reads from a tree first.

:mod:`.instrument` rewrites a validated module; this module holds its vocabulary — the hook
names (all ``__`` names, which the validator refuses in contract source, so a contract can
neither call, read nor shadow them) — and the questions it asks of the tree before rewriting
it: which functions are generators, which loops run directly over ``range``, which binary
operations sit in a function body, which hooks a function's loops use (see
:func:`localise_hooks`) and which constant operations are within the size limits.
"""

from __future__ import annotations

import ast

from .checks import MAX_INT_BITS

__all__ = ["HOOKS", "INPLACE_HOOK", "PENDING", "PENDING_LIMIT", "CHECKED_BINOPS", "call", "charge_step",
           "step", "is_number", "constant_fits", "is_generator", "over_range", "FunctionBodies",
           "localise_hooks"]

STEP = "__step__"  # the builtin ``next``: ``__step__(__steps__)`` charges one step
STEPS = "__steps__"  # the meter's iterator
ENTER = "__enter__"
LEAVE = "__leave__"
FATAL = "__fatal__"
SETATTR = "__setattr_checked__"
DELATTR = "__delattr_checked__"
BASE_EXCEPTION = "__base_exception__"
RANGE = "__range__"
RANGE_TYPE = "__range_type__"
LENGTH = "__length__"
STEPS_AVAILABLE = "__steps_available__"
STEPS_REMAINING = "__steps_remaining__"
STEPS_ADVANCE = "__steps_advance__"
CHARGE = "__charge__"
TYPE = "__type__"
FLOAT_TYPE = "__float_type__"
#: A function's local sum of range lengths not yet charged (see :mod:`.instrument`); a local
#: variable, not a hook, so not in :data:`HOOKS`, and as unnameable in contract source.
PENDING = "__pending__"
PENDING_LIMIT = 1024
INT_TYPE = "__int__"
SIZED = "__sized__"
CHECKED_BINOPS = {ast.Add: "__add_checked__", ast.Mult: "__mul_checked__",
                  ast.Pow: "__pow_checked__", ast.LShift: "__lshift_checked__"}
#: In-place operators, by AST class name, each to a hook ``__inplace_<Name>__``.
INPLACE_HOOK = "__inplace_{}__"
HOOKS = (STEP, STEPS, ENTER, LEAVE, FATAL, SETATTR, DELATTR, BASE_EXCEPTION, RANGE, RANGE_TYPE, LENGTH,
         STEPS_AVAILABLE, STEPS_REMAINING, STEPS_ADVANCE, CHARGE, TYPE, FLOAT_TYPE, INT_TYPE, SIZED,
         *CHECKED_BINOPS.values())


def call(name: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=list(args), keywords=[])


def charge_step() -> ast.Call:
    """One step: ``next`` of the meter's iterator, a specialised call of a C builtin (cheaper
    than calling the iterator's bound ``__next__``, which goes through a method wrapper)."""
    return call(STEP, ast.Name(id=STEPS, ctx=ast.Load()))


def step() -> ast.stmt:
    return ast.Expr(charge_step())


def is_number(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float, bool)


def constant_fits(node: ast.BinOp) -> bool:
    """``1 << 60``, ``2 ** 10``, ``10 * 3``: int constants whose result is within the size limit.

    Such an operation is the same on every node and the compiler folds it; checking it once
    here spares the hook's call at every execution. Bounds are by bit length, never by
    computing the result (``10 ** 10 ** 9`` must not run here).
    """
    left, right = node.left, node.right
    if not (isinstance(left, ast.Constant) and isinstance(right, ast.Constant)
            and type(left.value) is int and type(right.value) is int):
        return False
    a, b = left.value, right.value
    if isinstance(node.op, ast.LShift):
        return 0 <= b and a.bit_length() + b <= MAX_INT_BITS
    if isinstance(node.op, ast.Pow):
        return 0 <= b and a.bit_length() * b <= MAX_INT_BITS
    if isinstance(node.op, ast.Mult):
        return a.bit_length() + b.bit_length() <= MAX_INT_BITS
    return False


def is_generator(node: ast.FunctionDef) -> bool:
    stack: list[ast.AST] = list(node.body)
    while stack:
        current = stack.pop()
        if isinstance(current, (ast.Yield, ast.YieldFrom)):
            return True
        if not isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(current))
    return False


def over_range(node: ast.For | ast.comprehension) -> bool:
    """``for x in range(...)``: the loop's items were all charged when the range was made.

    The call is pointed at the ``__range__`` hook, which a contract cannot rebind, so the
    per-item charge may be skipped: the loop cannot run longer than was paid for.
    """
    made_by = node.iter
    if (isinstance(made_by, ast.Call) and isinstance(made_by.func, ast.Name) and made_by.func.id == "range"
            and not made_by.keywords and 1 <= len(made_by.args) <= 3
            and not any(isinstance(a, ast.Starred) for a in made_by.args)):
        made_by.func = ast.Name(id=RANGE, ctx=ast.Load())
        return True
    return False


class FunctionBodies(ast.NodeVisitor):
    """Which ``BinOp`` nodes sit directly in a function body, where a ``:=`` may name a temporary.

    Not in a lambda, a class body, a comprehension (whose ``:=`` binds elsewhere, and is
    refused in some positions) nor the defaults and decorators a function's scope evaluates.
    """

    def __init__(self) -> None:
        self._scopes = ["module"]
        self.binops: set[int] = set()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for outer in (*node.decorator_list, node.args, *([node.returns] if node.returns else [])):
            self.visit(outer)
        self._scopes.append("function")
        for statement in node.body:
            self.visit(statement)
        self._scopes.pop()

    def _other(self, node: ast.AST) -> None:
        self._scopes.append("other")
        self.generic_visit(node)
        self._scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_ClassDef = visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _other

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if self._scopes[-1] == "function":
            self.binops.add(id(node))
        self.generic_visit(node)


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_LOOPS = (ast.For, ast.While, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _is_hook(name: str) -> bool:
    """A name the instrumentation introduced (a contract may not use ``__`` names at all)."""
    return name in HOOKS or name.startswith("__inplace_")


def _alias(name: str) -> str:
    return name[:-2] + "_local__"


def localise_hooks(body: list[ast.stmt]) -> list[ast.stmt]:
    """Read the hooks a function's loops call from local variables, not from its globals.

    A loop that calls ``__step__`` or checks ``__type__`` pays a global lookup per use, and
    the interpreter's cache of global lookups is keyed by the globals dict, which is new for
    every transaction, so each transaction starts with cold caches. A local read costs the
    least there is. The function's own scope is rewritten (and the comprehensions in it, which
    see its locals as closures); nested functions, lambdas and classes have their own aliases.
    Returns the assignments ``__step_local__ = __step__``... to put first in the body.
    """
    in_loops: set[str] = set()
    names: list[ast.Name] = []
    stack: list[tuple[ast.AST, bool]] = [(statement, False) for statement in body]
    while stack:
        current, looping = stack.pop()
        if isinstance(current, ast.Name) and isinstance(current.ctx, ast.Load) and _is_hook(current.id):
            names.append(current)
            if looping:
                in_loops.add(current.id)
        looping = looping or isinstance(current, _LOOPS)
        stack.extend((child, looping) for child in ast.iter_child_nodes(current) if not isinstance(child, _SCOPES))
    for name in names:
        if name.id in in_loops:
            name.id = _alias(name.id)
    return [ast.Assign(targets=[ast.Name(id=_alias(hook), ctx=ast.Store())], value=ast.Name(id=hook, ctx=ast.Load()))
            for hook in sorted(in_loops)]
