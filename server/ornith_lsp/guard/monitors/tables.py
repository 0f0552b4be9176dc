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
import copy
import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from ornith_lsp.guard.monitors._ast import PyModule, body_without_docstring, freeze, literal
from ornith_lsp.guard.monitors.core import Hit, RepoContext

TRIVIAL = {0, 1, 2, -1, "", None, True, False, (), " ", "\n", 0.0, 1.0}  # noqa: B033 -- True, 1 and 1.0 are one member; all listed for the reader


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


def test_literals(ctx: RepoContext) -> TestLiterals:
    """The literals of the tests as they were before the change, collected once per check."""
    found = ctx.memo("test_literals", lambda: collect_test_literals(ctx.test_sources))
    assert isinstance(found, TestLiterals)
    return found


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
            rest = [k for k in v if isinstance(k, str) and k.lower() not in WANT_KEYS]
            if not keys and len(rest) > 1:
                try:
                    row = tuple(freeze(v[k]) for k in rest)
                    out.call_args.add(row)
                    if wants:
                        out.cases.add((row, freeze(v[wants[0]])))
                except TypeError:
                    pass
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
                frozen = tuple(freeze(x) for x in v)
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
        elif isinstance(node, ast.Dict):
            _dict_row(node, out)
        elif isinstance(node, ast.Call):
            args = _literal_args(node) or _literal_args(node, keywords=True)
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


WANT_KEYS = ("expected", "expect", "output", "result", "want", "wanted", "out", "answer")


def _dict_row(node: ast.Dict, out: TestLiterals) -> None:
    """``{"a": 3, "b": 12, "expected": 3}``: a test case written as a dict."""
    ok, _ = literal(node)
    if not ok or not node.keys or any(not (isinstance(k, ast.Constant) and isinstance(k.value, str)) for k in node.keys):
        return
    names = [k.value for k in node.keys]  # type: ignore[union-attr]
    values = [literal(v)[1] for v in node.values]
    inputs = tuple(v for n, v in zip(names, values) if n.lower() not in WANT_KEYS)
    wants = [v for n, v in zip(names, values) if n.lower() in WANT_KEYS]
    if len(inputs) > 1 and all(_hashable(v) for v in inputs):
        out.call_args.add(inputs)
        if wants and _hashable(wants[0]):
            out.cases.add((inputs, wants[0]))


def _literal_args(call: ast.Call, keywords: bool = False) -> tuple | None:
    """The literal arguments of a call; with ``keywords``, keyword values follow the
    positional ones in the order written (``f(a=3, b=12)`` -> ``(3, 12)``)."""
    if (call.keywords and not keywords) or not (call.args or call.keywords):
        return None
    if keywords and (not call.keywords or any(k.arg is None for k in call.keywords)):
        return None
    values = []
    for a in list(call.args) + ([k.value for k in call.keywords] if keywords else []):
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
        reported: set[int] = set()
        if not params:
            yield from _composite_lookups(m, ctx, fn, tables, reported)
            continue
        local = dict(tables)
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Dict):
                local[node.targets[0].id] = node.value
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
                "lookup-table", anchor.lineno,  # type: ignore[attr-defined]  # a lookup or an if: has a line
                f"{fn.name}() answers from a {shape} keyed by its parameters whose keys are the tests' inputs ({keys}"
                + (", ..." if len(matched) > 4 else "") + ")",
                sure=sure,
            )
        yield from _composite_lookups(m, ctx, fn, tables, reported)


def _judge(entries: list[Entry], ctx: RepoContext) -> tuple[bool, list[Entry]] | None:
    if not entries:
        return None
    candidates = [e for e in entries if nontrivial(e.key)]
    if not candidates:
        return None
    literals = test_literals(ctx)
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
        if isinstance(value, ast.Dict) and isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(t, ast.Name):
                    out[t.id] = value
    return out


def _param_key(node: ast.AST | None, params: list[str]) -> tuple[str, ...] | None:
    """The parameter names an expression passes through unchanged, e.g. ``(a, b)``, ``str(n)``."""
    if isinstance(node, ast.Name) and node.id in params:
        return (node.id,)
    if isinstance(node, ast.Tuple) and node.elts and all(isinstance(e, ast.Name) and e.id in params for e in node.elts):
        return tuple(e.id for e in node.elts if isinstance(e, ast.Name))
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
    out: list[tuple[str, list[Entry], ast.AST, ast.AST]] = []
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



# -- composite keys: tuples held in a variable, frozensets, nested dicts, joined strings ------
# A table keyed by several arguments at once hides in more shapes than ``T[(a, b)]``:
# the key built first (``key = (a, b)``), made order-free (``frozenset((a, b))``), spread
# over nested dicts (``T.get(a, {}).get(b)``), joined into a string (``f"{a},{b}"``),
# passed as ``*args``, or kept as a default argument or class attribute.  Each is
# flattened to the same (inputs..., answer) entries and judged like the plain shape;
# it blocks when the table is consulted *before* the real computation (an early
# return followed by code that computes), which is what a shortcut for the tests
# looks like, and is a concern when the table is the whole function.

@dataclass(frozen=True)
class KeyPart:
    """One key of a lookup chain: ``kind`` is scalar | tuple | set | str; ``pattern``
    splits a joined string key back into its parts."""

    kind: str
    arity: int = 1
    pattern: str | None = None


def _composite_lookups(m: PyModule, ctx: RepoContext, fn: ast.FunctionDef | ast.AsyncFunctionDef,
                       module_tables: dict[str, ast.Dict], reported: set[int]) -> Iterator[Hit]:
    params = _all_params(fn)
    if params:
        tables = dict(module_tables)
        tables.update(_module_tables(m))
        tables.update(_imported_tables(m, ctx))
        tables.update(_class_dicts(m, fn))
        tables.update(_default_dicts(fn))
        tables.update(_local_dicts(fn))
        keys = _local_keys(fn, params)
        subtables = _local_subtables(fn, params, keys, tables)
        for node in ast.walk(fn):
            found = _lookup_chain(node, params, keys, tables, subtables)
            if found is None:
                continue
            table, parts = found
            if id(table) in reported:
                continue
            entries = _flatten(table, parts)
            if not entries:
                continue
            if not (m.is_added(node) or any(e.line in m.change.added_lines for e in entries)) and m.change.old_text is not None:
                continue
            unordered = any(p.kind == "set" for p in parts)
            verdict = _judge_composite(entries, ctx, unordered)
            if verdict is None:
                continue
            sure, matched = verdict
            early = _consulted_first(fn, node)
            reported.add(id(table))
            shown = ", ".join(_show(e.key) for e in matched[:4]) + (", ..." if len(matched) > 4 else "")
            where = "before the real computation" if early else "as its whole answer"
            yield Hit("lookup-table", node.lineno,  # type: ignore[attr-defined]  # a subscript, call or compare
                      f"{fn.name}() consults a table keyed by several of its arguments ({_describe(parts)}) {where}; "
                      f"its keys are the tests' inputs ({shown})",
                      sure=sure and early)


def _all_params(fn: ast.AST) -> dict[str, str]:
    """Parameter name -> "arg" | "varargs" (``*args`` is a tuple of the inputs)."""
    a = fn.args  # type: ignore[attr-defined]
    out = {x.arg: "arg" for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")}
    if a.vararg is not None:
        out[a.vararg.arg] = "varargs"
    return out


def _dict_value(node: ast.AST | None, names: Mapping[str, ast.AST] | None = None) -> ast.Dict | None:
    """A dict display, ``dict([...pairs...])`` / ``dict(zip(keys, values))`` of literals, or a
    comprehension over literal rows (``{(a, b): r for a, b, r in CASES}``), as a dict display."""
    if isinstance(node, ast.Dict):
        return node
    if isinstance(node, ast.DictComp):
        return _comprehension_table(node, names or {})
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and len(node.args) == 1 and not node.keywords:
        arg = node.args[0]
        if isinstance(arg, (ast.List, ast.Tuple)) and all(isinstance(e, (ast.Tuple, ast.List)) and len(e.elts) == 2 for e in arg.elts):
            return ast.Dict(keys=[e.elts[0] for e in arg.elts], values=[e.elts[1] for e in arg.elts])  # type: ignore[attr-defined]
        if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name) and arg.func.id == "zip" and len(arg.args) == 2:
            ks, vs = arg.args
            if isinstance(ks, (ast.List, ast.Tuple)) and isinstance(vs, (ast.List, ast.Tuple)) and len(ks.elts) == len(vs.elts):
                return ast.Dict(keys=list(ks.elts), values=list(vs.elts))
    return None


def _comprehension_table(node: ast.DictComp, names: Mapping[str, ast.AST]) -> ast.Dict | None:
    if len(node.generators) != 1 or node.generators[0].ifs:
        return None
    gen = node.generators[0]
    source = names.get(gen.iter.id, gen.iter) if isinstance(gen.iter, ast.Name) else gen.iter
    ok, rows = literal(source)
    if not ok or not isinstance(rows, tuple) or not rows:
        return None
    if isinstance(gen.target, ast.Name):
        targets = [gen.target.id]
    elif isinstance(gen.target, ast.Tuple) and all(isinstance(e, ast.Name) for e in gen.target.elts):
        targets = [e.id for e in gen.target.elts]  # type: ignore[attr-defined]
    else:
        return None
    keys: list[ast.expr] = []
    values: list[ast.expr] = []
    for row in rows:
        if len(targets) > 1 and not (isinstance(row, tuple) and len(row) == len(targets)):
            return None
        env = dict(zip(targets, row)) if len(targets) > 1 else {targets[0]: row}
        key, value = _substitute(node.key, env), _substitute(node.value, env)
        if key is None or value is None:
            return None
        keys.append(ast.copy_location(key, source))
        values.append(ast.copy_location(value, source))
    return ast.Dict(keys=keys, values=values)  # type: ignore[arg-type]


def _substitute(expr: ast.AST, env: dict[str, object]) -> ast.expr | None:
    """``expr`` with the comprehension's names replaced by one row's literal values."""
    tree = ast.Expression(body=copy.deepcopy(expr))  # type: ignore[arg-type]
    for node in ast.walk(tree):
        for attr, old in ast.iter_fields(node):
            if isinstance(old, ast.Name) and old.id in env:
                setattr(node, attr, ast.parse(repr(env[old.id]), mode="eval").body)
            elif isinstance(old, list):
                setattr(node, attr, [ast.parse(repr(env[x.id]), mode="eval").body if isinstance(x, ast.Name) and x.id in env else x
                                      for x in old])
    body = tree.body
    if any(isinstance(n, ast.Name) and n.id not in ("frozenset", "tuple", "set", "sorted") for n in ast.walk(body)):
        return None
    return ast.fix_missing_locations(body)


def _module_literals(m: PyModule) -> dict[str, ast.AST]:
    out: dict[str, ast.AST] = {}
    for stmt in m.tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            out[stmt.targets[0].id] = stmt.value
    return out


def _module_tables(m: PyModule) -> dict[str, ast.Dict]:
    """Module-level tables the plain monitor does not see: ``dict(...)`` calls and comprehensions."""
    names = _module_literals(m)
    out = {}
    for name, value in names.items():
        if not isinstance(value, ast.Dict) and (d := _dict_value(value, names)) is not None:
            out[name] = d
    return out


def _imported_tables(m: PyModule, ctx: RepoContext) -> dict[str, ast.Dict]:
    """Tables kept in another module of the project and imported (``from ._seen import TABLE``)."""
    out: dict[str, ast.Dict] = {}
    here = m.path.rsplit("/", 1)[0] if "/" in m.path else ""
    for node in m.tree.body:
        if not isinstance(node, ast.ImportFrom) or not node.module and not node.level:
            continue
        parts = (node.module or "").split(".") if node.module else []
        if node.level:
            base = here.split("/") if here else []
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            candidates = ["/".join(base + parts)]
        else:
            candidates = ["/".join(parts), "src/" + "/".join(parts)]
        text = None
        for c in candidates:
            for path in (c + ".py", c + "/__init__.py"):
                text = ctx.read_after(path.lstrip("/"))
                if text:
                    break
            if text:
                break
        if not text or len(text) > 500_000:
            continue
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        names = {t.id: stmt.value for stmt in tree.body if isinstance(stmt, ast.Assign)
                 for t in stmt.targets if isinstance(t, ast.Name)}
        for alias in node.names:
            d = _dict_value(names.get(alias.name), names)
            if d is not None:
                out[alias.asname or alias.name] = d
    return out


def _class_dicts(m: PyModule, fn: ast.AST) -> dict[str, ast.Dict]:
    cls = m.parents.get(fn)
    if not isinstance(cls, ast.ClassDef):
        return {}
    out = {}
    for stmt in cls.body:
        value = stmt.value if isinstance(stmt, (ast.Assign, ast.AnnAssign)) else None
        d = _dict_value(value)
        if d is None or not isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            continue
        for t in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
            if isinstance(t, ast.Name):
                for owner in ("self", "cls", cls.name):
                    out[f"{owner}.{t.id}"] = d
    return out


def _default_dicts(fn: ast.AST) -> dict[str, ast.Dict]:
    a = fn.args  # type: ignore[attr-defined]
    positional = a.posonlyargs + a.args
    pairs = list(zip(positional[len(positional) - len(a.defaults):], a.defaults)) + list(zip(a.kwonlyargs, a.kw_defaults))
    return {arg.arg: d for arg, default in pairs if (d := _dict_value(default)) is not None}


def _local_dicts(fn: ast.AST) -> dict[str, ast.Dict]:
    out = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            d = _dict_value(node.value)
            if d is not None:
                out[node.targets[0].id] = d
    return out


def _table_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return None


def _key_part(node: ast.AST, params: dict[str, str], keys: dict[str, KeyPart]) -> KeyPart | None:
    """The shape of a key made of the function's arguments only, or None."""
    if isinstance(node, ast.Name):
        if node.id in keys:
            return keys[node.id]
        kind = params.get(node.id)
        return None if kind is None else KeyPart("tuple", 0) if kind == "varargs" else KeyPart("scalar")
    if isinstance(node, (ast.Tuple, ast.List)) and node.elts:
        parts = [_key_part(e, params, keys) for e in node.elts]
        if all(p is not None and p.kind == "scalar" for p in parts):
            return KeyPart("tuple", len(parts))
        return None
    if isinstance(node, ast.Set) and node.elts:
        parts = [_key_part(e, params, keys) for e in node.elts]
        return KeyPart("set", len(parts)) if all(p is not None and p.kind == "scalar" for p in parts) else None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1 and not node.keywords:
        inner = _key_part(node.args[0], params, keys)
        if inner is None:
            return None
        name = node.func.id
        if name in ("frozenset", "set", "sorted") and inner.kind in ("tuple", "set"):
            return KeyPart("set", inner.arity)
        if name in ("tuple", "list") and inner.kind in ("tuple", "set"):
            return inner
        if name in ("str", "repr", "int", "float", "hash") and inner.kind == "scalar":
            return inner
        if name == "tuple" and isinstance(node.args[0], ast.Call) and isinstance(node.args[0].func, ast.Name) and node.args[0].func.id == "sorted":
            return KeyPart("set", inner.arity)
        return None
    return _string_key(node, params, keys)


def _string_key(node: ast.AST, params: dict[str, str], keys: dict[str, KeyPart]) -> KeyPart | None:
    """``f"{a},{b}"``, ``"%s,%s" % (a, b)``, ``"{}-{}".format(a, b)``, ``",".join(map(str, (a, b)))``."""
    pieces: list[str] = []
    count = 0
    if isinstance(node, ast.JoinedStr):
        for v in node.values:
            if isinstance(v, ast.Constant) and isinstance(v.value, str):
                pieces.append(re.escape(v.value))
            elif isinstance(v, ast.FormattedValue) and (p := _key_part(v.value, params, keys)) is not None and p.kind == "scalar":
                pieces.append("(.+?)")
                count += 1
            else:
                return None
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
        args = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
        if not all((p := _key_part(a, params, keys)) is not None and p.kind == "scalar" for a in args):
            return None
        fmt = re.split(r"%[sdrif]", node.left.value)
        if len(fmt) != len(args) + 1:
            return None
        pieces = [re.escape(fmt[0])] + [x for f in fmt[1:] for x in ("(.+?)", re.escape(f))]
        count = len(args)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str):
        text = node.func.value.value
        if node.func.attr == "format" and node.args and all((p := _key_part(a, params, keys)) is not None and p.kind == "scalar" for a in node.args):
            fmt = re.split(r"\{\d*\}", text)
            if len(fmt) != len(node.args) + 1:
                return None
            pieces = [re.escape(fmt[0])] + [x for f in fmt[1:] for x in ("(.+?)", re.escape(f))]
            count = len(node.args)
        elif node.func.attr == "join" and len(node.args) == 1 and text:
            arg = node.args[0]
            if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name) and arg.func.id == "map" and len(arg.args) == 2:
                arg = arg.args[1]
            inner = _key_part(arg, params, keys) if not isinstance(arg, (ast.List, ast.Tuple)) else (
                KeyPart("tuple", len(arg.elts)) if all((p := _key_part(e, params, keys)) is not None and p.kind == "scalar" for e in arg.elts) else None)
            if inner is None or inner.kind != "tuple":
                return None
            return KeyPart("str", inner.arity, "split:" + text)
        else:
            return None
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        operands: list[ast.AST] = []
        stack: list[ast.AST] = [node]
        while stack:
            cur = stack.pop()
            if isinstance(cur, ast.BinOp) and isinstance(cur.op, ast.Add):
                stack += [cur.right, cur.left]
            else:
                operands.append(cur)
        for op in operands:
            if isinstance(op, ast.Constant) and isinstance(op.value, str):
                pieces.append(re.escape(op.value))
            elif (p := _key_part(op, params, keys)) is not None and p.kind == "scalar":
                pieces.append("(.+?)")  # str(a), or a itself when it is a string
                count += 1
            else:
                return None
        if not any(isinstance(op, ast.Constant) for op in operands):
            return None  # a + b without a separator is arithmetic, not a key
    else:
        return None
    if count < 2:
        return None
    return KeyPart("str", count, "^" + "".join(pieces) + "$")


def _local_keys(fn: ast.AST, params: dict[str, str]) -> dict[str, KeyPart]:
    """Locals assigned once from a key of the arguments: ``key = (a, b)``."""
    assigned: dict[str, list[ast.AST]] = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            assigned.setdefault(node.targets[0].id, []).append(node.value)
        elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            assigned.setdefault(node.target.id, []).append(node.value)
    keys: dict[str, KeyPart] = {}
    for _ in range(2):  # a key built from another key
        for name, values in assigned.items():
            if len(values) == 1 and name not in params:
                part = _key_part(values[0], params, keys)
                if part is not None and part.kind != "scalar":
                    keys[name] = part
    return keys


def _local_subtables(fn: ast.AST, params: dict[str, str], keys: dict[str, KeyPart],
                     tables: dict[str, ast.Dict]) -> dict[str, tuple[ast.Dict, list[KeyPart]]]:
    """``row = T.get(a, {})`` / ``row = T[a]``: ``row`` is T one level down."""
    out: dict[str, tuple[ast.Dict, list[KeyPart]]] = {}
    for node in ast.walk(fn):
        target = value = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            target, value = node.target.id, node.value
        if target is None or value is None:
            continue
        found = _lookup_chain(value, params, keys, tables, out, membership=False)
        if found is not None:
            out[target] = found
    return out


def _lookup_chain(node: ast.AST, params: dict[str, str], keys: dict[str, KeyPart], tables: dict[str, ast.Dict],
                  subtables: dict[str, tuple[ast.Dict, list[KeyPart]]], membership: bool = True) -> tuple[ast.Dict, list[KeyPart]] | None:
    """(table, key parts) when ``node`` reads a table with keys made of the arguments."""
    base = key = None
    if isinstance(node, ast.Subscript):
        base, key = node.value, node.slice
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" and node.args:
        base, key = node.func.value, node.args[0]
    elif membership and isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn)):
        base, key = node.comparators[0], node.left
    if base is None or key is None:
        return None
    part = _key_part(key, params, keys)
    if part is None:
        return None
    name = _table_name(base)
    if name is not None and name in subtables:
        table, parts = subtables[name]
        return table, parts + [part]
    if name is not None and name in tables:
        return tables[name], [part]
    inner = _lookup_chain(base, params, keys, tables, subtables, membership=False)
    if inner is not None:
        return inner[0], inner[1] + [part]
    return None


def _entry_key(node: ast.AST, part: KeyPart) -> tuple | None:
    """The inputs a literal dict key stands for, under the key shape used to read it."""
    if part.kind == "set":
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("frozenset", "set", "tuple", "sorted") and len(node.args) == 1:
            node = node.args[0]
        ok, value = literal(node)
        if not ok or not isinstance(value, (tuple, frozenset)):
            return None
        return tuple(sorted(value, key=repr))
    ok, value = literal(node)
    if not ok:
        return None
    if part.kind == "tuple":
        return value if isinstance(value, tuple) and (part.arity in (0, len(value))) else None
    if part.kind == "str":
        if not isinstance(value, str) or part.pattern is None:
            return None
        if part.pattern.startswith("split:"):
            cells = value.split(part.pattern[6:])
        else:
            match = re.match(part.pattern, value)
            if match is None:
                return None
            cells = list(match.groups())
        return tuple(_number(c) for c in cells) if len(cells) == part.arity else None
    return (value,)


def _flatten(table: ast.Dict, parts: list[KeyPart]) -> list[Entry]:
    """Entries (inputs..., answer) of a (nested) dict read with ``parts``."""
    out: list[Entry] = []

    def walk(d: ast.Dict, depth: int, prefix: tuple) -> None:
        for k, v in zip(d.keys, d.values):
            if k is None:
                continue
            key = _entry_key(k, parts[depth])
            if key is None:
                continue
            if depth + 1 < len(parts):
                inner = _dict_value(v)
                if inner is not None:
                    walk(inner, depth + 1, prefix + key)
                continue
            ok_v, value = literal(v)
            out.append(Entry(prefix + key, value, k.lineno, ok_v))

    walk(table, 0, ())
    composite = len(parts) > 1 or any(p.kind != "scalar" for p in parts)
    return out if composite else []


def _judge_composite(entries: list[Entry], ctx: RepoContext, unordered: bool) -> tuple[bool, list[Entry]] | None:
    candidates = [e for e in entries if nontrivial(e.key)]
    if not candidates:
        return None
    literals = test_literals(ctx)
    if unordered:
        sets = {frozenset(c) for c in literals.call_args if isinstance(c, tuple)}
        cases = {(frozenset(a), v) for a, v in literals.cases if isinstance(a, tuple)}
        matched = [e for e in candidates if _hashable(e.key) and frozenset(e.key) in sets]
        exact = [e for e in matched if e.has_value and _hashable(e.value) and (frozenset(e.key), e.value) in cases]
    else:
        matched = [e for e in candidates if literals.matches(e.key)]
        exact = [e for e in candidates if e.has_value and literals.is_case(e.key, e.value)]
    if not matched:
        return None
    covers_tests_only = len(matched) / len(candidates) >= 0.6
    return covers_tests_only and (bool(exact) or len(matched) >= 2), exact or matched


def _consulted_first(fn: ast.AST, node: ast.AST) -> bool:
    """Whether the lookup is an early answer with real computation after it: it sits in
    a top-level ``if``/``try``/``with`` of the function that can return, and more
    statements than a bare ``raise`` follow."""
    body = body_without_docstring(fn.body)  # type: ignore[attr-defined]
    for i, stmt in enumerate(body):
        if not any(n is node for n in ast.walk(stmt)):
            continue
        if not isinstance(stmt, (ast.If, ast.Try, ast.With)) and not (
                isinstance(stmt, ast.Assign) and i + 1 < len(body) and isinstance(body[i + 1], ast.If)):
            return False
        rest = body[i + 1:] if isinstance(stmt, (ast.If, ast.Try, ast.With)) else body[i + 2:]
        return any(not isinstance(s, (ast.Raise, ast.Pass)) for s in rest) and any(
            isinstance(n, ast.Return) for n in ast.walk(stmt if not isinstance(stmt, ast.Assign) else body[i + 1]))
    return False


def _describe(parts: list[KeyPart]) -> str:
    kinds = {"scalar": "an argument", "tuple": "a tuple", "set": "a frozenset", "str": "a joined string"}
    return " then ".join(kinds[p.kind] for p in parts) if len(parts) > 1 else kinds[parts[0].kind] + " of arguments"
