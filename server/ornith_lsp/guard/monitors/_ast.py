"""The facts about a changed Python file that every monitor needs.

Monitors look at the *change*, not the whole file: a repository may already
hold an ``os._exit`` in a CLI helper, and the guard must not veto an honest fix
elsewhere in that file.  So every node is asked whether it overlaps a line the
diff adds, and names are resolved through the file's imports, because
``from os import _exit as bye; bye(0)`` is the same cheat as ``os._exit(0)``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cached_property
from typing import Any, TypeVar, overload

from ornith_lsp.guard.monitors.core import FileChange

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
A = TypeVar("A", bound=ast.AST)
B = TypeVar("B", bound=ast.AST)
C = TypeVar("C", bound=ast.AST)
D = TypeVar("D", bound=ast.AST)


class PyModule:
    def __init__(self, change: FileChange, tree: ast.Module) -> None:
        self.change = change
        self.tree = tree
        self.parents: dict[ast.AST, ast.AST] = {}
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent

    @property
    def path(self) -> str:
        return self.change.path

    def is_added(self, node: ast.AST) -> bool:
        start = getattr(node, "lineno", None)
        if start is None:
            return False
        if self.change.status in ("added", "copied") and self.change.old_text is None:
            return True
        end = getattr(node, "end_lineno", None) or start
        added = self.change.added_lines
        return any(line in added for line in range(start, end + 1))

    # Typed per call, so a monitor asking for calls and raises gets Call | Raise.
    @overload
    def added_nodes(self, a: type[A], /) -> Iterator[A]: ...
    @overload
    def added_nodes(self, a: type[A], b: type[B], /) -> Iterator[A | B]: ...
    @overload
    def added_nodes(self, a: type[A], b: type[B], c: type[C], /) -> Iterator[A | B | C]: ...
    @overload
    def added_nodes(self, a: type[A], b: type[B], c: type[C], d: type[D], /) -> Iterator[A | B | C | D]: ...
    @overload
    def added_nodes(self, *types: type[ast.AST]) -> Iterator[Any]: ...

    def added_nodes(self, *types: type[ast.AST]) -> Iterator[ast.AST]:
        for node in ast.walk(self.tree):
            if isinstance(node, types) and self.is_added(node):
                yield node

    @cached_property
    def aliases(self) -> dict[str, str]:
        """Local name -> dotted origin, from every import in the file."""
        out: dict[str, str] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        out[a.asname] = a.name
                    else:
                        top = a.name.split(".")[0]
                        out[top] = top
            elif isinstance(node, ast.ImportFrom):
                base = ("." * node.level) + (node.module or "")
                for a in node.names:
                    if a.name != "*":
                        out[a.asname or a.name] = f"{base}.{a.name}" if base else a.name
        return out

    @cached_property
    def imported_modules(self) -> set[str]:
        return set(self.aliases.values())

    def qualname(self, node: ast.AST | None) -> str | None:
        """``os._exit`` for ``os._exit``, ``bye`` (imported as such), ``__import__('os')._exit``
        and ``getattr(os, '_exit')``; None when the expression is not a plain name chain."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualname(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Call):
            func = self.qualname(node.func)
            first = node.args[0] if node.args else None
            if func in ("__import__", "importlib.import_module") and isinstance(first, ast.Constant) and isinstance(first.value, str):
                return first.value
            if func == "getattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
                base = self.qualname(node.args[0])
                return f"{base}.{node.args[1].value}" if base else None
        return None

    def is_imported_name(self, node: ast.AST) -> bool:
        """Whether the root of an attribute chain is a name bound by an import."""
        while isinstance(node, ast.Attribute):
            node = node.value
        if isinstance(node, ast.Call):
            return self.qualname(node) is not None and self.qualname(node.func) in ("__import__", "importlib.import_module")
        return isinstance(node, ast.Name) and node.id in self.aliases

    def enclosing_function(self, node: ast.AST) -> FunctionNode | None:
        cur = self.parents.get(node)
        while cur is not None:
            if isinstance(cur, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return cur
            cur = self.parents.get(cur)
        return None

    def enclosing_class(self, node: ast.AST) -> ast.ClassDef | None:
        cur = self.parents.get(node)
        while cur is not None:
            if isinstance(cur, ast.ClassDef):
                return cur
            if isinstance(cur, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return None
            cur = self.parents.get(cur)
        return None

    def in_main_guard(self, node: ast.AST) -> bool:
        cur = self.parents.get(node)
        while cur is not None:
            if isinstance(cur, ast.If) and is_main_test(cur.test):
                return True
            cur = self.parents.get(cur)
        return False

    def is_docstring(self, node: ast.AST) -> bool:
        """A string standing alone as a statement documents; it does nothing at run time."""
        parent = self.parents.get(node)
        return isinstance(parent, ast.Expr)

    def module_functions(self) -> dict[str, FunctionNode]:
        return {n.name: n for n in self.tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def is_main_test(test: ast.AST) -> bool:
    if not isinstance(test, ast.Compare) or len(test.comparators) != 1:
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    consts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return bool(names and consts)


def truthiness(node: ast.AST | None) -> bool | None:
    """The truth value of a constant expression, None when it is computed."""
    if isinstance(node, ast.Constant):
        return bool(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = truthiness(node.operand)
        return None if inner is None else not inner
    return None


def returns_of(fn: ast.AST) -> list[ast.Return]:
    """Return statements of ``fn`` itself, not of functions nested in it."""
    out: list[ast.Return] = []
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, ast.Return):
            out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def body_without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
        return body[1:]
    return body


def names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def literal(node: ast.AST) -> tuple[bool, object]:
    """(True, value) for a literal expression (lists become tuples, so values hash)."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None
    try:
        return True, freeze(value)
    except TypeError:
        return False, None


def freeze(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, set):
        return frozenset(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted(((freeze(k), freeze(v)) for k, v in value.items()), key=repr))
    hash(value)
    return value


def assign_targets(node: ast.AST) -> list[ast.AST]:
    """Every target an assignment-like statement writes, tuples unpacked."""
    raw: list[ast.expr]
    if isinstance(node, ast.Assign):
        raw = list(node.targets)
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        raw = [node.target]
    elif isinstance(node, ast.Delete):
        raw = list(node.targets)
    else:
        return []
    out: list[ast.AST] = []
    while raw:
        t = raw.pop()
        if isinstance(t, (ast.Tuple, ast.List)):
            raw.extend(t.elts)
        elif isinstance(t, ast.Starred):
            raw.append(t.value)
        else:
            out.append(t)
    return out


def short(node: ast.AST, limit: int = 90) -> str:
    try:
        text = ast.unparse(node)
    except Exception:  # ast.unparse of a partial node
        return type(node).__name__
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
