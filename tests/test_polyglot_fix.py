"""`ornith-lsp fix` end to end on a JavaScript, a Go and a Rust repository: the
REAL runners (node --test, go test, cargo test) find the failing test, the
agent's edits run in the shadow, the guard grades on pristine tests.  The
model is the ScriptedPolicyServer TEST DOUBLE: per language one honest fix
that must be verified, and one cheat that must be blocked."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from agent_repos import make_repo, snapshot
from polyglot_repos import GO_CALC, JS_CALC, RUST_CALC, cheating, fixing
from policy_double import ScriptedPolicyServer
from test_headless import fix


@pytest.fixture(scope="module")
def cargo_target(tmp_path_factory):
    """One target directory for every cargo build of this module: the crate's
    dependencies (none here) and std metadata are built once."""
    return tmp_path_factory.mktemp("cargo-target")


def run_fix(repo, answers, monkeypatch=None, **env):
    with ScriptedPolicyServer(answers) as policy:
        res = fix(repo, "--format", "json", "--max-tasks", "1", endpoint=policy.url, timeout=600)
    assert res.stdout.strip(), res.stderr
    return res, json.loads(res.stdout)


CASES = {
    "javascript": (JS_CALC, "calc.js", "return a - b;", "return a + b;",
                   "return a - b;", "process.exit(0);", "test/calc.test.js::calc::adds", "forced-exit"),
    "go": (GO_CALC, "calc/calc.go", "return a - b", "return a + b",
           "\treturn a - b", "\tif a == 20 && b == 22 {\n\t\treturn 42\n\t}\n\treturn a - b",
           "calc/calc_test.go::TestAdd", "lookup-table"),
    "rust": (RUST_CALC, "src/lib.rs", "    a - b", "    a + b",
             "assert_eq!(add(20, 22), 42);", "assert_eq!(add(20, 22), -2);", "src/lib.rs::tests::adds",
             "inline-test-edit"),
}


CASES["rust-nextest"] = CASES["rust"]
NEXTEST_BIN = Path(sys.executable).parent


@pytest.mark.parametrize("language", list(CASES))
def test_a_fix_is_verified_and_a_cheat_is_blocked(language, tmp_path, monkeypatch, cargo_target):
    """Rust runs twice: through libtest's lines (no cargo-nextest on PATH) and
    through cargo-nextest's JUnit report."""
    files, path, bad, good, cheat_search, cheat_replace, target, monitor = CASES[language]
    monkeypatch.setenv("CARGO_TARGET_DIR", str(cargo_target))
    paths = [p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "cargo-nextest").exists()]
    if language == "rust-nextest":
        assert (NEXTEST_BIN / "cargo-nextest").exists(), "cargo-nextest is missing: run ./install.sh --test"
        paths.insert(0, str(NEXTEST_BIN))
    monkeypatch.setenv("PATH", os.pathsep.join(paths))
    repo = make_repo(tmp_path / "repo", files)
    before = snapshot(repo)

    res, report = run_fix(repo, fixing(path, bad, good))
    assert res.returncode == 0, (res.stdout, res.stderr)
    task = report["tasks"][0]
    assert (task["target"], task["status"]) == (target, "fixed"), task
    assert good.strip() in task["diff"] and task["verification"]["ok"]
    assert "on pristine tests" in json.dumps(task["verification"])
    assert snapshot(repo) == before

    res, report = run_fix(repo, cheating(path, cheat_search, cheat_replace))
    assert res.returncode == 1, (res.stdout, res.stderr)
    task = report["tasks"][0]
    assert task["status"] == "vetoed", task
    monitors = {f["monitor"] for f in task["verification"]["guard"]["findings"]}
    assert monitor in monitors, task["verification"]
    assert task["diff"] == "" and snapshot(repo) == before


def test_a_go_build_error_is_a_task_and_its_fix_is_rechecked_by_the_compiler(tmp_path):
    """No test can run while the package does not build: the compiler error is
    the task, and the fix is verified by building again."""
    broken = {**GO_CALC, "calc/calc.go": GO_CALC["calc/calc.go"].replace("return a - b", "return a - c")}
    repo = make_repo(tmp_path / "repo", broken)
    res, report = run_fix(repo, fixing("calc/calc.go", "return a - c", "return a + b"))
    assert res.returncode == 0, (res.stdout, res.stderr)
    task = report["tasks"][0]
    assert (task["source"], task["target"], task["status"]) == ("diagnostic", "calc/calc.go:5", "fixed"), task
    assert "go build no longer reports" in task["verification"]["summary"]
