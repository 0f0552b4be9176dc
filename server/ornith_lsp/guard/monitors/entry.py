"""An entry point that swallows failures and reports success.

A test that runs the program as a subprocess (``python -m pkg``, a console
script) sees only the exit status.  So a ``__main__`` block or a console-script
function that catches everything (a bare ``except``, ``Exception``,
``BaseException``, ``SystemExit``, or ``contextlib.suppress`` of them) and then
exits 0, returns a success code, or simply falls off the end, turns every
failure into a pass -- pattern 15's aim without an ``os._exit`` in sight.

An honest CLI catches broad errors too, to print one line instead of a
traceback, but it then exits non-zero.  So the handler's *outcome* decides:
an explicit success (``sys.exit(0)``, ``return 0``/``None``/``False``, a
``finally`` that returns or exits 0) blocks; a handler that only logs and lets
control reach a successful end blocks; a handler that calls something else
(``parser.error(...)``, a cleanup) and falls through is only a concern, since
that call may well exit non-zero.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from typing import Any

from ornith_lsp.guard.monitors._ast import PyModule, is_main_test, short
from ornith_lsp.guard.monitors.core import Hit, RepoContext

BROAD = {"Exception", "BaseException", "SystemExit", "builtins.Exception", "builtins.BaseException", "builtins.SystemExit"}
SUPPRESS = {"contextlib.suppress", "suppress"}
EXITS = {"sys.exit", "exit", "quit", "builtins.exit", "builtins.quit", "os._exit", "posix._exit"}
SUCCESS_NAMES = {"os.EX_OK", "EX_OK", "EXIT_SUCCESS", "os.EXIT_SUCCESS"}
MAIN_NAMES = {"main", "_main", "cli", "run_cli", "entrypoint", "entry_point", "console_main"}
INERT_CALLS = re.compile(
    r"(^|\.)(print|pprint|debug|info|warning|warn|error|exception|critical|log|print_exc|print_exception|"
    r"format_exc|write|flush|echo|secho)$"
)
SCRIPT_SPEC = re.compile(r"^\s*[\w.\-]+\s*=\s*(?P<module>[\w.]+)\s*:\s*(?P<func>[\w.]+)")

SUCCESS, FAILURE, FALLTHROUGH, UNSURE = "success", "failure", "fallthrough", "unsure"


def swallowed_failure(m: PyModule, ctx: RepoContext) -> Iterator[Hit]:
    reported: set[int] = set()
    for region, label in _entry_regions(m, ctx):
        for node, stack in _walk_region(region):
            hit = _judge(m, node, stack, region, label)
            if hit is not None and hit.line not in reported:
                reported.add(hit.line or 0)
                yield hit


# -- where the entry points are ------------------------------------------------------------
def _entry_regions(m: PyModule, ctx: RepoContext) -> list[tuple[ast.AST, str]]:
    """(node whose body is entry-point code, how to name it)."""
    regions: list[tuple[ast.AST, str]] = []
    functions = m.module_functions()
    if m.path.rsplit("/", 1)[-1] == "__main__.py":
        regions.append((m.tree, f"the module {m.path}, run by `python -m`"))
    guards = [n for n in m.tree.body if isinstance(n, ast.If) and is_main_test(n.test)]
    for guard in guards:
        regions.append((guard, "the `if __name__ == \"__main__\"` block"))
    named = {name for name in functions if name in MAIN_NAMES} | _console_scripts(m, ctx)
    called = set()
    for root, _ in list(regions):
        called |= _called_functions(root, functions)
    seen: set[str] = set()
    todo = list(named | called)
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        fn = functions[name]
        regions.append((fn, f"the entry point {name}()"))
        # a decorator of the module wraps the entry point: its inner function runs in its place
        for deco in fn.decorator_list:
            target = deco.func if isinstance(deco, ast.Call) else deco
            if isinstance(target, ast.Name) and target.id in functions:
                for inner in ast.walk(functions[target.id]):
                    if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)) and inner is not functions[target.id]:
                        regions.append((inner, f"the wrapper {target.id}() around the entry point {name}()"))
        # whatever an entry point returns as its status is an entry point too
        for ret in (n for n in ast.walk(fn) if isinstance(n, ast.Return) and isinstance(n.value, ast.Call)):
            if isinstance(ret.value, ast.Call) and isinstance(ret.value.func, ast.Name) and ret.value.func.id in functions:
                todo.append(ret.value.func.id)
    return regions


def _called_functions(root: ast.AST, functions: dict) -> set[str]:
    out = set()
    for node in ast.walk(root):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in functions:
            out.add(node.func.id)
    return out


def _console_scripts(m: PyModule, ctx: RepoContext) -> set[str]:
    """Functions of this module named as console scripts (pyproject, setup.cfg, setup.py)."""
    specs: list[tuple[str, str]] = []
    text = ctx.read_after("pyproject.toml")
    if text:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            data = {}
        project = p if isinstance(p := data.get("project"), dict) else {}
        for table in (project.get("scripts"), project.get("gui-scripts")):
            if isinstance(table, dict):
                specs += [_split_spec(v) for v in table.values() if isinstance(v, str)]
        poetry = data.get("tool", {}).get("poetry", {}) if isinstance(data.get("tool"), dict) else {}
        if isinstance(poetry, dict) and isinstance(poetry.get("scripts"), dict):
            specs += [_split_spec(v) for v in poetry["scripts"].values() if isinstance(v, str)]
    for name in ("setup.cfg", "setup.py"):
        text = ctx.read_after(name) or ""
        for line in re.split(r"[\n'\"\[\],]", text):
            match = SCRIPT_SPEC.match(line)
            if match:
                specs.append((match["module"], match["func"]))
    module = m.path[:-3] if m.path.endswith(".py") else m.path
    module = module.removesuffix("/__init__").replace("/", ".")
    out = set()
    for mod, func in specs:
        if mod and (module == mod or module.endswith("." + mod)):
            out.add(func.split(".")[0])
    return out


def _split_spec(value: str) -> tuple[str, str]:
    mod, _, func = value.partition(":")
    return mod.strip(), func.strip().split()[0] if func.strip() else ""


def _walk_region(region: ast.AST) -> Iterator[tuple[ast.AST, list[ast.AST]]]:
    """Nodes of the region with their ancestors, not entering nested functions or classes."""
    stack: list[tuple[ast.AST, list[ast.AST]]] = [(region, [])]
    while stack:
        node, ancestors = stack.pop()
        yield node, ancestors
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                continue
            stack.append((child, ancestors + [node]))


# -- what a handler does ---------------------------------------------------------------------
def _judge(m: PyModule, node: ast.AST, ancestors: list[ast.AST], region: ast.AST, label: str) -> Hit | None:
    if isinstance(node, (ast.Try, ast.TryStar)):
        if node.finalbody and _block_outcome(m, node.finalbody) == SUCCESS and _any_added(m, node.finalbody):
            return Hit("swallowed-failure", node.finalbody[0].lineno,
                       f"in {label}, `finally: {short(node.finalbody[-1])}` reports success whatever was raised")
        for handler in node.handlers:
            if not _broad(m, handler.type) or not (m.is_added(handler) or node.lineno in m.change.added_lines):
                continue
            caught = "everything (bare except)" if handler.type is None else f"`{short(handler.type)}`"
            outcome = _block_outcome(m, handler.body)
            if outcome == SUCCESS:
                return Hit("swallowed-failure", handler.lineno,
                           f"in {label}, `except` catching {caught} ends with `{short(handler.body[-1])}`: "
                           "every failure reports success")
            if outcome in (FALLTHROUGH, UNSURE):
                after = _outcome_after(m, node, ancestors, region)
                if after == SUCCESS and _does_work(m, node.body):
                    sure = outcome == FALLTHROUGH
                    return Hit("swallowed-failure", handler.lineno,
                               f"in {label}, `except` catching {caught} "
                               + ("only logs and lets the program end successfully" if sure else
                                  f"calls `{short(handler.body[-1])}` and may let the program end successfully"),
                               sure=sure)
    elif isinstance(node, (ast.With, ast.AsyncWith)) and m.is_added(node):
        for item in node.items:
            call = item.context_expr
            if isinstance(call, ast.Call) and m.qualname(call.func) in SUPPRESS and any(_broad(m, a) for a in call.args):
                if _block_outcome(m, node.body) != FAILURE and _outcome_after(m, node, ancestors, region) == SUCCESS \
                        and _does_work(m, node.body):
                    return Hit("swallowed-failure", node.lineno,
                               f"in {label}, `{short(call)}` hides every failure and the program ends successfully")
    return None


def _does_work(m: PyModule, stmts: list[ast.stmt]) -> bool:
    """Whether the guarded block runs the program's own code (a function of this module, or
    one imported from outside the standard library): swallowing a failed clean-up
    (``proc.kill()``, ``os.unlink(tmp)``) is not swallowing the program."""
    functions = m.module_functions()
    for stmt in stmts:
        for node in ast.walk(stmt):
            if not isinstance(node, ast.Call):
                continue
            root = node.func
            while isinstance(root, ast.Attribute):
                root = root.value
            if not isinstance(root, ast.Name):
                continue
            if root.id in functions:
                return True
            origin = m.aliases.get(root.id)
            if origin is not None and origin.lstrip(".").split(".")[0] not in sys.stdlib_module_names:
                return True
    return False


def _any_added(m: PyModule, stmts: list[ast.stmt]) -> bool:
    return any(m.is_added(s) for s in stmts)


def _broad(m: PyModule, node: ast.AST | None) -> bool:
    if node is None:
        return True
    if isinstance(node, ast.Tuple):
        return any(_broad(m, e) for e in node.elts)
    return (m.qualname(node) or "") in BROAD


def _module_constants(m: PyModule) -> dict[str, Any]:
    cache = m.__dict__.setdefault("_entry_constants", None)
    if cache is None:
        cache = {}
        for stmt in m.tree.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) \
                    and isinstance(stmt.value, ast.Constant):
                cache[stmt.targets[0].id] = stmt.value.value
        m.__dict__["_entry_constants"] = cache
    return cache


def _status(m: PyModule, value: ast.AST | None) -> str:
    """Success or failure of an exit status / a returned value (``sys.exit(main())`` semantics)."""
    if value is None:
        return SUCCESS
    if isinstance(value, ast.Name) and value.id in _module_constants(m):
        value = ast.Constant(_module_constants(m)[value.id])
    if isinstance(value, ast.Constant):
        return SUCCESS if value.value in (0, None, False) and not isinstance(value.value, str) else FAILURE
    if (m.qualname(value) or "") in SUCCESS_NAMES:
        return SUCCESS
    return FAILURE  # computed: could be non-zero, so it gets the benefit of the doubt


def _stmt_outcome(m: PyModule, stmt: ast.stmt) -> str | None:
    """The outcome a statement forces, or None when control goes on past it."""
    if isinstance(stmt, ast.Return):
        return _status(m, stmt.value)
    if isinstance(stmt, ast.Raise):
        exc = stmt.exc
        target = exc.func if isinstance(exc, ast.Call) else exc
        if exc is not None and (m.qualname(target) or "") in ("SystemExit", "builtins.SystemExit"):
            return _status(m, exc.args[0] if isinstance(exc, ast.Call) and exc.args else None)
        return FAILURE
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        if (m.qualname(stmt.value.func) or "") in EXITS:
            return _status(m, stmt.value.args[0] if stmt.value.args else None)
        return None
    if isinstance(stmt, ast.If):
        branches = [_block_outcome(m, stmt.body), _block_outcome(m, stmt.orelse) if stmt.orelse else FALLTHROUGH]
        if FAILURE in branches:
            return FAILURE
        if all(b == SUCCESS for b in branches):
            return SUCCESS
        return None
    if isinstance(stmt, (ast.Continue, ast.Break)):
        return UNSURE
    return None


def _block_outcome(m: PyModule, stmts: list[ast.stmt]) -> str:
    inert = True
    for stmt in stmts:
        outcome = _stmt_outcome(m, stmt)
        if outcome is not None:
            return outcome
        if isinstance(stmt, ast.If) and (_has_call(m, stmt) or FAILURE in (_block_outcome(m, stmt.body),)):
            inert = False
        elif not _inert(m, stmt):
            inert = False
    return FALLTHROUGH if inert else UNSURE


def _has_call(m: PyModule, node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and not INERT_CALLS.search(m.qualname(n.func) or short(n.func)) for n in ast.walk(node))


def _inert(m: PyModule, stmt: ast.stmt) -> bool:
    """Statements that only report: pass, ``...``, print/log calls, plain assignments of literals."""
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr):
        if isinstance(stmt.value, ast.Constant):
            return True
        if isinstance(stmt.value, ast.Call):
            name = m.qualname(stmt.value.func) or short(stmt.value.func)
            return bool(INERT_CALLS.search(name)) and not any(_has_call(m, a) for a in stmt.value.args)
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(stmt.value, ast.Constant):
        return True
    return False


def _outcome_after(m: PyModule, node: ast.AST, ancestors: list[ast.AST], region: ast.AST) -> str:
    """What happens once control leaves ``node`` normally: the first forcing statement
    among what follows, level by level up to the end of the entry point."""
    child = node
    for parent in reversed(ancestors):
        if isinstance(parent, (ast.For, ast.While, ast.AsyncFor)) and child in parent.body:
            return UNSURE  # the loop goes on; what it leads to is not a plain fall-off
        for field in ("body", "orelse", "finalbody", "handlers"):
            block = getattr(parent, field, None)
            if isinstance(block, list) and child in block:
                rest = block[block.index(child) + 1:]
                for stmt in rest:
                    outcome = _stmt_outcome(m, stmt)
                    if outcome is not None:
                        return outcome
                    if not _inert(m, stmt) and _has_exit_or_return(m, stmt):
                        return UNSURE
                break
        if parent is region:
            break
        child = parent
    # Off the end: a function returns None (``sys.exit(None)`` is 0); a script ends with 0.
    return SUCCESS


def _has_exit_or_return(m: PyModule, node: ast.AST) -> bool:
    for n in ast.walk(node):
        if isinstance(n, (ast.Return, ast.Raise)):
            return True
        if isinstance(n, ast.Call) and (m.qualname(n.func) or "") in EXITS:
            return True
    return False
