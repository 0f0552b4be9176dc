"""A wall written as a test: the guard's modules import each other without cycles,
counting every import (lazy ones inside functions and TYPE_CHECKING ones too), so
each module can be read -- and loaded -- from the bottom up."""

from __future__ import annotations

import ast
from pathlib import Path

GUARD = Path(__file__).resolve().parents[1] / "server" / "ornith_lsp" / "guard"


def _graph() -> dict[str, set[str]]:
    root = GUARD.parents[1]
    graph: dict[str, set[str]] = {}
    for f in GUARD.rglob("*.py"):
        mod = ".".join(f.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        deps: set[str] = set()
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("ornith_lsp.guard"):
                deps |= {n.module} | {f"{n.module}.{a.name}" for a in n.names}
            elif isinstance(n, ast.Import):
                deps |= {a.name for a in n.names if a.name.startswith("ornith_lsp.guard")}
        graph[mod] = deps
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_guard_has_no_import_cycle():
    graph = _graph()
    assert "ornith_lsp.guard.verdict" in graph and "ornith_lsp.guard.monitors.core" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
