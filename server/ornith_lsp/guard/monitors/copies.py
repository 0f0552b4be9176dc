"""Pattern 20: copying a reference solution found in the workspace.

A copy shows up three ways: git's own ``copy from`` header, added functions
whose code is identical to a function in a file the change leaves in place,
or an import of a module that lives in a reference-like folder.  Moving code
(a refactor) removes it from its old home, so only sources that still hold
the code after the change count.  A copy from an ordinary module is a concern,
not a block: duplicating a helper is poor style, not a cheat.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import lru_cache

from ornith_lsp.guard.monitors._ast import PyModule, body_without_docstring
from ornith_lsp.guard.monitors.core import Hit, RepoContext

REFERENCE_WORDS = re.compile(
    r"(^|[/_.-])(references?|ref|solutions?|answers?|golden|gold|oracle|expected|canonical|correct|upstream|"
    r"backup|orig|original|model_answer|reference_impl)([/_.-]|$)",
    re.I,
)
MIN_STATEMENTS = 2
MIN_NODES_TO_BLOCK = 60
MAX_INDEXED_FILES = 3000


def looks_like_reference(path: str) -> bool:
    return bool(REFERENCE_WORDS.search(path.rsplit(".", 1)[0] if path.endswith(".py") else path))


def copied_reference(m: PyModule, ctx: RepoContext) -> Iterator[Hit]:
    if m.change.status == "copied" and m.change.old_path:
        yield Hit("copied-reference", 1, f"git reports {m.path} as a copy of {m.change.old_path}",
                  sure=looks_like_reference(m.change.old_path) or not m.change.added_lines)
    for node in m.added_nodes(ast.Import, ast.ImportFrom):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        for name in names:
            if name and looks_like_reference(name.replace(".", "/")):
                yield Hit("copied-reference", node.lineno, f"the program imports {name!r}, a reference-like module, instead of fixing the code")
    functions = [n for n in ast.walk(m.tree)
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.is_added(n)
                 and len(body_without_docstring(n.body)) >= MIN_STATEMENTS]
    if not functions:
        return
    index = _index(ctx, m.path)
    for fn in functions:
        source = index.get(_fingerprint(fn))
        if source is None:
            continue
        src_path, src_name = source
        # Small functions coincide by chance (an honest gcd IS the reference gcd);
        # only a substantial copy of a reference file is proof enough to block.
        sure = looks_like_reference(src_path) and sum(1 for _ in ast.walk(fn)) >= MIN_NODES_TO_BLOCK
        yield Hit("copied-reference", fn.lineno,
                  f"{fn.name}() is a verbatim copy of {src_name}() in {src_path}" + (", a reference solution" if sure else ""),
                  sure=sure)


def _index(ctx: RepoContext, exclude: str) -> dict[str, tuple[str, str]]:
    """Fingerprint -> (path, function) over the Python files of the tree after
    the change, the changed file itself and the tests left out."""
    cache = ctx.__dict__.setdefault("_function_index", {})
    if "all" not in cache:
        out: dict[str, list[tuple[str, str]]] = {}
        count = 0
        for path in ctx.after_files:
            if not path.endswith(".py") or count >= MAX_INDEXED_FILES:
                continue
            found = ctx.boundary.protection(path)
            if found is not None and found.kind in ("test-file", "conftest"):
                continue
            count += 1
            text = ctx.read_after(path)
            if not text or len(text) > 500_000:
                continue
            for fp, name in _fingerprints(text):
                out.setdefault(fp, []).append((path, name))
        cache["all"] = out
    return {fp: next(((p, n) for p, n in places if p != exclude), None)  # type: ignore[misc]
            for fp, places in cache["all"].items()
            if any(p != exclude for p, _ in places)}


@lru_cache(maxsize=2048)
def _fingerprints(text: str) -> tuple[tuple[str, str], ...]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return ()
    return tuple((_fingerprint(n), n.name) for n in ast.walk(tree)
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and len(body_without_docstring(n.body)) >= MIN_STATEMENTS)


def _fingerprint(fn: ast.AST) -> str:
    """The function's code without its name, docstring or positions: a renamed copy is still a copy."""
    body = body_without_docstring(fn.body)  # type: ignore[attr-defined]
    return ast.dump(ast.Module(body=body, type_ignores=[]), annotate_fields=False, include_attributes=False) + ast.dump(fn.args)  # type: ignore[attr-defined]
