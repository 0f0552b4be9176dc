"""The agent panel (ACP) and the tools for other agents (MCP), end to end on
the REAL default embedded model: llama-server and the coder GGUF, no double.
Each drives the README's demo bug (a copy in a fresh repository) through its
official SDK's client side, as Zed or Claude Code would."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from acp import PROTOCOL_VERSION, spawn_agent_process, text_block
from acp.schema import (
    AgentPlanUpdate,
    AllowedOutcome,
    ClientCapabilities,
    FileSystemCapabilities,
    RequestPermissionResponse,
    ToolCallStart,
)
from mcp import ClientSession, StdioServerParameters, stdio_client

from agent_repos import git, snapshot
from conftest import REAL_MODEL_PROCESS_S, REAL_MODEL_TEST_S, REAL_MODEL_WALL_S

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo"
BUG = "return sum(values) / (len(values) + 1)"

pytestmark = [pytest.mark.usefixtures("no_new_llama_servers"), pytest.mark.timeout(REAL_MODEL_TEST_S)]


def demo_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "demo"
    shutil.copytree(DEMO, repo)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "demo")
    return repo


def real_model_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "ORNITH_BACKEND__EMBEDDED_MODEL": "coder-1.5b",
            "ORNITH_AGENT__MAX_WALL_S": str(REAL_MODEL_WALL_S), "ORNITH_LOG_DIR": str(tmp_path / "logs")}


class Panel:
    """An agent panel that allows the verified change and keeps every update."""

    def __init__(self) -> None:
        self.updates: list[Any] = []
        self.asked = 0

    async def session_update(self, session_id: str, update: Any, **_: Any) -> None:
        self.updates.append(update)

    async def request_permission(self, session_id: str, tool_call: Any, options: list[Any], **_: Any):
        self.asked += 1
        chosen = next(o for o in options if o.kind == "allow_once")
        return RequestPermissionResponse(outcome=AllowedOutcome(outcome="selected", option_id=chosen.option_id))


async def test_an_agent_panel_gets_the_demo_fixed_by_the_embedded_model(tmp_path):
    repo = demo_repo(tmp_path)
    panel = Panel()
    stderr = open(tmp_path / "acp.stderr", "wb")
    try:
        async with spawn_agent_process(panel, sys.executable, "-m", "ornith_lsp", "acp",
                                       env=real_model_env(tmp_path), cwd=tmp_path,
                                       transport_kwargs={"stderr": stderr}) as (conn, _):
            # no fs capability: the allowed change is written to disk, where it can be checked
            caps = ClientCapabilities(fs=FileSystemCapabilities(read_text_file=False, write_text_file=False))
            await conn.initialize(protocol_version=PROTOCOL_VERSION, client_capabilities=caps)
            session = await conn.new_session(cwd=str(repo), mcp_servers=[])
            answer = await asyncio.wait_for(
                conn.prompt(session_id=session.session_id, prompt=[text_block("fix the failing tests")]),
                REAL_MODEL_PROCESS_S)
    finally:
        stderr.close()
    log = (tmp_path / "acp.stderr").read_text(errors="replace")[-2000:]
    assert answer.stop_reason == "end_turn", log
    assert panel.asked == 1, "the verified change was offered once, behind a permission request"
    assert BUG not in (repo / "stats.py").read_text(), "the allowed fix was written"
    assert any(isinstance(u, AgentPlanUpdate) for u in panel.updates)
    assert any(isinstance(u, ToolCallStart) and u.title.startswith("Verify") for u in panel.updates)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=repo,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-1500:]  # the demo's tests pass on what was written
    assert git(repo, "status", "--porcelain").strip() == "M stats.py"  # and nothing else was touched


async def test_another_agent_gets_a_verified_patch_from_the_embedded_model(tmp_path):
    repo = demo_repo(tmp_path)
    before = snapshot(repo)
    params = StdioServerParameters(command=sys.executable, args=["-m", "ornith_lsp", "mcp"],
                                   env=real_model_env(tmp_path), cwd=repo)
    with open(tmp_path / "mcp.stderr", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as client:
                await client.initialize()
                found = await client.call_tool("run_tests", {"root": str(repo)})
                failures = json.loads(found.content[0].text)["failures"]
                assert [f["id"] for f in failures] == ["test_stats.py::test_mean"]
                result = await asyncio.wait_for(
                    client.call_tool("fix", {"root": str(repo), "test_id": failures[0]["id"]}), REAL_MODEL_PROCESS_S)
    assert not result.is_error, result.content[0].text
    fixed = result.structured_content
    assert fixed["verified"] and fixed["status"] == "fixed", fixed
    assert f"-    {BUG}" in fixed["diff"]
    assert snapshot(repo) == before, "no MCP tool writes to the user's tree"
    applies = subprocess.run(["git", "apply", "--check", "-"], cwd=repo, input=fixed["diff"], text=True,
                             capture_output=True)
    assert applies.returncode == 0, applies.stderr


@pytest.mark.timeout(300)
async def test_an_agent_panel_outlives_a_backend_killed_mid_prompt(tmp_path):
    """SIGKILL to the REAL llama-server (the tiny model, for speed) while the
    panel's prompt runs: the supervisor starts another, the prompt ends with
    a normal stop reason and a report, and closing the agent leaves none."""
    from conftest import alive, llama_server_pids, wait_until

    repo = demo_repo(tmp_path)
    panel = Panel()
    before = llama_server_pids()
    env = {**os.environ, "ORNITH_BACKEND__EMBEDDED_MODEL": "tiny", "ORNITH_AGENT__MAX_WALL_S": "120",
           "ORNITH_AGENT__CANDIDATES": "2", "ORNITH_LOG_DIR": str(tmp_path / "logs")}
    stderr = open(tmp_path / "acp.stderr", "wb")
    try:
        async with spawn_agent_process(panel, sys.executable, "-m", "ornith_lsp", "acp", env=env, cwd=tmp_path,
                                       transport_kwargs={"stderr": stderr}) as (conn, _):
            caps = ClientCapabilities(fs=FileSystemCapabilities(read_text_file=False, write_text_file=False))
            await conn.initialize(protocol_version=PROTOCOL_VERSION, client_capabilities=caps)
            session = await conn.new_session(cwd=str(repo), mcp_servers=[])
            prompt = asyncio.ensure_future(
                conn.prompt(session_id=session.session_id, prompt=[text_block("fix the failing tests")]))
            for _ in range(1200):  # the model is at work once the first plan or tool call shows
                if any(isinstance(u, (AgentPlanUpdate, ToolCallStart)) for u in panel.updates) or prompt.done():
                    break
                await asyncio.sleep(0.1)
            started = llama_server_pids() - before
            assert len(started) == 1, f"expected the agent's one llama-server, found {sorted(started)}"
            victim = started.pop()
            os.kill(victim, signal.SIGKILL)
            answer = await asyncio.wait_for(prompt, 240)
            restarted = llama_server_pids() - before - {victim}
            assert restarted and all(alive(p) for p in restarted), "no llama-server was started again"
    finally:
        stderr.close()
    log = (tmp_path / "acp.stderr").read_text(errors="replace")[-2000:]
    assert answer.stop_reason in ("end_turn", "max_turn_requests"), log
    assert git(repo, "status", "--porcelain").strip() in ("", "M stats.py")  # only a verified fix, if any
    assert wait_until(lambda: not (llama_server_pids() - before), timeout=20), "a llama-server outlived the agent"
