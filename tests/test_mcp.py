"""`ornith-lsp mcp` as another agent uses it: a real subprocess driven by the
MCP SDK's own client (stdio_client + ClientSession), on generated repositories.

Tests, the guard, the shadow worktrees and pytest are real.  The `fix` tool
runs on the ScriptedPolicyServer TEST DOUBLE (tests/policy_double.py, a real
HTTP server replaying fixed model answers) as a remote backend, so the fix is
deterministic.  Every tool call is checked to leave the user's tree as it was:
its files, and what `git status` says.  The process-hygiene tests speak raw
JSON-RPC lines to see exactly when the server exits and what it leaves.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agent_repos import CALC, git, make_repo, snapshot
from conftest import alive, wait_until
from mcp import ClientSession, StdioServerParameters, stdio_client
from policy_double import ScriptedPolicyServer
from test_agent_scripted import FINISH, GOOD_EDIT, PLAN, READ, STEP_DONE

FIXING = [PLAN, READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH]
TOOLS = ["run_tests", "guard_check", "verify_patch", "fix"]
HONEST = {"calc.py": CALC["calc.py"].replace("return a - b", "return a + b")}
CHEAT = {"test_calc.py": CALC["test_calc.py"].replace("assert add(2, 3) == 5", "assert add(2, 3) == -1")}
REGRESSING = {"calc.py": HONEST["calc.py"].replace("return a * b", "return a + b")}


def server_env(tmp: Path) -> dict[str, str]:
    """The test's own environment (PYTHONPATH: this checkout), its own TMPDIR
    so what the server leaves behind can be seen, and short test timeouts."""
    tmp.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmp), "ORNITH_AGENT__TEST_TIMEOUT_S": "60", "ORNITH_AGENT__MAX_TURNS": "12"}


@contextlib.asynccontextmanager
async def session(cwd: Path, *flags: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "ornith_lsp", "mcp", *flags],
                                   env=server_env(cwd.parent / "tmp"), cwd=cwd)
    with open(cwd.parent / "mcp-stderr.log", "a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as client:
                await client.initialize()
                yield client


async def call(client: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


async def refused(client: ClientSession, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result
    return result.content[0].text


def state(repo: Path) -> tuple[dict[str, bytes], str, str, str]:
    """The user's tree as the user sees it: files, status, HEAD, worktrees."""
    return (snapshot(repo), git(repo, "status", "--porcelain", "--untracked-files=all"), git(repo, "rev-parse", "HEAD"),
            git(repo, "worktree", "list", "--porcelain"))


def diff_of(repo: Path, changes: dict[str, str], where: Path, project: str = "") -> str:
    """The diff `git diff --relative` prints in ``project`` for ``changes``
    (paths relative to it), made in a clone so the user's tree is never touched."""
    subprocess.run(["git", "clone", "-q", str(repo), str(where)], check=True)
    for rel, text in changes.items():
        (where / project / rel).write_text(text)
    return git(where / project, "diff", "--relative")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", CALC)


# -- the tools ----------------------------------------------------------------------------
async def test_tools_in_a_fixed_order_with_plain_schemas(repo):
    async with session(repo) as client:
        first, again = await client.list_tools(), await client.list_tools()
    assert [t.name for t in first.tools] == TOOLS == [t.name for t in again.tools]
    schemas = {t.name: t.input_schema for t in first.tools}
    assert schemas == {t.name: t.input_schema for t in again.tools}
    fields = {name: list(schema["properties"]) for name, schema in schemas.items()}
    assert fields == {"run_tests": ["root"], "guard_check": ["root", "diff", "tests"],
                      "verify_patch": ["root", "diff", "tests"], "fix": ["root", "test_id", "file", "line", "message"]}
    assert schemas["guard_check"]["required"] == ["diff"] == schemas["verify_patch"]["required"]
    assert all(s["additionalProperties"] is False and s["type"] == "object" for s in schemas.values())
    assert all(p.get("description") for s in schemas.values() for p in s["properties"].values())
    for tool in first.tools:
        assert tool.description and tool.output_schema["type"] == "object"
        assert tool.annotations.read_only_hint and not tool.annotations.destructive_hint


async def test_run_tests_lists_failures(repo):
    before = state(repo)
    async with session(repo) as client:
        found = await call(client, "run_tests", root=str(repo))
        assert await call(client, "run_tests") == found, "root defaults to the folder the server started in"
    assert found["passed"] == 1 and found["failed"] == 1
    assert found["failures"] == [{"id": "test_calc.py::test_add", "message": found["failures"][0]["message"],
                                  "file": "test_calc.py", "line": 5}]
    assert "assert -1 == 5" in found["failures"][0]["message"]
    assert state(repo) == before


async def test_guard_check_vetoes_a_cheat_and_allows_an_honest_fix(repo, tmp_path):
    cheat, honest = diff_of(repo, CHEAT, tmp_path / "c1"), diff_of(repo, HONEST, tmp_path / "c2")
    before = state(repo)
    async with session(repo) as client:
        vetoed = await call(client, "guard_check", root=str(repo), diff=cheat, tests=["test_calc.py::test_add"])
        allowed = await call(client, "guard_check", root=str(repo), diff=honest, tests=["test_calc.py::test_add"])
        plain = await call(client, "guard_check", root=str(repo), diff=honest)
    assert not vetoed["allowed"] and vetoed["findings"]
    assert any(f["path"] == "test_calc.py" and f["layer"] == "boundary" for f in vetoed["findings"]), vetoed
    assert allowed["allowed"] and allowed["findings"] == []
    assert any("grading" in note and "passed on pristine tests" in note for note in allowed["notes"]), allowed
    assert plain["allowed"] and not any("grading" in note for note in plain["notes"]), "no test named: none run"
    assert state(repo) == before


async def test_verify_patch_good_and_bad(repo, tmp_path):
    good, bad = diff_of(repo, HONEST, tmp_path / "c1"), diff_of(repo, REGRESSING, tmp_path / "c2")
    cheat = diff_of(repo, CHEAT, tmp_path / "c3")
    (repo / "notes.txt").write_text("the user's own uncommitted work\n")  # verification must not disturb it
    before = state(repo)
    async with session(repo) as client:
        verified = await call(client, "verify_patch", root=str(repo), diff=good, tests=["test_calc.py::test_add"])
        regressed = await call(client, "verify_patch", root=str(repo), diff=bad, tests=["test_calc.py::test_add"])
        vetoed = await call(client, "verify_patch", root=str(repo), diff=cheat, tests=["test_calc.py::test_add"])
        untargeted = await call(client, "verify_patch", root=str(repo), diff=good)
    assert verified["verified"] and verified["verdict"]["allowed"], verified
    assert verified["graded"] == ["test_calc.py::test_add", "test_calc.py::test_mul"]
    assert "1 named test(s) pass" in verified["reason"] and "1 test(s) that passed before" in verified["reason"]
    assert not regressed["verified"] and not regressed["verdict"]["allowed"]
    assert any(f["layer"] == "grading" for f in regressed["verdict"]["findings"]), regressed
    assert "test_mul" in json.dumps(regressed["verdict"]["findings"])
    assert not vetoed["verified"] and "blocked" in vetoed["reason"]
    assert untargeted["verified"] and untargeted["graded"] == ["test_calc.py::test_mul"]
    assert "no test was named" in untargeted["reason"]
    assert state(repo) == before


async def test_a_project_in_a_subfolder_of_its_repository(tmp_path):
    """root is the project, diffs and test ids are the project's; the guard
    still judges from the repository's top."""
    top = make_repo(tmp_path / "mono", {"README.md": "two projects\n", **{f"pkg/{k}": v for k, v in CALC.items()}})
    project = top / "pkg"
    good = diff_of(top, HONEST, tmp_path / "clone", "pkg")
    assert "--- a/calc.py" in good
    before = state(top)
    async with session(top) as client:
        found = await call(client, "run_tests", root=str(project))
        verified = await call(client, "verify_patch", root=str(project), diff=good, tests=["test_calc.py::test_add"])
    assert [f["id"] for f in found["failures"]] == ["test_calc.py::test_add"] and found["passed"] == 1
    assert verified["verified"], verified
    assert verified["graded"] == ["pkg/test_calc.py::test_add", "pkg/test_calc.py::test_mul"]
    assert state(top) == before


async def test_fix_on_the_scripted_backend(repo):
    before = state(repo)
    steps: list[str] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        steps.append(f"{done:g}/{total:g} {message}")

    with ScriptedPolicyServer(FIXING) as policy:
        async with session(repo, "--backend", "remote", "--endpoint", policy.url, "--model", "scripted") as client:
            result = await client.call_tool("fix", {"root": str(repo), "test_id": "test_calc.py::test_add"},
                                            progress_callback=progress)
    assert not result.is_error, result.content[0].text
    fixed = result.structured_content
    assert fixed["status"] == "fixed" and fixed["verified"], fixed
    assert "+    return a + b" in fixed["diff"] and "--- a/calc.py" in fixed["diff"]
    assert fixed["verdict"]["allowed"] and fixed["task"].endswith("test_calc.py::test_add")
    assert steps and steps[0] == "1/3 read calc.py", steps
    assert state(repo) == before
    applies = subprocess.run(["git", "apply", "--check", "-"], cwd=repo, input=fixed["diff"], text=True, capture_output=True)
    assert applies.returncode == 0, f"the patch does not apply to the user's tree: {applies.stderr}"


async def test_fix_a_problem_at_a_place(repo):
    """A task given as file, line and message (a diagnostic another tool
    reported): fixed and verified against the tests that passed before."""
    before = state(repo)
    with ScriptedPolicyServer(FIXING) as policy:
        async with session(repo, "--backend", "remote", "--endpoint", policy.url, "--model", "scripted") as client:
            fixed = await call(client, "fix", root=str(repo), file=str(repo / "calc.py"), line=2,
                               message="add() subtracts its arguments")
    assert fixed["verified"] and "+    return a + b" in fixed["diff"], fixed
    assert fixed["task"].startswith("fix calc.py:2")
    assert state(repo) == before


async def test_fix_needs_a_task_and_a_backend(repo):
    async with session(repo, "--backend", "remote", "--endpoint", "http://127.0.0.1:9/v1") as client:
        assert "name the task" in await refused(client, "fix")
        assert "not a failing test" in await refused(client, "fix", test_id="test_calc.py::test_mul")
        assert "could not start" in await refused(client, "fix", test_id="test_calc.py::test_add")


# -- bad input ----------------------------------------------------------------------------
async def test_bad_input_is_refused_and_the_server_goes_on(repo, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    outside = tmp_path / "outside.py"
    outside.write_text("x = 1\n")
    escaping = "--- a/../outside.py\n+++ b/../outside.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
    before = state(repo)
    async with session(repo) as client:
        assert "not inside a git repository" in await refused(client, "run_tests", root=str(plain))
        assert "does not exist" in await refused(client, "run_tests", root=str(tmp_path / "nowhere"))
        assert "absolute path" in await refused(client, "run_tests", root="repo")
        assert "not inside" in await refused(client, "guard_check", root=str(repo), diff=escaping)
        assert "not inside" in await refused(client, "verify_patch", root=str(repo), diff=escaping)
        assert "no file changes" in await refused(client, "verify_patch", root=str(repo), diff="garbage\n")
        stale = "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a * 7\n+    return a + b\n"
        assert "calc.py" in await refused(client, "guard_check", root=str(repo), diff=stale)
        assert "outside the root" in await refused(client, "fix", root=str(repo), file=str(outside), message="x")
        assert "not a path inside" in await refused(client, "fix", root=str(repo), file="../outside.py", message="x")
        assert "diff" in await refused(client, "verify_patch", root=str(repo))  # a required field is missing
        assert "extra" in (await refused(client, "run_tests", root=str(repo), rooot="x")).lower()
        assert "no tool named" in await refused(client, "rm_rf")
        assert [t.name for t in (await client.list_tools()).tools] == TOOLS
        assert (await call(client, "run_tests", root=str(repo)))["failed"] == 1
    assert state(repo) == before
    assert outside.read_text() == "x = 1\n"


# -- process hygiene ----------------------------------------------------------------------
SLOW = {"test_slow.py": ("import os, pathlib, time\n\n\ndef test_slow():\n"
                         "    pathlib.Path(os.environ['OLSP_PIDFILE']).write_text(str(os.getpid()))\n"
                         "    time.sleep(120)\n")}


class RawServer:
    """`ornith-lsp mcp` spoken to in JSON-RPC lines, to watch how it ends."""

    def __init__(self, repo: Path, tmp: Path) -> None:
        self.pidfile = tmp / "test.pid"
        self.proc = subprocess.Popen([sys.executable, "-m", "ornith_lsp", "mcp"], cwd=repo, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env={**server_env(tmp / "tmp"), "OLSP_PIDFILE": str(self.pidfile)})
        self.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
        assert json.loads(self.proc.stdout.readline())["result"]["serverInfo"]["name"] == "ornith-lsp"
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, message: dict[str, Any] | str) -> None:
        line = message if isinstance(message, str) else json.dumps(message)
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        return json.loads(self.proc.stdout.readline())

    def test_running(self) -> int:
        """Start run_tests on the slow test; the pid of the pytest process running it."""
        self.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "run_tests", "arguments": {}}})
        assert wait_until(lambda: self.pidfile.exists() and self.pidfile.read_text(), timeout=60), "the test never ran"
        return int(self.pidfile.read_text())


def test_lines_that_are_not_json_rpc_get_errors_and_the_server_goes_on(tmp_path):
    server = RawServer(make_repo(tmp_path / "repo", CALC), tmp_path)
    try:
        server.send("{this is not json")
        assert server.answer() == {"jsonrpc": "2.0", "id": None,
                                   "error": {"code": -32700, "message": "Parse error: the line is not JSON"}}
        server.send("[1, 2]")
        assert server.answer()["error"]["code"] == -32600
        server.send({"jsonrpc": "2.0", "id": 5, "method": "no/such/method"})
        assert server.answer() == {"jsonrpc": "2.0", "id": 5,
                                   "error": {"code": -32601, "message": "Method not found", "data": "no/such/method"}}
        server.send({"jsonrpc": "2.0", "id": 6, "method": "tools/list"})
        assert [t["name"] for t in server.answer()["result"]["tools"]] == TOOLS
        server.proc.stdin.close()
        assert server.proc.wait(timeout=20) == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


@pytest.mark.parametrize("ending", ["stdin closed", "SIGTERM"])
def test_the_server_ends_with_its_client_and_leaves_nothing(tmp_path, ending):
    repo = make_repo(tmp_path / "repo", SLOW)
    server = RawServer(repo, tmp_path)
    try:
        test_pid = server.test_running()
        started = time.monotonic()
        if ending == "stdin closed":
            server.proc.stdin.close()
        else:
            server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(timeout=20)
        assert time.monotonic() - started < 15
        assert code == (0 if ending == "stdin closed" else 128 + signal.SIGTERM)
        assert wait_until(lambda: not alive(test_pid), timeout=10), "the test run outlived the server"
        assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1, "a shadow worktree was left"
        assert not list((tmp_path / "tmp").glob("ornith-shadow-*")), "a shadow directory was left"
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
