"""One task, start to finish: shadow tree, context, loop, independent verification.

The editor and the CI bot both call :func:`fix`; it is the only place that
joins the workspace, the guard and the loop, so the two front ends cannot
drift apart.  The user's files are never written here: the result is a
verified diff and a checkpoint to roll back to; applying it is the caller's
decision.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ornith_lsp.agent.edits import EditFormat
from ornith_lsp.agent.localize import locate
from ornith_lsp.agent.loop import EventSink, Loop
from ornith_lsp.agent.report import Limits, Report, Verification
from ornith_lsp.agent.tools import Tools, mentioned_identifiers
from ornith_lsp.backends.embedded import EMBEDDED_MODELS
from ornith_lsp.context import Index, definitions_used, enclosing, repo_map
from ornith_lsp.guard.boundary import Boundary
from ornith_lsp.guard.check import acheck_diff
from ornith_lsp.guard.judge import Judge
from ornith_lsp.guard.task import GuardTask
from ornith_lsp.guard.verdict import GuardError, Verdict
from ornith_lsp.llm.client import ChatClient
from ornith_lsp.settings import Settings
from ornith_lsp.tasks import Task, polyglot_linters, runners
from ornith_lsp.tasks.linters import run_mypy, run_ruff
from ornith_lsp.tasks.pytest_report import run_tests
from ornith_lsp.offloop import off_loop
from ornith_lsp.workspace import Shadow
from ornith_lsp.workspace.diffs import PatchError
from ornith_lsp.workspace.edits import apply_to_tree

EMBEDDED_NAMES = {m.name for m in EMBEDDED_MODELS.values()}
CONTEXT_TOKENS = 1500
MAX_REGRESSION_TESTS = 400


@dataclass
class FixResult:
    task: Task
    report: Report
    diff: str = ""
    verified: bool = False
    checkpoint_id: str | None = None
    verdict: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def build_context(root: Path, task: Task, token_budget: int = CONTEXT_TOKENS,
                  count_tokens: Callable[[str], int] | None = None) -> str:
    """The enclosing function, the helpers it calls, then a ranked repo map.

    Stable for the whole task, so it sits near the top of the prompt and stays
    in the KV cache."""
    index = Index(root).refresh()
    parts: list[str] = []
    loc = task.location
    if loc is not None:
        symbol = enclosing(index, loc.path, loc.line)
        if symbol is not None:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                lines = (root / symbol.path).read_text(encoding="utf-8").splitlines()
                body = "\n".join(f"{n:5d}  {lines[n - 1]}" for n in range(symbol.line, min(symbol.end_line, symbol.line + 80) + 1))
                parts.append(f"{symbol.path}: {symbol.kind} {symbol.name} (lines {symbol.line}-{symbol.end_line}):\n{body}")
            used = [f"{s.path}:{s.line} {s.signature or s.name}" for s in definitions_used(index, symbol)[:12]]
            if used:
                parts.append("It uses:\n" + "\n".join(used))
    focus = [p for p in {loc.path if loc else None, (task.test_id or "").split("::")[0] or None} if p]
    kwargs = {"count_tokens": count_tokens} if count_tokens else {}
    parts.append("Repository map:\n" + repo_map(index, focus_paths=focus, mentioned=mentioned_identifiers(task),
                                                token_budget=token_budget, **kwargs))
    return "\n\n".join(parts)


def edit_format_for(setting: str, model_size: str | None) -> EditFormat:
    """``auto``: the format measured best for the model (bench/fixrate.py
    --edit-format); a whole definition in a fenced block wherever we measured."""
    return "symbol" if setting == "auto" else setting  # type: ignore[return-value]


def _safe(count: Callable[[str], int] | None) -> Callable[[str], int] | None:
    """The backend's tokenizer, falling back to the estimate if it stops answering."""
    if count is None:
        return None
    from ornith_lsp.context import estimate_tokens

    def counted(text: str) -> int:
        try:
            return count(text)
        except Exception:
            return estimate_tokens(text)

    return counted


class TaskChecks:
    """The task's own checks, run inside the shadow; used by step checks and ``run_tests``."""

    def __init__(self, shadow_root: Path, task: Task, settings: Settings, baseline: Sequence[str] = ()):
        self.root, self.task, self.settings = shadow_root, task, settings
        self.baseline = list(baseline)

    def node_ids(self) -> list[str]:
        """The tests that decide the task: its own test; for a request, the
        tests the user named and those that passed before (all, when none)."""
        if self.task.source == "request":
            return list(dict.fromkeys([*(self.task.tests or ()), *self.baseline]))[:MAX_REGRESSION_TESTS]
        return [self.task.test_id] if self.task.test_id else []

    async def run_tests(self) -> tuple[bool, str]:
        if (other := await runners.check_tests(self.root, self.task, self.settings)) is not None:
            return other  # a JavaScript/TypeScript, Go or Rust task
        node_ids = self.node_ids()
        run = await run_tests(self.root, self.settings.agent.test_command, node_ids=node_ids,
                              timeout_s=self.settings.agent.test_timeout_s)
        if run.timed_out:
            return False, f"the tests timed out after {self.settings.agent.test_timeout_s:.0f} s"
        if not run.report_found:
            return False, f"the test run wrote no report: {run.output[-500:]}"
        failed = run.failures
        passed = [r for r in run.results if r.outcome == "passed"]
        head = f"{len(passed)} passed, {len(failed)} failed"
        if not failed and passed:
            return True, head
        detail = "\n".join(f"{r.node_id}: {r.message}\n{r.traceback[-800:]}" for r in failed[:2])
        return False, f"{head}\n{detail}"

    async def run_diagnostics(self) -> tuple[bool | None, str]:
        """None when nothing here can re-check the task's diagnostic."""
        if self.task.diagnostic_source in polyglot_linters.RECHECKED:
            return await polyglot_linters.recheck(self.task, self.root, self.settings.agent.test_timeout_s)
        source = (self.task.diagnostic_source or self.task.source or "").lower()
        path = [self.task.location.path] if self.task.location else []
        runner = {"ruff": run_ruff, "mypy": run_mypy}.get(source)
        if runner is None:
            return None, f"the {source or 'editor'} diagnostic cannot be re-run here"
        lint = await runner(self.root, path)
        if not lint.installed:
            return None, f"{source} is not installed; the diagnostic cannot be re-checked"
        same = [t for t in lint.tasks if t.code == self.task.code and t.location and self.task.location
                and t.location.path == self.task.location.path]
        if same:
            return False, f"{source} still reports {self.task.code}: " + "; ".join(t.message for t in same[:3])
        return True, f"{source} no longer reports {self.task.code} in {path[0] if path else 'the workspace'}"


def _guard_task(task: Task, baseline: Sequence[str], prefix: str = "") -> GuardTask:
    """The guard's view of the task: the target test plus every test that passed
    before, so a regression fails the grading just like the target would.  A
    diagnostic keeps its location (the boundary follows the task into a test
    file) and is graded on the baseline too; a request (the user's goal) on the
    tests the user named and the baseline.  Paths and test ids are the
    repository's (``prefix`` is the project folder inside it), like the diff."""
    def repo(node_id: str) -> str:  # the guard grades from the repository's top, the tasks name tests from the project's
        return "/".join(p for p in (prefix, node_id) if p)

    baseline = [repo(t) for t in baseline]
    if task.source == "request":  # the user's goal: the tests they named pass, and nothing that passed breaks
        named = [repo(t) for t in task.tests or ()]
        return GuardTask(kind="test", tests=named + [t for t in baseline if t not in named][:MAX_REGRESSION_TESTS],
                         goal=task.message)
    if task.source == "test" and task.test_id:
        target = repo(task.test_id)
        tests = [target] + [t for t in baseline if t != target][:MAX_REGRESSION_TESTS]
        return GuardTask(kind="test", tests=tests)
    loc = task.location
    if loc is None:
        if baseline:
            return GuardTask(kind="test", tests=list(baseline)[:MAX_REGRESSION_TESTS])
        return GuardTask(kind="diagnostic", source=task.diagnostic_source or task.source, code=task.code or "",
                         path="", line=1, message=task.message)
    return GuardTask(kind="diagnostic", source=task.diagnostic_source or task.source or "editor",
                     code=task.code or "", path="/".join(p for p in (prefix, loc.path) if p),
                     line=loc.line, message=task.message, tests=list(baseline)[:MAX_REGRESSION_TESTS] or None)


async def guard_change(shadow: Shadow, diff: str, guard_task: GuardTask | None, settings: Settings,
                       judge: Judge | None) -> Verdict:
    """Every layer of the guard on the shadow's change (``diff``, from the
    repository's top), graded in a pristine checkout of its checkpoint, so a
    test file the change edited runs as it was.  The fix's own verification
    and a patch from elsewhere both come here.  Raises GuardError when no
    verdict can be given."""
    g = settings.guard
    async with shadow.pristine() as base:
        return await acheck_diff(base, diff, guard_task, judge=judge, judge_mode=g.judge,
                                 extra_protected=g.protected, unprotected=g.unprotected,
                                 allow_new_tests=g.allow_new_tests, timeout_s=settings.agent.test_timeout_s,
                                 test_command=settings.agent.test_command)


class PatchCheck(BaseModel):
    """A change made elsewhere, judged like a fix: verified when the guard
    allows it and at least one test stood behind it."""

    verified: bool
    reason: str
    verdict: dict[str, Any] = Field(description="the guard's verdict (Verdict.to_dict())")
    graded: list[str] = Field(default_factory=list, description=(
        "the tests that had to pass on pristine test files, from the repository's top: the named ones, then the baseline"))


def _patch_task(tests: Sequence[str], baseline: Sequence[str], prefix: str) -> GuardTask | None:
    """The guard's task for an outside change: the named tests, then every test
    that passed before, from the repository's top; None grades nothing."""
    named = ["/".join(p for p in (prefix, t) if p) for t in tests]
    before = ["/".join(p for p in (prefix, t) if p) for t in baseline]
    graded = list(dict.fromkeys(named + before[:MAX_REGRESSION_TESTS]))
    return GuardTask(kind="test", tests=graded) if graded else None


async def check_patch(diff: str, *, root: Path, settings: Settings, tests: Sequence[str] = (),
                      baseline: Sequence[str] = (), judge: Judge | None = None) -> PatchCheck:
    """Someone else's diff (root-relative, as ``git diff --relative`` prints
    it) through the verification a fix gets: laid exactly on a shadow of the
    workspace as it is, never on the user's files, then the guard with
    ``tests`` and the ``baseline`` graded on pristine tests.  Raises
    PatchError when the diff does not apply, GuardError when no verdict can be
    given."""
    async with await Shadow.create(root, label="check a patch") as shadow:
        await off_loop(apply_to_tree, diff, shadow.path)
        change = await shadow.diff(top_level=True)
        if not change.strip():
            raise PatchError("the diff changes nothing in the workspace")
        task = _patch_task(tests, baseline, shadow.repo.prefix)
        verdict = await guard_change(shadow, change, task, settings, judge)
    graded = list(task.tests or []) if task else []
    return PatchCheck(verified=verdict.allowed and bool(graded), verdict=verdict.to_dict(), graded=graded,
                      reason=_patch_reason(verdict, len(set(tests)), len(graded) - len(set(tests))))


def _patch_reason(verdict: Verdict, named: int, before: int) -> str:
    if not verdict.allowed:
        return verdict.for_model()
    if not named and not before:
        return "the guard allows it, but no test stands behind it: none was named and none passed before"
    said = [f"the {named} named test(s) pass" if named else "no test was named",
            f"the {before} test(s) that passed before still pass" if before else "no test passed before"]
    return f"verified: {' and '.join(said)} on pristine test files; the guard found nothing to block"


async def fix(task: Task, *, root: Path, llm: ChatClient, settings: Settings, context_length: int,
              overlays: dict[str, str] | None = None, baseline: Sequence[str] = (),
              judge: Judge | None = None, on_event: EventSink | None = None,
              model_size: str | None = None) -> FixResult:
    """One task in a fresh shadow.  ``model_size`` is the served model's size
    as the backend plan names it: an embedded model counts as small (it gets
    the built-in strategies) unless ``agent.model_class`` says otherwise."""
    shadow = await Shadow.create(root, overlays, label=task.id)
    result = FixResult(task=task, report=Report(task_id=task.id), checkpoint_id=shadow.checkpoint.id)
    try:
        g = settings.guard
        prefix = shadow.repo.prefix
        boundary = Boundary.for_repo(shadow.worktree, g.protected, g.unprotected, g.allow_new_tests)
        if not task.graded_by_tests and task.location is not None:
            # a diagnostic in a test file may be fixed there; the guard checks the tests stay as they were
            boundary = boundary.with_finding("/".join(p for p in (prefix, task.location.path) if p))

        class ProjectBoundary:
            """Tools speak project-relative paths; the boundary speaks repository paths."""

            def check_edit(self, rel: str, *, new_file: bool) -> str | None:
                return boundary.check_edit("/".join(p for p in (prefix, rel) if p), new_file=new_file)

        checks = TaskChecks(shadow.path, task, settings, baseline)
        tools = Tools(root=shadow.path, task=task, boundary=ProjectBoundary(), checker=checks, reset=shadow.reset)
        guard_task = _guard_task(task, baseline, prefix)

        async def verify() -> Verification:
            diff = await shadow.diff(top_level=True)
            if not diff.strip():
                return Verification(ok=False, summary="no change was made")
            try:
                verdict = await guard_change(shadow, diff, guard_task, settings, judge)
            except GuardError as exc:
                return Verification(ok=False, summary=f"the guard could not judge the change: {exc}")
            result.verdict = verdict.to_dict()
            if not verdict.allowed:
                return Verification(ok=False, vetoed=True, summary=verdict.for_model(),
                                    findings=[f.to_dict() for f in verdict.findings])
            ok, detail = await checks.run_diagnostics() if not task.graded_by_tests else (True, "")
            if ok is False:
                return Verification(ok=False, summary=detail)
            notes = "; ".join(verdict.notes)
            return Verification(ok=True, summary=f"verified: {notes}{'; ' + detail if detail else ''}")

        context = await asyncio.to_thread(build_context, shadow.path, task, CONTEXT_TOKENS, _safe(llm.token_counter()))
        focus = await asyncio.to_thread(
            locate, shadow.path, task, lambda rel: tools.boundary.check_edit(rel, new_file=False) is not None)
        a = settings.agent
        small = a.model_class == "small" or (a.model_class == "auto" and model_size in EMBEDDED_NAMES)
        limits = Limits(turns=a.max_turns, tokens=a.max_tokens, wall_s=a.max_wall_s,
                        output_tokens=a.max_output_tokens, context_length=context_length,
                        temperature=a.temperature, strategy=a.strategy, small_model=small,
                        edit_format=edit_format_for(a.edit_format, model_size), candidates=a.candidates,
                        tool_calls=a.tool_calls)
        loop = Loop(task, llm=llm, tools=tools, verify=verify, context=context, limits=limits,
                    on_event=on_event, focus=focus)
        result.report = await loop.run()
        result.diff = await shadow.diff()
        result.verified = result.report.status == "fixed"
        if result.verified:
            await shadow.record_fix(task.title)
    finally:
        await shadow.close()
    return result
