"""`ornith-lsp acp` as an agent panel runs it: a real subprocess driven by the
ACP SDK's client side, on generated repositories.  The model is the
ScriptedPolicyServer TEST DOUBLE (tests/policy_double.py) as a remote
endpoint; everything else is real -- the shadow worktree, the test runs, the
guard, the permission round trip and the writes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from acp import PROTOCOL_VERSION, RequestError, spawn_agent_process, text_block
from acp.schema import (
    AgentMessageChunk,
    AgentPlanUpdate,
    AgentThoughtChunk,
    AllowedOutcome,
    ClientCapabilities,
    FileSystemCapabilities,
    ReadTextFileResponse,
    RequestPermissionResponse,
    ToolCallProgress,
    ToolCallStart,
    UsageUpdate,
    WriteTextFileResponse,
)
from ornith_lsp.acp import intent, wire
from ornith_lsp.agent.session import _guard_task
from ornith_lsp.tasks import Task

from agent_repos import CALC, git, make_repo, snapshot
from conftest import alive, wait_until
from policy_double import ScriptedPolicyServer
from test_agent_scripted import BAD_EDIT, FINISH, GOOD_EDIT, PLAN, READ, STEP_DONE

FIXING = [PLAN, READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH]
FIXED_CALC = CALC["calc.py"].replace("a - b", "a + b")
DOCSTRING = {"tool": "edit", "path": "calc.py", "search": "def mul(a, b):\n",
             "replace": 'def mul(a, b):\n    """The product."""\n'}
REQUEST_PLAN = {**PLAN, "goal": "document mul", "steps": [
    {"intent": "add the docstring", "tools": ["edit"], "check": {"kind": "edit_applied", "description": ""}},
    {"intent": "finish", "tools": ["finish"], "check": {"kind": "target_tests_pass", "description": ""}}]}
SLOW_TEST = {"test_slow.py": "import time\n\n\ndef test_slow():\n    time.sleep(60)\n"}

pytestmark = pytest.mark.timeout(240)


# -- pure parts -------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "kind", "tests", "files", "linters"), [
    ("fix the failing tests", "tests", [], [], []),
    ("Make the tests pass", "tests", [], [], []),
    ("Fix test_add", "tests", ["test_add"], [], []),
    ("fix test_calc.py::test_add please", "tests", ["test_calc.py::test_add"], [], []),
    ("fix calc.py", "findings", [], ["calc.py"], []),
    ("fix test_calc.py", "findings", [], ["test_calc.py"], []),
    ("fix the mypy errors in calc.py", "findings", [], ["calc.py"], ["mypy"]),
    ("fix E501", "findings", [], [], ["ruff"]),
    ("add a --verbose flag; test_cli_verbose should pass", "request", ["test_cli_verbose"], [], []),
    ("rename add to plus", "request", [], [], []),
])
def test_a_prompt_is_read_into_tests_findings_or_a_request(text, kind, tests, files, linters):
    reading = intent.read_prompt(text, ["calc.py", "test_calc.py", "src/util.py"])
    assert (reading.kind, reading.tests, reading.files, reading.linters) == (kind, tests, files, linters)
    assert reading.goal == text


def test_named_tests_resolve_to_node_ids_and_a_request_is_graded_on_them_and_the_baseline():
    known = ["t.py::test_add", "t.py::test_mul[1]", "t.py::test_mul[2]"]
    assert intent.resolve(["test_add", "test_mul", "t.py::test_new", "test_gone"], known) == (
        ["t.py::test_add", "t.py::test_mul[1]", "t.py::test_mul[2]", "t.py::test_new"], ["test_gone"])
    task = intent.request_task(intent.read_prompt("document add; test_add must pass"), ["t.py::test_add"])
    assert task.source == "request" and task.graded_by_tests and task.message.startswith("document add")
    graded = _guard_task(task, ["t.py::test_mul[1]", "t.py::test_add"], prefix="proj")
    assert graded.kind == "test" and graded.tests == ["proj/t.py::test_add", "proj/t.py::test_mul[1]"]
    assert graded.goal == task.message  # the judge weighs the change against the user's words
    assert Task(source="test", title="t", message="m").tests is None  # other tasks are as they were


@pytest.mark.parametrize(("line", "code"), [
    (b"not json", -32700), (b"\xff\xfe", -32700), (b"[1]", -32600), (b"42", -32600), (b"{}", -32600),
    (b'{"id": [1], "method": "x"}', -32600), (b'{"id": true, "method": "x"}', -32600),
    (b'{"method": 5}', -32600), (b'{"id": 3}', -32600), (b'{"id": 1, "method": "x", "params": 5}', -32602),
])
def test_malformed_lines_get_the_json_rpc_error_they_deserve(line, code):
    message, refusal = wire.problem(line)
    assert message is None and refusal is not None and refusal["error"]["code"] == code


def test_well_formed_lines_pass():
    for line in (b'{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}',
                 b'{"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": "s"}}',
                 b'{"jsonrpc": "2.0", "id": "7", "result": {}}'):
        assert wire.problem(line)[1] is None


# -- the agent as a subprocess ------------------------------------------------------------
class Panel:
    """The client side: records every update, answers permission as told,
    serves ``buffers`` as unsaved editor text and keeps what it was asked to write."""

    def __init__(self, allow: bool = True, buffers: dict[str, str] | None = None) -> None:
        self.allow = allow
        self.buffers = buffers or {}
        self.updates: list[Any] = []
        self.permissions: list[Any] = []
        self.writes: dict[str, str] = {}
        self.reads: list[str] = []

    async def session_update(self, session_id: str, update: Any, **_: Any) -> None:
        self.updates.append(update)

    async def request_permission(self, session_id: str, tool_call: Any, options: list[Any], **_: Any):
        self.permissions.append((len(self.updates), tool_call, options))
        chosen = next(o for o in options if o.kind == ("allow_once" if self.allow else "reject_once"))
        return RequestPermissionResponse(outcome=AllowedOutcome(outcome="selected", option_id=chosen.option_id))

    async def read_text_file(self, session_id: str, path: str, **_: Any) -> ReadTextFileResponse:
        self.reads.append(path)
        if path in self.buffers:
            return ReadTextFileResponse(content=self.buffers[path])
        return ReadTextFileResponse(content=Path(path).read_text())

    async def write_text_file(self, session_id: str, path: str, content: str, **_: Any) -> WriteTextFileResponse:
        self.writes[path] = content
        return WriteTextFileResponse()

    def of(self, kind: type) -> list[Any]:
        return [u for u in self.updates if isinstance(u, kind)]

    def text(self) -> str:
        return "".join(u.content.text for u in self.of(AgentMessageChunk))


def env(tag: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "ACP_TEST_TAG": tag,
            "ORNITH_AGENT__TEST_TIMEOUT_S": "60", "ORNITH_AGENT__MAX_TURNS": "12", **extra}


@contextlib.asynccontextmanager
async def agent(tmp_path: Path, panel: Panel, policy_url: str, *, fs: bool = True, tag: str = "", **extra: str):
    stderr = open(tmp_path / "agent.stderr", "wb")
    try:
        async with spawn_agent_process(
                panel, sys.executable, "-m", "ornith_lsp", "acp", "--backend", "remote", "--endpoint", policy_url,
                "--model", "scripted", env=env(tag or uuid.uuid4().hex, **extra), cwd=tmp_path,
                transport_kwargs={"stderr": stderr}) as (conn, proc):
            caps = ClientCapabilities(fs=FileSystemCapabilities(read_text_file=fs, write_text_file=fs))
            hello = await conn.initialize(protocol_version=PROTOCOL_VERSION, client_capabilities=caps)
            assert hello.protocol_version == PROTOCOL_VERSION
            assert hello.agent_capabilities.prompt_capabilities.embedded_context
            yield conn, proc
    finally:
        stderr.close()


async def prompt(conn, session_id: str, text: str):
    return await asyncio.wait_for(conn.prompt(session_id=session_id, prompt=[text_block(text)]), 180)


def calc_repo(tmp_path: Path, files: dict[str, str] = CALC) -> Path:
    return make_repo(tmp_path / "repo", files)


async def test_failing_tests_become_a_plan_tool_calls_a_diff_and_a_write_after_permission(tmp_path):
    repo = calc_repo(tmp_path)
    before = snapshot(repo)
    panel = Panel(allow=True)
    with ScriptedPolicyServer(FIXING) as policy:
        async with agent(tmp_path, panel, policy.url) as (conn, _):
            session = await conn.new_session(cwd=str(repo), mcp_servers=[])
            answer = await prompt(conn, session.session_id, "fix the failing tests")
    assert answer.stop_reason == "end_turn", panel.text()
    plans = panel.of(AgentPlanUpdate)
    assert [e.content for e in plans[0].entries] == [s["intent"] for s in PLAN["steps"]]
    assert [e.status for e in plans[0].entries] == ["pending"] * 3
    assert any([e.status for e in p.entries] == ["completed", "in_progress", "pending"] for p in plans)
    assert [e.status for e in plans[-1].entries] == ["completed"] * 3
    starts = {u.tool_call_id: u for u in panel.of(ToolCallStart)}
    kinds = [u.kind for u in starts.values()]
    assert {"read", "edit", "execute"} <= set(kinds)
    read_call = next(u for u in starts.values() if u.kind == "read")
    closed = [u for u in panel.of(ToolCallProgress) if u.tool_call_id == read_call.tool_call_id]
    assert closed and closed[0].status == "completed" and "return a - b" in closed[0].content[0].content.text
    assert read_call.locations[0].path == str(repo / "calc.py")
    verify = next(u for u in starts.values() if u.title.startswith("Verify"))
    assert verify.status == "completed"
    # the verified change as diff content, offered only after the verification
    apply = next(u for u in starts.values() if u.title.startswith("Apply"))
    diff = apply.content[0]
    assert diff.type == "diff" and diff.path == str(repo / "calc.py")
    assert diff.old_text == CALC["calc.py"] and diff.new_text == FIXED_CALC
    assert len(panel.permissions) == 1
    at, tool_call, _ = panel.permissions[0]
    assert tool_call.tool_call_id == apply.tool_call_id
    assert panel.updates.index(verify) < at
    assert panel.writes == {str(repo / "calc.py"): FIXED_CALC}
    assert snapshot(repo) == before  # written through the client, which owns the buffers
    assert [u for u in panel.of(ToolCallProgress) if u.tool_call_id == apply.tool_call_id][-1].status == "completed"
    assert panel.of(UsageUpdate) and panel.of(UsageUpdate)[0].size > 0
    assert str(repo / "calc.py") in panel.reads  # the files were read through the client
    thoughts = "".join(u.content.text for u in panel.of(AgentThoughtChunk))
    assert READ["thought"] in thoughts and PLAN["goal"] in thoughts  # the model's words, as thoughts


async def test_a_replan_replaces_the_plan(tmp_path):
    repo = calc_repo(tmp_path)
    panel = Panel(allow=False)
    answers = [PLAN, READ, STEP_DONE, BAD_EDIT, STEP_DONE,  # the check fails: replan
               PLAN, READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH]
    with ScriptedPolicyServer(answers) as policy:
        async with agent(tmp_path, panel, policy.url) as (conn, _):
            session = await conn.new_session(cwd=str(repo), mcp_servers=[])
            answer = await prompt(conn, session.session_id, "fix the failing tests")
    assert answer.stop_reason == "end_turn", panel.text()
    fresh = [p for p in panel.of(AgentPlanUpdate) if all(e.status == "pending" for e in p.entries)]
    assert len(fresh) == 2  # the first plan, then the one that replaced it
    thoughts = "".join(u.content.text for u in panel.of(AgentThoughtChunk))
    assert "Replanning: Step 2 (fix add) did not pass its check" in thoughts
    assert [e.status for e in panel.of(AgentPlanUpdate)[-1].entries] == ["completed"] * 3


async def test_refused_permission_writes_nothing(tmp_path):
    repo = calc_repo(tmp_path)
    before = snapshot(repo)
    panel = Panel(allow=False)
    with ScriptedPolicyServer(FIXING) as policy:
        async with agent(tmp_path, panel, policy.url) as (conn, _):
            session = await conn.new_session(cwd=str(repo), mcp_servers=[])
            answer = await prompt(conn, session.session_id, "Fix test_add")
    assert answer.stop_reason == "end_turn"
    assert len(panel.permissions) == 1 and panel.writes == {}
    assert snapshot(repo) == before
    assert "Not applied" in panel.text()


async def test_without_client_fs_the_allowed_fix_is_written_to_disk(tmp_path):
    repo = calc_repo(tmp_path)
    panel = Panel(allow=True)
    with ScriptedPolicyServer(FIXING) as policy:
        async with agent(tmp_path, panel, policy.url, fs=False) as (conn, _):
            session = await conn.new_session(cwd=str(repo), mcp_servers=[])
            answer = await prompt(conn, session.session_id, "fix test_calc.py::test_add")
    assert answer.stop_reason == "end_turn"
    assert (repo / "calc.py").read_text() == FIXED_CALC
    assert panel.reads == [] and panel.writes == {}
    assert git(repo, "status", "--porcelain").strip() == "M calc.py"


async def test_unsaved_buffers_are_what_gets_tested_and_fixed(tmp_path):
    """On disk every test passes; the editor's unsaved calc.py breaks add.
    The failure is found in the buffer, fixed there, and the diff's old text is the buffer."""
    repo = calc_repo(tmp_path, {**CALC, "calc.py": FIXED_CALC})
    buffer = FIXED_CALC.replace("def mul", "# unsaved note\n\ndef mul").replace("a + b", "a - b")
    panel = Panel(allow=True, buffers={str(repo / "calc.py"): buffer})
    with ScriptedPolicyServer(FIXING) as policy:
        async with agent(tmp_path, panel, policy.url) as (conn, _):
            session = await conn.new_session(cwd=str(repo), mcp_servers=[])
            answer = await prompt(conn, session.session_id, "fix the failing tests")
    assert answer.stop_reason == "end_turn", panel.text()
    apply = next(u for u in panel.of(ToolCallStart) if u.title.startswith("Apply"))
    assert apply.content[0].old_text == buffer
    assert panel.writes == {str(repo / "calc.py"): buffer.replace("a - b", "a + b")}
    assert (repo / "calc.py").read_text() == FIXED_CALC


async def test_a_request_is_verified_by_the_passing_tests_and_carries_the_goal(tmp_path):
    repo = calc_repo(tmp_path, {**CALC, "calc.py": FIXED_CALC})
    panel = Panel(allow=True)
    goal = "Document what mul returns, in a docstring."
    with ScriptedPolicyServer([REQUEST_PLAN, DOCSTRING, STEP_DONE, FINISH]) as policy:
        async with agent(tmp_path, panel, policy.url) as (conn, _):
            session = await conn.new_session(cwd=str(repo), mcp_servers=[])
            answer = await prompt(conn, session.session_id, goal)
        requests = policy.requests
    assert answer.stop_reason == "end_turn", panel.text()
    task_prompt = requests[0]["messages"][1]["content"]
    assert goal in task_prompt and '"source": "request"' in task_prompt
    assert "none of the 2 passing now may fail" in panel.text()
    written = panel.writes[str(repo / "calc.py")]
    assert '"""The product."""' in written


async def test_an_unverified_change_is_never_offered(tmp_path):
    """A request whose change breaks a test that passed: no permission asked, nothing written."""
    repo = calc_repo(tmp_path, {**CALC, "calc.py": FIXED_CALC})
    before = snapshot(repo)
    panel = Panel(allow=True)
    breaking = {"tool": "edit", "path": "calc.py", "search": "return a + b", "replace": "return b - a"}
    with ScriptedPolicyServer([REQUEST_PLAN, breaking, STEP_DONE, FINISH]) as policy:
        async with agent(tmp_path, panel, policy.url, ORNITH_AGENT__MAX_TURNS="4") as (conn, _):
            session = await conn.new_session(cwd=str(repo), mcp_servers=[])
            answer = await prompt(conn, session.session_id, "make add symmetric in its arguments")
    assert answer.stop_reason == "end_turn"
    assert panel.permissions == [] and panel.writes == {}
    assert snapshot(repo) == before
    assert "No verified fix" in panel.text()


async def test_nothing_to_fix_is_said_and_ends_the_turn(tmp_path):
    repo = calc_repo(tmp_path, {**CALC, "calc.py": FIXED_CALC})
    panel = Panel()
    with ScriptedPolicyServer([]) as policy:
        async with agent(tmp_path, panel, policy.url) as (conn, _):
            session = await conn.new_session(cwd=str(repo), mcp_servers=[])
            answer = await prompt(conn, session.session_id, "fix the failing tests")
        assert policy.requests == []
    assert answer.stop_reason == "end_turn" and "Nothing to fix: no test fails" in panel.text()


async def test_cancel_ends_the_prompt_quickly_and_leaves_no_shadow(tmp_path):
    repo = calc_repo(tmp_path)
    before = snapshot(repo)
    panel = Panel()
    with ScriptedPolicyServer([PLAN], delay_s=60) as policy:
        async with agent(tmp_path, panel, policy.url) as (conn, proc):
            session = await conn.new_session(cwd=str(repo), mcp_servers=[])
            running = asyncio.create_task(prompt(conn, session.session_id, "fix the failing tests"))
            assert await asyncio.to_thread(wait_until, lambda: policy.requests, 60), panel.text()
            # a second prompt while one runs is refused; the first goes on
            with pytest.raises(RequestError) as refused:
                await prompt(conn, session.session_id, "fix the failing tests")
            assert "already running" in json.dumps(refused.value.data)
            started = time.monotonic()
            await conn.cancel(session_id=session.session_id)
            answer = await asyncio.wait_for(running, 20)
            assert answer.stop_reason == "cancelled"
            assert time.monotonic() - started < 10
            assert git(repo, "worktree", "list").count("\n") == 1  # the shadow is gone
            assert proc.returncode is None  # and the agent still serves
            again = await conn.new_session(cwd=str(repo), mcp_servers=[])
            assert again.session_id != session.session_id
    assert snapshot(repo) == before and panel.permissions == []


async def raw_agent(tmp_path: Path, tag: str, *args: str):
    """The agent with plain pipes, for input no client library would send."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ornith_lsp", "acp", "--backend", "remote", "--endpoint", "http://127.0.0.1:9/v1",
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=open(tmp_path / "raw.stderr", "wb"), env=env(tag), cwd=tmp_path, limit=64 * 1024 * 1024)


async def ask(proc, line: bytes | dict[str, Any]) -> dict[str, Any]:
    data = line if isinstance(line, bytes) else json.dumps(line).encode()
    proc.stdin.write(data + b"\n")
    await proc.stdin.drain()
    while True:
        answer = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        if "method" not in answer:  # skip the agent's own notifications
            return answer


def request(n: int, method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": n, "method": method, "params": params}


async def test_bad_input_gets_errors_and_the_agent_keeps_serving(tmp_path):
    repo = calc_repo(tmp_path)
    before = snapshot(repo)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    proc = await raw_agent(tmp_path, uuid.uuid4().hex)
    try:
        assert (await ask(proc, b"this is not json"))["error"]["code"] == -32700
        assert (await ask(proc, b"[1, 2]"))["error"]["code"] == -32600
        assert (await ask(proc, b'{"jsonrpc": "2.0", "method": 7, "id": 3}'))["error"]["code"] == -32600
        assert (await ask(proc, request(1, "no/such_method")))["error"]["code"] == -32601
        early = await ask(proc, request(2, "session/prompt", sessionId="nope",
                                        prompt=[{"type": "text", "text": "fix the failing tests"}]))
        assert early["id"] == 2 and "session/new first" in json.dumps(early["error"])
        hello = await ask(proc, request(3, "initialize", protocolVersion=PROTOCOL_VERSION))
        assert hello["result"]["protocolVersion"] == PROTOCOL_VERSION
        no_git = await ask(proc, request(4, "session/new", cwd=str(outside), mcpServers=[]))
        assert "not inside a git repository" in json.dumps(no_git["error"])
        relative = await ask(proc, request(5, "session/new", cwd="repo", mcpServers=[]))
        assert "absolute" in json.dumps(relative["error"])
        session = (await ask(proc, request(6, "session/new", cwd=str(repo), mcpServers=[])))["result"]["sessionId"]
        escape = await ask(proc, request(7, "session/prompt", sessionId=session, prompt=[
            {"type": "text", "text": "fix this"},
            {"type": "resource_link", "name": "passwd", "uri": "file:///etc/passwd"}]))
        assert "outside the workspace" in json.dumps(escape["error"])
        dotdot = await ask(proc, request(8, "session/prompt", sessionId=session, prompt=[
            {"type": "resource_link", "name": "x", "uri": f"file://{repo}/../elsewhere/x.py"}]))
        assert "outside the workspace" in json.dumps(dotdot["error"])
        huge = await ask(proc, request(9, "session/prompt", sessionId=session,
                                       prompt=[{"type": "text", "text": "x" * 300_000}]))
        assert "at most" in json.dumps(huge["error"])
        too_long = await ask(proc, b'{"jsonrpc": "2.0", "id": 10, "method": "initialize", "params": {"x": "'
                             + b"y" * (9 * 1024 * 1024) + b'"}}')
        assert too_long["error"]["code"] == -32600
        bad_params = await ask(proc, request(11, "session/new", cwd=17))
        assert bad_params["error"]["code"] == -32602
        still = await ask(proc, request(12, "initialize", protocolVersion=PROTOCOL_VERSION))
        assert still["id"] == 12 and "result" in still
    finally:
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert snapshot(repo) == before


def tagged(tag: str) -> set[int]:
    """Live processes whose environment carries ``tag``: the agent and all it started."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if f"ACP_TEST_TAG={tag}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                    found.add(int(entry.name))
    return {p for p in found if alive(p)}


@pytest.mark.parametrize("how", ["cancel", "stdin", "sigterm"])
async def test_cancel_closing_stdin_or_sigterm_mid_test_run_leaves_no_process(tmp_path, how):
    repo = calc_repo(tmp_path, {**CALC, **SLOW_TEST})
    before = snapshot(repo)
    tag = uuid.uuid4().hex
    proc = await raw_agent(tmp_path, tag)
    await ask(proc, request(1, "initialize", protocolVersion=PROTOCOL_VERSION))
    session = (await ask(proc, request(2, "session/new", cwd=str(repo), mcpServers=[])))["result"]["sessionId"]
    proc.stdin.write(json.dumps(request(3, "session/prompt", sessionId=session,
                                        prompt=[{"type": "text", "text": "fix the failing tests"}])).encode() + b"\n")
    await proc.stdin.drain()
    # the test run (with its 60 s test) is under way: a child of the agent carries the tag
    assert await asyncio.to_thread(wait_until, lambda: len(tagged(tag) - {proc.pid}) > 0, 60)
    started = time.monotonic()
    if how == "cancel":  # the prompt ends, its test run with it; the agent stays
        answer = await ask(proc, {"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": session}})
        assert answer["id"] == 3 and answer["result"]["stopReason"] == "cancelled"
        assert time.monotonic() - started < 10
        assert await asyncio.to_thread(wait_until, lambda: tagged(tag) == {proc.pid}, 10), tagged(tag)
        proc.stdin.close()
    elif how == "stdin":
        proc.stdin.close()
    else:
        proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), 30)
    assert time.monotonic() - started < 20
    assert await asyncio.to_thread(wait_until, lambda: not tagged(tag), 10), tagged(tag)
    assert git(repo, "worktree", "list").count("\n") == 1
    assert snapshot(repo) == before
