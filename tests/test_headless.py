"""`ornith-lsp fix` as a CI bot runs it: outputs, exit codes, and nothing
changed unless asked.  The deterministic cases use the ScriptedPolicyServer
TEST DOUBLE as a remote endpoint; the README's demo runs on the REAL embedded
model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_repos import CALC, git, make_repo, snapshot
from conftest import REAL_MODEL_PROCESS_S, REAL_MODEL_TEST_S, REAL_MODEL_WALL_S
from policy_double import ScriptedPolicyServer
from test_agent_scripted import FINISH, GOOD_EDIT, PLAN, READ, STEP_DONE

FIXING = [PLAN, READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH]
REPO_ROOT = Path(__file__).resolve().parents[1]


def fix(repo: Path, *args: str, endpoint: str | None = None, timeout: float = 300, turns: int = 12):
    backend = ["--backend", "remote", "--endpoint", endpoint, "--model", "scripted"] if endpoint else []
    return subprocess.run([sys.executable, "-m", "ornith_lsp", "fix", str(repo), *backend, *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "ORNITH_AGENT__MAX_TURNS": str(turns)})


def test_json_report_and_nothing_changed_by_default(tmp_path):
    repo = make_repo(tmp_path / "repo", CALC)
    before = snapshot(repo)
    with ScriptedPolicyServer(FIXING) as policy:
        res = fix(repo, "--format", "json", endpoint=policy.url)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["summary"] == {"total": 1, "fixed": 1, "unfixed": 0, "vetoed": 0, "interrupted": 0, "errors": 0}
    task = report["tasks"][0]
    assert set(task) >= {"id", "source", "target", "status", "scaffold", "steps", "tokens", "cache", "timings",
                         "verification", "diff"}
    assert task["target"] == "test_calc.py::test_add" and task["status"] == "fixed"
    assert "+    return a + b" in task["diff"] and task["verification"]["ok"]
    assert snapshot(repo) == before


def test_patch_apply_and_branch(tmp_path):
    repo = make_repo(tmp_path / "repo", CALC)
    patch = tmp_path / "fix.diff"
    with ScriptedPolicyServer(FIXING + FIXING) as policy:
        res = fix(repo, "--patch", str(patch), "--branch", "ornith/fixes", endpoint=policy.url)
        assert res.returncode == 0, res.stderr
        assert "+    return a + b" in patch.read_text()
        assert (repo / "calc.py").read_text() == CALC["calc.py"]  # --patch/--branch leave the tree alone
        assert git(repo, "branch", "--show-current").strip() == "main"
        assert "return a + b" in git(repo, "show", "ornith/fixes:calc.py")
        res = fix(repo, "--apply", endpoint=policy.url)
    assert res.returncode == 0, res.stderr
    assert "return a + b" in (repo / "calc.py").read_text()
    assert (repo / "test_calc.py").read_text() == CALC["test_calc.py"]


def test_unfixed_exits_1_and_sarif(tmp_path):
    repo = make_repo(tmp_path / "repo", CALC)
    with ScriptedPolicyServer([PLAN] + [READ] * 5) as policy:
        res = fix(repo, "--format", "sarif", endpoint=policy.url, timeout=120, turns=6)
    assert res.returncode == 1, res.stderr
    sarif = json.loads(res.stdout)
    assert sarif["version"] == "2.1.0"
    result = sarif["runs"][0]["results"][0]
    assert result["level"] == "warning" and result["message"]["text"].startswith("unfixed")


def test_errors_exit_2(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "test_x.py").write_text("def test_x():\n    assert False\n")
    res = fix(plain, "--backend", "remote", "--endpoint", "http://127.0.0.1:9/v1")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip()


@pytest.mark.usefixtures("no_new_llama_servers")
@pytest.mark.timeout(REAL_MODEL_TEST_S)
def test_the_readme_demo_is_fixed_by_the_default_embedded_model(tmp_path):
    """The README's main-job command on the default coder model: the demo's bug
    is fixed and verified, and the demo's files are left as they were.  The
    limits nest (agent wall budget < subprocess < test), so a slow machine
    fails here with the command's output rather than by the outer timeout."""
    demo = REPO_ROOT / "examples" / "demo"
    before = snapshot(demo)
    env = {**os.environ, "ORNITH_BACKEND__EMBEDDED_MODEL": "coder-1.5b", "ORNITH_AGENT__MAX_WALL_S": str(REAL_MODEL_WALL_S)}
    res = subprocess.run([sys.executable, "-m", "ornith_lsp", "fix", str(demo), "--format", "json",
                          "--log-dir", str(tmp_path / "logs")],
                         capture_output=True, text=True, timeout=REAL_MODEL_PROCESS_S, env=env)
    assert res.returncode == 0, (res.stderr[-2000:], res.stdout[-3000:])
    report = json.loads(res.stdout)
    assert report["summary"] == {"total": 1, "fixed": 1, "unfixed": 0, "vetoed": 0, "interrupted": 0, "errors": 0}
    task = report["tasks"][0]
    assert task["target"] == "test_stats.py::test_mean" and task["status"] == "fixed"
    assert task["focus"] == "stats.py:mean" and task["strategy"]
    assert "-    return sum(values) / (len(values) + 1)" in task["diff"]  # the bug is gone; grading ran the test
    assert snapshot(demo) == before
