"""What every test runner's reader produces, whatever the language.

Each runner (``node_tests``, ``go_tests``, ``cargo_tests``) reads its own
machine-readable report into :class:`CaseResult` rows and compiler errors into
build tasks; this module holds the shared shapes and the one rule for placing
a failure: at the code under test when a stack frame leads there, and at the
failing assertion always.  A run that could not happen says why in ``note``
instead of looking like a run in which nothing failed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ornith_lsp.paths import relative_path
from ornith_lsp.tasks.diagnostics import task_title
from ornith_lsp.tasks.model import Location, Task

Outcome = Literal["passed", "failed", "error", "skipped"]
LIBRARY_DIRS = frozenset({"node_modules", "vendor", ".cargo", "rustc", "site-packages", "pkg", "registry"})


@dataclass(frozen=True)
class CaseResult:
    """One test case.  ``node_id`` is ``<test file>::<name>[::<name>...]``, the
    file relative to the project root, so every id names a file the trust
    boundary can protect and the grader can find in the base tree."""

    __test__ = False

    node_id: str
    outcome: Outcome
    message: str = ""
    traceback: str = ""
    location: Location | None = None
    test_location: Location | None = None


@dataclass(frozen=True)
class ProjectRun:
    """A whole run.  ``report_found`` is False when the runner wrote no report
    it could be believed on (not installed, crashed, unknown report version);
    ``note`` then says what to do.  ``build_tasks`` are compiler errors that
    kept tests from running."""

    language: str
    results: list[CaseResult] = field(default_factory=list)
    build_tasks: list[Task] = field(default_factory=list)
    report_found: bool = False
    timed_out: bool = False
    output: str = ""
    returncode: int | None = None
    note: str = ""

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if r.outcome in ("failed", "error")]

    @property
    def could_not_run(self) -> bool:
        """Nothing to believe and nothing to fix: the caller must not report success."""
        return not self.report_found and not self.build_tasks


def split_id(node_id: str) -> tuple[str, str]:
    """``("test/calc.test.js", "math::adds")``."""
    file, _, rest = node_id.partition("::")
    return file, rest


def locate(frames: Iterable[tuple[str, int]], root: Path, is_test: Callable[[str], bool]
           ) -> tuple[Location | None, Location | None]:
    """(innermost frame in the code under test, innermost frame in a test file),
    given frames innermost first.  Frames outside ``root`` or in dependencies
    (``node_modules``, the module cache, the cargo registry) are skipped."""
    code = test = None
    for path, line in frames:
        rel = relative_path(root, path)
        if rel is None or LIBRARY_DIRS & set(rel.split("/")[:-1]):
            continue
        where = Location(path=rel, line=max(1, line))
        if is_test(rel):
            test = test or where
        else:
            code = code or where
        if code and test:
            break
    return code, test


def tasks_from_cases(results: Sequence[CaseResult]) -> list[Task]:
    """One task per failing case: located at the code under test when a frame
    led there, else at the assertion; the assertion is kept beside it."""
    return [
        Task(
            source="test",
            title=task_title("fix failing test", r.node_id),
            message=r.message or f"{r.node_id} {r.outcome}",
            location=r.location or r.test_location,
            test_location=r.test_location,
            test_id=r.node_id,
            traceback=r.traceback,
        )
        for r in results
        if r.outcome in ("failed", "error")
    ]


_COMPILER_LINE = re.compile(r"^(?P<path>[^\s:][^:\n]*?\.(?:go|rs|[cm]?[jt]sx?)):(?P<line>\d+):(?:(?P<col>\d+):)? ?(?P<msg>.+)$")


def build_task(tool: str, root: Path, path: str, line: int, column: int | None, message: str,
               code: str | None = None, base: Path | None = None) -> Task | None:
    """A compiler error as a task at its place; None when it is outside the project."""
    rel = relative_path(root, (base or root) / path) if not Path(path).is_absolute() else relative_path(root, path)
    if rel is None:
        return None
    return Task(source="diagnostic", title=task_title("fix build error", message), message=message,
                location=Location(path=rel, line=max(1, line), column=column), code=code,
                diagnostic_source=tool)


def compiler_lines(text: str, tool: str, root: Path, base: Path | None = None) -> list[Task]:
    """``file:line:col: message`` lines (go build, tsc's --pretty false), one task each."""
    tasks: list[Task] = []
    for raw in text.splitlines():
        match = _COMPILER_LINE.match(raw.strip())
        if match is None:
            continue
        task = build_task(tool, root, match["path"], int(match["line"]),
                          int(match["col"]) if match["col"] else None, match["msg"].strip(), base=base)
        if task is not None and task.id not in {t.id for t in tasks}:
            tasks.append(task)
    return tasks
