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
from typing import Any

from ornith_lsp import procs
from ornith_lsp import settings as settings_mod
from ornith_lsp.agent.loop import Report
from ornith_lsp.agent.recheck import recheck
from ornith_lsp.agent.session import FixResult, fix
from ornith_lsp.backends import explain
from ornith_lsp.backends.planner import PlanError
from ornith_lsp.backends.runtime import Backend, BackendUnavailable, make_plan
from ornith_lsp.guard.judge import Judge
from ornith_lsp.llm.client import ChatClient
from ornith_lsp.tasks import Task, environment, runners
from ornith_lsp.tasks.runners import TestsCannotRun
from ornith_lsp.tasks.linters import run_mypy, run_ruff
from ornith_lsp.tasks.pytest_report import run_tests, tasks_from_results
from ornith_lsp.workspace import PatchError, Shadow, WorkspaceError, apply_to_tree, diffs, leftovers
from ornith_lsp.offloop import off_loop


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


async def collect_tasks(root: Path, settings: settings_mod.Settings, diagnostics: list[str],
                        progress: Progress, command: environment.TestCommand | None = None,
                        ) -> tuple[list[Task], list[str], list[str]]:
    """Failing tests and linter findings as tasks, plus the tests that pass now
    (the regression baseline) and notes for the report.

    ``command`` is the resolved test command (by default the setting).  A run that could
    not test anything raises TestsCannotRun rather than reporting "0 tasks";
    a run that collected no tests does too, unless diagnostics were asked for,
    which are then the only tasks.  A JavaScript/TypeScript, Go or Rust project
    goes to its own runner."""
    if (other := await runners.collect(root, settings, diagnostics, progress.line)) is not None:
        return other
    notes: list[str] = []
    progress.line("running the tests ...")
    if command is None:
        command = environment.from_setting(settings.agent.test_command or [])
    run = await run_tests(root, command.argv or None, timeout_s=settings.agent.test_timeout_s)
    problem = environment.run_problem(run, command, settings.agent.test_timeout_s)
    if problem is not None and not (problem.kind == "no-tests" and diagnostics):
        raise TestsCannotRun(problem.line())
    if problem is not None:
        notes.append(problem.message)
    tasks = tasks_from_results(run.results)
    baseline = [r.node_id for r in run.results if r.outcome == "passed"]
    for name in diagnostics:
        runner = {"ruff": run_ruff, "mypy": run_mypy}[name]
        progress.line(f"running {name} ...")
        lint = await runner(root)
        if not lint.installed or lint.error:
            notes.append(lint.error or f"{name} is not installed")
        tasks += lint.tasks
    return tasks, baseline, notes


async def _collect_in_shadow(root: Path, settings: settings_mod.Settings, diagnostics: list[str],
                             progress: Progress, command: environment.TestCommand | None = None,
                             ) -> tuple[list[Task], list[str], list[str]]:
    """:func:`collect_tasks` in a shadow of the tree, as the agent's own runs
    are: whatever the test command or its plugins write (``.pytest_cache/``,
    ``.benchmarks/``, coverage files) lands there, not in PATH."""
    async with await Shadow.create(root, label="find tasks") as scratch:
        return await collect_tasks(scratch.path, settings, diagnostics, progress, command)


def task_record(result: FixResult) -> dict[str, Any]:
    r = result.report
    status = {"fixed": "fixed", "vetoed": "vetoed", "error": "error", "interrupted": "interrupted"}.get(r.status, "unfixed")
    t = result.task
    target = t.test_id or (f"{t.location.path}:{t.location.line}" if t.location else "")
    return {
        "id": t.id, "source": t.source, "target": target, "status": status, "reason": r.reason,
        "strategy": r.strategy, "strategy_chosen_by": r.strategy_chosen_by, "strategies_run": r.strategies_run,
        "tool_call_mode": r.tool_call_mode, "edit_format": r.edit_format, "focus": r.focus,
        "candidates": [c.model_dump() for c in r.candidates],
        "scaffold": r.scaffolds[-1] if r.scaffolds else None, "replans": max(0, len(r.scaffolds) - 1),
        "steps": [turn.model_dump() for turn in r.turns],
        "tokens": r.tokens(), "cache": r.cache(),
        "timings": {"wall_s": r.wall_s, "decode_tok_s": r.decode_tok_s(),
                    "prefill_ms": round(sum(x.prefill_ms or 0 for x in r.turns), 1),
                    "decode_ms": round(sum(x.decode_ms or 0 for x in r.turns), 1)},
        "verification": {**(r.verification.model_dump() if r.verification else {}), "guard": result.verdict},
        "dead_ends": r.dead_ends,
        "checkpoint": result.checkpoint_id,
        "diff": result.diff if result.verified else "",
        "unverified_diff": "" if result.verified else result.diff,
    }


def interrupted_record(task: Task, reason: str, wall_s: float) -> dict[str, Any]:
    """The record of the task that was running when the run was interrupted:
    its work is gone with its shadow, the reason says why."""
    report = Report(task_id=task.id, status="interrupted", reason=reason, wall_s=round(wall_s, 1))
    return task_record(FixResult(task=task, report=report))


def summary(records: list[dict[str, Any]], errors: int) -> dict[str, int]:
    count = lambda s: sum(1 for r in records if r["status"] == s)  # noqa: E731
    return {"total": len(records), "fixed": count("fixed"), "unfixed": count("unfixed"),
            "vetoed": count("vetoed"), "interrupted": count("interrupted"), "errors": count("error") + errors}


def to_sarif(records: list[dict[str, Any]]) -> dict[str, Any]:
    """SARIF 2.1.0, so code-scanning UIs show each task and whether it was fixed."""
    results = []
    for rec in records:
        path, _, line = rec["target"].partition(":") if rec["source"] != "test" else (rec["target"].split("::")[0], "", "1")
        results.append({
            "ruleId": f"ornith/{rec['source']}",
            "level": "note" if rec["status"] == "fixed" else "warning",
            "message": {"text": f"{rec['status']}: {rec['reason']}"},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": path},
                                                "region": {"startLine": int(line or 1)}}}],
            "properties": {"ornith": {k: rec[k] for k in ("id", "status", "tokens", "diff")}},
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
    command: environment.TestCommand | None = None
    if runners.detect(root, settings.agent.language) == "python":  # other languages resolve their own runner
        command = await environment.resolve(root, settings.agent.test_command)
        if not command.ok:
            print(f"ornith-lsp: the tests could not run: {command.problem}", file=sys.stderr)
            return 2
        settings = environment.with_command(settings, command)
        progress.line(f"tests: {command.shown()} ({command.why})")
    housekeeping = await asyncio.to_thread(leftovers.tidy, root)
    records: list[dict[str, Any]] = []
    notes: list[str] = list(housekeeping)
    try:
        tasks, baseline, found_notes = await _collect_in_shadow(root, settings, diagnostics, progress, command)
        notes += found_notes
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
    tasks = tasks[: args.max_tasks]
    errors = 0
    overlays: dict[str, str] = {}
    backend = None
    if tasks:
        try:
            plan, problems = make_plan(settings)
        except PlanError as exc:
            print(f"ornith-lsp fix: cannot plan a model backend: {exc}", file=sys.stderr)
            return 2
        backend = Backend(settings, plan, on_event=lambda k, m: progress.line(f"[{k}] {m.splitlines()[0]}"))
        try:
            await backend.start()
        except BackendUnavailable as exc:
            progress.done()
            _backend_failed(str(exc))
            return 2
        except asyncio.CancelledError:
            if not _caught(stop):
                raise
            await backend.stop()
            progress.done()
            notes.append(f"{stop.reason} while the model backend was starting; no task was started")
            return _interrupted(args, stop, records, notes)
    try:
        for n, task in enumerate(tasks, 1):
            label = f"[{n}/{len(tasks)}] {task.title[:60]}"
            progress.line(label)

            def on_event(kind: str, data: dict[str, Any], label: str = label) -> None:
                if kind == "step":
                    progress.line(f"{label}: step {data['index']}/{data['of']} {data['intent'][:50]}")
                elif kind in ("plan", "verify", "done"):
                    progress.line(f"{label}: {kind} {data.get('status') or ''}".rstrip())

            task_started = time.monotonic()
            try:
                async with backend.client() as llm:
                    judge = _judge(settings, backend)
                    try:
                        result = await fix(task, root=root, llm=llm, settings=settings,
                                           context_length=backend.plan.context_length, overlays=dict(overlays),
                                           model_size=backend.plan.model_size,
                                           baseline=baseline, judge=judge, on_event=on_event)
                    except (WorkspaceError, OSError) as exc:
                        errors += 1
                        notes.append(f"{task.id}: {exc}")
                        continue
                    result = await recheck(result, root=root, settings=settings, overlays=dict(overlays),
                                           baseline=baseline, judge=judge)
            except asyncio.CancelledError:
                if not _caught(stop):
                    raise
                records.append(interrupted_record(task, stop.reason, time.monotonic() - task_started))
                if n < len(tasks):
                    notes.append(f"{len(tasks) - n} task(s) not started: {stop.reason}")
                break
            records.append(task_record(result))
            if result.verified:
                overlays.update(await asyncio.to_thread(_changed_texts, root, result.diff, overlays))
    finally:
        progress.done()
        if backend is not None:
            await backend.stop()

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
                        args.branch, f"ornith-lsp: {sum(1 for r in records if r['status'] == 'fixed')} verified fix(es)")
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
    report = {"summary": summary(records, errors), "tasks": records, "notes": notes,
              "test_command": command.model_dump(include={"argv", "source", "why"}) if command else None}
    if stop.signum is not None:
        report["interrupted"] = {"signal": stop.name, "reason": f"{stop.reason} while the fixes were written; they were finished first"}
    _print(report, args.format, output)
    if stop.signum is not None:
        return procs.exit_code(stop.signum)
    if errors:
        return 2
    return 0 if report["summary"]["fixed"] == report["summary"]["total"] else 1


def _backend_failed(message: str) -> None:
    """One line with the reason from the backend's log, then the log's tail."""
    line, tail = explain.one_line(message)
    print(f"ornith-lsp fix: the model backend did not start: {line}", file=sys.stderr)
    for text in tail:
        print(f"  | {text}", file=sys.stderr)


def _interrupted(args: argparse.Namespace, stop: procs.Interruption, records: list[dict[str, Any]],
                 notes: list[str], errors: int = 0) -> int:
    """The report of an interrupted run: what was done, the task that was cut
    short, and nothing written to the tree (an interrupted run applies nothing)."""
    if args.apply or args.patch or args.branch:
        notes.append(f"{stop.reason}: nothing was applied, written or committed; the verified diffs are in this report")
    report = {"summary": summary(records, errors), "tasks": records, "notes": notes,
              "interrupted": {"signal": stop.name, "reason": stop.reason}}
    _print(report, args.format, "")
    return procs.exit_code(stop.signum or 0)


def _changed_texts(root: Path, diff: str, overlays: dict[str, str]) -> dict[str, str]:
    """The post-fix text of each file the diff touches, for the next task's
    shadow; a removed file becomes empty text, since overlays hold only text."""

    def read(path: str) -> str | None:
        if path in overlays:
            return overlays[path]
        file = root / path
        return file.read_text(encoding="utf-8") if file.is_file() else None

    return {path: text or "" for path, text in diffs.apply(diffs.parse(diff), read).items()}


def _judge(settings: settings_mod.Settings, backend: Backend) -> Judge | None:
    g = settings.guard
    if g.judge == "off":
        return None
    if g.judge_endpoint:
        key = settings_mod.api_key(settings.model_copy(update={"backend": settings.backend.model_copy(
            update={"api_key_env": g.judge_api_key_env})}))
        return Judge(lambda: ChatClient(g.judge_endpoint, g.judge_model or "judge", api_key=key))
    return Judge(backend.client)


def _print(report: dict[str, Any], fmt: str, diff: str | None) -> None:
    if fmt == "json":
        print(json.dumps(report, indent=2))
    elif fmt == "sarif":
        print(json.dumps(to_sarif(report["tasks"]), indent=2))
    else:
        s = report["summary"]
        print(f"{s['total']} task(s): {s['fixed']} fixed, {s['unfixed']} unfixed, {s['vetoed']} vetoed, "
              + (f"{s['interrupted']} interrupted, " if s.get("interrupted") else "") + f"{s['errors']} errors")
        for rec in report["tasks"]:
            print(f"- {rec['status']:<8} {rec['target']}: {rec['reason']}  "
                  f"({len(rec['steps'])} turns, {rec['tokens']['prompt'] + rec['tokens']['completion']} tokens, {rec['timings']['wall_s']} s)")
            if rec["diff"]:
                print("  " + rec["diff"].replace("\n", "\n  "))
        for note in report["notes"]:
            print(f"note: {note}")
        if diff is None and s["fixed"]:
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
