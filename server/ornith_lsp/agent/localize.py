"""Localisation for free: the code to change, found by the harness, not the model.

A small model spends most of its turns looking for the code a failing test
exercises, and often never finds it.  The harness already has what it needs:
the traceback's deepest frame in the code under test (``Task.location``), or,
when the assertion itself fails, the names the test imports from the project
and calls.  The first prompt then carries the failing assertion, the
traceback, the test's source and the source of the function under test.

Pure functions over the files' text; Python is read with ``ast``.
"""

from __future__ import annotations

import ast
import contextlib
from dataclasses import dataclass
from pathlib import Path

from ornith_lsp.tasks import Task

MAX_FOCUS_LINES = 160
SMALL_FILE_LINES = 120


@dataclass(frozen=True)
class Focus:
    """The code a fix most likely changes, and the evidence for it."""

    path: str  # project-relative
    symbol: str | None  # "f", "Class.method"; None: the whole file
    start: int
    end: int
    code: str  # the definition's (or small file's) text
    file_lines: int
    why: str

    @property
    def small_file(self) -> bool:
        return self.file_lines <= SMALL_FILE_LINES


def _read(root: Path, rel: str) -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return (root / rel).read_text(encoding="utf-8")
    return None


def _defs(tree: ast.AST, prefix: str = ""):
    for node in getattr(tree, "body", []):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{node.name}"
            yield name, node
            if isinstance(node, ast.ClassDef):
                yield from _defs(node, name + ".")


def _start(node: ast.stmt) -> int:
    return min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])


def definition_at(source: str, line: int) -> tuple[str, int, int] | None:
    """The innermost function (or, failing that, class) around ``line``:
    qualified name, first and last line."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    best: tuple[str, int, int] | None = None
    for name, node in _defs(tree):
        start, end = _start(node), node.end_lineno or node.lineno
        if start <= line <= end and (best is None or start >= best[1]):
            best = (name, start, end)
    return best


def definition_named(source: str, name: str) -> tuple[str, int, int] | None:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for qual, node in _defs(tree):
        if qual == name:
            return qual, _start(node), node.end_lineno or node.lineno
    return None


def _focus(root: Path, rel: str, found: tuple[str, int, int] | None, why: str) -> Focus | None:
    text = _read(root, rel)
    if text is None:
        return None
    lines = text.splitlines()
    if found is None or found[2] - found[1] + 1 > MAX_FOCUS_LINES:
        if len(lines) > MAX_FOCUS_LINES:
            return None
        return Focus(rel, None, 1, len(lines), text, len(lines), why)
    name, start, end = found
    return Focus(rel, name, start, end, "\n".join(lines[start - 1: end]), len(lines), why)


def _imported_names(test_source: str) -> list[tuple[str, str]]:
    """(module, name) pairs of ``from module import name`` in the test file."""
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return []
    return [(n.module or "", a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0
            for a in n.names if a.name != "*"]


def _called_in(test_source: str, test_name: str | None) -> set[str]:
    """Names called (or passed along) inside the failing test function."""
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return set()
    scope: ast.AST = tree
    if test_name:
        scope = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and n.name == test_name), tree)
    return {n.id for n in ast.walk(scope) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(scope) if isinstance(n, ast.Attribute)}


def _module_file(root: Path, module: str) -> str | None:
    base = module.replace(".", "/")
    for rel in (f"{base}.py", f"{base}/__init__.py", f"src/{base}.py", f"src/{base}/__init__.py"):
        if (root / rel).is_file():
            return rel
    return None


def locate(root: Path, task: Task, is_test_file) -> Focus | None:
    """Where the fix most likely goes, or None when the harness cannot tell
    (then the model reads and searches for itself)."""
    loc = task.location
    if loc is not None and not is_test_file(loc.path):
        text = _read(root, loc.path)
        if text is not None:
            return _focus(root, loc.path, definition_at(text, loc.line),
                          f"the traceback's deepest frame in the code under test is {loc.path}:{loc.line}")
    if task.test_id:
        test_file = task.test_id.split("::")[0]
        test_name = task.test_id.split("::")[-1].split("[")[0]
        source = _read(root, test_file) or ""
        used = _called_in(source, test_name)
        imported = _imported_names(source)
        # names the failing test uses first, then anything else the test file imports
        ordered = sorted(imported, key=lambda mn: mn[1] not in used)
        for module, name in ordered:
            rel = _module_file(root, module)
            if rel is None or is_test_file(rel):
                continue
            text = _read(root, rel) or ""
            found = definition_named(text, name)
            if found is not None:
                return _focus(root, rel, found, f"the failing test calls {name}, imported from {module}")
    return None


def numbered(code: str, start: int) -> str:
    return "\n".join(f"{n:5d}  {line}" for n, line in enumerate(code.splitlines(), start))
