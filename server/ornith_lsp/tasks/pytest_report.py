"""Failing tests as tasks, read from pytest's JUnit XML report.

The report, not the console output, is the source of truth: it is stable
across pytest versions and plugins, where the terminal summary is not.  A test
suite can still end without writing it (``os._exit``, a segfault, a timeout),
and then the run says so instead of pretending every test passed.

:func:`read_junit` is the project's one reader of that report, a pure
function of its text.  The guard's grader reads the same report (its own run,
with the same ``xunit1`` family) through it: the guard sits a floor above
``tasks``, so it imports the reader from here, and a node id means the same
thing to the run that found a task and to the run that grades its fix.
"""

from __future__ import annotations

import os
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ornith_lsp import procs
from ornith_lsp.paths import relative_path
from ornith_lsp.tasks.diagnostics import task_title
from ornith_lsp.tasks.model import Location, Task
from ornith_lsp.offloop import temporary_directory

Outcome = Literal["passed", "failed", "error", "skipped"]

DEFAULT_COMMAND = (sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q")
PLUGIN_DIR = Path(__file__).resolve().parent / "pytest_plugin"
# a single test may use this share of the run's time limit before it is
# failed as hung, so the run still ends in time to write its report
TEST_CASE_SHARE = 1 / 3

# "calc.py:5: ZeroDivisionError" / "tests/test_x.py:12: in test_y" (pytest's long and short styles)
_PYTEST_FRAME = re.compile(r"^(?P<path>[^\s<>][^:\n]*?\.py):(?P<line>\d+):(?: |$)", re.MULTILINE)
# 'File "/abs/calc.py", line 5, in helper' (--tb=native, and SyntaxErrors in every style)
_NATIVE_FRAME = re.compile(r'File "(?P<path>[^"\n]+)", line (?P<line>\d+)')
_LIBRARY_DIRS = {"site-packages", "dist-packages"}
_TEST_DIRS = {"tests", "test"}


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest test class, whatever its name

    node_id: str
    outcome: Outcome
    message: str = ""
    traceback: str = ""
    location: Location | None = None
    xfailed: bool = False  # a skip by ``xfail``: grading names it so, tasks count it as a skip


@dataclass(frozen=True)
class JUnitReport:
    """Every test case of a report, and whether a suite carried its summary
    (the ``tests`` count pytest writes last: a report without one was cut short)."""

    results: list[TestResult]
    summary_found: bool


@dataclass(frozen=True)
class TestRun:
    __test__ = False

    results: list[TestResult] = field(default_factory=list)
    report_found: bool = False
    timed_out: bool = False
    output: str = ""
    returncode: int | None = None
    start_error: str = ""  # the command could not be started at all (not found, not executable)

    @property
    def failures(self) -> list[TestResult]:
        return [r for r in self.results if r.outcome in ("failed", "error")]


async def run_tests(
    root: Path,
    command: Sequence[str] | None = None,
    *,
    timeout_s: float = 300,
    node_ids: Sequence[str] = (),
) -> TestRun:
    """Run the test command in ``root`` and read its report.

    ``command`` must accept pytest's arguments: ``--junitxml`` and an ``-o``
    option are appended (xunit1, whose ``file``/``line`` attributes make node
    ids exact), the ``ornith_hang`` plugin (a test running past a third of
    ``timeout_s`` fails where it is stuck), then ``node_ids``.  Bytecode
    writing is switched off so a run in the shadow tree leaves no
    ``__pycache__`` in the diff.  A command whose Python cannot see the
    plugin (one that drops ``PYTHONPATH``, like a tox environment) is run
    again without it.
    """
    async with temporary_directory("ornith-pytest-") as tmp:  # removed off the event loop
        report = Path(tmp) / "report.xml"
        argv = [*(command or DEFAULT_COMMAND), f"--junitxml={report}", "-o", "junit_family=xunit1"]
        path = os.pathsep.join(p for p in (str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": path,
               "ORNITH_TEST_CASE_TIMEOUT_S": f"{max(1.0, timeout_s * TEST_CASE_SHARE):g}",
               "PYTEST_ADDOPTS": no_cache_addopts(os.environ.get("PYTEST_ADDOPTS", ""))}
        try:
            result = await procs.run([*argv, "-p", "ornith_hang", *node_ids], root, timeout_s, env=env)
            if result.returncode == 4 and "ornith_hang" in result.output and not report.is_file():
                result = await procs.run([*argv, *node_ids], root, timeout_s, env=env)
        except OSError as exc:
            reason = f"{exc.strerror or exc}: {argv[0]}"
            return TestRun(output=f"cannot start the test command {argv[0]!r}: {exc}", start_error=reason)
        output = result.output
        if result.timed_out:
            output += f"\n[ornith] the test command did not finish within {timeout_s:g}s and was killed\n"
        results: list[TestResult] = []
        found = report.is_file()
        if found:
            try:
                results = parse_junit(report.read_text("utf-8", "replace"), root)
            except ValueError as exc:
                found = False
                output += f"\n[ornith] the JUnit report is unreadable ({exc})\n"
        else:
            output += (
                "\n[ornith] no JUnit report was written: the test process ended before pytest "
                "could write it (os._exit, a crash, a kill) or the command does not run pytest\n"
            )
    return TestRun(results, found, result.timed_out, output, result.returncode)


def no_cache_addopts(addopts: str) -> str:
    """``PYTEST_ADDOPTS`` with pytest's cache provider switched off, whatever
    the test command is (a project's own ``pytest``, ``uv run pytest``): the
    run that finds the tasks happens in the user's tree, which must not gain
    a ``.pytest_cache/``."""
    flag = "-p no:cacheprovider"
    return addopts if flag in addopts else f"{addopts} {flag}".strip()


def parse_junit(xml_text: str, root: Path) -> list[TestResult]:
    """Every test case of a pytest JUnit report; ValueError when it is not one."""
    return read_junit(xml_text, root).results


def read_junit(xml_text: str, root: Path) -> JUnitReport:
    """A pytest JUnit report (xunit1 family); ValueError when it is not one.
    ``root`` is the tree the tests ran in: node ids and locations are relative
    to it."""
    try:
        tree = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise ValueError(f"not a JUnit XML report: {exc}") from exc
    suites = [tree] if tree.tag == "testsuite" else tree.findall("testsuite")
    return JUnitReport([_result(case, root) for case in tree.iter("testcase")],
                       any(s.get("tests") is not None for s in suites))


def _result(case: ET.Element, root: Path) -> TestResult:
    node_id = node_id_of(case.get("classname", ""), case.get("name", ""), case.get("file"), root)
    outcome: Outcome = "passed"
    message = traceback = ""
    xfailed = False
    for tag, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
        element = case.find(tag)
        if element is not None:
            outcome = name  # type: ignore[assignment]
            message = element.get("message", "")
            traceback = element.text or ""
            xfailed = tag == "skipped" and element.get("type") == "pytest.xfail"
            break
    if outcome == "error" and message == "collection failure":
        # the test module did not import; its last error line says why (SyntaxError, NameError, ...)
        message = f"{node_id} could not be imported: {_last_error_line(traceback) or message}"
    location = None
    if outcome in ("failed", "error"):
        test_file = node_id.split("::")[0]
        line = case.get("line")
        own = Location(path=test_file, line=int(line) + 1) if line and line.isdigit() else None
        location = failure_location(traceback, root, test_file) or own
    return TestResult(node_id, outcome, message, traceback, location, xfailed)


def _last_error_line(traceback: str) -> str:
    """Pytest marks the exception lines of a traceback with ``E``; the last one names the error."""
    lines = [ln[1:].strip() for ln in traceback.splitlines() if ln.startswith("E ")]
    return lines[-1] if lines else ""


def node_id_of(classname: str, name: str, file: str | None, root: Path) -> str:
    """Undo pytest's ``mangle_test_address``: ``tests.test_x.TestC`` + ``test_y``
    becomes ``tests/test_x.py::TestC::test_y``.

    The dotted classname does not say where the module ends and the classes
    begin.  The ``file`` attribute (xunit1) settles it; without it the longest
    prefix that is a file under ``root`` does; failing that, the trailing
    capitalised parts are taken for classes.
    """
    file = file.replace("\\", "/") if file else file
    parts = [p for p in classname.split(".") if p]
    if not parts:  # collection errors: name is the module, file the path
        return file or name.replace(".", "/") + ".py"
    split = None
    if file:
        module = file.removesuffix(".py").replace("/", ".").replace("\\", ".").split(".")
        if parts[: len(module)] == module:
            split = len(module)
    if split is None:
        for k in range(len(parts), 0, -1):
            if (root / Path(*parts[:k])).with_suffix(".py").is_file():
                split = k
                break
    if split is None:
        split = len(parts)
        while split > 1 and parts[split - 1][:1].isupper():
            split -= 1
    path = file or "/".join(parts[:split]) + ".py"
    return "::".join([path, *parts[split:], name])


def failure_location(traceback: str, root: Path, test_file: str) -> Location | None:
    """Where a failure points: the deepest frame in the code under test.

    A test that fails because ``helper()`` divided by zero should send the
    agent to ``helper``, not to the assertion that called it.  Frames in
    libraries (site-packages, even inside the workspace's venv) and in test
    files are skipped; when only test frames remain, the deepest of those is
    the answer (an assertion that simply does not hold).  Only the text is
    read, never the files it names.
    """
    frames: list[tuple[int, Location]] = []
    for pattern in (_PYTEST_FRAME, _NATIVE_FRAME):
        for match in pattern.finditer(traceback):
            rel = relative_path(root, match["path"])
            if rel is None or _LIBRARY_DIRS & set(rel.split("/")):
                continue
            frames.append((match.start(), Location(path=rel, line=int(match["line"]))))
    frames.sort(key=lambda item: item[0])
    code = [loc for _, loc in frames if not _is_test_file(loc.path) and loc.path != test_file]
    if code:
        return code[-1]
    tests = [loc for _, loc in frames]
    return tests[-1] if tests else None


def _is_test_file(path: str) -> bool:
    *dirs, name = path.split("/")
    return (
        name == "conftest.py"
        or name.startswith("test_")
        or name.endswith("_test.py")
        or bool(_TEST_DIRS & set(dirs))
    )


def tasks_from_results(results: Sequence[TestResult]) -> list[Task]:
    """One task per failed or erroring test; passes and skips ask for nothing."""
    return [
        Task(
            source="test",
            title=task_title("fix failing test", r.node_id),
            message=r.message or f"{r.node_id} {r.outcome}",
            location=r.location,
            test_id=r.node_id,
            traceback=r.traceback,
        )
        for r in results
        if r.outcome in ("failed", "error")
    ]
