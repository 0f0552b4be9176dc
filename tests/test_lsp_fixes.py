"""Code action -> fix -> diff -> workspace/applyEdit, through a real LSP client.

The model is the ScriptedPolicyServer TEST DOUBLE (a real HTTP server replaying
fixed answers), configured as a remote endpoint; the server, the shadow tree,
pytest and the guard are real."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from agent_repos import CALC, make_repo, snapshot
from policy_double import ScriptedPolicyServer
from test_agent_scripted import FINISH, GOOD_EDIT, PLAN, READ, STEP_DONE

SERVER = ClientServerConfig(server_command=[sys.executable, "-m", "ornith_lsp", "serve"],
                            server_env={**os.environ})


@pytest.fixture
def policy(request):
    delay = getattr(request, "param", 0.0)
    with ScriptedPolicyServer([PLAN, READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH], delay_s=delay) as server:
        yield server


@pytest_lsp.fixture(config=SERVER)
async def editor(lsp_client: LanguageClient, tmp_path, policy):
    repo = make_repo(tmp_path / "repo", CALC)
    lsp_client.repo = repo
    lsp_client.applied_edits = []
    lsp_client.lens_refreshes = 0

    @lsp_client.feature(types.WORKSPACE_CODE_LENS_REFRESH)
    def refresh_lenses(params):
        lsp_client.lens_refreshes += 1

    @lsp_client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams):
        lsp_client.applied_edits.append(params.edit)
        return types.ApplyWorkspaceEditResult(applied=True)

    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("visual_studio_code"), root_uri=repo.as_uri(),
        initialization_options={"ornith": {"backend": {"kind": "remote", "endpoint": policy.url, "model": "scripted"},
                                           "agent": {"test_timeout_s": 60}}}))
    for _ in range(100):
        status = await lsp_client.workspace_execute_command_async(types.ExecuteCommandParams(command="ornith.backendStatus"))
        if status["state"] == "ready":
            break
        await asyncio.sleep(0.05)
    yield
    await lsp_client.shutdown_session()


def execute(client: LanguageClient, command: str, *args):
    return client.workspace_execute_command_async(types.ExecuteCommandParams(command=command, arguments=list(args)))


async def test_code_action_fix_diff_and_versioned_apply(editor: LanguageClient):
    repo = editor.repo
    before = snapshot(repo)
    uri = (repo / "calc.py").as_uri()
    editor.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(
        uri=uri, language_id="python", version=1, text=(repo / "calc.py").read_text())))

    summary = await execute(editor, "ornith.runTests")
    assert summary["failed"] == 1 and summary["passed"] == 1 and summary["reportFound"]
    # the failure points at the assert in the test (add() raised nothing): that is where it is shown
    test_uri = (repo / "test_calc.py").as_uri()
    diags = editor.diagnostics[test_uri]
    assert len(diags) == 1 and diags[0].source == "ornith-tests" and diags[0].range.start.line == 4
    assert "test_calc.py::test_add" in diags[0].message
    for _ in range(100):  # the client said it can be asked to refetch code lenses: it is
        if editor.lens_refreshes:
            break
        await asyncio.sleep(0.05)
    assert editor.lens_refreshes == 1

    async def ask():
        """Raw JSON: lsprotocol's client-side hook reads any CodeAction that has a
        ``command`` as a bare Command, which real editors do not."""
        params = types.CodeActionParams(text_document=types.TextDocumentIdentifier(test_uri), range=diags[0].range,
                                        context=types.CodeActionContext(diagnostics=list(diags)))
        original = editor.protocol.get_result_type
        editor.protocol.get_result_type = lambda method: None
        try:
            return await editor.protocol.send_request_async(types.TEXT_DOCUMENT_CODE_ACTION, params)
        finally:
            editor.protocol.get_result_type = original

    def hover(line: int):
        return editor.text_document_hover_async(types.HoverParams(
            text_document=types.TextDocumentIdentifier(test_uri), position=types.Position(line=line, character=4)))

    assert await hover(0) is None, "a line without a task has no Ornith hover"
    shown = await hover(4)
    assert shown.contents.kind == "markdown" and "not started" in shown.contents.value

    actions = await ask()
    assert len(actions) == 1 and actions[0]["title"].startswith("Ornith: fix") and actions[0]["kind"] == "quickfix"
    assert actions[0]["tags"] == [types.CodeActionTag.LlmGenerated.value], "LSP 3.18: marked as the model's"
    finished = asyncio.ensure_future(editor.wait_for_notification("ornith/fixDone"))
    planned = asyncio.ensure_future(editor.wait_for_notification("ornith/plan"))
    stepped = asyncio.ensure_future(editor.wait_for_notification("ornith/step"))
    started = await execute(editor, actions[0]["command"]["command"], *actions[0]["command"]["arguments"])
    assert started["status"] == "started"
    plan = await asyncio.wait_for(planned, 60)
    assert plan.scaffold.goal == PLAN["goal"] and plan.replan is None
    step = await asyncio.wait_for(stepped, 60)
    assert (step.index, step.of, step.intent) == (1, 3, "read calc.py")
    done = await asyncio.wait_for(finished, 120)
    assert done.status == "fixed" and done.verified, done

    actions = await ask()
    apply_action = next(a for a in actions if a["title"].startswith("Ornith: apply verified fix"))
    assert all(a["tags"] == [types.CodeActionTag.LlmGenerated.value] for a in actions)
    change = apply_action["edit"]["documentChanges"][0]
    assert change["textDocument"] == {"uri": uri, "version": 1}
    assert "".join(e["newText"] for e in change["edits"]).strip() == "+"
    shown = (await hover(4)).contents.value
    assert "· fixed" in shown and PLAN["goal"] in shown and "+    return a + b" in shown and "```diff" in shown
    shown = await execute(editor, "ornith.showDiff", done.taskId)
    assert "+    return a + b" in shown["diff"] and shown["scaffold"]["goal"]
    # the preview's texts come with it: the buffer the fix was verified against, and with the fix
    assert shown["files"] == [{"path": "calc.py", "before": CALC["calc.py"],
                               "after": CALC["calc.py"].replace("a - b", "a + b")}]

    result = await execute(editor, "ornith.apply", done.taskId)
    assert result["applied"] is True
    assert len(editor.applied_edits) == 1
    assert snapshot(repo) == before, "the server wrote the user's files itself"

    # the user types in calc.py after the fix was made: applying is refused, not clobbered
    editor.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text="def add(a, b):\n    return 0\n")]))
    refused = await execute(editor, "ornith.apply", done.taskId)
    assert refused["applied"] is False and "edited after the fix started" in refused["reason"]
    assert len(editor.applied_edits) == 1
    actions = await ask()
    assert not any(a["title"].startswith("Ornith: apply") for a in actions)


@pytest.mark.parametrize("policy", [2.0], indirect=True)
async def test_cancel_stops_a_running_fix_and_outside_paths_get_no_action(editor: LanguageClient, policy):
    repo = editor.repo
    await execute(editor, "ornith.runTests")
    test_uri = (repo / "test_calc.py").as_uri()
    diag = editor.diagnostics[test_uri][0]
    task = (await execute(editor, "ornith.runTests"))["tasks"][0]
    finished = asyncio.ensure_future(editor.wait_for_notification("ornith/fixDone"))
    started = await execute(editor, "ornith.fix", task)
    assert started["status"] == "started"
    assert (await execute(editor, "ornith.showPlan", started["taskId"]))["status"] == "running"
    listed = await execute(editor, "ornith.tasks")
    assert [t["taskId"] for t in listed] == [started["taskId"]] and listed[0]["status"] == "running"
    cancelled = await execute(editor, "ornith.cancel", started["taskId"])
    assert cancelled["cancelled"] == [started["taskId"]]
    done = await asyncio.wait_for(finished, 30)
    assert done.status == "cancelled" and not done.verified

    # a document outside the workspace: no task, no action, nothing read
    outside = types.CodeActionParams(
        text_document=types.TextDocumentIdentifier("file:///etc/passwd"), range=diag.range,
        context=types.CodeActionContext(diagnostics=[types.Diagnostic(range=diag.range, message="x", source="pyright")]))
    assert list(await editor.text_document_code_action_async(outside)) == []


async def test_hover_markdown_says_status_step_reason_and_bounds_the_diff():
    from ornith_lsp.agent.service import FixResult, Report, Scaffold
    from ornith_lsp.lsp.fixes import HOVER_DIFF_LINES, FixState, hover_markdown
    from ornith_lsp.tasks import Task

    task = Task(source="test", title="Ornith: fix test_x.py::test_y", message="assert 0 == 3", test_id="test_x.py::test_y")
    assert "not started" in hover_markdown(task, None)

    scaffold = Scaffold.model_validate({
        "goal": "make add add", "strategy": "read, then edit", "budget": {"turns": 12, "tokens": 20000},
        "steps": [{"intent": "read calc.py", "tools": ["read_file"], "check": {"kind": "context_read"}},
                  {"intent": "edit it", "tools": ["edit"], "check": {"kind": "target_tests_pass"}}]})
    state = FixState(task=task, versions={}, step="step 2/3: edit calc.py", scaffold=scaffold)
    state.job = asyncio.get_running_loop().create_future()  # a fix still running
    text = hover_markdown(task, state)
    assert "· running" in text and "**Now:** step 2/3: edit calc.py" in text and "2. edit it" in text

    state.job = None
    state.result = FixResult(task=task, report=Report(task_id=task.id, status="budget", reason="turn budget of 12 used up"))
    assert "**Not fixed:** turn budget of 12 used up" in hover_markdown(task, state)

    long_diff = "--- a/x.py\n+++ b/x.py\n@@ -1,100 +1,100 @@\n" + "".join(f"-{i}\n+{i + 1}\n" for i in range(100))
    state.result = FixResult(task=task, report=Report(task_id=task.id, status="fixed"), diff=long_diff, verified=True)
    text = hover_markdown(task, state)
    assert "· fixed" in text and f"… {len(long_diff.splitlines()) - HOVER_DIFF_LINES} more lines" in text
    assert text.count("\n+") <= HOVER_DIFF_LINES
