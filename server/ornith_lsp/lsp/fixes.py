"""Editor features around the agent: code actions, commands, progress, plans.

A fix runs in the background (the editor never waits on the model); while it
runs, ``$/progress`` shows the scaffold's steps and ``ornith/plan`` carries the
scaffold for clients that draw it.  A verified fix is offered as a code action
whose edit is a versioned ``WorkspaceEdit``: if the user typed in a file since
the fix started, the versions no longer match and the edit is refused rather
than clobbering the newer text.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from pathlib import Path

from lsprotocol import types
from pygls.uris import from_fs_path, to_fs_path

from ornith_lsp.agent.service import (
    BackendUnavailable,
    DoneEvent,
    Event,
    EventSink,
    PlanEvent,
    StepEvent,
    TestsCannotRun,
    ToolEvent,
    VerifyEvent,
    wire,
)
from ornith_lsp.lsp.wire import (
    ApplyResult,
    CancelResult,
    FileText,
    FixStarted,
    FixTestsResult,
    QueueStatus,
    RollbackResult,
    RunTestsResult,
    ShowResult,
    TaskSummary,
)
from ornith_lsp.tasks import Task
from ornith_lsp.tasks.diagnostics import from_lsp_diagnostic, relative_path
from ornith_lsp.workspace import PatchError, WorkspaceError, diff_to_workspace_edit, diffs, rollback
from ornith_lsp.workspace.edits import Encoding
from ornith_lsp.lsp.editor import OrnithServer
from ornith_lsp.lsp.state import FixState
from ornith_lsp.offloop import off_loop

TEST_SOURCE = "ornith-tests"


def _open_documents(ls: OrnithServer) -> tuple[dict[str, str], dict[str, int | None]]:
    """Unsaved buffers and their versions, keyed by workspace-relative path."""
    texts: dict[str, str] = {}
    versions: dict[str, int | None] = {}
    if ls.root is None:
        return texts, versions
    for uri, doc in ls.workspace.text_documents.items():
        path = to_fs_path(uri)
        rel = relative_path(ls.root, path) if path else None
        if rel is not None:
            texts[rel] = doc.source
            versions[rel] = doc.version
    return texts, versions


def task_for(ls: OrnithServer, uri: str, diag: types.Diagnostic) -> Task | None:
    if ls.root is None:
        return None
    if diag.source == TEST_SOURCE and isinstance(diag.data, dict):
        for task in ls.fixes.test_tasks.get(uri, []):
            if task.id == diag.data.get("taskId"):
                return task
    try:
        return from_lsp_diagnostic(ls.root, uri, diag)
    except ValueError:
        return None  # outside the workspace: never read on a client's say-so


def code_actions(ls: OrnithServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    actions = []
    for diag in params.context.diagnostics:
        task = task_for(ls, params.text_document.uri, diag)
        if task is None:
            continue
        state = ls.fixes.by_task.get(task.id)
        if state and state.result and state.result.verified:
            edit = workspace_edit(ls, state)
            if isinstance(edit, types.WorkspaceEdit):
                plus, minus = diffs.stat(diffs.parse(state.result.diff))
                actions.append(types.CodeAction(
                    title=f"Ornith: apply verified fix (+{plus} -{minus})", kind=types.CodeActionKind.QuickFix,
                    diagnostics=[diag], edit=edit, is_preferred=True))
                actions.append(types.CodeAction(
                    title="Ornith: show diff of the verified fix", kind=types.CodeActionKind.Empty,
                    command=types.Command(title="Show diff", command="ornith.showDiff", arguments=[task.id])))
            continue
        if state and state.status in ("running", "queued"):
            title = f"Ornith: fixing… {state.step}" if state.status == "running" else "Ornith: fix queued"
            actions.append(types.CodeAction(
                title=title, kind=types.CodeActionKind.QuickFix,
                disabled=types.CodeActionDisabled(reason=f"a fix for this is {state.status}")))
            continue
        actions.append(types.CodeAction(
            title=task.title, kind=types.CodeActionKind.QuickFix, diagnostics=[diag],
            command=types.Command(title=task.title, command="ornith.fix", arguments=[task.model_dump(mode="json")])))
    for action in actions:  # LSP 3.18: an editor may mark what a model wrote or will write
        action.tags = [types.CodeActionTag.LlmGenerated]
    return actions


def workspace_edit(ls: OrnithServer, state: FixState) -> types.WorkspaceEdit | str:
    """The verified diff against the buffers as they were when the fix started;
    a string saying why when the user has changed a file since."""
    assert state.result is not None and ls.root is not None
    texts, versions = _open_documents(ls)
    for rel, version in versions.items():
        if rel in state.versions and state.versions[rel] != version and f"a/{rel}" in state.result.diff:
            return f"{rel} was edited after the fix started (version {state.versions[rel]} -> {version}); run the fix again"
    current = {}
    for rel in _paths(state.result.diff):
        if rel in texts:
            current[rel] = texts[rel]
        elif (ls.root / rel).is_file():
            current[rel] = (ls.root / rel).read_text(encoding="utf-8")
    try:
        return diff_to_workspace_edit(state.result.diff, ls.root, {r: state.versions.get(r) for r in current},
                                      current, encoding=_encoding(ls))
    except PatchError as exc:
        return str(exc)


def _paths(diff: str) -> list[str]:
    """Every path whose current text the edit needs: a rename reads its source."""
    return list(dict.fromkeys(path for patch in diffs.parse(diff) for path in patch.paths()))


def _encoding(ls: OrnithServer) -> Encoding:
    enc = ls.workspace.position_encoding
    return "utf-8" if enc == types.PositionEncodingKind.Utf8 else "utf-32" if enc == types.PositionEncodingKind.Utf32 else "utf-16"


async def start_fix(ls: OrnithServer, task: Task) -> FixStarted:
    """Start a fix in the background and return at once."""
    if ls.root is None:
        raise ValueError("the workspace has no root folder")
    if ls.backend is None or ls.backend.endpoint is None:
        raise BackendUnavailable(ls.backend.error if ls.backend and ls.backend.error else "the model backend is not ready")
    existing = ls.fixes.by_task.get(task.id)
    if existing and existing.status in ("running", "queued"):
        return FixStarted(task_id=task.id, status="running" if existing.status == "running" else "queued")
    if ls.fixes.waiting() >= ls.settings.agent.queue_limit:
        return FixStarted(task_id=task.id, status="refused",
                          reason=f"{ls.fixes.waiting()} fixes are waiting already (agent.queue_limit); "
                                 "cancel some (ornith.cancelAll) or wait")
    # queued when the fixes ahead of it fill the slots: counted now, not when their tasks first run
    state = FixState(task=task, versions={},
                     queued=ls.fixes.running() + ls.fixes.waiting() >= ls.service.concurrency())
    ls.fixes.by_task.pop(task.id, None)  # re-inserted last: the newest
    ls.fixes.by_task[task.id] = state
    ls.fixes.forget_oldest()
    state.job = asyncio.create_task(_run_fix(ls, state))
    return FixStarted(task_id=task.id, status="queued" if state.queued else "started")


async def _run_fix(ls: OrnithServer, state: FixState) -> None:
    token = f"ornith-fix-{uuid.uuid4().hex[:8]}"
    progress = bool(ls.client_capabilities.window and ls.client_capabilities.window.work_done_progress)
    if progress:
        with contextlib.suppress(Exception):
            await ls.work_done_progress.create_async(token)
        ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=state.task.title, cancellable=True,
                                                                       message="queued"))
        # the client's Cancel button on the progress cancels pygls' token future
        cancelled = ls.work_done_progress.tokens.get(token)
        if cancelled is not None and state.job is not None:
            job = state.job
            cancelled.add_done_callback(lambda f: job.cancel() if f.cancelled() else None)
    entered = False
    try:
        async with ls.service.slot():
            state.queued, entered = False, True
            await _fix_now(ls, state, token, progress)
        await ls.service.prune(ls.fixes.offered())
    except asyncio.CancelledError:
        if not entered:  # cancelled while waiting: it never started
            _done(ls, DoneEvent(task_id=state.task.id, title=state.task.title, status="cancelled",
                                reason="cancelled while queued"))
            if progress:
                ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message="cancelled"))
        raise
    finally:
        # pygls keeps every progress token's future, and ours holds the fix
        # through its cancel callback: a long session would keep every fix alive
        ls.work_done_progress.tokens.pop(token, None)


def _done(ls: OrnithServer, event: DoneEvent) -> None:
    ls.protocol.notify("ornith/fixDone", wire(event))


def _listener(ls: OrnithServer, state: FixState, token: str, progress: bool) -> EventSink:
    """The fix's events as the editor sees them: ``ornith/plan``, ``ornith/step``
    and ``ornith/tool`` notifications and the progress message."""

    def on_event(event: Event) -> None:
        if isinstance(event, PlanEvent):
            state.scaffold = event.scaffold
            ls.protocol.notify("ornith/plan", wire(event))
            message = "replanning" if event.replan else "plan ready"
        elif isinstance(event, StepEvent):
            state.step = f"step {event.index}/{event.of}: {event.intent}"
            message = state.step
            ls.protocol.notify("ornith/step", wire(event))
        elif isinstance(event, ToolEvent):
            ls.protocol.notify("ornith/tool", wire(event))
            return
        elif isinstance(event, VerifyEvent):
            message = "verified" if event.ok else "verification failed"
        else:
            return
        if progress:
            ls.work_done_progress.report(token, types.WorkDoneProgressReport(message=message))

    return on_event


async def _fix_now(ls: OrnithServer, state: FixState, token: str, progress: bool) -> None:
    if progress:
        ls.work_done_progress.report(token, types.WorkDoneProgressReport(message="started"))
    # the buffers as they are when the fix really starts, not when it was queued
    overlays, state.versions = _open_documents(ls)
    at_end: dict[str, int | None] = {}
    view: dict[str, str] = {}

    def now() -> dict[str, str]:
        """The editor's view when the fix ends: the fix is re-verified against it."""
        texts, versions = _open_documents(ls)
        at_end.update(versions)
        view.update(texts)
        return texts

    outcome = "cancelled"
    try:
        result = await ls.service.fix(state.task, overlays=overlays, now=now,
                                      on_event=_listener(ls, state, token, progress))
        if result.verified and result.notes:  # re-verified on the editor's newer view: offered against it
            state.versions = at_end
        if result.verified:
            state.files = await _verified_files(ls, result.diff, view)
        state.result = result
        report = result.report
        outcome = f"{report.status}: {report.reason}"[:200]
        if result.verified:
            ls.say("Ornith: verified fix ready", show=True)
        else:
            ls.say(f"Ornith: no verified fix ({report.status})", show=True)
        ls.say(f"Ornith: {state.task.title}: {outcome}")
        _done(ls, DoneEvent(task_id=state.task.id, title=state.task.title, status=report.status,
                            reason=report.reason, verified=result.verified))
    except asyncio.CancelledError:
        _done(ls, DoneEvent(task_id=state.task.id, title=state.task.title, status="cancelled", reason="cancelled"))
        raise
    except Exception as exc:  # a fix must never take the server down
        state.error = str(exc)
        outcome = f"error: {exc}"
        ls.say(f"Ornith: the fix failed: {exc}", types.MessageType.Error, show=True)
        _done(ls, DoneEvent(task_id=state.task.id, title=state.task.title, status="error", reason=str(exc)))
    finally:
        if progress:
            ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=outcome))


async def _verified_files(ls: OrnithServer, diff: str, texts: dict[str, str]) -> list[FileText]:
    """The preview's texts, taken when the fix is verified: later edits or an
    applied and saved fix must not change what the preview says was verified."""
    assert ls.root is not None
    try:
        return await asyncio.to_thread(verified_files, ls.root, diff, texts)
    except (PatchError, OSError, UnicodeDecodeError) as exc:  # the diff itself stays on offer
        ls.say(f"Ornith: no preview of the fix: {exc}", types.MessageType.Warning)
        return []


def verified_files(root: Path, diff: str, texts: dict[str, str]) -> list[FileText]:
    """Each file of ``diff`` before and after it, the base being the editor's
    view ``texts`` (the one the fix was verified against) over the disk.  Reads
    files: call it off the event loop."""

    @functools.cache
    def read(path: str) -> str | None:
        if path in texts:
            return texts[path]
        file = root / path
        return file.read_text(encoding="utf-8") if file.is_file() else None

    patches = [p for p in diffs.parse(diff) if not p.binary]
    after = diffs.apply(patches, read)
    return [FileText(path=p.path, before=read(p.old_path) if p.old_path else None,
                     after=after.get(p.new_path) if p.new_path else None) for p in patches]


async def apply(ls: OrnithServer, task_id: str) -> ApplyResult:
    state = ls.fixes.by_task.get(task_id)
    if state is None or state.result is None or not state.result.verified:
        return ApplyResult(applied=False, reason=f"no verified fix for task {task_id}")
    edit = workspace_edit(ls, state)
    if isinstance(edit, str):
        return ApplyResult(applied=False, reason=edit)
    result = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(edit=edit, label=state.task.title))
    return ApplyResult(applied=bool(result.applied), reason=result.failure_reason or "")


async def run_tests_command(ls: OrnithServer) -> RunTestsResult:
    """Run the tests on the editor's view of the code (saved files plus unsaved
    buffers, in a shadow tree) and publish failures as diagnostics.

    Tests that could not run are an error message, not an empty list of
    diagnostics that would read as "all green"."""
    if ls.root is None:
        raise ValueError("the workspace has no root folder")
    texts, _ = _open_documents(ls)
    try:
        run = await ls.service.collect(overlays=texts, protect=ls.fixes.offered())
    except TestsCannotRun as exc:
        ls.say(f"Ornith: {exc}", types.MessageType.Error, show=True)
        return RunTestsResult(passed=0, failed=0, report_found=False, timed_out=False, tasks=[], error=str(exc))
    problem = run.problem
    if problem is not None:
        level = types.MessageType.Warning if problem.kind == "no-tests" else types.MessageType.Error
        ls.say(f"Ornith: {problem.line()}", level, show=True)
    tasks = run.tasks
    by_uri: dict[str, list[Task]] = {}
    for task in tasks:
        path = task.location.path if task.location else (task.test_id or "").split("::")[0]
        by_uri.setdefault(from_fs_path(str(ls.root / path)), []).append(task)
    for uri in set(ls.fixes.test_tasks) | set(by_uri):
        diags = [types.Diagnostic(
            range=_line_range(t.location.line if t.location else 1),
            message=f"{t.test_id}: {t.message}" if t.test_id else t.message,
            severity=types.DiagnosticSeverity.Error, source=TEST_SOURCE, data={"taskId": t.id})
            for t in by_uri.get(uri, [])]
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=diags))
    ls.fixes.test_tasks = by_uri
    _refresh_code_lenses(ls)
    return RunTestsResult(passed=len(run.baseline), failed=len(tasks), report_found=run.report_found,
                          timed_out=run.timed_out, tasks=tasks, error=problem.line() if problem is not None else None)


def _refresh_code_lenses(ls: OrnithServer) -> None:
    """Editors keep the lenses they fetched; the failing tests just changed, so
    ask clients that allow it to fetch them again."""
    ws = ls.client_capabilities.workspace
    if ws and ws.code_lens and ws.code_lens.refresh_support:
        # not awaited: the answer carries nothing, and a refusal loses only the refresh
        ls.workspace_code_lens_refresh(None)


def _line_range(line: int) -> types.Range:
    return types.Range(start=types.Position(line=line - 1, character=0), end=types.Position(line=line, character=0))


def code_lenses(ls: OrnithServer, uri: str) -> list[types.CodeLens]:
    return [types.CodeLens(range=_line_range(t.location.line if t.location else 1),
                           command=types.Command(title=f"Ornith: fix {t.test_id}" if t.test_id else t.title,
                                                 command="ornith.fix", arguments=[t.model_dump(mode="json")]))
            for t in ls.fixes.test_tasks.get(uri, [])]


async def fix_tests(ls: OrnithServer) -> FixTestsResult:
    summary = await run_tests_command(ls)
    started = [await start_fix(ls, task) for tasks in ls.fixes.test_tasks.values() for task in tasks]
    return FixTestsResult(**dict(summary), started=started)


def cancel(ls: OrnithServer, task_id: str | None) -> CancelResult:
    """Cancel one fix, or every running and queued fix when ``task_id`` is None."""
    cancelled = []
    for tid, state in ls.fixes.by_task.items():
        if (task_id in (None, tid)) and state.job is not None and not state.job.done():
            state.job.cancel()
            cancelled.append(tid)
    return CancelResult(cancelled=cancelled)


async def cancel_and_wait(ls: OrnithServer, timeout_s: float) -> list[str]:
    """Cancel every running fix and wait (bounded) until each has reaped its
    processes and removed its shadow, so a server told to shut down leaves
    nothing behind."""
    jobs = [st.job for st in ls.fixes.by_task.values() if st.job is not None and not st.job.done()]
    cancelled = cancel(ls, None).cancelled
    if jobs:
        await asyncio.wait(jobs, timeout=timeout_s)
    return cancelled


def show(ls: OrnithServer, task_id: str) -> ShowResult:
    state = ls.fixes.by_task.get(task_id)
    if state is None:
        return ShowResult(task_id=task_id, status="unknown")
    r = state.result
    return ShowResult(task_id=task_id, status=state.status, step=state.step, error=state.error,
                      title=state.task.title, scaffold=state.scaffold, diff=r.diff if r else "",
                      verified=bool(r and r.verified), reason=r.report.reason if r else "",
                      checkpoint=r.checkpoint_id if r else None, files=state.files)


def list_tasks(ls: OrnithServer) -> list[TaskSummary]:
    return [TaskSummary(task_id=tid, title=st.task.title, status=st.status, step=st.step)
            for tid, st in ls.fixes.by_task.items()]


def queue_status(ls: OrnithServer) -> QueueStatus:
    """How loaded the fix queue is, for a status bar."""
    return QueueStatus(running=ls.fixes.running(), queued=ls.fixes.waiting(), concurrency=ls.service.concurrency(),
                       queue_limit=ls.settings.agent.queue_limit)


async def roll_back(ls: OrnithServer, task_id: str) -> RollbackResult:
    state = ls.fixes.by_task.get(task_id)
    checkpoint = state.result.checkpoint_id if state and state.result else task_id
    if ls.root is None or checkpoint is None:
        return RollbackResult(rolled_back=False, reason="no checkpoint to roll back to")
    try:
        done = await off_loop(rollback, ls.root, checkpoint)
    except WorkspaceError as exc:
        return RollbackResult(rolled_back=False, reason=str(exc))
    return RollbackResult(rolled_back=True, restored=list(done.restored), removed=list(done.removed), undo=done.undo)


HOVER_DIFF_LINES = 40


def hover_markdown(task: Task, state: FixState | None) -> str:
    """What Ornith knows about one task, as Markdown: status, the model's plan,
    the verified diff or why there is none.  Pure, so it is tested without an editor."""
    if state is None:
        return f"**Ornith** · not started\n\n{task.title}: use the code action to start a fix."
    lines = [f"**Ornith** · {state.status}", "", state.task.title]
    if state.scaffold:
        lines += ["", f"**Plan:** {state.scaffold.goal}"]
        lines += [f"{i}. {s.intent}" for i, s in enumerate(state.scaffold.steps, 1)]
    if state.status == "running" and state.step:
        lines += ["", f"**Now:** {state.step}"]
    if state.error:
        lines += ["", f"**Error:** {state.error}"]
    r = state.result
    if r is not None and r.verified and r.diff:
        diff = r.diff.splitlines()
        shown = diff[:HOVER_DIFF_LINES] + ([f"… {len(diff) - HOVER_DIFF_LINES} more lines"] if len(diff) > HOVER_DIFF_LINES else [])
        lines += ["", "Verified fix (apply it from the code action):", "```diff", *shown, "```"]
    elif r is not None and r.report.reason:
        lines += ["", f"**Not fixed:** {r.report.reason}"]
    return "\n".join(lines)


def _tasks_at(ls: OrnithServer, uri: str, line: int) -> list[Task]:
    """Tasks shown at ``line`` (0-based) of ``uri``: failing tests by their
    diagnostic line, other fixes by their location."""
    found = {t.id: t for t in ls.fixes.test_tasks.get(uri, []) if t.location and t.location.line - 1 == line}
    path = to_fs_path(uri)
    rel = relative_path(ls.root, path) if ls.root is not None and path else None
    for state in ls.fixes.by_task.values():
        loc = state.task.location
        if rel is not None and loc is not None and loc.path == rel and loc.line - 1 <= line <= (loc.end_line or loc.line) - 1:
            found.setdefault(state.task.id, state.task)
    return list(found.values())


def hover(ls: OrnithServer, uri: str, position: types.Position) -> types.Hover | None:
    """Nothing where Ornith has nothing to say, so other servers' hovers stay uncluttered."""
    tasks = _tasks_at(ls, uri, position.line)
    if not tasks:
        return None
    text = "\n\n---\n\n".join(hover_markdown(t, ls.fixes.by_task.get(t.id)) for t in tasks)
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
                       range=_line_range(position.line + 1))
