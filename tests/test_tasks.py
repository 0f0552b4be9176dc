"""Tasks from every source: editor diagnostics, pytest reports, ruff and mypy.

The parsers are tested on captured output; the runners on real subprocesses
(pytest, and stand-in ruff/mypy executables on PATH, since neither tool is
needed to run this suite)."""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest
from lsprotocol import types as lsp

from conftest import wait_until
from ornith_lsp.tasks import linters
from ornith_lsp.tasks.diagnostics import from_lsp_diagnostic
from ornith_lsp.tasks.linters import parse_mypy_output, parse_ruff_json, run_mypy, run_ruff
from ornith_lsp.tasks.model import Location
from ornith_lsp.tasks.pytest_report import (
    failure_location,
    node_id_of,
    parse_junit,
    run_tests,
    tasks_from_results,
)

# ------------------------------------------------------------ diagnostics


def _diag(message="Undefined name `foo`", start=(4, 8), end=(4, 11), code="F821", source="ruff"):
    return lsp.Diagnostic(
        range=lsp.Range(start=lsp.Position(line=start[0], character=start[1]),
                        end=lsp.Position(line=end[0], character=end[1])),
        message=message, code=code, source=source,
    )


def test_diagnostic_becomes_a_task(tmp_path):
    task = from_lsp_diagnostic(tmp_path, (tmp_path / "pkg" / "mod.py").as_uri(), _diag("Undefined name `foo`\nmore detail"))
    assert task.source == "diagnostic"
    assert task.title == "Ornith: fix Undefined name `foo`"
    assert task.message == "Undefined name `foo`\nmore detail"
    assert task.code == "F821" and task.diagnostic_source == "ruff"
    assert task.location == Location(path="pkg/mod.py", line=5, end_line=5, column=9)
    assert task.id


def test_diagnostic_whole_line_range_and_numeric_code(tmp_path):
    task = from_lsp_diagnostic(tmp_path, (tmp_path / "a.py").as_uri(), _diag(start=(0, 0), end=(3, 0), code=2322))
    assert (task.location.line, task.location.end_line) == (1, 3)
    assert task.code == "2322"


def test_diagnostic_outside_the_workspace_is_refused(tmp_path):
    (tmp_path / "ws").mkdir()
    with pytest.raises(ValueError, match="outside the workspace"):
        from_lsp_diagnostic(tmp_path / "ws", (tmp_path / "other.py").as_uri(), _diag())
    with pytest.raises(ValueError):
        from_lsp_diagnostic(tmp_path, "untitled:Untitled-1", _diag())


# --------------------------------------------------------------- JUnit

# Captured from pytest 9 with -o junit_family=xunit1 (tracebacks shortened).
JUNIT_XUNIT1 = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="3" skipped="2" tests="8" time="0.036">
<testcase classname="tests.test_calc" name="test_ok" file="tests/test_calc.py" line="7" time="0.000" />
<testcase classname="tests.test_calc" name="test_zero" file="tests/test_calc.py" line="10" time="0.000"><failure message="ZeroDivisionError: division by zero">def test_zero():
&gt;       assert div(1, 0) == 0
               ^^^^^^^^^

tests/test_calc.py:12: 
_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ 
calc.py:2: in div
    return helper(a, b)
           ^^^^^^^^^^^^
_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ 

a = 1, b = 0

    def helper(a, b):
&gt;       return a / b
               ^^^^^
E       ZeroDivisionError: division by zero

calc.py:5: ZeroDivisionError</failure></testcase>
<testcase classname="tests.test_calc.TestC" name="test_y" file="tests/test_calc.py" line="14" time="0.000"><failure message="assert 1 == 2">self = &lt;test_calc.TestC object at 0x7f9bc5278a10&gt;

    def test_y(self):
&gt;       assert 1 == 2
E       assert 1 == 2

tests/test_calc.py:16: AssertionError</failure></testcase>
<testcase classname="tests.test_calc.TestC" name="test_p[1]" file="tests/test_calc.py" line="17" time="0.000" />
<testcase classname="tests.test_calc.TestC" name="test_p[2]" file="tests/test_calc.py" line="17" time="0.000"><failure message="assert 2 == 1">    def test_p(self, x):
&gt;       assert x == 1
E       assert 2 == 1

tests/test_calc.py:20: AssertionError</failure></testcase>
<testcase classname="tests.test_calc" name="test_fixture" file="tests/test_calc.py" line="21" time="0.000"><error message="failed on setup with &quot;RuntimeError: fixture boom&quot;">@pytest.fixture
    def broken():
&gt;       raise RuntimeError("fixture boom")
E       RuntimeError: fixture boom

tests/test_calc.py:6: RuntimeError</error></testcase>
<testcase classname="tests.test_calc" name="test_skipped" file="tests/test_calc.py" line="24" time="0.000"><skipped type="pytest.skip" message="not today">/tmp/jx/tests/test_calc.py:25: not today</skipped></testcase>
<testcase classname="tests.test_calc" name="test_xf" file="tests/test_calc.py" line="28" time="0.000"><skipped type="pytest.xfail" message="" /></testcase>
</testsuite></testsuites>"""

JUNIT_COLLECTION_ERROR = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="1" tests="1">
<testcase classname="" name="tests.test_bad" file="tests/test_bad.py" time="0.000"><error message="collection failure">/venv/lib/python3.11/site-packages/_pytest/python.py:528: in importtestmodule
    mod = import_path(
&lt;frozen importlib._bootstrap&gt;:1204: in _gcd_import
    ???
E     File "{root}/tests/test_bad.py", line 3
E       def f(:
E             ^
E   SyntaxError: invalid syntax</error></testcase></testsuite></testsuites>"""


def test_parse_junit_outcomes_and_node_ids(tmp_path):
    results = {r.node_id: r for r in parse_junit(JUNIT_XUNIT1, tmp_path)}
    assert {k: r.outcome for k, r in results.items()} == {
        "tests/test_calc.py::test_ok": "passed",
        "tests/test_calc.py::test_zero": "failed",
        "tests/test_calc.py::TestC::test_y": "failed",
        "tests/test_calc.py::TestC::test_p[1]": "passed",
        "tests/test_calc.py::TestC::test_p[2]": "failed",
        "tests/test_calc.py::test_fixture": "error",
        "tests/test_calc.py::test_skipped": "skipped",
        "tests/test_calc.py::test_xf": "skipped",
    }
    fixture = results["tests/test_calc.py::test_fixture"]
    assert fixture.message == 'failed on setup with "RuntimeError: fixture boom"'
    assert "RuntimeError: fixture boom" in fixture.traceback
    assert results["tests/test_calc.py::test_skipped"].message == "not today"
    assert results["tests/test_calc.py::test_ok"].location is None


def test_failure_points_at_the_code_under_test(tmp_path):
    results = {r.node_id: r for r in parse_junit(JUNIT_XUNIT1, tmp_path)}
    # helper() divided by zero: the deepest frame outside the tests
    assert results["tests/test_calc.py::test_zero"].location == Location(path="calc.py", line=5)
    # a plain failed assertion: the test itself, at the assertion
    assert results["tests/test_calc.py::TestC::test_y"].location == Location(path="tests/test_calc.py", line=16)
    # an error in a fixture: the fixture's line in the test module
    assert results["tests/test_calc.py::test_fixture"].location == Location(path="tests/test_calc.py", line=6)


def test_collection_error(tmp_path):
    [result] = parse_junit(JUNIT_COLLECTION_ERROR.replace("{root}", str(tmp_path)), tmp_path)
    assert result.node_id == "tests/test_bad.py"
    assert result.outcome == "error"
    assert result.location == Location(path="tests/test_bad.py", line=3)


def test_node_ids_without_the_file_attribute(tmp_path):
    """xunit2 reports have no ``file``: the tree (or, failing that, the
    capitalisation) says where the module ends."""
    (tmp_path / "tests" / "Sub").mkdir(parents=True)
    (tmp_path / "tests" / "Sub" / "test_m.py").write_text("")
    assert node_id_of("tests.Sub.test_m.TestA.TestB", "test_z", None, tmp_path) == "tests/Sub/test_m.py::TestA::TestB::test_z"
    assert node_id_of("tests.test_x.TestC", "test_y[a.b]", None, tmp_path) == "tests/test_x.py::TestC::test_y[a.b]"
    assert node_id_of("test_top", "test_a", None, tmp_path) == "test_top.py::test_a"


def test_library_frames_are_not_the_code_under_test(tmp_path):
    traceback = textwrap.dedent(f"""\
        tests/test_a.py:3: in test_a
            run()
        src/app/core.py:10: in run
            json.loads(x)
        .venv/lib/python3.11/site-packages/json/__init__.py:346: in loads
            return _default_decoder.decode(s)
        E   ValueError
          File "{tmp_path}/src/app/deep.py", line 7, in never_shown_in_pytest_style
        """)
    assert failure_location(traceback, tmp_path, "tests/test_a.py") == Location(path="src/app/deep.py", line=7)
    assert failure_location(traceback.split("src/app")[0], tmp_path, "tests/test_a.py") == Location(path="tests/test_a.py", line=3)


def test_tasks_from_results_one_per_failure_or_error(tmp_path):
    tasks = tasks_from_results(parse_junit(JUNIT_XUNIT1, tmp_path))
    assert [t.test_id for t in tasks] == [
        "tests/test_calc.py::test_zero",
        "tests/test_calc.py::TestC::test_y",
        "tests/test_calc.py::TestC::test_p[2]",
        "tests/test_calc.py::test_fixture",
    ]
    zero = tasks[0]
    assert zero.source == "test"
    assert zero.title == "Ornith: fix failing test tests/test_calc.py::test_zero"
    assert zero.message == "ZeroDivisionError: division by zero"
    assert "calc.py:5: ZeroDivisionError" in zero.traceback
    assert zero.location == Location(path="calc.py", line=5)
    assert len({t.id for t in tasks}) == 4


def test_unreadable_report_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="not a JUnit XML report"):
        parse_junit("<testsuites><testcase", tmp_path)


# --------------------------------------------------------- running pytest


def _project(root: Path) -> Path:
    (root / "tests").mkdir(parents=True)
    (root / "calc.py").write_text("def mean(xs):\n    total = sum(xs)\n    return total / len(xs)\n")
    (root / "tests" / "test_calc.py").write_text(textwrap.dedent("""\
        from calc import mean

        def test_mean():
            assert mean([1, 2, 3]) == 2

        def test_mean_of_nothing_is_zero():
            assert mean([]) == 0
        """))
    (root / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    return root


async def test_run_tests_failure_points_into_the_code(tmp_path):
    root = _project(tmp_path / "proj")
    run = await run_tests(root, timeout_s=120)
    assert run.report_found and not run.timed_out, run.output
    assert {r.node_id: r.outcome for r in run.results} == {
        "tests/test_calc.py::test_mean": "passed",
        "tests/test_calc.py::test_mean_of_nothing_is_zero": "failed",
    }
    [task] = tasks_from_results(run.results)
    assert task.test_id == "tests/test_calc.py::test_mean_of_nothing_is_zero"
    assert task.location == Location(path="calc.py", line=3)
    assert "ZeroDivisionError" in task.message
    assert not list(root.rglob("__pycache__")) and not (root / ".pytest_cache").exists()


async def test_run_tests_selected_node_ids(tmp_path):
    root = _project(tmp_path / "proj")
    run = await run_tests(root, node_ids=["tests/test_calc.py::test_mean"], timeout_s=120)
    assert [(r.node_id, r.outcome) for r in run.results] == [("tests/test_calc.py::test_mean", "passed")]
    assert run.returncode == 0


async def test_missing_report_is_said(tmp_path):
    root = _project(tmp_path / "proj")
    (root / "tests" / "test_exit.py").write_text("import os\n\ndef test_exit():\n    os._exit(3)\n")
    run = await run_tests(root, node_ids=["tests/test_exit.py"], timeout_s=120)
    assert not run.report_found and run.results == []
    assert run.returncode == 3
    assert "no JUnit report was written" in run.output


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _pid_alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


async def test_hanging_test_command_is_killed(tmp_path):
    script = "import os, time; open('leader.pid', 'w').write(str(os.getpid())); time.sleep(60)"
    started = time.monotonic()
    run = await run_tests(tmp_path, [sys.executable, "-c", script], timeout_s=2)
    assert time.monotonic() - started < 15
    assert run.timed_out and not run.report_found
    assert "did not finish within 2s" in run.output
    pgid = int((tmp_path / "leader.pid").read_text())
    assert wait_until(lambda: not _group_members(pgid), timeout=5), _group_members(pgid)


@pytest.mark.parametrize("leader", ["exits", "hangs"])
async def test_forked_child_dies_with_the_group(tmp_path, leader):
    script = textwrap.dedent(f"""\
        import os, subprocess, sys, time
        child = subprocess.Popen(["sleep", "60"])
        open("child.pid", "w").write(str(child.pid))
        open("leader.pid", "w").write(str(os.getpid()))
        if {leader == "hangs"}:
            time.sleep(60)
        """)
    run = await run_tests(tmp_path, [sys.executable, "-c", script], timeout_s=3)
    assert run.timed_out == (leader == "hangs")
    child = int((tmp_path / "child.pid").read_text())
    pgid = int((tmp_path / "leader.pid").read_text())
    assert wait_until(lambda: not _pid_alive(child), timeout=5), "the forked sleep outlived the run"
    assert wait_until(lambda: not _group_members(pgid), timeout=5)


async def test_test_command_that_does_not_exist(tmp_path):
    run = await run_tests(tmp_path, ["/nonexistent/pytest"], timeout_s=5)
    assert not run.report_found and "cannot start the test command" in run.output


# ----------------------------------------------------------------- ruff

RUFF_JSON = """warning: The top-level linter settings are deprecated in favour of their counterparts in the `lint` section.
[
  {
    "cell": null,
    "code": "F401",
    "end_location": {"column": 10, "row": 1},
    "filename": "{root}/pkg/mod.py",
    "fix": {"applicability": "safe", "edits": [], "message": "Remove unused import: `os`"},
    "location": {"column": 8, "row": 1},
    "message": "`os` imported but unused",
    "noqa_row": 1,
    "url": "https://docs.astral.sh/ruff/rules/unused-import"
  },
  {
    "cell": null,
    "code": null,
    "end_location": {"column": 1, "row": 4},
    "filename": "{root}/broken.py",
    "fix": null,
    "location": {"column": 7, "row": 3},
    "message": "SyntaxError: Expected ')', found newline",
    "noqa_row": null,
    "url": null
  },
  {
    "cell": null, "code": "E501", "end_location": {"column": 99, "row": 2},
    "filename": "/elsewhere/vendored.py", "fix": null,
    "location": {"column": 89, "row": 2}, "message": "Line too long (98 > 88)", "noqa_row": 2, "url": null
  }
]
"""


def test_parse_ruff_json(tmp_path):
    tasks = parse_ruff_json(RUFF_JSON.replace("{root}", str(tmp_path)), tmp_path)
    assert [(t.source, t.code, t.location.path, t.location.line, t.location.column) for t in tasks] == [
        ("ruff", "F401", "pkg/mod.py", 1, 8),
        ("ruff", None, "broken.py", 3, 7),
    ]
    assert tasks[0].message == "`os` imported but unused"
    assert tasks[0].title == "Ornith: fix F401: `os` imported but unused"
    assert tasks[0].diagnostic_source == "ruff"
    assert tasks[1].location.end_line == 4
    assert parse_ruff_json("[]", tmp_path) == []
    with pytest.raises(ValueError, match="no JSON report"):
        parse_ruff_json("ruff: error: unexpected argument", tmp_path)


# ----------------------------------------------------------------- mypy

MYPY_JSON = """{"file": "pkg/mod.py", "line": 3, "column": 4, "message": "Incompatible types in assignment (expression has type \\"str\\", variable has type \\"int\\")", "hint": null, "code": "assignment", "severity": "error"}
{"file": "pkg/mod.py", "line": 9, "column": 0, "message": "Function is missing a return type annotation", "hint": "Use \\"-> None\\" if function does not return a value", "code": "no-untyped-def", "severity": "error"}
{"file": "/usr/lib/python3/typeshed/builtins.pyi", "line": 1, "column": -1, "message": "elsewhere", "hint": null, "code": "misc", "severity": "error"}
"""

MYPY_TEXT = """pkg/mod.py:3: error: Incompatible types in assignment (expression has type "str", variable has type "int")  [assignment]
pkg/mod.py:9:5: error: Function is missing a return type annotation  [no-untyped-def]
pkg/mod.py:9:5: note: Use "-> None" if function does not return a value
main.py:1: error: Cannot find implementation or library stub for module named "yaml"  [import-untyped]
main.py:1: note: See https://mypy.readthedocs.io/en/stable/running_mypy.html#missing-imports
main.py: note: In function "f":
Found 3 errors in 2 files (checked 2 source files)
"""


def test_parse_mypy_json(tmp_path):
    tasks = parse_mypy_output(MYPY_JSON, tmp_path)
    assert [(t.source, t.code, t.location.path, t.location.line, t.location.column) for t in tasks] == [
        ("mypy", "assignment", "pkg/mod.py", 3, 5),
        ("mypy", "no-untyped-def", "pkg/mod.py", 9, 1),
    ]
    assert tasks[1].message == 'Function is missing a return type annotation\nUse "-> None" if function does not return a value'


def test_parse_mypy_classic_text(tmp_path):
    tasks = parse_mypy_output(MYPY_TEXT, tmp_path)
    assert [(t.code, t.location.path, t.location.line, t.location.column) for t in tasks] == [
        ("assignment", "pkg/mod.py", 3, None),
        ("no-untyped-def", "pkg/mod.py", 9, 5),
        ("import-untyped", "main.py", 1, None),
    ]
    assert tasks[0].message == 'Incompatible types in assignment (expression has type "str", variable has type "int")'
    assert tasks[1].message.endswith('\nUse "-> None" if function does not return a value')
    assert tasks[2].title.startswith("Ornith: fix Cannot find implementation")


# -------------------------------------------------------- linter runners


async def test_linters_not_installed(tmp_path, monkeypatch):
    monkeypatch.setattr(linters, "find_tool", lambda name: None)
    for run in (await run_ruff(tmp_path, ["."]), await run_mypy(tmp_path, ["."])):
        assert not run.installed and run.tasks == []
        assert "not installed" in run.error


def _fake_tool(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / name
    exe.write_text(f"#!{sys.executable}\nimport sys, json, pathlib\n" + textwrap.dedent(body))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)


async def test_run_ruff_reads_the_report_and_never_fixes(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    sample = RUFF_JSON.replace("{root}", str(ws))
    _fake_tool(tmp_path / "bin", "ruff", f"""
        pathlib.Path({str(tmp_path / "argv.json")!r}).write_text(json.dumps(sys.argv[1:]))
        sys.stdout.write({sample!r})
        sys.exit(1)
        """)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    run = await run_ruff(ws, ["pkg"])
    assert run.installed and run.error is None, run.output
    assert [t.code for t in run.tasks] == ["F401", None]
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[:2] == ["check", "--output-format=json"] and "--no-fix" in argv and argv[-1] == "pkg"


async def test_run_mypy_falls_back_to_text_for_old_mypy(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    _fake_tool(tmp_path / "bin", "mypy", f"""
        if any(a.startswith("--output") for a in sys.argv):
            sys.stderr.write("usage: mypy ...\\nmypy: error: unrecognized arguments: --output=json\\n")
            sys.exit(2)
        sys.stdout.write({MYPY_TEXT!r})
        sys.exit(1)
        """)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    run = await run_mypy(ws)
    assert run.error is None, run.output
    assert [t.code for t in run.tasks] == ["assignment", "no-untyped-def", "import-untyped"]


async def test_a_hanging_test_fails_where_it_loops_and_the_rest_still_report(tmp_path):
    """An endless loop is a bug like any other: it becomes a task pointing at
    the loop, not a killed run that reads as "nothing failed"."""
    root = _project(tmp_path / "proj")
    (root / "spin.py").write_text("def spin(n):\n    while n > 0:\n        n = n + 0\n    return n\n")
    (root / "tests" / "test_spin.py").write_text("from spin import spin\n\ndef test_spin():\n    assert spin(1) == 0\n")
    started = time.monotonic()
    run = await run_tests(root, timeout_s=9)
    assert time.monotonic() - started < 9
    assert run.report_found and not run.timed_out, run.output
    outcomes = {r.node_id: r.outcome for r in run.results}
    assert outcomes["tests/test_spin.py::test_spin"] == "failed" and outcomes["tests/test_calc.py::test_mean"] == "passed"
    task = next(t for t in tasks_from_results(run.results) if t.test_id == "tests/test_spin.py::test_spin")
    assert "ran longer than 3s" in task.message and task.location.path == "spin.py" and task.location.line in (2, 3)


async def test_a_command_that_cannot_load_the_hang_plugin_still_runs(tmp_path):
    """``python -I`` ignores PYTHONPATH, as a tox environment may: the run is
    repeated without the plugin rather than failing on it."""
    root = _project(tmp_path / "proj")
    run = await run_tests(root, [sys.executable, "-I", "-m", "pytest", "-p", "no:cacheprovider", "-q"], timeout_s=120)
    assert run.report_found, run.output
    assert {r.node_id: r.outcome for r in run.results} == {
        "tests/test_calc.py::test_mean": "passed",
        "tests/test_calc.py::test_mean_of_nothing_is_zero": "failed",
    }
