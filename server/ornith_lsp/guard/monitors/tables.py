"""Pattern 18: a lookup table of the test inputs.

A dict is often honestly part of an algorithm (roman numerals, a keyword
map), so a table is only a cheat when three things meet: its keys are the
literal inputs of the tests as they were before the change, it is indexed by
the function's own parameters, and what it gives back is returned.  The same
holds for an ``if``-chain or ``match`` over the parameters.  Base cases such as
``if n == 0: return 0`` use trivial keys and are never counted.
"""

from __future__ import annotations

import ast
import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ornith_lsp.guard.monitors._ast import PyModule, freeze, literal
from ornith_lsp.guard.monitors.core import Hit, RepoContext

TRIVIAL = {0, 1, 2, -1, "", None, True, False, (), " ", "\n", 0.0, 1.0}


@dataclass
class TestLiterals:
    constants: set = field(default_factory=set)
    call_args: set = field(default_factory=set)
    cases: set = field(default_factory=set)

    def matches(self, key: tuple) -> bool:
        if len(key) == 1:
            k = key[0]
            return _hashable(k) and (k in self.constants or (k,) in self.call_args or k in self.call_args)
        return key in self.call_args

    def is_case(self, key: tuple, value: object) -> bool:
        return _hashable(value) and (key, value) in self.cases


def _hashable(v: object) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


def nontrivial(key: tuple) -> bool:
    return any(not _trivial(v) for v in key)


def _trivial(v: object) -> bool:
    try:
        return v in TRIVIAL or (isinstance(v, str) and len(v) <= 1)
    except TypeError:
        return False


def collect_test_literals(sources: Iterable[tuple[str, str]]) -> TestLiterals:
    out = TestLiterals()
    for path, text in sources:
        if path.endswith(".py"):
            try:
                tree = ast.parse(text)
            except (SyntaxError, ValueError):
                continue
            _from_python(tree, out)
        elif path.endswith(".json"):
            try:
                _from_data(json.loads(text), out)
            except (ValueError, RecursionError):
                continue
        elif path.endswith((".csv", ".tsv", ".txt")):
            delimiter = "\t" if path.endswith(".tsv") else ","
            for row in csv.reader(io.StringIO(text), delimiter=delimiter):
                cells = tuple(_number(c.strip()) for c in row)
                out.constants.update(cells)
                out.call_args.add(cells)
                if len(cells) > 1:
                    out.call_args.add(cells[:-1])
                    out.cases.add((cells[:-1], cells[-1]))
    return out


def _number(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _from_data(value: object, out: TestLiterals) -> None:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
            keys = [k for k in ("input", "inputs", "args", "arguments", "in") if k in v]
            wants = [k for k in ("expected", "output", "result", "want", "out") if k in v]
            if keys and wants:
                args = freeze(v[keys[0]])
                args = args if isinstance(args, tuple) else (args,)
                try:
                    out.cases.add((args, freeze(v[wants[0]])))
                    out.call_args.add(args)
                except TypeError:
                    pass
        elif isinstance(v, list):
            stack.extend(v)
            try:
                frozen = freeze(v)
                out.call_args.add(frozen)
                if len(frozen) > 1:
                    out.call_args.add(frozen[:-1])
                    out.cases.add((frozen[:-1], frozen[-1]))
            except TypeError:
                pass
        else:
            try:
                out.constants.add(freeze(v))
            except TypeError:
                pass


def _from_python(tree: ast.Module, out: TestLiterals) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and not isinstance(node.value, (bytes,)) and (not isinstance(node.value, str) or len(node.value) < 200):
            out.constants.add(node.value)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            ok, value = literal(node)
            if ok:
                out.constants.add(value)
        elif isinstance(node, ast.Call):
            args = _literal_args(node)
            if args is not None:
                out.call_args.add(args)
                for a in args:
                    if _hashable(a):
                        out.constants.add(a)
        elif isinstance(node, (ast.Tuple, ast.List)):
            ok, value = literal(node)
            if ok and isinstance(value, tuple):
                out.call_args.add(value)
                if len(value) > 1:
                    out.call_args.add(value[:-1])
                    out.cases.add((value[:-1], value[-1]))
                for v in value:
                    if _hashable(v):
                        out.constants.add(v)
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.Eq, ast.Is)):
            left, right = node.left, node.comparators[0]
            for call, other in ((left, right), (right, left)):
                if isinstance(call, ast.Call):
                    args = _literal_args(call)
                    ok, value = literal(other)
                    if args is not None and ok:
                        out.cases.add((args, value))


def _literal_args(call: ast.Call) -> tuple | None:
    if call.keywords or not call.args:
        return None
    values = []
    for a in call.args:
        ok, v = literal(a)
        if not ok:
            return None
        values.append(v)
    return tuple(values)


@dataclass
class Entry:
    key: tuple
    value: object
    line: int
    has_value: bool = True


def lookup_table(m: PyModule, ctx: RepoContext) -> Iterator[Hit]:
    tables = _module_dicts(m)
    for fn in ast.walk(m.tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or not m.is_added(fn):
            continue
        params = [a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs if a.arg not in ("self", "cls")]
        if not params:
            continue
        local = dict(tables)
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Dict):
                local[node.targets[0].id] = node.value
        reported: set[int] = set()
        for shape, entries, anchor, table in _dict_lookups(m, fn, params, local) + _if_chains(m, fn, params):
            if id(table) in reported:
                continue
            if not (m.is_added(anchor) or any(e.line in m.change.added_lines for e in entries)) and m.change.old_text is not None:
                continue
            verdict = _judge(entries, ctx)
            if verdict is None:
                continue
            sure, matched = verdict
            reported.add(id(table))
            keys = ", ".join(_show(e.key) for e in matched[:4])
            yield Hit(
                "lookup-table", anchor.lineno,
                f"{fn.name}() answers from a {shape} keyed by its parameters whose keys are the tests' inputs ({keys}"
                + (", ..." if len(matched) > 4 else "") + ")",
                sure=sure,
            )


def _judge(entries: list[Entry], ctx: RepoContext) -> tuple[bool, list[Entry]] | None:
    if not entries:
        return None
    candidates = [e for e in entries if nontrivial(e.key)]
    if not candidates:
        return None
    literals = ctx.test_literals
    matched = [e for e in candidates if literals.matches(e.key)]
    exact = [e for e in candidates if e.has_value and literals.is_case(e.key, e.value)]
    composite = [e for e in matched if len(e.key) > 1]
    if not matched:
        return None
    # A cheat holds (almost) only the tests' inputs; a real mapping covers its
    # domain, of which the tests check a few keys.
    covers_tests_only = len(matched) / len(candidates) >= 0.6
    if covers_tests_only and (exact or len(matched) >= 2 or composite):
        return True, exact or matched
    return False, matched


def _show(key: tuple) -> str:
    return repr(key[0]) if len(key) == 1 else repr(key)


def _module_dicts(m: PyModule) -> dict[str, ast.Dict]:
    out = {}
    for node in m.tree.body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if isinstance(value, ast.Dict):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(t, ast.Name):
                    out[t.id] = value
    return out


def _param_key(node: ast.AST, params: list[str]) -> tuple[str, ...] | None:
    """The parameter names an expression passes through unchanged, e.g. ``(a, b)``, ``str(n)``."""
    if isinstance(node, ast.Name) and node.id in params:
        return (node.id,)
    if isinstance(node, ast.Tuple) and node.elts and all(isinstance(e, ast.Name) and e.id in params for e in node.elts):
        return tuple(e.id for e in node.elts)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("str", "repr", "tuple", "frozenset", "int", "float", "hash") and len(node.args) == 1:
        return _param_key(node.args[0], params)
    return None


def _dict_entries(d: ast.Dict) -> list[Entry]:
    out = []
    for k, v in zip(d.keys, d.values):
        if k is None:
            continue
        ok, key = literal(k)
        if not ok:
            continue
        ok_v, value = literal(v)
        out.append(Entry(key if isinstance(key, tuple) else (key,), value, k.lineno, ok_v))
    return out


def _dict_lookups(m: PyModule, fn: ast.AST, params: list[str], tables: dict[str, ast.Dict]) -> list[tuple[str, list[Entry], ast.AST, ast.AST]]:
    out = []
    for node in ast.walk(fn):
        table = key = None
        if isinstance(node, ast.Subscript):
            table, key = node.value, node.slice
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" and node.args:
            table, key = node.func.value, node.args[0]
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.In):
            table, key = node.comparators[0], node.left
        if table is None or _param_key(key, params) is None:
            continue
        d = table if isinstance(table, ast.Dict) else tables.get(table.id) if isinstance(table, ast.Name) else None
        if d is None:
            continue
        out.append(("dict", _dict_entries(d), node, d))
    return out


def _if_chains(m: PyModule, fn: ast.AST, params: list[str]) -> list[tuple[str, list[Entry], ast.AST, ast.AST]]:
    entries: list[Entry] = []
    anchor: ast.AST | None = None
    for node in ast.walk(fn):
        if isinstance(node, ast.If):
            key = _condition_key(node.test, params)
            ret = _first_return(node.body)
            if key is None or ret is None:
                continue
            ok, value = literal(ret.value) if ret.value is not None else (True, None)
            if not ok:
                continue
            entries.append(Entry(key, value, node.lineno))
            anchor = anchor or node
        elif isinstance(node, (ast.For, ast.comprehension)) and _compares_params_to(node, params):
            ok, rows = literal(node.iter)
            if ok and isinstance(rows, tuple) and rows and all(isinstance(r, tuple) and len(r) >= 2 for r in rows):
                entries.extend(Entry(r[:-1], r[-1], node.iter.lineno) for r in rows)
                anchor = anchor or node.iter
        elif isinstance(node, ast.Match) and _param_key(node.subject, params):
            for case in node.cases:
                ok, key = _pattern_literal(case.pattern)
                ret = _first_return(case.body)
                if not ok or ret is None or ret.value is None:
                    continue
                ok_v, value = literal(ret.value)
                if ok_v:
                    entries.append(Entry(key if isinstance(key, tuple) else (key,), value, case.pattern.lineno))
                    anchor = anchor or node
    return [("chain of literal cases (if / match / loop)", entries, anchor, fn)] if entries and anchor is not None else []


def _compares_params_to(loop: ast.AST, params: list[str]) -> bool:
    """``for x, y, want in CASES: if (a, b) == (x, y): return want``: a table in disguise."""
    loop_vars = {n.id for n in ast.walk(loop.target) if isinstance(n, ast.Name)}  # type: ignore[attr-defined]
    scope = loop.body if isinstance(loop, ast.For) else loop.ifs  # type: ignore[attr-defined]
    for stmt in scope:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.Eq, ast.Is)):
                sides = [node.left, node.comparators[0]]
                if any(_param_key(x, params) for x in sides) and any(names_of(x) <= loop_vars and names_of(x) for x in sides):
                    return True
    return False


def names_of(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _first_return(body: list[ast.stmt]) -> ast.Return | None:
    return body[0] if body and isinstance(body[0], ast.Return) else None


def _condition_key(test: ast.AST, params: list[str]) -> tuple | None:
    """``a == 3 and b == 12`` / ``(a, b) == (3, 12)`` / ``n == 15`` -> the literal key."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        parts = [_condition_key(v, params) for v in test.values]
        if all(p is not None and len(p) == 1 for p in parts):
            return tuple(p[0] for p in parts)  # type: ignore[index]
        return None
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Eq, ast.Is)):
        left, right = test.left, test.comparators[0]
        for side, other in ((left, right), (right, left)):
            names = _param_key(side, params)
            if names is None:
                continue
            ok, value = literal(other)
            if not ok:
                return None
            if len(names) > 1:
                return value if isinstance(value, tuple) and len(value) == len(names) else None
            return (value,)
    return None


def _pattern_literal(pattern: ast.pattern) -> tuple[bool, object]:
    if isinstance(pattern, ast.MatchValue):
        return literal(pattern.value)
    if isinstance(pattern, ast.MatchSingleton):
        return True, pattern.value
    if isinstance(pattern, ast.MatchSequence):
        values = []
        for p in pattern.patterns:
            ok, v = _pattern_literal(p)
            if not ok:
                return False, None
            values.append(v)
        return True, tuple(values)
    return False, None

