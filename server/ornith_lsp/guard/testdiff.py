"""When a change may touch the test tree after all, and the check that backs it.

The boundary keeps the tests read-only, but two honest changes need them:

- a **new test file** with extra cases.  It never counts toward verification
  (grading deletes it before the pristine run), yet it lands in the user's
  tree, so it may not reach into the existing suite: no conftest, no
  ``__init__.py``, no name that shadows a module the tests import, no
  import-time patching of the code under test, no pytest hooks or plugins, no
  exits.  :func:`new_test_problems` says what a new file does wrong.
- a fix of the **task's own finding when it lies in a test file** (an unused
  import in a test module).  The edit is allowed only when no test's
  behaviour changes: :func:`behaviour_changes` compares, before and after,
  every test function, fixture, helper, parametrisation and marker as
  normalised ASTs, and the binding of every name the module uses.  Grading
  then compares the collected test ids (``grading.compare_collection``), so
  the relaxation rests on two checks, never on trust.

The normalisation forgets only what cannot change a test's outcome: comments
and layout (the AST has none), docstrings without doctests, annotations,
unused imports, a shadowed definition nobody used, an unused name bound by an
assignment, ``with ... as`` or ``except ... as``, and the spellings pytest
treats alike (``@pytest.fixture()`` and ``@pytest.fixture``; parametrize's
``"a,b"`` and ``("a", "b")``; lists and tuples of parameter values).
"""

from __future__ import annotations

import ast
import builtins
import copy
import fnmatch
import posixpath
from collections.abc import Callable, Iterable

from ornith_lsp.guard.monitors.copies import looks_like_reference

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
EXITS = {"os._exit", "sys.exit", "exit", "quit", "pytest.exit", "os.abort", "os.kill", "os.killpg",
         "SystemExit", "builtins.exit", "_pytest.outcomes.exit"}
COLLECTION_NAMES = {"pytest_plugins", "collect_ignore", "collect_ignore_glob", "pytestmark_global"}


# -- 1. an edit of a test file that must leave every test as it was --------------------------
def behaviour_changes(old_text: str, new_text: str) -> list[str]:
    """Why the edit could change a test's behaviour; empty when it cannot."""
    try:
        old_tree = ast.parse(old_text)
    except (SyntaxError, ValueError):
        return ["the file did not parse before the change, so its tests cannot be compared"]
    try:
        new_tree = ast.parse(new_text)
    except (SyntaxError, ValueError) as exc:
        return [f"the file no longer parses ({exc})"]
    old, new = _Summary(old_tree), _Summary(new_tree)
    reasons: list[str] = []
    old_defs, new_defs = dict(old.statements), dict(new.statements)
    for name in list(dict.fromkeys([n for n, _ in old.statements] + [n for n, _ in new.statements])):
        if name not in new_defs:
            reasons.append(f"{_what(name)} is removed")
        elif name not in old_defs:
            reasons.append(f"{_what(name)} is added")
        elif old_defs[name] != new_defs[name]:
            reasons.append(f"{_what(name)} changes")
    if not reasons and [n for n, _ in old.statements] != [n for n, _ in new.statements]:
        reasons.append("module-level code is reordered, which changes the order tests run in")
    for name in sorted(old.used | new.used):
        before, after = old.binding(name), new.binding(name)
        if before == after:
            continue
        if before is None and after is not None and after.startswith("import:") and not hasattr(builtins, name) \
                and not looks_like_reference(after[7:].replace(".", "/")):
            continue  # a missing import added (an undefined-name fix): the name meant nothing before
        reasons.append(f"the name {name!r} now refers to {after or 'nothing'} instead of {before or 'nothing'}")
    return reasons


def _what(key: str) -> str:
    kind, _, name = key.partition(":")
    return {"def": f"{name}()", "class": f"class {name}", "assign": f"the module-level name {name!r}"}.get(
        kind, f"module-level statement {name}")


class _Summary:
    """A module's behaviour-bearing statements (normalised) and the bindings of its names."""

    def __init__(self, tree: ast.Module) -> None:
        self.imports: dict[str, str] = {}
        self.stars: list[str] = []
        body = list(_strip_docstring(tree.body))
        kept: list[ast.stmt] = []
        for stmt in body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                self._bind(stmt)
            else:
                kept.append(stmt)
        self.used = _loaded_names(kept)
        kept = _drop_shadowed(kept)
        self.defined = {n for s in kept for n in _bound_names(s)}
        counter: dict[str, int] = {}
        self.statements: list[tuple[str, str]] = []
        for stmt in kept:
            key = _key_of(stmt, counter)
            self.statements.append((key, ast.dump(_normalise(stmt), annotate_fields=False, include_attributes=False)))

    def _bind(self, stmt: ast.Import | ast.ImportFrom) -> None:
        if isinstance(stmt, ast.Import):
            for a in stmt.names:
                self.imports[a.asname or a.name.split(".")[0]] = "import:" + (a.name if a.asname else a.name.split(".")[0])
            return
        base = "." * stmt.level + (stmt.module or "")
        for a in stmt.names:
            if a.name == "*":
                self.stars.append(base)
            else:
                self.imports[a.asname or a.name] = f"import:{base}.{a.name}" if base else f"import:{a.name}"

    def binding(self, name: str) -> str | None:
        if name in self.defined:
            return "module code"
        if name in self.imports:
            return self.imports[name]
        if self.stars:
            # ``from m import *`` then ``from m import x``: the same object either way
            return "import:" + "|".join(f"{s}.{name}" for s in self.stars) if len(self.stars) == 1 else "star:" + ",".join(self.stars)
        return None


def _key_of(stmt: ast.stmt, counter: dict[str, int]) -> str:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return f"def:{stmt.name}"
    if isinstance(stmt, ast.ClassDef):
        return f"class:{stmt.name}"
    names = _bound_names(stmt)
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and names:
        return "assign:" + ",".join(sorted(names))
    kind = type(stmt).__name__
    counter[kind] = counter.get(kind, 0) + 1
    return f"stmt:{kind.lower()} #{counter[kind]}"


def _bound_names(stmt: ast.stmt) -> set[str]:
    if isinstance(stmt, DEFINITIONS):
        return {stmt.name}
    targets: list[ast.AST] = []
    if isinstance(stmt, ast.Assign):
        targets = list(stmt.targets)
    elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
        targets = [stmt.target]
    out = set()
    for t in targets:
        out |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    return out


def _loaded_names(stmts: Iterable[ast.stmt]) -> set[str]:
    out: set[str] = set()
    for stmt in stmts:
        for n in ast.walk(stmt):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
                out.add(n.id)
    return out


def _drop_shadowed(stmts: list[ast.stmt]) -> list[ast.stmt]:
    """A def, class or assignment redefined later with no use in between never ran
    as a test (pytest sees the last one) -- unless its decorators do something."""
    keep = [True] * len(stmts)
    for i, stmt in enumerate(stmts):
        names = _bound_names(stmt)
        if len(names) != 1 or not isinstance(stmt, DEFINITIONS + (ast.Assign, ast.AnnAssign)):
            continue
        name = next(iter(names))
        if isinstance(stmt, DEFINITIONS) and not all(_inert_decorator(d) for d in stmt.decorator_list):
            continue
        for j in range(i + 1, len(stmts)):
            later = stmts[j]
            if name in _module_time_loads(later):
                break
            if name in _bound_names(later) and isinstance(later, DEFINITIONS + (ast.Assign, ast.AnnAssign)):
                keep[i] = False
                break
    return [s for s, k in zip(stmts, keep) if k]


def _module_time_loads(stmt: ast.stmt) -> set[str]:
    """Names a statement reads when the module is imported (not inside function bodies)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        parts: list[ast.AST] = [*stmt.decorator_list, *stmt.args.defaults, *[d for d in stmt.args.kw_defaults if d]]
        return {n.id for p in parts for n in ast.walk(p) if isinstance(n, ast.Name)}
    if isinstance(stmt, ast.ClassDef):
        parts = [*stmt.decorator_list, *stmt.bases, *[k.value for k in stmt.keywords]]
        names = {n.id for p in parts for n in ast.walk(p) if isinstance(n, ast.Name)}
        for inner in stmt.body:
            names |= _module_time_loads(inner)
        return names
    return {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _inert_decorator(node: ast.AST) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    text = ast.unparse(target)
    return text.startswith(("pytest.mark.", "mark.", "pytest.fixture", "fixture"))


def _strip_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str) and ">>>" not in body[0].value.value:
        return body[1:]
    return body


class _Unannotate(ast.NodeTransformer):
    """``x: T = v`` is ``x = v`` and a bare ``x: T`` does nothing a test can see."""

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | None:
        if node.value is None:
            return ast.Pass()
        return ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)


def _normalise(stmt: ast.stmt) -> ast.AST:
    node = _Unannotate().visit(copy.deepcopy(stmt))
    for sub in ast.walk(node):
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
            sub.returns = None
            sub.body = _normalise_body(_strip_docstring(sub.body) or [ast.Pass()], sub)
            sub.decorator_list = [_normalise_decorator(d) for d in sub.decorator_list]
            _rename_locals(sub)
        elif isinstance(sub, ast.ClassDef):
            sub.body = _strip_docstring(sub.body) or [ast.Pass()]
            sub.decorator_list = [_normalise_decorator(d) for d in sub.decorator_list]
        elif isinstance(sub, ast.arg):
            sub.annotation = None
    return node


SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _rename_locals(fn: FunctionNode) -> None:
    """Alpha-rename the names that live in one scope of ``fn`` only (``l`` -> ``line`` is no
    change to a test): each must be bound and used in a single scope, never an argument,
    never declared global or nonlocal.  Skipped when the function reads its own namespace."""
    names_read = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
    if names_read & {"locals", "vars", "eval", "exec", "dir"}:
        return
    parents: dict[ast.AST, ast.AST] = {}
    for parent in ast.walk(fn):
        for child in ast.iter_child_nodes(parent):
            parents[child] = parent

    def scope_of(node: ast.AST) -> ast.AST:
        cur = parents.get(node)
        while cur is not None and not isinstance(cur, SCOPES):
            cur = parents.get(cur)
        return cur if cur is not None else fn

    excluded = {a.arg for a in ast.walk(fn) if isinstance(a, ast.arg)}
    excluded |= {name for n in ast.walk(fn) if isinstance(n, (ast.Global, ast.Nonlocal)) for name in n.names}
    excluded |= {n.name for n in ast.walk(fn) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    scopes: dict[str, set[int]] = {}
    stored: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Name):
            scopes.setdefault(node.id, set()).add(id(scope_of(node)))
            if isinstance(node.ctx, (ast.Store, ast.Del)):
                stored.add(node.id)
    renamable = {n for n in stored - excluded if len(scopes.get(n, ())) == 1}
    mapping: dict[str, str] = {}
    stack: list[ast.AST] = [fn]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name) and node.id in renamable:
            node.id = mapping.setdefault(node.id, f"local#{len(mapping)}")
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _normalise_body(body: list[ast.stmt], fn: FunctionNode) -> list[ast.stmt]:
    """Inside one function: unused local imports and unused names bound by an assignment,
    ``with ... as`` or ``except ... as`` are forgotten; annotations too."""
    loaded = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    declared = {name for n in ast.walk(fn) if isinstance(n, (ast.Global, ast.Nonlocal)) for name in n.names}
    loaded |= declared
    out: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names = [(a.asname or a.name.split(".")[0]) for a in stmt.names]
            if not any(n in loaded for n in names):
                continue
        elif isinstance(stmt, ast.Pass) and len(body) > 1:
            continue
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) \
                and stmt.targets[0].id not in loaded:
            stmt = ast.Expr(value=stmt.value)
        out.append(stmt)
    for sub in out:
        for node in ast.walk(sub):
            if isinstance(node, ast.withitem) and isinstance(node.optional_vars, ast.Name) and node.optional_vars.id not in loaded:
                node.optional_vars = None
            elif isinstance(node, ast.ExceptHandler) and node.name and node.name not in loaded:
                node.name = None
            elif isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.AsyncFor, ast.AsyncWith, ast.Try)):
                for field in ("body", "orelse", "finalbody"):
                    block = getattr(node, field, None)
                    if block:
                        setattr(node, field, [ast.Expr(value=s.value) if isinstance(s, ast.Assign) and len(s.targets) == 1
                                              and isinstance(s.targets[0], ast.Name) and s.targets[0].id not in loaded else s
                                              for s in block])
    return out or [ast.Pass()]


def _normalise_decorator(node: ast.expr) -> ast.expr:
    """``@pytest.fixture()`` is ``@pytest.fixture``; parametrize's names and values
    are compared as pytest reads them."""
    if isinstance(node, ast.Call) and not node.args and not node.keywords:
        text = ast.unparse(node.func)
        if text.startswith(("pytest.", "mark.", "fixture")):
            return node.func
    if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("parametrize") and node.args:
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            names = [n.strip() for n in first.value.split(",") if n.strip()]
            node.args[0] = ast.Tuple(elts=[ast.Constant(n) for n in names], ctx=ast.Load())
        elif isinstance(first, (ast.List, ast.Tuple)):
            node.args[0] = ast.Tuple(elts=first.elts, ctx=ast.Load())
        if len(node.args) > 1 and isinstance(node.args[1], (ast.List, ast.Tuple)):
            rows = node.args[1].elts
            single = isinstance(node.args[0], ast.Tuple) and len(node.args[0].elts) == 1
            node.args[1] = ast.Tuple(elts=[_row(r, single) for r in rows], ctx=ast.Load())
    return node


def _row(row: ast.expr, single: bool) -> ast.expr:
    if isinstance(row, ast.List):
        row = ast.Tuple(elts=row.elts, ctx=ast.Load())
    if single and isinstance(row, ast.Tuple) and len(row.elts) == 1:
        return row.elts[0]
    return row


# -- 2. a new file in the test tree that must not reach into the existing suite ----------------
def new_test_problems(
    path: str,
    text: str | None,
    base_files: Iterable[str],
    read_base: Callable[[str], str | None],
    python_files: Iterable[str] = ("test_*.py", "*_test.py"),
) -> list[str]:
    """Why a new test-tree file is not inert for the existing suite; empty when it is."""
    name = path.rsplit("/", 1)[-1]
    files = list(base_files)
    directory = posixpath.dirname(path)
    new_directory = not any(f.startswith(directory + "/") for f in files) if directory else False
    if not name.endswith(".py"):
        enumerating = _tests_that_list_folders(files, read_base, python_files)
        if enumerating:
            return [f"it is new test data, and {enumerating[0]} lists folders, so the existing tests could pick it up"]
        return []
    if name == "__init__.py":
        if new_directory and not _has_code(text):
            return []  # a package marker for a new folder of tests touches nothing that exists
        return ["a new __init__.py changes how pytest names and imports the test modules around it"]
    stem = name[:-3]
    reasons = []
    top_level = {f.split("/")[0].removesuffix(".py") for f in files if f.endswith(".py") or "/" in f}
    for src in ("src/",):
        top_level |= {f[len(src):].split("/")[0].removesuffix(".py") for f in files if f.startswith(src)}
    if stem in top_level:
        reasons.append(f"its module name {stem!r} shadows the project's own module {stem!r} for the tests beside it")
    imported = _modules_imported_by_tests(files, read_base, python_files)
    if stem in imported and stem not in top_level:
        reasons.append(f"its module name {stem!r} shadows a module the existing tests import")
    if not any(f == posixpath.join(directory, "__init__.py") for f in files):
        same = [f for f in files if f.rsplit("/", 1)[-1] == name and f != path]
        if same:
            reasons.append(f"it has the same module name as {same[0]}, so pytest cannot import both (rootdir-based names)")
    if text is None:
        return reasons
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError) as exc:
        return reasons + [f"it does not parse ({exc}), so collecting it errors and stops the test run"]
    reasons += _reaches_out(tree)
    return list(dict.fromkeys(reasons))


def _has_code(text: str | None) -> bool:
    try:
        body = ast.parse(text or "").body
    except (SyntaxError, ValueError):
        return True
    return bool(_strip_docstring(body))


LISTING_CALLS = ("glob", "iglob", "rglob", "listdir", "scandir", "iterdir", "walk", "fnmatch.filter")


def _tests_that_list_folders(files: list[str], read_base: Callable[[str], str | None],
                             python_files: Iterable[str]) -> list[str]:
    """Test modules and conftests that enumerate a folder (``glob``, ``listdir``, ``iterdir``...)."""
    patterns = tuple(python_files) + ("conftest.py",)
    out = []
    for f in files[:2000]:
        if not f.endswith(".py") or not (any(fnmatch.fnmatchcase(f.rsplit("/", 1)[-1], p) for p in patterns)
                                         or "/tests/" in f"/{f}"):
            continue
        text = read_base(f) or ""
        if any(f"{call}(" in text for call in LISTING_CALLS):
            out.append(f)
    return out


def _modules_imported_by_tests(files: list[str], read_base: Callable[[str], str | None],
                               python_files: Iterable[str]) -> set[str]:
    patterns = tuple(python_files) + ("conftest.py",)
    out: set[str] = set()
    for f in files[:2000]:
        base = f.rsplit("/", 1)[-1]
        if not any(fnmatch.fnmatchcase(base, p) for p in patterns) and "/tests/" not in f"/{f}":
            continue
        if not f.endswith(".py"):
            continue
        text = read_base(f)
        if not text or len(text) > 500_000:
            continue
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        for n in ast.walk(tree):
            if isinstance(n, ast.Import):
                out |= {a.name.split(".")[0] for a in n.names}
            elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
                out.add(n.module.split(".")[0])
    return out


def _reaches_out(tree: ast.Module) -> list[str]:
    """Module-level patching, hooks, plugins and exits in a new test module."""
    reasons: list[str] = []
    imported = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            imported |= {(a.asname or a.name.split(".")[0]) for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            imported |= {(a.asname or a.name) for a in n.names}
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name.startswith("pytest_"):
            reasons.append(f"it defines the pytest hook {stmt.name}(), which belongs in a conftest")
        for target in _targets(stmt):
            if isinstance(target, ast.Name) and target.id in COLLECTION_NAMES:
                reasons.append(f"it sets {target.id}, which changes how pytest collects or configures the suite")
    for node in ast.walk(tree):
        for target in _targets(node):
            root = _root_name(target)
            if isinstance(target, (ast.Attribute, ast.Subscript)) and root in imported:
                reasons.append(f"`{ast.unparse(node)[:80]}` (line {node.lineno}) patches an imported module for every test that runs after it")  # type: ignore[attr-defined]  # an assignment
            elif isinstance(target, ast.Subscript) and ast.unparse(target.value) in ("sys.modules", "builtins.__dict__"):
                reasons.append(f"`{ast.unparse(node)[:80]}` (line {node.lineno}) swaps a module the other tests import")  # type: ignore[attr-defined]  # an assignment
        if isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func in EXITS:
                reasons.append(f"`{ast.unparse(node)[:80]}` (line {node.lineno}) ends the test session")
            elif func == "setattr" and node.args and _root_name(node.args[0]) in imported:
                reasons.append(f"`{ast.unparse(node)[:80]}` (line {node.lineno}) patches an imported module for every test that runs after it")
            elif func in ("atexit.register", "sys.addaudithook") or func.endswith("excepthook"):
                reasons.append(f"`{ast.unparse(node)[:80]}` (line {node.lineno}) installs a process-wide hook")
        elif isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if ast.unparse(exc) in ("SystemExit", "KeyboardInterrupt", "pytest.exit.Exception"):
                reasons.append(f"`raise {ast.unparse(exc)}` (line {node.lineno}) ends the test session")
    return list(dict.fromkeys(reasons))


def _targets(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.Assign):
        out: list[ast.AST] = []
        for t in node.targets:
            out += list(t.elts) if isinstance(t, (ast.Tuple, ast.List)) else [t]
        return out
    if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        return [node.target]
    if isinstance(node, ast.Delete):
        return list(node.targets)
    return []


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None
