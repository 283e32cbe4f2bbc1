"""The contract validator: an AST walk that refuses, with line and reason, what a contract
must never do (DESIGN.md decision 6; issue 5, item 2).

CometBFT's list of what application code must never do — read a clock, use randomness,
compute with floats where results are compared, iterate unordered collections, serialise
non-canonically, touch files or the network — is the reason for most rules here; the rest
close the known ways out of a Python sandbox: reaching ``__class__``/``__subclasses__``,
``__globals__``, frames (``gi_frame``, ``f_back``, ``tb_frame``), ``__builtins__``, format
strings that read attributes (``"{0.__class__}".format(x)``), ``exec``/``eval``/``compile``,
and numpy's file and ``ctypes`` paths. The walk is deliberately conservative: a refusal
costs a contract author a rewrite, an omission costs the chain.

The checks are static; :mod:`.sandbox` repeats those that can be evaded by aliasing
(``g = getattr``) at run time, and :mod:`.instrument` adds the meter.
"""

from __future__ import annotations

import ast
import re
import string
from dataclasses import dataclass

from .policy import (
    ALLOWED_DUNDER_METHODS, CODEC_ERRORS, CODECS, FORBIDDEN_ATTRIBUTES, FORBIDDEN_NAMES, MAX_FORMAT_WIDTH,
    REFLECTIVE_BUILTINS, RUNTIME_MODULES, STDLIB_MODULES, TRUSTED_PACKAGES,
)

__all__ = [
    "Refusal", "ContractRefused", "validate", "check_template", "check_format_spec",
    "check_percent_template", "check_attribute_name",
]


@dataclass(frozen=True, slots=True)
class Refusal:
    """One rule a contract breaks, where."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class ContractRefused(Exception):
    """A contract that the validator refuses; ``refusals`` lists every rule broken."""

    def __init__(self, refusals: list[Refusal]) -> None:
        self.refusals = tuple(refusals)
        super().__init__("; ".join(str(r) for r in refusals))


def check_attribute_name(name: str) -> str | None:
    """Why ``name`` may not be read as an attribute, or ``None`` if it may."""
    if name.startswith("_"):
        return f"attribute {name!r} starts with '_' (reaches interpreter internals)"
    if name in FORBIDDEN_ATTRIBUTES:
        return f"attribute {name!r} reaches frames, code, files or raw memory"
    if name in ("format", "format_map"):
        return f"{name} on a non-literal template can read attributes"
    return None


def check_format_spec(spec: str) -> str | None:
    """Why a format spec (``">10"``, ``".3f"``) is refused: a huge width or precision is a
    huge allocation."""
    for digits in re.findall(r"\d+", spec):
        if int(digits) > MAX_FORMAT_WIDTH:
            return f"format width or precision {digits} exceeds {MAX_FORMAT_WIDTH}"
    return None


_PERCENT_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?")


def check_percent_template(template: str) -> str | None:
    """Why a ``%``-format template is refused: ``*`` or huge widths and precisions."""
    for width, precision in _PERCENT_FIELD.findall(template):
        for value in (width, precision):
            if value == "*":
                return "'*' widths in %-formatting come from data and can be huge"
            if value and int(value) > MAX_FORMAT_WIDTH:
                return f"format width or precision {value} exceeds {MAX_FORMAT_WIDTH}"
    return None


def check_template(template: str) -> str | None:
    """Why a ``str.format`` template is refused: attribute reads or huge widths."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"malformed format template: {exc}"
    for _, field_name, spec, _ in fields:
        if field_name is None:
            continue
        for part in field_name.replace("[", ".[").split(".")[1:]:
            if not part.startswith("["):
                problem = check_attribute_name(part)
                if problem:
                    return f"format template reads {problem}"
        if spec and ("{" in spec or check_format_spec(spec)):
            return check_format_spec(spec) or "nested fields in a format spec"
    return None


class _Validator(ast.NodeVisitor):
    def __init__(self) -> None:
        self.refusals: list[Refusal] = []
        self._class_depth = 0  # > 0 directly inside a class body
        self._allowed_calls: set[int] = set()  # ids of Name/Attribute nodes vetted as call targets

    def refuse(self, node: ast.AST, reason: str) -> None:
        self.refusals.append(Refusal(getattr(node, "lineno", 0), reason))

    # -- names ------------------------------------------------------------------------------

    def _identifier(self, node: ast.AST, name: str | None, what: str) -> None:
        if name is None:
            return
        if name == "range" and what != "name":
            self.refuse(node, "'range' is the metered builtin and may not be rebound")
        elif name.startswith("__"):
            self.refuse(node, f"{what} {name!r} starts with '__' (reserved for the interpreter)")
        elif name in FORBIDDEN_NAMES:
            self.refuse(node, f"{what} {name!r} is forbidden: {FORBIDDEN_NAMES[name]}")

    def visit_Name(self, node: ast.Name) -> None:
        if node.id == "range" and not isinstance(node.ctx, ast.Load):
            self.refuse(node, "'range' is the metered builtin and may not be rebound")
        if node.id in REFLECTIVE_BUILTINS and id(node) not in self._allowed_calls:
            self.refuse(node, f"{node.id} may only be called directly with a literal attribute name")
        self._identifier(node, node.id, "name")

    def visit_arg(self, node: ast.arg) -> None:
        self._identifier(node, node.arg, "argument")
        self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> None:
        self._identifier(node, node.arg, "keyword")
        self.generic_visit(node)

    def visit_alias(self, node: ast.alias) -> None:
        if node.name.startswith("_"):
            self.refuse(node, f"importing {node.name!r}: private names are refused")
        self._identifier(node, node.asname, "import alias")

    # -- imports ----------------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in STDLIB_MODULES:
                self.refuse(node, f"import of {alias.name!r} is not allowed; allowed: "
                            f"{', '.join(STDLIB_MODULES)} (use 'from ... import' for "
                            f"{', '.join(RUNTIME_MODULES + tuple(p + '.*' for p in TRUSTED_PACKAGES))})")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        allowed = (
            module in STDLIB_MODULES
            or module in RUNTIME_MODULES
            or (module == "p2pchain.runtime" and all(a.name in ("facade", "units") for a in node.names))
            or any(module.startswith(p + ".") for p in TRUSTED_PACKAGES)
        )
        if node.level:
            self.refuse(node, "relative imports are not allowed")
        elif not allowed:
            self.refuse(node, f"import from {module!r} is not allowed")
        if any(a.name == "*" for a in node.names):
            self.refuse(node, "'import *' hides which names a contract uses")
        self.generic_visit(node)

    # -- attributes and calls ---------------------------------------------------------------

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in ("format", "format_map"):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                problem = check_template(node.value.value)
                if problem:
                    self.refuse(node, problem)
            else:
                self.refuse(node, f"{node.attr} is allowed only on a string literal (a template "
                            "from data could read attributes)")
        else:
            problem = check_attribute_name(node.attr)
            if problem:
                self.refuse(node, problem)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in REFLECTIVE_BUILTINS:
            self._allowed_calls.add(id(func))
            name = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                self.refuse(node, f"{func.id} needs a literal attribute name")
            else:
                problem = check_attribute_name(name.value)
                if problem:
                    self.refuse(node, f"{func.id}: {problem}")
        if isinstance(func, ast.Name) and func.id == "type" and (len(node.args) != 1 or node.keywords):
            self.refuse(node, "type() with other than one argument creates classes dynamically")
        if isinstance(func, ast.Attribute) and func.attr in ("encode", "decode"):
            self._codec_arguments(node, node.args, 0)
        if isinstance(func, ast.Name) and func.id in ("str", "bytes"):
            self._codec_arguments(node, node.args, 1)
        if isinstance(func, ast.Name) and func.id == "iter" and len(node.args) != 1:
            self.refuse(node, "iter(callable, sentinel) can loop without metering")
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
            problem = check_percent_template(node.left.value)
            if problem:
                self.refuse(node, problem)
        if isinstance(node.op, (ast.Sub, ast.BitAnd, ast.BitOr, ast.BitXor)) and (
            _is_view(node.left) or _is_view(node.right)
        ):
            self.refuse(node, "set operations on dict views make sets, which iterate in hash order "
                        "(use a dict comprehension or sorted())")
        self.generic_visit(node)

    def _codec_arguments(self, node: ast.Call, args: list[ast.expr], first: int) -> None:
        """Codec names must be literal built-in codecs: any other is imported on first use."""
        named = {k.arg: k.value for k in node.keywords if k.arg in ("encoding", "errors")}
        positional = dict(zip(("encoding", "errors"), args[first:first + 2]))
        for role, value in {**positional, **named}.items():
            allowed = CODECS if role == "encoding" else CODEC_ERRORS
            if not (isinstance(value, ast.Constant) and isinstance(value.value, str)
                    and value.value.lower().replace("_", "-") in allowed):
                self.refuse(node, f"{role} must be a literal one of {', '.join(sorted(allowed))} "
                            "(other codecs are imported from files on first use)")

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        for value in node.values:
            if isinstance(value, ast.FormattedValue) and isinstance(value.format_spec, ast.JoinedStr):
                for part in value.format_spec.values:
                    if isinstance(part, ast.Constant):
                        problem = check_format_spec(str(part.value))
                        if problem:
                            self.refuse(node, problem)
                    else:
                        self.refuse(node, "computed format specs are not allowed")
        self.generic_visit(node)

    # -- definitions ------------------------------------------------------------------------

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if node.name.startswith("__") and not (
            self._class_depth and node.name in ALLOWED_DUNDER_METHODS
        ):
            self.refuse(node, f"defining {node.name!r} is not allowed"
                        + ("" if self._class_depth else " outside a class"))
        elif not node.name.startswith("__"):
            self._identifier(node, node.name, "function")
        saved, self._class_depth = self._class_depth, 0
        self.generic_visit(node)
        self._class_depth = saved

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.refuse(node, "async code needs an event loop; contracts are synchronous")
        self._function(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        saved, self._class_depth = self._class_depth, 0
        self.generic_visit(node)
        self._class_depth = saved

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._identifier(node, node.name, "class")
        if node.keywords:
            self.refuse(node, "class keywords (metaclass=...) change how classes are built")
        for base in node.bases:
            self.visit(base)
        for decorator in node.decorator_list:
            self.visit(decorator)
        saved, self._class_depth = self._class_depth, 1
        for statement in node.body:
            self.visit(statement)
        self._class_depth = saved

    # -- statements and expressions ---------------------------------------------------------

    def visit_Global(self, node: ast.Global) -> None:
        self.refuse(node, "'global' would keep state in the module between transactions (use ctx.put)")

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.refuse(node, "'nonlocal' rebinding is not allowed (return values or use a container)")

    def visit_With(self, node: ast.With) -> None:
        self.refuse(node, "'with' lets __exit__ swallow exceptions, including the meter's")
        self.generic_visit(node)

    def _async(self, node: ast.AST) -> None:
        self.refuse(node, "async code needs an event loop; contracts are synchronous")
        self.generic_visit(node)

    visit_AsyncWith = visit_AsyncFor = visit_Await = _async

    def visit_Set(self, node: ast.Set) -> None:
        self.refuse(node, "set literals iterate in hash order, which differs between nodes")
        self.generic_visit(node)

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self.refuse(node, "set comprehensions iterate in hash order, which differs between nodes")
        self.generic_visit(node)

    def visit_TryStar(self, node: ast.AST) -> None:
        self.refuse(node, "'except*' is not allowed")
        self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> None:
        for statement in node.finalbody:
            for inner in _same_scope_walk(statement):
                if isinstance(inner, (ast.Return, ast.Break, ast.Continue)):
                    self.refuse(inner, "return/break/continue in 'finally' swallows exceptions")
        self.generic_visit(node)

    def _attribute_targets(self, targets: list[ast.expr], what: str) -> None:
        for target in targets:
            if isinstance(target, (ast.Tuple, ast.List, ast.Starred)):
                for inner in ast.walk(target):
                    if isinstance(inner, ast.Attribute):
                        self.refuse(target, f"{what}: assign attributes one at a time")
                        break

    def visit_Assign(self, node: ast.Assign) -> None:
        self._attribute_targets(node.targets, "unpacking into attributes")
        self.generic_visit(node)

    def visit_For(self, node: ast.For) -> None:
        if any(isinstance(n, ast.Attribute) for n in ast.walk(node.target)):
            self.refuse(node, "a loop variable may not be an attribute")
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        if node.is_async:
            self.refuse(node.target, "async comprehensions are not allowed")
        if any(isinstance(n, ast.Attribute) for n in ast.walk(node.target)):
            self.refuse(node.target, "a comprehension variable may not be an attribute")
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        self._identifier(node, node.name, "exception name")
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        self._identifier(node, node.name, "pattern name")
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        self._identifier(node, node.name, "pattern name")

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self._identifier(node, node.rest, "pattern name")
        self.generic_visit(node)

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        for name in node.kwd_attrs:
            problem = check_attribute_name(name)
            if problem:
                self.refuse(node, problem)
        self.generic_visit(node)


def _is_view(node: ast.expr) -> bool:
    """``x.keys()`` or ``x.items()``: dict views, which combine into sets."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("keys", "items") and not node.args)


def _same_scope_walk(node: ast.AST):
    """``ast.walk`` that does not enter nested functions, classes or loops."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        for child in ast.iter_child_nodes(current):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                      ast.ClassDef, ast.For, ast.While)):
                stack.append(child)


def validate(source: str, filename: str = "<contract>") -> tuple[ast.Module, list[Refusal]]:
    """Parse ``source`` and return its AST with every refusal, in line order.

    A contract is accepted when the list is empty. A syntax error is one refusal.

    >>> [str(r) for r in validate("import math\\nx = (1).__class__")[1]]
    ["line 2: attribute '__class__' starts with '_' (reaches interpreter internals)"]
    """
    try:
        tree = ast.parse(source, filename=filename, mode="exec")
    except SyntaxError as exc:
        return ast.Module(body=[], type_ignores=[]), [Refusal(exc.lineno or 0, f"syntax error: {exc.msg}")]
    except ValueError as exc:  # e.g. null bytes in the source
        return ast.Module(body=[], type_ignores=[]), [Refusal(0, f"unreadable source: {exc}")]
    validator = _Validator()
    validator.visit(tree)
    refusals = sorted(set(validator.refusals), key=lambda r: (r.line, r.reason))
    return tree, refusals
