"""Code copied from the test tree into the code under test (pattern 20's inward twin).

Tests often carry an oracle: a brute-force reference, a helper that computes
the expected value, a model implementation in the test data.  Copy it into
the package and have the code delegate to it, and the tests compare the
oracle with itself.  A copy may be renamed, its variables too, its
docstring dropped; so functions are compared by *structure*: the AST with
the function's name, docstring, annotations and its own parameter and local
names normalised away, first for equality, then by token shingles (Jaccard
similarity of runs of normalised tokens) for near-copies.

Small algorithms coincide by chance (an honest gcd is every gcd), so the
verdict also weighs how the copy is used: a *new* helper that the program's
code calls -- delegation -- blocks; so does a substantial copy in place.  A
smaller in-place match is a concern for the judge.
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from ornith_lsp.guard.monitors._ast import PyModule, body_without_docstring
from ornith_lsp.guard.monitors.core import Hit, RepoContext

SHINGLE = 4
MIN_NODES = 20          # below this, two functions look alike by chance
MIN_NODES_IN_PLACE = 35  # a copy in place of the fixed function must be substantial to block
SIMILAR = 0.75          # Jaccard of shingles for a near-copy
SIMILAR_IN_PLACE = 0.9
MAX_ORACLES = 2000
ORACLE_NAME = re.compile(r"ref|oracle|expect|brute|naive|golden|correct|model|slow|simple|solution|truth", re.I)
CONTAINED = 0.9         # share of an oracle's shingles found inside a larger function
MIN_NODES_CONTAINED = 50  # an oracle pasted into a larger function blocks from this size


@dataclass(frozen=True)
class Shape:
    exact: str
    shingles: frozenset[int]
    size: int


@dataclass(frozen=True)
class Oracle:
    """A function of the tests; ``compared`` when the tests compare against what it
    returns (used in an assert or a comparison) or its name says it is a reference."""

    path: str
    name: str
    shape: Shape
    compared: bool = False


def copied_from_tests(m: PyModule, ctx: RepoContext) -> Iterator[Hit]:
    oracles = _oracles(ctx)
    if not oracles:
        return
    old_names = _old_function_names(m.change.old_text)
    for fn in ast.walk(m.tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or not m.is_added(fn):
            continue
        shape = shape_of(fn)
        if shape.size < MIN_NODES:
            continue
        best, score = _closest(shape, oracles)
        inlined = None
        if best is None or score < SIMILAR:
            inlined = _contained(shape, oracles)
            if inlined is None:
                continue
            best, score = inlined, 0.0
        new_helper = fn.name not in old_names
        delegated = new_helper and (fn.name in _referenced_outside(m.tree, fn) or _used_elsewhere(fn.name, m, ctx))
        substantial = shape.size >= MIN_NODES_IN_PLACE and score >= SIMILAR_IN_PLACE
        if inlined is not None:
            how = "holds a copy"
            yield Hit("copied-from-tests", fn.lineno,
                      f"{fn.name}() {how} of {best.name}() from {best.path}, which belongs to the tests: "
                      "the tests would compare their oracle with itself",
                      sure=best.compared and best.shape.size >= MIN_NODES_CONTAINED)
            continue
        how = "a copy" if score == 1.0 else f"a near-copy ({score:.0%} alike)"
        use = (", and the program delegates to it" if delegated else "")
        yield Hit(
            "copied-from-tests", fn.lineno,
            f"{fn.name}() is {how} of {best.name}() in {best.path}, which belongs to the tests{use}: "
            "the tests would compare their oracle with itself",
            sure=best.compared and (delegated or substantial or (new_helper and (score == 1.0 or fn.name == best.name))),
        )


def _contained(shape: Shape, oracles: list[Oracle]) -> Oracle | None:
    """An oracle pasted whole into a larger function: nearly all of its shingles are there."""
    for o in oracles:
        if o.shape.size < MIN_NODES_CONTAINED // 2 or o.shape.size > shape.size:
            continue
        if len(o.shape.shingles & shape.shingles) / len(o.shape.shingles) >= CONTAINED:
            return o
    return None


def _used_elsewhere(name: str, m: PyModule, ctx: RepoContext) -> bool:
    """A helper in a new module is delegated to from the other changed files."""
    word = re.compile(rf"\b{re.escape(name)}\b")
    return any(text and path != m.path and word.search(text) for path, text in ctx.after.items())


def _closest(shape: Shape, oracles: list[Oracle]) -> tuple[Oracle | None, float]:
    best, score = None, 0.0
    for o in oracles:
        if o.shape.exact == shape.exact:
            return o, 1.0
        if not (0.6 <= o.shape.size / shape.size <= 1.6):
            continue
        inter = len(o.shape.shingles & shape.shingles)
        if not inter:
            continue
        s = inter / len(o.shape.shingles | shape.shingles)
        if s > score:
            best, score = o, s
    return best, score


def _oracles(ctx: RepoContext) -> list[Oracle]:
    def make() -> list[Oracle]:
        out: list[Oracle] = []
        # compared anywhere in the tests: an oracle often lives in a helper module or the
        # test data, and is imported (maybe renamed) by the test that asserts against it
        compared: set[str] = set()
        for path, text in ctx.test_sources:
            if path.endswith(".py"):
                compared |= _compared_names(text)
        for path, text in ctx.test_sources:
            if path.endswith(".py"):
                compared |= _aliased(text, compared)
        for path, text in ctx.test_sources:
            if not path.endswith(".py") and "def " not in text:
                continue
            for name, shape in _functions_of(text):
                if name.startswith("test") or shape.size < MIN_NODES:
                    continue
                out.append(Oracle(path, name, shape, name in compared or bool(ORACLE_NAME.search(name))))
                if len(out) >= MAX_ORACLES:
                    return out
        return out

    found = ctx.memo("test_oracles", make)
    assert isinstance(found, list)
    return found


def _aliased(text: str, compared: set[str]) -> set[str]:
    """``from helpers import brute as expected``: ``brute`` is compared when ``expected`` is."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    return {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names
            if a.asname and a.asname in compared}


@lru_cache(maxsize=1024)
def _compared_names(text: str) -> frozenset[str]:
    """Functions whose results the tests compare: called inside an assert or a comparison."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return frozenset()
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assert, ast.Compare)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name):
                    out.add(sub.func.id)
    # one step of indirection: ``want = _oracle(x); assert f(x) == want``
    assigned = {t.id: n.value for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assert, ast.Compare)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(assigned.get(sub.id), ast.Call):
                    call = assigned[sub.id]
                    if isinstance(call.func, ast.Name):  # type: ignore[attr-defined]
                        out.add(call.func.id)  # type: ignore[attr-defined]
    return frozenset(out)


@lru_cache(maxsize=1024)
def _functions_of(text: str) -> tuple[tuple[str, Shape], ...]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ()
    return tuple((n.name, shape_of(n)) for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))


def _old_function_names(text: str | None) -> set[str]:
    if not text:
        return set()
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _referenced_outside(tree: ast.AST, fn: ast.AST) -> set[str]:
    """Names the module calls or hands over anywhere but inside ``fn`` itself."""
    inside = {id(n) for n in ast.walk(fn)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in inside:
            continue
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):
                out.add(f.id)
            elif isinstance(f, ast.Attribute):
                out.add(f.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            out.add(node.id)  # handed over as a callable: ``return _impl``, ``key=_impl``
    return out


# -- the normalised shape of a function ------------------------------------------------------
def shape_of(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> Shape:
    norm = _normalise(fn)
    tokens = list(_tokens(norm))
    shingles = frozenset(hash(tuple(tokens[i:i + SHINGLE])) for i in range(max(1, len(tokens) - SHINGLE + 1)))
    return Shape(ast.dump(norm, annotate_fields=False, include_attributes=False), shingles, len(tokens))


def _normalise(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
    """The function as a module of its body: no name, docstring, annotations or decorators,
    parameters and locals renamed ``_0``, ``_1``... in order of first appearance."""
    fn = copy.deepcopy(fn)
    args = fn.args
    params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    params += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    stored = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}
    stored |= {n.arg for n in ast.walk(fn) if isinstance(n, ast.arg)}
    declared_global = {name for n in ast.walk(fn) if isinstance(n, ast.Global) for name in n.names}
    local = (stored | set(params)) - declared_global
    mapping: dict[str, str] = {}
    for p in params:
        mapping.setdefault(p, f"_{len(mapping)}")
    for node in _preorder(fn):
        name = node.id if isinstance(node, ast.Name) else node.arg if isinstance(node, ast.arg) else None
        if name is not None and name in local:
            mapping.setdefault(name, f"_{len(mapping)}")
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and node.id in mapping:
            node.id = mapping[node.id]
        elif isinstance(node, ast.arg):
            node.arg = mapping.get(node.arg, node.arg)
            node.annotation = None
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
            node.decorator_list = []
            node.body = body_without_docstring(node.body) or [ast.Pass()]
        elif isinstance(node, ast.AnnAssign):
            node.annotation = ast.Constant(None)
    return ast.Module(body=[ast.Expr(ast.Constant(len(params)))] + fn.body, type_ignores=[])


def _preorder(node: ast.AST) -> Iterator[ast.AST]:
    stack = [node]
    while stack:
        cur = stack.pop()
        yield cur
        stack.extend(reversed(list(ast.iter_child_nodes(cur))))


def _tokens(tree: ast.AST) -> Iterator[str]:
    for node in _preorder(tree):
        if isinstance(node, (ast.expr_context, ast.Load)):
            continue
        if isinstance(node, ast.Name):
            # renamed locals all look alike here, so a pasted oracle matches whatever the
            # numbering around it; the exact fingerprint keeps their order
            yield "N:_" if node.id[:1] == "_" and node.id[1:].isdigit() else f"N:{node.id}"
        elif isinstance(node, ast.Constant):
            # Message texts are what a copier rewords first; numbers keep their value (2 == 2.0).
            value = node.value
            if isinstance(value, str):
                yield "C:str"
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                yield f"C:num:{float(value)!r}"
            else:
                yield f"C:{value!r}"[:32]
        elif isinstance(node, ast.Attribute):
            yield f"A:{node.attr}"
        else:
            yield type(node).__name__
