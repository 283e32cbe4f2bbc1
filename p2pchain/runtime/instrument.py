"""AST instrumentation: the deterministic meter and the run-time checks (issue 5, item 3).

After :func:`.validator.validate` accepts a module, :func:`instrument` rewrites its AST so
that

* every loop iteration, comprehension item, lambda call and generator resumption charges
  one step (``__step__(__steps__)``), and every function call charges one step and one level of call
  depth (``__enter__()`` ... ``finally: __leave__()``); a loop directly over ``range(...)``
  is charged in bulk instead, when the range is made (inline for a ``for`` statement,
  through the ``__range__`` hook in a comprehension);
* ``+``, ``*``, ``**``, ``<<`` and their in-place forms go through size-checked helpers, so a
  doubling string or a ``10 ** 10 ** 9`` fails the same way on every node instead of
  exhausting one node's memory; ``+=`` keeps the interpreter's in-place opcode and checks
  the result inline (``if __type__(x) is not __int__: if ... is not __float_type__: __sized__(x)``),
  because it is the
  hottest operator of numeric loops and a number needs no check (an int grows by one bit);
  ``[constants] * n`` in a function body checks ``n`` inline the same way;
* attribute stores and deletes go through a check that refuses shared objects (modules,
  classes and functions not defined by this contract);
* every ``except`` handler first re-raises what a contract must not swallow (the meter's
  signals, ``MemoryError``, ``RecursionError``).

The helpers' names (:mod:`.hooks`) are dunder names, which the validator refuses in contract
source and which the compiler does not mangle inside class bodies, so a contract can neither
call nor shadow them. A function whose loops use helpers reads them from local aliases
(``__step_local__``...), bound at its entry, because every transaction's globals are new
and their cached lookups cold. Steps count Python-level work only; see docs/contracts.md
for the rule.
"""

from __future__ import annotations

import ast
import copy
import itertools

from .checks import MAX_SEQUENCE
from .hooks import (  # noqa: F401  (HOOKS, INPLACE_HOOK and PENDING are this module's vocabulary too)
    BASE_EXCEPTION, CHARGE, CHECKED_BINOPS, DELATTR, ENTER, FATAL, FLOAT_TYPE, HOOKS, INPLACE_HOOK, INT_TYPE,
    LEAVE, LENGTH, PENDING, PENDING_LIMIT, RANGE_TYPE, SETATTR, SIZED, STEPS_ADVANCE, STEPS_AVAILABLE,
    STEPS_REMAINING, TYPE, FunctionBodies, call, charge_step, constant_fits, is_generator, is_number,
    localise_hooks, over_range, step,
)

__all__ = ["instrument", "HOOKS", "INPLACE_HOOK", "PENDING", "PENDING_LIMIT"]

class _Instrumenter(ast.NodeTransformer):
    def __init__(self, in_function_body: set[int] | None = None) -> None:
        self._temps = itertools.count()
        self._in_function_body = in_function_body or set()
        # The enclosing scopes, innermost last: a plain function's entry is [uses __pending__];
        # a generator, a lambda, a class body (and the module, the empty stack) have None.
        self._scopes: list[list[bool] | None] = []

    def _temp(self) -> str:
        return f"__tmp{next(self._temps)}__"

    def _in_scope(self, node: ast.AST, scope: list[bool] | None) -> None:
        self._scopes.append(scope)
        try:
            self.generic_visit(node)
        finally:
            self._scopes.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        generator = is_generator(node)
        scope = None if generator else [False]
        self._in_scope(node, scope)
        aliases = localise_hooks(node.body)
        if scope is None:
            # A suspended generator is not on the call stack: charge steps, not depth.
            node.body = [step(), *node.body]
        else:
            pending = [ast.Name(id=PENDING, ctx=ast.Load())] if scope[0] else []
            node.body = [
                *([ast.Assign(targets=[ast.Name(id=PENDING, ctx=ast.Store())], value=ast.Constant(0))]
                  if pending else []),
                ast.Expr(call(ENTER)),
                ast.Try(body=node.body, handlers=[], orelse=[], finalbody=[ast.Expr(call(LEAVE, *pending))]),
            ]
        node.body = [*aliases, *node.body]
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.ClassDef:
        self._in_scope(node, None)
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.Lambda:
        self._in_scope(node, None)
        node.body = ast.Subscript(
            value=ast.Tuple(elts=[charge_step(), node.body], ctx=ast.Load()),
            slice=ast.Constant(1), ctx=ast.Load(),
        )
        return node

    def visit_While(self, node: ast.While) -> ast.While:
        self.generic_visit(node)
        node.body = [step(), *node.body]
        return node

    def visit_For(self, node: ast.For) -> ast.stmt | list[ast.stmt]:
        self.generic_visit(node)
        if not over_range(node):
            node.body = [step(), *node.body]
            return node
        scope = self._scopes[-1] if self._scopes else None
        if scope is not None:
            scope[0] = True
            return [ast.copy_location(s, node) for s in self._pending_range(node)]
        return [ast.copy_location(s, node) for s in self._charged_range(node)]

    def _pending_range(self, node: ast.For) -> list[ast.stmt]:
        """``for x in range(...)`` in a function: add the range's length to ``__pending__``.

        A local sum of lengths, handed to the meter once it exceeds :data:`PENDING_LIMIT`
        (before the loop starts) and when the function returns or raises (``__leave__``):
        the count is the same as charging each loop when it starts, and costs a local
        addition instead of three calls into the meter. A transaction may therefore run up to
        ``PENDING_LIMIT`` steps per frame on the stack past its limit before it stops; the
        steps it charged, and its outcome, ``out of steps``, are the same.
        """
        made = self._temp()
        made_by = node.iter
        assert isinstance(made_by, ast.Call)
        pending = ast.Name(id=PENDING, ctx=ast.Load())
        statements: list[ast.stmt] = [
            ast.Assign(targets=[ast.Name(id=made, ctx=ast.Store())], value=call(RANGE_TYPE, *made_by.args)),
            ast.AugAssign(target=ast.Name(id=PENDING, ctx=ast.Store()), op=ast.Add(),
                          value=call(LENGTH, ast.Name(id=made, ctx=ast.Load()))),
            ast.If(test=ast.Compare(left=pending, ops=[ast.Gt()], comparators=[ast.Constant(PENDING_LIMIT)]),
                   body=[ast.Expr(call(CHARGE, ast.Name(id=PENDING, ctx=ast.Load()))),
                         ast.Assign(targets=[ast.Name(id=PENDING, ctx=ast.Store())], value=ast.Constant(0))],
                   orelse=[]),
        ]
        node.iter = ast.Name(id=made, ctx=ast.Load())
        return [*statements, node]

    def _charged_range(self, node: ast.For) -> list[ast.stmt]:
        """``for x in range(...)``: make the range and charge its length inline, then loop.

        What ``__range__`` does, as statements instead of a Python call (the commonest loop
        of numeric code pays one frame less): ``used`` is what the meter's iterator has
        given out, plus the range's length; past the limit, ``__charge__`` raises
        :class:`~.meter.OutOfSteps` (and leaves the meter exhausted) before the loop starts.
        """
        made, used = self._temp(), self._temp()
        made_by = node.iter
        assert isinstance(made_by, ast.Call)
        length = call(LENGTH, ast.Name(id=made, ctx=ast.Load()))
        statements: list[ast.stmt] = [
            ast.Assign(targets=[ast.Name(id=made, ctx=ast.Store())], value=call(RANGE_TYPE, *made_by.args)),
            ast.Assign(targets=[ast.Name(id=used, ctx=ast.Store())], value=ast.BinOp(
                left=ast.BinOp(left=ast.Name(id=STEPS_AVAILABLE, ctx=ast.Load()), op=ast.Sub(),
                               right=call(STEPS_REMAINING)),
                op=ast.Add(), right=length)),
            ast.If(test=ast.Compare(left=ast.Name(id=used, ctx=ast.Load()), ops=[ast.GtE()],
                                    comparators=[ast.Name(id=STEPS_AVAILABLE, ctx=ast.Load())]),
                   body=[ast.Expr(call(CHARGE, call(LENGTH, ast.Name(id=made, ctx=ast.Load()))))], orelse=[]),
            ast.Expr(call(STEPS_ADVANCE, ast.Name(id=used, ctx=ast.Load()))),
        ]
        node.iter = ast.Name(id=made, ctx=ast.Load())
        return [*statements, node]

    def visit_comprehension(self, node: ast.comprehension) -> ast.comprehension:
        self.generic_visit(node)
        if not over_range(node):
            node.ifs.insert(0, ast.Compare(left=charge_step(), ops=[ast.GtE()], comparators=[ast.Constant(0)]))
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        in_function_body = id(node) in self._in_function_body
        self.generic_visit(node)
        hook = CHECKED_BINOPS.get(type(node.op))
        if hook is None or (isinstance(node.op, ast.Add) and (is_number(node.left) or is_number(node.right))):
            return node
        left = node.left
        if (isinstance(node.op, ast.Mult) and in_function_body and isinstance(left, (ast.List, ast.Tuple))
                and left.elts and not any(isinstance(e, ast.Starred) for e in left.elts)):
            return ast.copy_location(self._table(left, node.right), node)
        if constant_fits(node):
            return node  # folded by the compiler; checked here, once
        return ast.copy_location(call(hook, node.left, node.right), node)

    def _table(self, items: ast.List | ast.Tuple, count: ast.expr) -> ast.expr:
        """``[0] * n`` with the size check inline: ``[0] * t if type(t := n) is int and t <= limit``.

        The display's length is known, so the limit on ``n`` is a constant. A display of
        constants is built after ``n`` (which changes nothing); any other display is
        evaluated first, into a temporary, as the plain expression would
        (``d * t if (d := [x]) is not None and type(t := n) is int and ...``). A count that
        is not an int, or is too large, takes the hook, which refuses what is too large.
        """
        count_name = self._temp()
        checks: list[ast.expr] = [
            ast.Compare(left=call(TYPE, ast.NamedExpr(target=ast.Name(id=count_name, ctx=ast.Store()), value=count)),
                        ops=[ast.Is()], comparators=[ast.Name(id=INT_TYPE, ctx=ast.Load())]),
            ast.Compare(left=ast.Name(id=count_name, ctx=ast.Load()), ops=[ast.LtE()],
                        comparators=[ast.Constant(MAX_SEQUENCE // len(items.elts))]),
        ]
        if all(isinstance(e, ast.Constant) for e in items.elts):
            fast_items: ast.expr = items
            slow_items: ast.expr = copy.deepcopy(items)
        else:
            display = self._temp()
            checks.insert(0, ast.Compare(
                left=ast.NamedExpr(target=ast.Name(id=display, ctx=ast.Store()), value=items),
                ops=[ast.IsNot()], comparators=[ast.Constant(None)]))
            fast_items = ast.Name(id=display, ctx=ast.Load())
            slow_items = ast.Name(id=display, ctx=ast.Load())
        fast = ast.BinOp(left=fast_items, op=ast.Mult(), right=ast.Name(id=count_name, ctx=ast.Load()))
        slow = call(CHECKED_BINOPS[ast.Mult], slow_items, ast.Name(id=count_name, ctx=ast.Load()))
        return ast.IfExp(test=ast.BoolOp(op=ast.And(), values=checks), body=fast, orelse=slow)

    def visit_AugAssign(self, node: ast.AugAssign) -> list[ast.stmt]:
        self.generic_visit(node)
        hook = INPLACE_HOOK.format(type(node.op).__name__)
        target = node.target
        unchecked = type(node.op) not in CHECKED_BINOPS or (isinstance(node.op, ast.Add) and is_number(node.value))
        if unchecked and not isinstance(target, ast.Attribute):
            return [node]  # nothing to check: keep the fast in-place opcode
        if isinstance(node.op, ast.Add) and not isinstance(target, ast.Attribute):
            return [ast.copy_location(s, node) for s in self._checked_iadd(node)]
        if isinstance(target, ast.Name):
            value = call(hook, ast.Name(id=target.id, ctx=ast.Load()), node.value)
            return [ast.copy_location(ast.Assign(targets=[target], value=value), node)]
        obj = self._temp()
        statements: list[ast.stmt] = [ast.Assign(targets=[ast.Name(id=obj, ctx=ast.Store())], value=target.value)]
        if isinstance(target, ast.Attribute):
            current = ast.Attribute(value=ast.Name(id=obj, ctx=ast.Load()), attr=target.attr, ctx=ast.Load())
            statements.append(ast.Expr(call(
                SETATTR, ast.Name(id=obj, ctx=ast.Load()), ast.Constant(target.attr),
                call(hook, current, node.value))))
        else:  # Subscript
            key = self._temp()
            statements.append(ast.Assign(targets=[ast.Name(id=key, ctx=ast.Store())], value=target.slice))
            current = ast.Subscript(value=ast.Name(id=obj, ctx=ast.Load()),
                                    slice=ast.Name(id=key, ctx=ast.Load()), ctx=ast.Load())
            store = ast.Subscript(value=ast.Name(id=obj, ctx=ast.Load()),
                                  slice=ast.Name(id=key, ctx=ast.Load()), ctx=ast.Store())
            statements.append(ast.Assign(targets=[store], value=call(hook, current, node.value)))
        return [ast.copy_location(s, node) for s in statements]

    def _checked_iadd(self, node: ast.AugAssign) -> list[ast.stmt]:
        """``x += v`` and ``t[k] += v`` with the in-place opcode and an inline size check.

        The check comes after the operation, as ``checked_add``'s does: ``+`` of two existing
        objects makes at most their combined size, so one operation cannot exhaust memory;
        the oversized result fails the transaction before it is stored.
        """
        target = node.target
        statements: list[ast.stmt] = []
        if isinstance(target, ast.Name):
            result = target.id
            statements.append(ast.AugAssign(target=ast.Name(id=result, ctx=ast.Store()), op=ast.Add(),
                                            value=node.value))
        else:  # Subscript: the evaluation order of ``t[k] += v`` (t, k, t[k], v), as temporaries
            obj, key, result = self._temp(), self._temp(), self._temp()
            statements += [
                ast.Assign(targets=[ast.Name(id=obj, ctx=ast.Store())], value=target.value),
                ast.Assign(targets=[ast.Name(id=key, ctx=ast.Store())], value=target.slice),
                ast.Assign(targets=[ast.Name(id=result, ctx=ast.Store())],
                           value=ast.Subscript(value=ast.Name(id=obj, ctx=ast.Load()),
                                               slice=ast.Name(id=key, ctx=ast.Load()), ctx=ast.Load())),
                ast.AugAssign(target=ast.Name(id=result, ctx=ast.Store()), op=ast.Add(), value=node.value),
            ]
        # Two identity tests, an int first: cheaper than a set lookup of the type.
        def is_not(kind: str) -> ast.expr:
            return ast.Compare(left=call(TYPE, ast.Name(id=result, ctx=ast.Load())), ops=[ast.IsNot()],
                               comparators=[ast.Name(id=kind, ctx=ast.Load())])
        statements.append(ast.If(test=is_not(INT_TYPE), body=[ast.If(
            test=is_not(FLOAT_TYPE), body=[ast.Expr(call(SIZED, ast.Name(id=result, ctx=ast.Load())))],
            orelse=[])], orelse=[]))
        if not isinstance(target, ast.Name):
            statements.append(ast.Assign(
                targets=[ast.Subscript(value=ast.Name(id=obj, ctx=ast.Load()),
                                       slice=ast.Name(id=key, ctx=ast.Load()), ctx=ast.Store())],
                value=ast.Name(id=result, ctx=ast.Load())))
        return statements

    def _store_attribute(self, target: ast.Attribute, value: ast.expr) -> ast.stmt:
        return ast.Expr(call(SETATTR, target.value, ast.Constant(target.attr), value))

    def visit_Assign(self, node: ast.Assign) -> ast.stmt | list[ast.stmt]:
        self.generic_visit(node)
        if not any(isinstance(t, ast.Attribute) for t in node.targets):
            return node
        temp = self._temp()
        statements: list[ast.stmt] = [ast.Assign(targets=[ast.Name(id=temp, ctx=ast.Store())], value=node.value)]
        for target in node.targets:
            value = ast.Name(id=temp, ctx=ast.Load())
            if isinstance(target, ast.Attribute):
                statements.append(self._store_attribute(target, value))
            else:
                statements.append(ast.Assign(targets=[target], value=value))
        return [ast.copy_location(s, node) for s in statements]

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.stmt:
        self.generic_visit(node)
        if isinstance(node.target, ast.Attribute) and node.value is not None:
            return ast.copy_location(self._store_attribute(node.target, node.value), node)
        return node

    def visit_Delete(self, node: ast.Delete) -> list[ast.stmt]:
        self.generic_visit(node)
        statements: list[ast.stmt] = []
        for target in node.targets:
            if isinstance(target, ast.Attribute):
                statements.append(ast.Expr(call(DELATTR, target.value, ast.Constant(target.attr))))
            else:
                statements.append(ast.Delete(targets=[target]))
        return [ast.copy_location(s, node) for s in statements]

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.ExceptHandler:
        self.generic_visit(node)
        if node.type is None:
            node.type = ast.Name(id=BASE_EXCEPTION, ctx=ast.Load())
        if node.name is None:
            node.name = "__exception__"
        node.body = [ast.Expr(call(FATAL, ast.Name(id=node.name, ctx=ast.Load()))), *node.body]
        return node


def instrument(tree: ast.Module) -> ast.Module:
    """Rewrite a validated module in place (see the module docstring) and return it."""
    bodies = FunctionBodies()
    bodies.visit(tree)
    tree = _Instrumenter(bodies.binops).visit(tree)
    return ast.fix_missing_locations(tree)
