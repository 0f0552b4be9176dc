"""Small promises, each with a real process: a report run writes nothing in
the project, a closed stdout is not an error, and a request after
``shutdown`` is answered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agent_repos import CALC, make_repo
from lsp_wire import Wire
from policy_double import ScriptedPolicyServer
from test_agent_scripted import FINISH, GOOD_EDIT, PLAN, READ, STEP_DONE

FIXING = [PLAN, READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH]


def every_path(root: Path) -> dict[str, bytes | None]:
    """All files and directories under root, caches and dot-directories
    included (only .git left out), with file contents."""
    found: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        rel = Path(dirpath).relative_to(root)
        for d in dirnames:
            found[str(rel / d) + "/"] = None
        for f in filenames:
            found[str(rel / f)] = (Path(dirpath) / f).read_bytes()
    return found


def test_a_report_run_leaves_nothing_in_the_project(tmp_path):
    """The task-finding run happens in the user's tree: with a plain
    `python -m pytest` as the test command it still writes no
    .pytest_cache/ and no __pycache__/."""
    repo = make_repo(tmp_path / "repo", {**CALC, "conftest.py": "import calc  # imported by pytest itself\n"})
    before = every_path(repo)
    with ScriptedPolicyServer(FIXING) as policy:
        res = subprocess.run([sys.executable, "-m", "ornith_lsp", "fix", str(repo), "--backend", "remote",
                              "--endpoint", policy.url, "--model", "scripted", "--tests", "python -m pytest"],
                             capture_output=True, text=True, timeout=240,
                             env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    assert res.returncode == 0, res.stderr
    assert "1 fixed" in res.stdout
    after = every_path(repo)
    assert sorted(set(after) - set(before)) == []
    assert after == before


def test_a_closed_stdout_is_not_an_error(tmp_path):
    """`ornith-lsp doctor --json | head -c 600`: the reader is gone before the
    report is written (the read end is closed before the process starts)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        res = subprocess.run([sys.executable, "-m", "ornith_lsp", "doctor", "--json", "--backend", "remote",
                              "--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--root", str(tmp_path)],
                             stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert "BrokenPipeError" not in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert "Exception ignored" not in res.stderr, res.stderr
    assert res.returncode == 0, res.stderr


def test_head_reads_the_start_and_the_command_ends_quietly(tmp_path):
    res = subprocess.run(f"{sys.executable} -m ornith_lsp doctor --json --backend remote "
                         f"--endpoint http://127.0.0.1:9/v1 --model m --root {tmp_path} | head -c 60",
                         shell=True, capture_output=True, text=True, timeout=60)
    assert res.stdout.startswith("{") and len(res.stdout) == 60
    assert res.stderr == "", res.stderr


def test_a_request_after_shutdown_gets_invalid_request(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "ornith_lsp", "serve"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        wire = Wire(proc)
        wire.initialize(tmp_path.as_uri(), {"backend": {"kind": "remote", "endpoint": "http://127.0.0.1:9/v1",
                                                        "model": "m"}})
        assert wire.request("shutdown")["result"] is None
        for method, params in [("workspace/executeCommand", {"command": "ornith.tasks"}),
                               ("textDocument/hover", {"textDocument": {"uri": (tmp_path / "x.py").as_uri()},
                                                       "position": {"line": 0, "character": 0}}),
                               ("shutdown", None)]:
            reply = wire.request(method, params, timeout=10)
            assert reply["error"]["code"] == -32600, reply
            assert "shutdown" in reply["error"]["message"]
        wire.send({"jsonrpc": "2.0", "method": "exit"})
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    json.dumps(wire.notifications)  # every message was well-formed JSON
