"""Go tests as tasks, read from ``go test -json``'s event stream.

Test events say which package and test passed or failed, and carry the test's
output, where ``file_test.go:12:`` lines place the failing check and a panic's
goroutine trace places the code under test.  Compiler errors (a package that
does not build) arrive as plain text before the events (Go < 1.24) or as
``build-output`` events (Go >= 1.24); either way they become tasks at the
compiler's location, so a broken build is never read as "no failures".
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path

from ornith_lsp import procs
from ornith_lsp.tasks.model import Location
from ornith_lsp.tasks.project import CaseResult, ProjectRun, compiler_lines, locate, split_id

_ASSERT_LINE = re.compile(r"^\s+(?P<file>[\w.\-]+_test\.go):(?P<line>\d+): ?(?P<msg>.*)$")
_TRACE_FRAME = re.compile(r"^\s+(?P<path>/\S+\.go):(?P<line>\d+)(?: \+0x[0-9a-f]+)?$", re.MULTILINE)
_MODULE = re.compile(r"^\s*module\s+(\S+)", re.MULTILINE)


def is_test_path(rel: str) -> bool:
    return rel.endswith("_test.go") or "testdata" in rel.split("/")[:-1]


def module_path(root: Path) -> str | None:
    try:
        match = _MODULE.search((root / "go.mod").read_text(encoding="utf-8"))
    except OSError:
        return None
    return match.group(1).strip('"') if match else None


def package_dir(module: str | None, package: str) -> str | None:
    """``example.com/m/calc`` -> ``calc`` (relative to the module root)."""
    if module is None:
        return None
    if package == module:
        return ""
    return package[len(module) + 1:] if package.startswith(module + "/") else None


@cache
def _test_funcs(directory: str, stamp: tuple) -> dict[str, str]:
    out: dict[str, str] = {}
    for file in sorted(Path(directory).glob("*_test.go")):
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for match in re.finditer(r"^func\s+((?:Test|Example|Fuzz|Benchmark)\w*)\s*\(", text, re.MULTILINE):
            out.setdefault(match.group(1), file.name)
    return out


def test_file(root: Path, pkg_dir: str, test: str) -> str | None:
    """The ``_test.go`` file that declares ``test`` (its top-level part)."""
    directory = root / pkg_dir
    try:
        stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(directory.glob("*_test.go")))
    except OSError:
        return None
    name = _test_funcs(str(directory), stamp).get(test.split("/")[0])
    return f"{pkg_dir}/{name}".lstrip("/") if name else None


async def run_tests(root: Path, *, node_ids: Sequence[str] = (), timeout_s: float = 300,
                    command: Sequence[str] | None = None) -> ProjectRun:
    go = shutil.which("go")
    if not command and go is None:
        return ProjectRun("go", note="go is not installed (not on PATH): install Go (Debian: golang-go) to run these tests")
    packages = sorted({"./" + (split_id(n)[0].rpartition("/")[0] or ".") for n in node_ids}) or ["./..."]
    packages = [p if p != "./." else "." for p in packages]
    argv = [*(command or [go or "go", "test"]), "-json", "-count=1", *packages]
    # never download a toolchain behind the user's back: a go.mod asking for a newer Go says so instead
    env = {**os.environ, "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local")}
    try:
        result = await procs.run(argv, root, timeout_s, env=env)
    except OSError as exc:
        return ProjectRun("go", note=f"cannot start {argv[0]!r}: {exc}")
    run = parse_events(result.output, root)
    run = replace(run, timed_out=result.timed_out, output=result.output, returncode=result.returncode)
    if result.timed_out:
        run = replace(run, note=f"go test did not finish within {timeout_s:g}s and was killed")
    return run


def parse_events(text: str, root: Path) -> ProjectRun:
    """Cases and build errors from ``go test -json`` output merged with its stderr."""
    module = module_path(root)
    outputs: dict[tuple[str, str], list[str]] = defaultdict(list)
    final: dict[tuple[str, str], str] = {}
    build_text: list[str] = []
    finished_packages: set[str] = set()
    events = 0
    for line in text.splitlines():
        event = _event(line)
        if event is None:
            build_text.append(line)
            continue
        events += 1
        action = event.get("Action")
        package = str(event.get("Package") or event.get("ImportPath") or "")
        test = event.get("Test")
        if action == "build-output":
            build_text.append(str(event.get("Output") or ""))
        elif action == "output":
            outputs[(package, test or "")].append(str(event.get("Output") or ""))
        elif action in ("pass", "fail", "skip"):
            if test:
                final[(package, test)] = action
            else:
                finished_packages.add(package)
    build_tasks = compiler_lines("\n".join(build_text), "go build", root)
    for (_package, test), lines in outputs.items():
        if not test and any("[setup failed]" in x or "[build failed]" in x for x in lines):
            build_tasks += [t for t in compiler_lines("".join(lines), "go build", root) if t not in build_tasks]
    if events == 0:
        head = text.strip().splitlines()[-1][:300] if text.strip() else "no output"
        return ProjectRun("go", build_tasks=build_tasks,
                          note="go test printed no JSON test events" + (f": {head}" if not build_tasks else
                                                                        " (the build failed)"))
    failing_parents = {(p, t.rpartition("/")[0]) for (p, t), a in final.items() if a == "fail" and "/" in t}
    cases = []
    for (package, test), action in final.items():
        if (package, test) in failing_parents:
            continue  # fails because a subtest failed; the subtest is the task
        pkg_dir = package_dir(module, package)
        file = test_file(root, pkg_dir, test) if pkg_dir is not None else None
        node_id = f"{file or (pkg_dir or package) + '/' + '_test.go'}::{test}"
        outcome = {"pass": "passed", "fail": "failed", "skip": "skipped"}[action]
        out = outputs.get((package, test), [])
        cases.append(_case(root, node_id, outcome, out, pkg_dir))
    return ProjectRun("go", results=cases, build_tasks=build_tasks, report_found=bool(finished_packages or cases))


def _event(line: str) -> dict | None:
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "Action" in event else None


def _case(root: Path, node_id: str, outcome: str, output: list[str], pkg_dir: str | None) -> CaseResult:
    if outcome != "failed":
        return CaseResult(node_id, outcome)  # type: ignore[arg-type]
    text = "".join(output)
    body = [x for x in text.splitlines() if not x.startswith(("=== ", "--- ", "    --- "))]
    asserts = [m for m in (_ASSERT_LINE.match(x) for x in body) if m]
    test_location = None
    if asserts and pkg_dir is not None:
        first = asserts[0]
        test_location = Location(path=f"{pkg_dir}/{first['file']}".lstrip("/"), line=int(first["line"]))
    frames = [(m["path"], int(m["line"])) for m in _TRACE_FRAME.finditer(text)]
    code, test_frame = locate(frames, root, is_test_path)
    message = "\n".join(m["msg"] for m in asserts) or "\n".join(x.strip() for x in body if x.strip())[:2000]
    return CaseResult(node_id, "failed", message, text[-4000:], code, test_location or test_frame)

