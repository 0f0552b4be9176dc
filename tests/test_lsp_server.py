"""The language server as each recorded editor talks to it (pytest-lsp client
profiles for VS Code, Neovim 0.11 and Emacs), with the real embedded backend."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from conftest import alive

LOG_DIR = tempfile.mkdtemp(prefix="ornith-lsp-test-logs-")
SERVER = ClientServerConfig(
    server_command=[sys.executable, "-m", "ornith_lsp", "serve"],
    server_env={**os.environ, "ORNITH_LOG_DIR": LOG_DIR},
)
CLIENTS = ["visual_studio_code", "neovim@v0.11.0", "emacs"]


async def wait_status(client: LanguageClient, want: str, timeout: float = 60.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="ornith.backendStatus")
        )
        if status["state"] == want or asyncio.get_running_loop().time() > deadline:
            return status
        await asyncio.sleep(0.1)


@pytest_lsp.fixture(params=CLIENTS, config=SERVER)
async def editor(request, lsp_client: LanguageClient, tmp_path):
    params = types.InitializeParams(
        capabilities=client_capabilities(request.param),
        root_uri=tmp_path.as_uri(),
        initialization_options={"ornith": {"backend": {"kind": "embedded"}}},
    )
    lsp_client.init_result = await lsp_client.initialize_session(params)
    lsp_client.profile = request.param
    yield
    await lsp_client.shutdown_session()


async def test_initialize_advertises_only_what_exists_and_backend_comes_up(editor: LanguageClient):
    caps = editor.init_result.capabilities
    assert sorted(caps.execute_command_provider.commands) == sorted([
        "ornith.backendStatus", "ornith.fix", "ornith.fixTests", "ornith.runTests", "ornith.apply",
        "ornith.showDiff", "ornith.showPlan", "ornith.cancel", "ornith.cancelAll", "ornith.queue", "ornith.rollback",
        "ornith.tasks"])
    assert list(caps.code_action_provider.code_action_kinds) == [types.CodeActionKind.QuickFix]
    assert caps.code_lens_provider is not None and caps.hover_provider
    for absent in ("completion_provider", "definition_provider", "document_formatting_provider"):
        assert getattr(caps, absent) is None, absent
    assert editor.init_result.server_info.name == "ornith-lsp"

    status = await wait_status(editor, "ready")
    assert status["state"] == "ready", status
    assert status["health"] == "ok"
    assert status["kind"] == "llamacpp" and status["model_size"] == "SmolLM2-135M-Instruct"
    assert status["context_length"] > 0
    assert status["log_path"].startswith(LOG_DIR) and os.path.isfile(status["log_path"])
    assert alive(status["pid"])

    assert any("ready" in m.message for m in editor.log_messages)
    supports_progress = bool(editor.capabilities.window and editor.capabilities.window.work_done_progress)
    kinds = [type(v).__name__ for reports in editor.progress_reports.values() for v in reports]
    if supports_progress:
        assert kinds[0] == "WorkDoneProgressBegin" and kinds[-1] == "WorkDoneProgressEnd"
    else:
        assert kinds == []


@pytest_lsp.fixture(config=SERVER)
async def bad_settings_editor(lsp_client: LanguageClient, tmp_path):
    (tmp_path / "ornith.toml").write_text('[backend]\nkind = "embedded"\n')
    params = types.InitializeParams(
        capabilities=client_capabilities("visual_studio_code"),
        root_uri=tmp_path.as_uri(),
        initialization_options={"ornith": {"backend": {"parallel": "many"}}},
    )
    await lsp_client.initialize_session(params)
    yield
    await lsp_client.shutdown_session()


async def test_bad_editor_setting_is_shown_and_server_keeps_working(bad_settings_editor: LanguageClient):
    client = bad_settings_editor
    status = await wait_status(client, "ready")
    errors = [m.message for m in client.messages if m.type == types.MessageType.Error]
    assert any("backend.parallel" in m and "'many'" in m and "editor" in m for m in errors), errors
    assert status["state"] == "ready"  # fell back to ornith.toml + defaults

    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"ornith": {"backend": {"kind": "teleport"}}})
    )
    for _ in range(50):
        if any("backend.kind" in m.message for m in client.messages):
            break
        await asyncio.sleep(0.05)
    assert any("backend.kind" in m.message and "allowed" in m.message for m in client.messages)
