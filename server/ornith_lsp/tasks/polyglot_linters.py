"""Linter and compiler findings as tasks beyond Python: eslint, tsc, go vet
and clippy, each through its machine-readable output.

As with ruff and mypy, a tool that is not installed is a normal state,
reported in ``LintRun.error``; eslint and tsc are looked up only in the
project's own ``node_modules``.  ``recheck`` re-runs the tool that reported a
task (or the build that failed) so a fix is verified by its source.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from ornith_lsp import procs
from ornith_lsp.tasks import cargo_tests, go_tests, node_tests
from ornith_lsp.paths import relative_path
from ornith_lsp.tasks.diagnostics import task_title
from ornith_lsp.tasks.linters import LintRun
from ornith_lsp.tasks.model import Location, Task
from ornith_lsp.tasks.project import build_task, compiler_lines

TOOLS = ("eslint", "tsc", "govet", "clippy")
_TSC_LINE = re.compile(r"^(?P<path>[^\s(][^(\n]*)\((?P<line>\d+),(?P<col>\d+)\): (?P<sev>error|warning) (?P<code>TS\d+): (?P<msg>.*)$")


async def run(name: str, root: Path, paths: Sequence[str] = (), *, timeout_s: float = 300) -> LintRun:
    runner = {"eslint": run_eslint, "tsc": run_tsc, "govet": run_go_vet, "go vet": run_go_vet,
              "clippy": run_clippy}.get(name)
    if runner is None:
        return LintRun(name, installed=False, error=f"unknown diagnostics tool {name!r}; known: {', '.join(TOOLS)}")
    return await runner(root, paths, timeout_s=timeout_s)


def _node_tool(tool: str, root: Path) -> Path | None:
    return node_tests.node_modules_bin(tool, node_tests.dependency_roots(root))


async def _in_project(root: Path, argv: list[str], timeout_s: float) -> procs.RunResult:
    """Run a node tool with the project's ``node_modules`` reachable, as the
    test runners are: an ESM config (``eslint.config.js``) imports from it."""
    link = node_tests.link_node_modules(root, node_tests.dependency_roots(root))
    try:
        return await procs.run(argv, root, timeout_s)
    finally:
        if link is not None:
            link.unlink(missing_ok=True)


async def run_eslint(root: Path, paths: Sequence[str] = (), *, timeout_s: float = 300) -> LintRun:
    exe = _node_tool("eslint", root)
    if exe is None:
        return LintRun("eslint", installed=False, error="eslint is not installed in the project's node_modules")
    result = await _in_project(root, [str(exe), "--format", "json", *(paths or ["."])], timeout_s)
    if result.timed_out:
        return LintRun("eslint", timed_out=True, output=result.output, error=f"eslint did not finish within {timeout_s:g}s")
    try:
        return LintRun("eslint", parse_eslint_json(result.output, root), output=result.output)
    except ValueError as exc:
        return LintRun("eslint", output=result.output, error=f"eslint failed (exit {result.returncode}): {exc}")


def parse_eslint_json(text: str, root: Path) -> list[Task]:
    start = text.find("[{")
    start = start if start >= 0 else text.find("[]")
    if start < 0:
        raise ValueError(f"no JSON report: {text.strip()[:300]!r}")
    try:
        files, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError as exc:
        raise ValueError(f"unreadable JSON report ({exc})") from None
    tasks = []
    for entry in files:
        rel = relative_path(root, str(entry.get("filePath", "")))
        if rel is None:
            continue
        for msg in entry.get("messages") or []:
            if msg.get("severity") != 2:
                continue
            rule = msg.get("ruleId")
            message = str(msg.get("message", ""))
            tasks.append(Task(source="diagnostic", title=task_title("fix", f"{rule}: {message}" if rule else message),
                              message=message, code=rule, diagnostic_source="eslint",
                              location=Location(path=rel, line=max(1, int(msg.get("line") or 1)),
                                                end_line=msg.get("endLine"), column=msg.get("column"))))
    return tasks


async def run_tsc(root: Path, paths: Sequence[str] = (), *, timeout_s: float = 300) -> LintRun:
    exe = _node_tool("tsc", root)
    if exe is None:
        return LintRun("tsc", installed=False, error="tsc is not installed in the project's node_modules (typescript)")
    if not (root / "tsconfig.json").is_file():
        return LintRun("tsc", error="tsc was not run: the project has no tsconfig.json")
    result = await _in_project(root, [str(exe), "--noEmit", "--pretty", "false"], timeout_s)
    if result.timed_out:
        return LintRun("tsc", timed_out=True, output=result.output, error=f"tsc did not finish within {timeout_s:g}s")
    tasks = parse_tsc(result.output, root)
    if result.returncode not in (0, 1, 2) or (result.returncode and not tasks):
        return LintRun("tsc", tasks, output=result.output, error=f"tsc failed (exit {result.returncode}): "
                       + (result.output.strip().splitlines() or [""])[-1][:300])
    return LintRun("tsc", tasks, output=result.output)


def parse_tsc(text: str, root: Path) -> list[Task]:
    tasks = []
    for line in text.splitlines():
        m = _TSC_LINE.match(line.strip())
        if m is None or m["sev"] != "error":
            continue
        task = build_task("tsc", root, m["path"], int(m["line"]), int(m["col"]), m["msg"], m["code"])
        if task is not None:
            tasks.append(task.model_copy(update={"title": task_title("fix", f"{m['code']}: {m['msg']}")}))
    return tasks


async def run_go_vet(root: Path, paths: Sequence[str] = (), *, timeout_s: float = 300) -> LintRun:
    go = shutil.which("go")
    if go is None:
        return LintRun("go vet", installed=False, error="go is not installed (not on PATH)")
    packages = sorted({"./" + (p.rpartition("/")[0] or ".") for p in paths}) or ["./..."]
    result = await procs.run([go, "vet", "-json", *packages], root, timeout_s)
    if result.timed_out:
        return LintRun("go vet", timed_out=True, output=result.output, error=f"go vet did not finish within {timeout_s:g}s")
    tasks = parse_go_vet(result.output, root)
    if result.returncode not in (0, 1) and not tasks:
        return LintRun("go vet", output=result.output, error=f"go vet failed (exit {result.returncode}): "
                       + (result.output.strip().splitlines() or [""])[-1][:300])
    return LintRun("go vet", tasks, output=result.output)


def parse_go_vet(text: str, root: Path) -> list[Task]:
    """``go vet -json`` prints one JSON object per package (``{pkg: {analyzer:
    [{posn, message}]}}``) after ``# pkg`` lines; compiler errors stay text."""
    tasks: list[Task] = []
    decoder = json.JSONDecoder()
    index = 0
    while (start := text.find("{", index)) >= 0:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            index = start + 1
            continue
        index = end
        if not isinstance(value, dict):
            continue
        for analyzers in value.values():
            if not isinstance(analyzers, dict):
                continue
            for analyzer, findings in analyzers.items():
                for finding in findings if isinstance(findings, list) else []:
                    posn = str(finding.get("posn", ""))
                    m = re.match(r"^(?P<path>.+?):(?P<line>\d+)(?::(?P<col>\d+))?$", posn)
                    if m is None:
                        continue
                    task = build_task("go vet", root, m["path"], int(m["line"]),
                                      int(m["col"]) if m["col"] else None, str(finding.get("message", "")), analyzer)
                    if task is not None:
                        tasks.append(task)
    return tasks + compiler_lines("\n".join(x for x in text.splitlines() if not x.startswith(("{", "#", " ", "}"))),
                                  "go build", root)


async def run_clippy(root: Path, paths: Sequence[str] = (), *, timeout_s: float = 600) -> LintRun:
    cargo = shutil.which("cargo")
    if cargo is None:
        return LintRun("clippy", installed=False, error="cargo is not installed (not on PATH)")
    env = {**os.environ, "CARGO_TARGET_DIR": str(cargo_tests.target_dir(root)), "CARGO_TERM_COLOR": "never"}
    had_lockfile = (root / "Cargo.lock").exists()
    try:
        await cargo_tests.clean_own(cargo, root, env, timeout_s)
        result = await procs.run([cargo, "clippy", "--all-targets", "--message-format=json"], root, timeout_s, env=env)
    finally:
        if not had_lockfile:
            (root / "Cargo.lock").unlink(missing_ok=True)
    if result.timed_out:
        return LintRun("clippy", timed_out=True, output=result.output, error=f"clippy did not finish within {timeout_s:g}s")
    if "no such command: `clippy`" in result.output:
        return LintRun("clippy", installed=False, error="clippy is not installed (rustup component add clippy)")
    tasks = parse_clippy(result.output, root)
    if result.returncode not in (0, 101) or (result.returncode and not tasks):
        return LintRun("clippy", tasks, output=result.output, error=f"cargo clippy failed (exit {result.returncode})")
    return LintRun("clippy", tasks, output=result.output)


def parse_clippy(text: str, root: Path) -> list[Task]:
    tasks: list[Task] = []
    for line in text.splitlines():
        if not line.startswith('{"reason":"compiler-message"'):
            continue
        try:
            message = json.loads(line)
        except ValueError:
            continue
        diag = message.get("message") or {}
        code = (diag.get("code") or {}).get("code") if isinstance(diag.get("code"), dict) else None
        if diag.get("level") != "error" and not (code or "").startswith("clippy::"):
            continue
        spans = [s for s in diag.get("spans") or [] if s.get("is_primary")]
        if not spans:
            continue
        task = build_task("clippy", root, str(spans[0].get("file_name", "")), int(spans[0].get("line_start") or 1),
                          spans[0].get("column_start"), str(diag.get("message", "")), code,
                          base=Path(str(message.get("manifest_path", root / "Cargo.toml"))).parent)
        if task is not None and task.id not in {t.id for t in tasks}:
            tasks.append(task)
    return tasks


RECHECKED = ("eslint", "tsc", "go vet", "clippy", "go build", "cargo build")


async def recheck(task: Task, root: Path, timeout_s: float = 300) -> tuple[bool | None, str]:
    """Whether the task's source still reports it: (True, why) fixed, (False, what
    remains), or (None, why not) when this source cannot be re-run here."""
    source = task.diagnostic_source or ""
    loc = task.location
    if source not in RECHECKED or loc is None:
        return None, f"the {source or 'editor'} diagnostic cannot be re-run here"
    if source == "go build":
        build = await go_tests.run_tests(root, node_ids=[f"{loc.path}::"], timeout_s=timeout_s,
                                         command=[shutil.which("go") or "go", "test", "-run", "^$"])
        remaining = [t for t in build.build_tasks if t.location and t.location.path == loc.path]
        installed = not build.note.startswith("go is not installed")
    elif source == "cargo build":
        build = await cargo_tests.run_tests(root, timeout_s=timeout_s,
                                            command=[shutil.which("cargo") or "cargo", "test", "--no-run"])
        remaining = [t for t in build.build_tasks if t.location and t.location.path == loc.path]
        installed = not build.note.startswith("cargo is not installed")
    else:
        lint = await run({"go vet": "govet"}.get(source, source), root, [loc.path], timeout_s=timeout_s)
        installed = lint.installed
        remaining = [t for t in lint.tasks if t.code == task.code and t.location and t.location.path == loc.path]
    if not installed:
        return None, f"{source} is not installed; the finding cannot be re-checked"
    if remaining:
        return False, f"{source} still reports: " + "; ".join(t.message.splitlines()[0] for t in remaining[:3])
    return True, f"{source} no longer reports {task.code or 'an error'} in {loc.path}"
