"""``ornith-lsp fix``: the editor's loop, for CI bots.

It changes nothing unless asked: by default it reports; ``--apply`` writes the
verified fixes to the working tree, ``--patch`` writes them as one diff,
``--branch`` commits them on a new branch without touching the checkout.
Fixes are made one after another, each starting from the previous verified
fixes (laid over the tree as unsaved buffers would be), so they never
conflict with each other.  Exit 0: every task fixed; 1: some left; 2: error;
128 + the signal number when interrupted (130 SIGINT, 143 SIGTERM, 129
SIGHUP), after printing the report of what was done so far.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from ornith_lsp import procs
from ornith_lsp import settings as settings_mod
from ornith_lsp.agent.service import (
    BackendUnavailable,
    Candidate,
    DoneEvent,
    Event,
    EventSink,
    FixResult,
    FixService,
    PlanError,
    PlanEvent,
    Report,
    StepEvent,
    TestsCannotRun,
    Turn,
    VerifyEvent,
)
from ornith_lsp.backends import explain
from ornith_lsp.offloop import off_loop
from ornith_lsp.tasks import Task
from ornith_lsp.workspace import PatchError, Shadow, WorkspaceError, apply_to_tree, leftovers

class Progress:
    """A bar on a terminal, plain lines in a CI log."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()

    def line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text[:120])
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")


RecordStatus = Literal["fixed", "unfixed", "vetoed", "error", "interrupted"]


class Timings(BaseModel):
    wall_s: float
    decode_tok_s: float | None
    prefill_ms: float
    decode_ms: float


class TaskRecord(BaseModel):
    """One task in the CI report (``--format json``), the same fields whatever became of it."""

    id: str
    source: str
    target: str
    status: RecordStatus
    reason: str
    strategy: str | None
    strategy_chosen_by: str | None
    strategies_run: list[str]
    tool_call_mode: str | None
    edit_format: str | None
    focus: str | None
    candidates: list[Candidate]
    scaffold: dict[str, Any] | None
    replans: int
    steps: list[Turn]
    tokens: dict[str, int]
    cache: dict[str, Any]
    timings: Timings
    verification: dict[str, Any]
    dead_ends: list[str]
    checkpoint: str | None
    diff: str
    unverified_diff: str


class Summary(BaseModel):
    total: int
    fixed: int
    unfixed: int
    vetoed: int
    interrupted: int
    errors: int


class RunReport(BaseModel):
    summary: Summary
    tasks: list[TaskRecord]
    notes: list[str]
    test_command: dict[str, Any] | None = None
    interrupted: dict[str, str | None] | None = None


def task_record(result: FixResult) -> TaskRecord:
    r = result.report
    status: RecordStatus = r.status if r.status in ("fixed", "vetoed", "error", "interrupted") else "unfixed"
    t = result.task
    target = t.test_id or (f"{t.location.path}:{t.location.line}" if t.location else "")
    return TaskRecord(
        id=t.id, source=t.source, target=target, status=status, reason=r.reason,
        strategy=r.strategy, strategy_chosen_by=r.strategy_chosen_by, strategies_run=r.strategies_run,
        tool_call_mode=r.tool_call_mode, edit_format=r.edit_format, focus=r.focus, candidates=r.candidates,
        scaffold=r.scaffolds[-1] if r.scaffolds else None, replans=max(0, len(r.scaffolds) - 1),
        steps=r.turns, tokens=r.tokens(), cache=r.cache(),
        timings=Timings(wall_s=r.wall_s, decode_tok_s=r.decode_tok_s(),
                        prefill_ms=round(sum(x.prefill_ms or 0 for x in r.turns), 1),
                        decode_ms=round(sum(x.decode_ms or 0 for x in r.turns), 1)),
        verification={**(r.verification.model_dump() if r.verification else {}), "guard": result.verdict},
        dead_ends=r.dead_ends, checkpoint=result.checkpoint_id,
        diff=result.diff if result.verified else "", unverified_diff="" if result.verified else result.diff,
    )


def interrupted_record(task: Task, reason: str, wall_s: float) -> TaskRecord:
    """The record of the task that was running when the run was interrupted:
    its work is gone with its shadow, the reason says why."""
    report = Report(task_id=task.id, status="interrupted", reason=reason, wall_s=round(wall_s, 1))
    return task_record(FixResult(task=task, report=report))


def summary(records: list[TaskRecord], errors: int) -> Summary:
    def count(status: str) -> int:
        return sum(1 for r in records if r.status == status)

    return Summary(total=len(records), fixed=count("fixed"), unfixed=count("unfixed"), vetoed=count("vetoed"),
                   interrupted=count("interrupted"), errors=count("error") + errors)


def to_sarif(records: list[TaskRecord]) -> dict[str, Any]:
    """SARIF 2.1.0, so code-scanning UIs show each task and whether it was fixed."""
    results = []
    for rec in records:
        path, _, line = rec.target.partition(":") if rec.source != "test" else (rec.target.split("::")[0], "", "1")
        results.append({
            "ruleId": f"ornith/{rec.source}",
            "level": "note" if rec.status == "fixed" else "warning",
            "message": {"text": f"{rec.status}: {rec.reason}"},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": path},
                                                "region": {"startLine": int(line or 1)}}}],
            "properties": {"ornith": rec.model_dump(include={"id", "status", "tokens", "diff"})},
        })
    return {"version": "2.1.0", "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "runs": [{"tool": {"driver": {"name": "ornith-lsp", "informationUri": "https://github.com/ornith"}},
                      "results": results}]}


async def combined_diff(root: Path, overlays: dict[str, str]) -> tuple[str, Shadow]:
    """All verified fixes as one diff against the user's tree (caller closes the shadow)."""
    shadow = await Shadow.create(root, label="ornith-fix-output")
    for rel, text in overlays.items():
        shadow.write(rel, text)
    return await shadow.diff(), shadow


async def run_fix(args: argparse.Namespace, settings: settings_mod.Settings) -> int:
    """The run, with SIGINT/SIGTERM/SIGHUP turned into a normal ending."""
    stop = procs.Interruption(on_hard_exit=leftovers.remove_tracked).install()
    try:
        return await _run_fix(args, settings, stop)
    except asyncio.CancelledError:
        if not _caught(stop):
            raise
        return _interrupted(args, stop, [], [f"{stop.reason} before any task was started"])
    finally:
        stop.uninstall()


def _caught(stop: procs.Interruption) -> bool:
    """Whether a CancelledError is our interruption (then it is taken back, so
    clean-up and the report can still await); any other cancellation goes on."""
    if stop.signum is None:
        return False
    task = asyncio.current_task()
    if task is not None:
        while task.cancelling():
            task.uncancel()
    return True


async def _run_fix(args: argparse.Namespace, settings: settings_mod.Settings, stop: procs.Interruption) -> int:
    root = Path(args.path).resolve()
    if settings.agent.test_command is None and args.tests:
        settings.agent.test_command = shlex.split(args.tests)
    progress = Progress()
    diagnostics = [d for d in (args.diagnostics or "").split(",") if d]
    service = FixService(root, settings)
    records: list[TaskRecord] = []
    notes: list[str] = []
    try:
        command = await service.test_command()
        if command is not None:
            progress.line(f"tests: {command.shown()} ({command.why})")
        notes += await service.tidy()
        found = await service.collect(diagnostics, progress=progress.line, resolved=True)
        if found.problem is not None and not (found.problem.kind == "no-tests" and diagnostics):
            raise TestsCannotRun(found.problem.line())
        notes += found.notes
    except TestsCannotRun as exc:
        progress.done()
        print(f"ornith-lsp: {exc}", file=sys.stderr)
        return 2
    except (WorkspaceError, OSError) as exc:
        print(f"ornith-lsp fix: {exc}", file=sys.stderr)
        return 2
    except asyncio.CancelledError:
        if not _caught(stop):
            raise
        progress.done()
        notes.append(f"{stop.reason} while running the tests; no task was started")
        return _interrupted(args, stop, records, notes)
    tasks = found.tasks[: args.max_tasks]
    errors = 0
    overlays: dict[str, str] = {}
    if tasks:
        try:
            await service.start_backend(on_event=lambda k, m: progress.line(f"[{k}] {m.splitlines()[0]}"))
        except PlanError as exc:
            progress.done()
            print(f"ornith-lsp fix: cannot plan a model backend: {exc}", file=sys.stderr)
            return 2
        except BackendUnavailable as exc:
            progress.done()
            await service.stop_backend()
            _backend_failed(str(exc))
            return 2
        except asyncio.CancelledError:
            if not _caught(stop):
                raise
            await service.stop_backend()
            progress.done()
            notes.append(f"{stop.reason} while the model backend was starting; no task was started")
            return _interrupted(args, stop, records, notes)
    try:
        for n, task in enumerate(tasks, 1):
            label = f"[{n}/{len(tasks)}] {task.title[:60]}"
            progress.line(label)
            task_started = time.monotonic()
            try:
                try:
                    result = await service.fix(task, overlays=overlays, on_event=_progress_line(progress, label))
                except (WorkspaceError, OSError) as exc:
                    errors += 1
                    notes.append(f"{task.id}: {exc}")
                    continue
            except asyncio.CancelledError:
                if not _caught(stop):
                    raise
                records.append(interrupted_record(task, stop.reason, time.monotonic() - task_started))
                if n < len(tasks):
                    notes.append(f"{len(tasks) - n} task(s) not started: {stop.reason}")
                break
            records.append(task_record(result))
            await service.lay(result, overlays)
    finally:
        progress.done()
        await service.stop_backend()

    if stop.signum is not None:
        return _interrupted(args, stop, records, notes, errors)
    output = None
    if overlays and (args.apply or args.patch or args.branch):
        with stop.deferred():
            diff, shadow = await combined_diff(root, overlays)
            try:
                if args.patch:
                    Path(args.patch).write_text(diff)
                if args.branch:
                    await shadow.commit_to_branch(
                        args.branch, f"ornith-lsp: {sum(1 for r in records if r.status == 'fixed')} verified fix(es)")
                if args.apply:
                    try:
                        await off_loop(apply_to_tree, diff, root)
                    except (PatchError, OSError) as exc:
                        errors += 1
                        notes.append(f"--apply failed, nothing in PATH was changed: {exc}")
                        print(f"ornith-lsp fix: could not apply the verified fixes: {exc}", file=sys.stderr)
            finally:
                await shadow.close()
        output = diff
    command = found.command
    report = RunReport(summary=summary(records, errors), tasks=records, notes=notes,
                       test_command=command.model_dump(include={"argv", "source", "why"}) if command else None)
    if stop.signum is not None:
        report.interrupted = {"signal": stop.name,
                              "reason": f"{stop.reason} while the fixes were written; they were finished first"}
    _print(report, args.format, output)
    if stop.signum is not None:
        return procs.exit_code(stop.signum)
    if errors:
        return 2
    return 0 if report.summary.fixed == report.summary.total else 1


def _progress_line(progress: Progress, label: str) -> EventSink:
    """The fix's events as one progress line each."""

    def on_event(event: Event) -> None:
        if isinstance(event, StepEvent):
            progress.line(f"{label}: step {event.index}/{event.of} {event.intent[:50]}")
        elif isinstance(event, (PlanEvent, VerifyEvent)):
            progress.line(f"{label}: {event.kind}")
        elif isinstance(event, DoneEvent):
            progress.line(f"{label}: done {event.status}")

    return on_event


def _backend_failed(message: str) -> None:
    """One line with the reason from the backend's log, then the log's tail."""
    line, tail = explain.one_line(message)
    print(f"ornith-lsp fix: the model backend did not start: {line}", file=sys.stderr)
    for text in tail:
        print(f"  | {text}", file=sys.stderr)


def _interrupted(args: argparse.Namespace, stop: procs.Interruption, records: list[TaskRecord],
                 notes: list[str], errors: int = 0) -> int:
    """The report of an interrupted run: what was done, the task that was cut
    short, and nothing written to the tree (an interrupted run applies nothing)."""
    if args.apply or args.patch or args.branch:
        notes.append(f"{stop.reason}: nothing was applied, written or committed; the verified diffs are in this report")
    report = RunReport(summary=summary(records, errors), tasks=records, notes=notes,
                       interrupted={"signal": stop.name, "reason": stop.reason})
    _print(report, args.format, "")
    return procs.exit_code(stop.signum or 0)


def _print(report: RunReport, fmt: str, diff: str | None) -> None:
    if fmt == "json":
        print(report.model_dump_json(indent=2, exclude_none=False))
    elif fmt == "sarif":
        print(json.dumps(to_sarif(report.tasks), indent=2))
    else:
        s = report.summary
        print(f"{s.total} task(s): {s.fixed} fixed, {s.unfixed} unfixed, {s.vetoed} vetoed, "
              + (f"{s.interrupted} interrupted, " if s.interrupted else "") + f"{s.errors} errors")
        for rec in report.tasks:
            print(f"- {rec.status:<8} {rec.target}: {rec.reason}  "
                  f"({len(rec.steps)} turns, {rec.tokens['prompt'] + rec.tokens['completion']} tokens, {rec.timings.wall_s} s)")
            if rec.diff:
                print("  " + rec.diff.replace("\n", "\n  "))
        for note in report.notes:
            print(f"note: {note}")
        if diff is None and s.fixed:
            print("(nothing was changed: use --apply, --patch FILE or --branch NAME)")


def add_parser(sub: Any, add_setting_flags: Any) -> None:
    p = sub.add_parser("fix", help="fix failing tests (and linter findings) headless, for CI")
    p.add_argument("path", nargs="?", default=".", help="the project folder (inside a git repository)")
    p.add_argument("--tests", help="test command (default: found from the project's environment; see `ornith-lsp doctor`)")
    p.add_argument("--diagnostics", help="also fix findings of: ruff,mypy (Python); eslint,tsc,govet,clippy")
    p.add_argument("--max-tasks", type=int, default=10)
    p.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    p.add_argument("--apply", action="store_true", help="write verified fixes to the working tree")
    p.add_argument("--patch", help="write verified fixes as one unified diff to this file")
    p.add_argument("--branch", help="commit verified fixes on a new branch")
    add_setting_flags(p)


def main(args: argparse.Namespace, settings: settings_mod.Settings) -> int:
    started = time.monotonic()
    code = asyncio.run(run_fix(args, settings))
    if args.format == "text":
        print(f"({time.monotonic() - started:.1f} s)")
    return code
