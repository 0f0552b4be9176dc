"""Interruption is a normal ending: real `ornith-lsp fix` and `serve`
processes, real signals, real git worktrees and real test runs.

The model is the ScriptedPolicyServer TEST DOUBLE.  The repository's test
hangs once the agent has edited the code (it writes its pid first), so a
signal is sent while the agent's own test run is in progress: the case where
something must be reaped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agent_repos import CALC, git, make_repo, snapshot
from conftest import alive, wait_until
from lsp_wire import Wire
from policy_double import ScriptedPolicyServer
from test_agent_scripted import FINISH, GOOD_EDIT, PLAN, READ, STEP_DONE

FIXING = [PLAN, READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH]

# test_add hangs once the agent has edited calc.py (after saying where), so
# the run that collects tasks is quick and finds it failing, and the agent's
# own run of the target test is where the signal finds it
HANGING = {
    **CALC,
    "test_calc.py": (
        "import os, pathlib, time\n"
        "import calc\n"
        "from calc import add, mul\n\n\n"
        "def test_add():\n"
        "    if 'a + b' in pathlib.Path(calc.__file__).read_text():\n"
        "        pathlib.Path(os.environ['HANG_PIDFILE']).write_text(str(os.getpid()))\n"
        "        time.sleep(300)\n"
        "    assert add(2, 3) == 5\n\n\n"
        "def test_mul():\n"
        "    assert mul(2, 3) == 6\n"
    ),
}


def worktrees(repo: Path) -> list[str]:
    return [line.split()[1] for line in git(repo, "worktree", "list", "--porcelain").splitlines()
            if line.startswith("worktree ")]


def ornith_dirs(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("ornith-shadow-") or p.name.startswith("ornith-base-"))


def start_fix(repo: Path, endpoint: str, tmp: Path, pidfile: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp), "HANG_PIDFILE": str(pidfile), "ORNITH_AGENT__MAX_TURNS": "12",
           "ORNITH_AGENT__TEST_TIMEOUT_S": "200"}
    return subprocess.Popen([sys.executable, "-m", "ornith_lsp", "fix", str(repo), "--backend", "remote",
                             "--endpoint", endpoint, "--model", "scripted", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture
def setup(tmp_path):
    repo = make_repo(tmp_path / "repo", HANGING)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return repo, tmp, tmp_path / "hang.pid"


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_a_signal_mid_task_reaps_cleans_and_reports(setup, sig, code):
    repo, tmp, pidfile = setup
    before = snapshot(repo)
    with ScriptedPolicyServer(FIXING) as policy:
        proc = start_fix(repo, policy.url, tmp, pidfile, "--format", "json", "--apply")
        try:
            assert wait_until(lambda: pidfile.exists() and pidfile.read_text(), timeout=120), proc.stderr
            hung = int(pidfile.read_text())
            assert alive(hung) and len(worktrees(repo)) == 2  # the shadow is there while the test runs
            sent = time.monotonic()
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == code, err
    assert took < 10, f"took {took:.1f} s to stop"
    report = json.loads(out)
    assert report["interrupted"]["signal"] == signal.Signals(sig).name
    assert report["summary"]["interrupted"] == 1 and report["summary"]["total"] == 1
    task = report["tasks"][0]
    assert task["status"] == "interrupted" and task["reason"] == f"interrupted by {signal.Signals(sig).name}"
    assert task["target"] == "test_calc.py::test_add"
    assert "Traceback" not in err
    assert wait_until(lambda: not alive(hung), timeout=5), "the test run was not reaped"
    assert worktrees(repo) == [str(repo)], "the shadow worktree is still registered"
    assert not (repo / ".git" / "worktrees").exists() or not list((repo / ".git" / "worktrees").iterdir())
    assert ornith_dirs(tmp) == [], "a shadow directory was left"
    assert snapshot(repo) == before, "--apply wrote something though the run was interrupted"


def test_a_signal_while_waiting_for_the_model(setup):
    """Cancelled inside an HTTP request to the model: same clean ending."""
    repo, tmp, pidfile = setup
    with ScriptedPolicyServer(FIXING, delay_s=60) as policy:
        proc = start_fix(repo, policy.url, tmp, pidfile)
        try:
            assert wait_until(lambda: len(policy.requests) >= 1, timeout=120), proc.stderr
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, err
    assert "1 task(s): 0 fixed, 0 unfixed, 0 vetoed, 1 interrupted, 0 errors" in out
    assert "- interrupted test_calc.py::test_add: interrupted by SIGINT" in out
    assert worktrees(repo) == [str(repo)] and ornith_dirs(tmp) == []


def test_a_killed_run_is_swept_at_the_next_start_and_doctor_reports_it(setup):
    """SIGKILL cannot be caught: the shadow stays, with its marker.  doctor
    names it; the next run removes it and its registration."""
    repo, tmp, pidfile = setup
    env = {**os.environ, "TMPDIR": str(tmp)}
    with ScriptedPolicyServer(FIXING) as policy:
        proc = start_fix(repo, policy.url, tmp, pidfile)
        try:
            assert wait_until(lambda: pidfile.exists() and pidfile.read_text(), timeout=120)
            hung = int(pidfile.read_text())
            proc.kill()
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert wait_until(lambda: not alive(hung), timeout=10), "the test run outlived its parent"
    assert len(worktrees(repo)) == 2 and len(ornith_dirs(tmp)) == 1  # what a crash leaves

    doctor = subprocess.run([sys.executable, "-m", "ornith_lsp", "doctor", "--json", "--root", str(repo),
                             "--backend", "remote", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m"],
                            capture_output=True, text=True, timeout=60, env=env)
    found = json.loads(doctor.stdout)["leftovers"]
    assert len(found) == 1 and found[0]["owner_pid"] == proc.pid and found[0]["registered"], found
    text = subprocess.run([sys.executable, "-m", "ornith_lsp", "doctor", "--root", str(repo),
                           "--backend", "remote", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m"],
                          capture_output=True, text=True, timeout=60, env=env).stdout
    assert "leftover: " in text and "owner (pid " in text

    (repo / "test_calc.py").write_text(CALC["test_calc.py"])  # no more hanging
    git(repo, "commit", "-qam", "plain tests")
    with ScriptedPolicyServer(FIXING) as policy:
        res = subprocess.run([sys.executable, "-m", "ornith_lsp", "fix", str(repo), "--backend", "remote",
                              "--endpoint", policy.url, "--model", "scripted", "--format", "json"],
                             capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0, res.stderr
    notes = json.loads(res.stdout)["notes"]
    assert any("removed a leftover of an earlier run" in n for n in notes), notes
    assert worktrees(repo) == [str(repo)] and ornith_dirs(tmp) == []


def test_a_running_owner_is_never_swept(tmp_path):
    """A marked directory whose owner still runs is someone's live shadow."""
    from ornith_lsp.workspace import leftovers

    repo = make_repo(tmp_path / "repo", CALC)
    box = tmp_path / "ornith-shadow-live"
    box.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        owner = leftovers.Owner(pid=sleeper.pid, start=None, repo=str(repo), created=time.time())
        (box / leftovers.MARKER).write_text(owner.model_dump_json())
        assert leftovers.find([repo], [tmp_path]) == []
    finally:
        sleeper.kill()
        sleeper.wait()
    assert [x.path for x in leftovers.sweep([repo], [tmp_path])] == [str(box)]
    assert not box.exists()


def test_checkpoints_are_pruned_by_count_and_age(tmp_path):
    from datetime import timedelta

    from ornith_lsp.workspace.checkpoints import (
        create_checkpoint,
        list_checkpoints,
        prune_checkpoints,
        record_fix,
    )

    repo = make_repo(tmp_path / "repo", CALC)
    for i in range(5):
        create_checkpoint(repo, label=f"c{i}")
    made = list_checkpoints(repo)  # oldest first (ties within a second in a fixed order)
    assert len(made) == 5
    record_fix(repo, made[0].id, git(repo, "rev-parse", "HEAD^{tree}").strip())
    pruned = prune_checkpoints(repo, keep=3, protect=[made[1].id])
    assert pruned == [made[0].id]  # made[1] is in use, the newest 3 stay
    assert git(repo, "for-each-ref", "refs/ornith/fixes/") == ""
    left = [c.id for c in list_checkpoints(repo)]
    assert left == [c.id for c in made[1:]]
    later = made[-1].created + timedelta(days=31)
    assert sorted(prune_checkpoints(repo, keep=50, now=later)) == sorted(left)
    assert git(repo, "for-each-ref", "refs/ornith/") == ""


def serve(repo: Path, tmp: Path, pidfile: Path, endpoint: str) -> tuple[subprocess.Popen, Wire]:
    env = {**os.environ, "TMPDIR": str(tmp), "HANG_PIDFILE": str(pidfile)}
    proc = subprocess.Popen([sys.executable, "-m", "ornith_lsp", "serve"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    wire = Wire(proc)
    wire.initialize(repo.as_uri(), {"backend": {"kind": "remote", "endpoint": endpoint, "model": "scripted"},
                                    "agent": {"test_timeout_s": 200}})
    assert wire.wait_backend("ready")["state"] == "ready"
    return proc, wire


def start_lsp_fix(wire: Wire) -> str:
    task = {"source": "test", "title": "fix test_add", "message": "assert -1 == 5",
            "test_id": "test_calc.py::test_add", "location": {"path": "calc.py", "line": 2}}
    answer = wire.request("workspace/executeCommand", {"command": "ornith.fix", "arguments": [task]})
    assert answer["result"]["status"] == "started", answer
    return answer["result"]["taskId"]


@pytest.mark.parametrize("how", ["ornith.cancel", "stdin closed", "SIGTERM"])
def test_the_language_server_cleans_up_a_running_fix(setup, how):
    repo, tmp, pidfile = setup
    with ScriptedPolicyServer(FIXING) as policy:
        proc, wire = serve(repo, tmp, pidfile, policy.url)
        try:
            task_id = start_lsp_fix(wire)
            assert wait_until(lambda: pidfile.exists() and pidfile.read_text(), timeout=120)
            hung = int(pidfile.read_text())
            assert len(worktrees(repo)) == 2
            if how == "ornith.cancel":
                answer = wire.request("workspace/executeCommand", {"command": "ornith.cancel", "arguments": [task_id]})
                assert answer["result"]["cancelled"] == [task_id]
                assert wait_until(lambda: worktrees(repo) == [str(repo)], timeout=10)
                assert proc.poll() is None  # the server goes on
                wire.request("shutdown")
                wire.send({"jsonrpc": "2.0", "method": "exit"})
            elif how == "stdin closed":
                proc.stdin.close()
            else:
                proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert wait_until(lambda: not alive(hung), timeout=5), "the test run was not reaped"
    assert worktrees(repo) == [str(repo)] and ornith_dirs(tmp) == []
