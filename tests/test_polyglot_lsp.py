"""ornith.runTests in the editor on a Go project: the REAL go test runs on the
editor's view of the code (an unsaved buffer included) and its failures are
published as diagnostics where the failing check is."""

from __future__ import annotations

import os
import sys

import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from agent_repos import make_repo
from polyglot_repos import GO_CALC

SERVER = ClientServerConfig(server_command=[sys.executable, "-m", "ornith_lsp", "serve"], server_env={**os.environ})


@pytest_lsp.fixture(config=SERVER)
async def editor(lsp_client: LanguageClient, tmp_path):
    repo = make_repo(tmp_path / "repo", GO_CALC)
    lsp_client.repo = repo

    @lsp_client.feature(types.WORKSPACE_CODE_LENS_REFRESH)
    def refresh_lenses(params):
        return None

    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("visual_studio_code"), root_uri=repo.as_uri(),
        initialization_options={"ornith": {"backend": {"kind": "remote", "endpoint": "http://127.0.0.1:9/v1",
                                                       "model": "none"}, "agent": {"test_timeout_s": 120}}}))
    yield
    await lsp_client.shutdown_session()


async def test_run_tests_publishes_go_failures_from_the_editors_view(editor: LanguageClient):
    repo = editor.repo
    uri = (repo / "calc/calc.go").as_uri()
    unsaved = GO_CALC["calc/calc.go"].replace("return a * b", "return a*b + 1")  # breaks TestMul, unsaved
    editor.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(
        uri=uri, language_id="go", version=1, text=unsaved)))
    summary = await editor.workspace_execute_command_async(types.ExecuteCommandParams(command="ornith.runTests"))
    assert summary["reportFound"] and (summary["failed"], summary["passed"]) == (2, 0), summary
    diags = sorted(editor.diagnostics[(repo / "calc/calc_test.go").as_uri()], key=lambda d: d.range.start.line)
    assert [d.range.start.line for d in diags] == [6, 12]
    assert "Mul(6, 7) = 43, want 42" in diags[1].message
    assert diags[0].message.startswith("calc/calc_test.go::TestAdd: Add(20, 22) = -2, want 42")
