"""The one fix service: every front end asks it, none assembles a fix itself.

The editor (``lsp/``), the CI bot (``headless.py``) and the agent panels and
agents to come each translate one protocol to and from this service's typed
calls and events.  What they used to assemble each on its own -- the test
command, the tasks and the regression baseline, the model backend, the LLM
judge, the guard's task, the re-check against a moved base, the slots that
bound how many fixes run at once -- lives here once, so a setting such as
``guard.judge`` means the same in every front end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from ornith_lsp import settings as settings_mod
from ornith_lsp.agent.events import (
    CandidateEvent,
    DoneEvent,
    DoneStatus,
    Event,
    EventSink,
    PlanEvent,
    StepEvent,
    StrategyEvent,
    ToolEvent,
    VerifyEvent,
    ignore,
    wire,
)
from ornith_lsp.agent.report import Candidate, Report, Turn
from ornith_lsp.agent.scaffold import Scaffold
from ornith_lsp.agent.recheck import recheck
from ornith_lsp.agent.session import FixResult, PatchCheck, check_patch, fix
from ornith_lsp.backends.plans import PlanError
from ornith_lsp.backends.runtime import Backend, BackendUnavailable, make_plan
from ornith_lsp.backends.runtime import EventSink as BackendEventSink
from ornith_lsp.guard.judge import Judge, judge_for
from ornith_lsp.settings import Settings
from ornith_lsp.tasks import Task, environment, runners
from ornith_lsp.tasks.linters import run_mypy, run_ruff
from ornith_lsp.tasks.pytest_report import run_tests, tasks_from_results
from ornith_lsp.tasks.runners import TestsCannotRun
from ornith_lsp.workspace import Shadow, diffs, leftovers
from ornith_lsp.workspace.checkpoints import prune_checkpoints
from ornith_lsp.workspace.diffs import PatchError
from ornith_lsp.workspace.repo import WorkspaceError, open_repo

Progress = Callable[[str], None]

# what a front end needs of the agent, all from here: the service, its results and its events
__all__ = ["Backend", "BackendUnavailable", "Candidate", "CandidateEvent", "DoneEvent", "DoneStatus", "Event",
           "EventSink", "FixResult", "FixService", "PatchCheck", "PatchError", "PlanError", "PlanEvent", "Report",
           "Scaffold", "StepEvent", "StrategyEvent", "TestRun", "TestsCannotRun", "ToolEvent", "Turn", "VerifyEvent",
           "WorkspaceError", "ignore", "wire", "workspace_root"]


class TestRun(BaseModel):
    """What one run of the project's tests (and linters) found."""

    __test__ = False  # not a pytest class

    tasks: list[Task] = Field(default_factory=list)
    baseline: list[str] = Field(default_factory=list, description="the tests that passed")
    notes: list[str] = Field(default_factory=list)
    problem: environment.RunProblem | None = Field(
        None, description="a run that verified nothing (no tests collected, no report): why")
    report_found: bool = True
    timed_out: bool = False
    command: environment.TestCommand | None = Field(None, description="the resolved test command (Python)")


class FixService:
    """One workspace's fixes.  ``settings`` may be replaced between calls (the
    editor's configuration changes); the judge follows ``settings.guard``.
    ``root`` is None only in an editor opened on no folder: the backend still
    starts, and every fix is refused with the reason."""

    def __init__(self, root: Path | None, settings: Settings) -> None:
        self.root = root
        self.settings = settings
        self.backend: Backend | None = None
        self.baseline: list[str] = []  # the tests that passed at the last collection
        self._command: environment.TestCommand | None = None
        self._judge: tuple[settings_mod.GuardSettings, Backend | None, Judge | None] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._width = 0

    # -- the test command and the tasks -------------------------------------------------
    @property
    def workspace(self) -> Path:
        if self.root is None:
            raise ValueError("the workspace has no root folder")
        return self.root

    def language(self) -> str:
        return runners.detect(self.workspace, self.settings.agent.language)

    async def test_command(self) -> environment.TestCommand | None:
        """The project's own Python test command, resolved (None for other
        languages, which bring their runner).  Raises TestsCannotRun with the
        line that says what to install or set."""
        if self.language() != "python":
            self._command = None
            return None
        command = await environment.resolve(self.workspace, self.settings.agent.test_command)
        if not command.ok:
            raise TestsCannotRun(f"the tests could not run: {command.problem}")
        self._command = command
        return command

    async def fix_settings(self) -> Settings:
        """The settings a fix runs under: the project's test command filled in,
        resolved the first time a fix needs it."""
        if self._command is None and self.language() == "python":
            await self.test_command()
        return self.settings if self._command is None else environment.with_command(self.settings, self._command)

    async def collect(self, diagnostics: Sequence[str] = (), *, overlays: dict[str, str] | None = None,
                      progress: Progress = lambda _: None, resolved: bool = False,
                      protect: Sequence[str] = ()) -> TestRun:
        """Run the tests (and the named linters) in a shadow of the tree -- with
        the editor's unsaved buffers laid over it, when given -- and make one
        task per failure.  Whatever the test command writes (caches, coverage)
        lands in the shadow.  The passing tests become the regression baseline.

        Raises TestsCannotRun when nothing could run at all; a run that worked
        but verified nothing comes back with ``problem`` set.  ``resolved``:
        the test command was just resolved (:meth:`test_command`); reuse it.
        ``protect``: checkpoints the caller still offers (see :meth:`prune`)."""
        command = self._command if resolved else await self.test_command()
        async with await Shadow.create(self.workspace, overlays, label="find tasks") as scratch:
            found = (await self._collect_python(scratch.path, command, diagnostics, progress) if command is not None
                     else await self._collect_other(scratch.path, diagnostics, progress))
        self.baseline = found.baseline
        await self.prune(protect)
        return found

    async def _collect_python(self, root: Path, command: environment.TestCommand, diagnostics: Sequence[str],
                              progress: Progress) -> TestRun:
        agent = self.settings.agent
        progress("running the tests ...")
        run = await run_tests(root, command.argv or None, timeout_s=agent.test_timeout_s)
        problem = environment.run_problem(run, command, agent.test_timeout_s)
        found = TestRun(tasks=tasks_from_results(run.results), command=command, problem=problem,
                        baseline=[r.node_id for r in run.results if r.outcome == "passed"],
                        report_found=run.report_found, timed_out=run.timed_out)
        if problem is not None:
            found.notes.append(problem.message)
        for name in diagnostics:
            runner = {"ruff": run_ruff, "mypy": run_mypy}[name]
            progress(f"running {name} ...")
            lint = await runner(root)
            if not lint.installed or lint.error:
                found.notes.append(lint.error or f"{name} is not installed")
            found.tasks += lint.tasks
        return found

    async def _collect_other(self, root: Path, diagnostics: Sequence[str], progress: Progress) -> TestRun:
        """A JavaScript/TypeScript, Go or Rust project: its own runner."""
        other = await runners.collect(root, self.settings, diagnostics, progress)
        assert other is not None  # the language is not Python
        tasks, baseline, notes = other
        return TestRun(tasks=tasks, baseline=baseline, notes=notes,
                       timed_out=any("timed out" in n for n in notes))

    async def prune(self, protect: Sequence[str] = ()) -> None:
        """Every fix and test run leaves a checkpoint: keep ``refs/ornith/``
        bounded.  ``protect``: checkpoints a front end still offers a rollback to."""
        with contextlib.suppress(Exception):
            await asyncio.to_thread(prune_checkpoints, self.workspace, protect=list(protect))

    async def tidy(self) -> list[str]:
        """Leftovers of earlier runs that crashed (worktrees, shadow dirs), removed."""
        return await asyncio.to_thread(leftovers.tidy, self.workspace)

    # -- the model backend and the judge ---------------------------------------------------
    async def start_backend(self, on_event: BackendEventSink | None = None,
                            on_problem: Progress = lambda _: None) -> Backend:
        """Plan and start the backend the settings ask for; raises
        BackendUnavailable (or the planner's error) with the reason."""
        plan, problems = await asyncio.to_thread(make_plan, self.settings)
        for problem in problems:
            on_problem(problem)
        self.backend = Backend(self.settings, plan, on_event=on_event)
        await self.backend.start()
        return self.backend

    async def stop_backend(self) -> None:
        if self.backend is not None:
            await self.backend.stop()

    def judge(self) -> Judge | None:
        """The LLM judge ``guard.judge`` asks for, built once per guard settings:
        on its own endpoint when one is set, else on the fixing model's backend."""
        g = self.settings.guard
        if self._judge is not None and self._judge[0] == g and self._judge[1] is self.backend:
            return self._judge[2]
        judge = None if g.judge == "off" else judge_for(
            self.settings, fallback=self.backend.client if self.backend is not None else None)
        self._judge = (g, self.backend, judge)
        return judge

    # -- fixes ---------------------------------------------------------------------------
    def concurrency(self) -> int:
        """``agent.concurrency``, else the backend's slots (``backend.parallel``):
        more fixes at once than slots would only queue inside the backend, each
        holding a shadow and test processes while it waits."""
        return self.settings.agent.concurrency or self.settings.backend.parallel

    def slot(self) -> asyncio.Semaphore:
        """The running-fix slots; a changed width applies to fixes queued from now on."""
        width = self.concurrency()
        if self._slots is None or width != self._width:
            self._slots, self._width = asyncio.Semaphore(width), width
        return self._slots

    async def fix(self, task: Task, *, overlays: dict[str, str] | None = None,
                  now: Callable[[], dict[str, str]] | None = None, on_event: EventSink = ignore) -> FixResult:
        """One task: the agent in a shadow laid with ``overlays`` (unsaved
        buffers, or a run's earlier fixes), the guard with the judge, then a
        re-check against the workspace as it is when the fix ends (``now()``,
        by default the same overlays): a fix is offered against the tree the
        user has then, not the one it started from."""
        backend = self.backend
        if backend is None or backend.endpoint is None:
            raise BackendUnavailable(backend.error if backend is not None and backend.error
                                     else "the model backend is not ready")
        settings, judge = await self.fix_settings(), self.judge()
        async with backend.client() as llm:
            result = await fix(task, root=self.workspace, llm=llm, settings=settings,
                               context_length=backend.plan.context_length, overlays=dict(overlays or {}),
                               baseline=self.baseline, judge=judge, on_event=on_event,
                               model_size=backend.plan.model_size)
        current = now() if now is not None else dict(overlays or {})
        return await recheck(result, root=self.workspace, settings=settings, overlays=current,
                             baseline=self.baseline, judge=judge)

    async def check_patch(self, diff: str, tests: Sequence[str] = ()) -> PatchCheck:
        """The guard on someone else's diff, in a shadow of the workspace as it
        is: ``tests`` (the project's test ids) graded on pristine tests, no
        baseline run.  Raises PatchError or GuardError saying why no verdict."""
        return await check_patch(diff, root=self.workspace, settings=await self.fix_settings(), tests=tests,
                                 judge=self.judge())

    async def verify_patch(self, diff: str, tests: Sequence[str] = (), *,
                           progress: Progress = lambda _: None) -> PatchCheck:
        """Someone else's diff, verified as a fix is: the tests run first for
        the regression baseline, then the guard grades ``tests`` and every
        test that passed before on pristine tests, in a shadow."""
        found = await self.collect(progress=progress)
        if found.problem is not None and found.problem.kind in ("cannot-start", "no-pytest", "no-report"):
            raise TestsCannotRun(found.problem.line())  # grading would fail the same way
        return await check_patch(diff, root=self.workspace, settings=await self.fix_settings(), tests=tests,
                                 baseline=self.baseline, judge=self.judge())

    async def lay(self, result: FixResult, overlays: dict[str, str]) -> None:
        """Lay a verified fix over ``overlays``, so the next task of a run
        starts from it and the fixes never conflict."""
        if result.verified:
            overlays.update(await asyncio.to_thread(changed_texts, self.workspace, result.diff, overlays))


def changed_texts(root: Path, diff: str, overlays: dict[str, str]) -> dict[str, str]:
    """The post-fix text of each file the diff touches, on top of ``overlays``;
    a removed file becomes empty text, since overlays hold only text."""

    def read(path: str) -> str | None:
        if path in overlays:
            return overlays[path]
        file = root / path
        return file.read_text(encoding="utf-8") if file.is_file() else None

    return {path: text or "" for path, text in diffs.apply(diffs.parse(diff), read).items()}


def workspace_root(path: Path) -> Path:
    """``path`` as a workspace root: an existing folder inside a git work tree
    (the shadows and checkpoints need git), resolved; WorkspaceError says why not."""
    if not path.is_absolute():
        raise WorkspaceError(f"{path}: give the workspace root as an absolute path")
    if not path.is_dir():
        raise WorkspaceError(f"{path} is not a directory" if path.exists() else f"{path} does not exist")
    open_repo(path)
    return path.resolve()
